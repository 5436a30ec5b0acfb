"""The bring-up steps of ``Cluster`` as shell scripts, for clusters escrowlab does not run.

A compose file or a Kubernetes Job has no escrowlab to drive it, so the same
plan (mature the miner wallet, one ``sendmany`` funding every node, one batch
open per opener, one 6-block step) is written out as four short POSIX shell
steps. Steps alternate between an image with ``bitcoin-cli`` and one with
``lncli``, handing addresses and pubkeys over in a shared ``/work`` folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..nodes.bitcoind import btc
from ..topology import Topology
from .backend import BITCOIND_INSIDE, LND_INSIDE

WORK = "/work"


@dataclass(frozen=True)
class Step:
    name: str
    tool: str  # "bitcoin" (needs bitcoin-cli and sh) or "lnd" (needs lncli and sh)
    script: str


def _btc_cli(rpc_password: str) -> str:
    return (f'cli() {{ bitcoin-cli -regtest -rpcconnect=bitcoind -rpcport={BITCOIND_INSIDE.rpc} '
            f'-rpcuser=escrowlab -rpcpassword="{rpc_password}" "$@"; }}\n'
            "until cli getblockchaininfo >/dev/null 2>&1; do sleep 1; done\n")


def _ln_fns(topology: Topology, lncli_flags: dict[str, str]) -> str:
    """One shell function per node (``ln_<name>``) running lncli against it."""
    out = []
    for n in topology.nodes:
        fn = _fn(n.name)
        out.append(f'{fn}() {{ lncli --network=regtest --rpcserver=lnd-{n.name}:{LND_INSIDE.rpc} '
                   f'{lncli_flags[n.name]} "$@"; }}')
    return "\n".join(out) + "\n"


def _fn(name: str) -> str:
    return "ln_" + name.replace("-", "_")


def _field(key: str) -> str:
    """A sed program printing a string field of lncli's JSON output."""
    return f"sed -n 's/.*\"{key}\": *\"\\([^\"]*\\)\".*/\\1/p'"


def steps(topology: Topology, rpc_password: str, lncli_flags: dict[str, str]) -> list[Step]:
    funded = [n for n in topology.nodes if n.funding_sats > 0]
    mine = 'cli -rpcwallet=miner generatetoaddress {n} "$(cli -rpcwallet=miner getnewaddress)" >/dev/null\n'

    s1 = ("set -eu\n" + _btc_cli(rpc_password)
          + "cli -named createwallet wallet_name=miner load_on_startup=true >/dev/null 2>&1 "
            "|| cli loadwallet miner >/dev/null 2>&1 || true\n"
          + mine.format(n=101) + "echo 'miner wallet matured'\n")

    s2 = ["set -eu", _ln_fns(topology, lncli_flags).rstrip()]
    for n in topology.nodes:
        fn = _fn(n.name)
        s2.append(f"until {fn} getinfo 2>/dev/null | grep -q '\"synced_to_chain\": *true'; do sleep 1; done")
        s2.append(f"{fn} getinfo | {_field('identity_pubkey')} > {WORK}/{n.name}.pubkey")
        if n.funding_sats:
            s2.append(f"for i in $(seq 1 {n.utxos}); do {fn} newaddress p2wkh | {_field('address')}; done "
                      f"> {WORK}/{n.name}.addr")
    s2.append("echo 'every node synced; addresses taken'")

    s3 = ["set -eu", _btc_cli(rpc_password).rstrip(), 'outputs=""']
    for n in funded:
        share, rest = divmod(n.funding_sats, n.utxos)
        s3.append(f"i=0; for a in $(cat {WORK}/{n.name}.addr); do "
                  f"amount={btc(share)}; [ $i -eq 0 ] && amount={btc(share + rest)}; "
                  'outputs="$outputs${outputs:+,}\\"$a\\":$amount"; i=$((i+1)); done')
    if funded:
        s3.append('cli -rpcwallet=miner sendmany "" "{$outputs}" >/dev/null')
        s3.append(mine.format(n=1).rstrip())
    s3.append("echo 'nodes funded'")

    by_opener: dict[str, list] = {}
    for ch in topology.channels:
        by_opener.setdefault(ch.from_, []).append(ch)
    s4 = ["set -eu", _ln_fns(topology, lncli_flags).rstrip()]
    for n in funded:
        s4.append(f"until {_fn(n.name)} walletbalance | grep -q '\"confirmed_balance\": *\"[1-9]'; do sleep 1; done")
    for opener, chans in by_opener.items():
        fn = _fn(opener)
        items = []
        for ch in chans:
            s4.append(f'{fn} connect "$(cat {WORK}/{ch.to}.pubkey)@lnd-{ch.to}:{LND_INSIDE.p2p}" >/dev/null 2>&1 || true')
            items.append('{"node_pubkey":"\'"$(cat %s/%s.pubkey)"\'","local_funding_amount":%d,"push_sat":%d,"private":%s}'
                         % (WORK, ch.to, ch.capacity_sats, ch.push_sats, json.dumps(ch.private)))
        s4.append(f"{fn} batchopenchannel --sat_per_vbyte=2 '[{','.join(items)}]' >/dev/null")
    s4.append(f"echo '{len(topology.channels)} channels opened'")

    s5 = ["set -eu", _btc_cli(rpc_password).rstrip()]
    if by_opener:
        s5.append(f"until [ \"$(cli getrawmempool | grep -c '\"')\" -ge {len(by_opener)} ]; do sleep 1; done")
        s5.append(mine.format(n=6).rstrip())
    s5.append("echo 'channels confirmed and announced: the cluster is ready'")

    return [Step("mature", "bitcoin", s1), Step("addresses", "lnd", "\n".join(s2) + "\n"),
            Step("fund", "bitcoin", "\n".join(s3) + "\n"), Step("open", "lnd", "\n".join(s4) + "\n"),
            Step("confirm", "bitcoin", "\n".join(s5) + "\n")]
