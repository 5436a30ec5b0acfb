"""A detached cluster's state file: how later commands and the app find it.

The file records the backend, ports, credentials, pids (or containers) and
paths. ``attach`` rebuilds a ``Cluster`` around the running daemons without
owning their start.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from .cluster import Cluster, ClusterError, ProcessBackend, Timings, parallel
from .nodes.bitcoind import BitcoinDPorts, sats
from .nodes.ldk import LdkError, LdkNode, LdkPorts
from .nodes.lnd import LndError, LndNode, LndPorts
from .provision import Binaries
from .topology import parse

STATE_VERSION = 1


def state_path(state_dir: Path, name: str = "default") -> Path:
    return state_dir / f"{name}.json"


def to_state(cluster: Cluster) -> dict:
    b = cluster.bitcoind
    backend = cluster.backend
    return {
        "version": STATE_VERSION,
        "backend": backend.name,
        "backend_state": backend.record(),
        "run_dir": str(cluster.run_dir),
        "topology": cluster.topology.model_dump(by_alias=True, mode="json"),
        "binaries": {k: str(v) for k, v in asdict(cluster.binaries).items()},
        "bitcoind": {
            "pid": b.daemon.pid, **backend.node_record(b.daemon), "datadir": str(b.datadir), "ports": asdict(b.ports),
            "rpc_url": b.rpc_url, "rpc_user": b.rpc_user, "rpc_password": b.rpc_password,
        },
        "nodes": {name: _node_record(backend, n) for name, n in cluster.nodes.items()},
        **({"ldkd": str(cluster.ldkd)} if getattr(cluster, "ldkd", None) else {}),
    }


def _node_record(backend, n) -> dict:
    if isinstance(n, LdkNode):
        return {"impl": "ldk", "role": n.role, "pid": n.daemon.pid, **backend.node_record(n.daemon),
                "pubkey": n.pubkey, "datadir": str(n.datadir), "ports": asdict(n.ports), "api_url": n.api_url,
                "p2p_host": n.p2p_host, "log": str(n.log_file)}
    return {
        "role": n.role, "pid": n.daemon.pid, **backend.node_record(n.daemon), "pubkey": n.pubkey,
        "lnddir": str(n.lnddir),
        "ports": asdict(n.ports), "rest_url": n.rest_url, "grpc_host": f"127.0.0.1:{n.ports.rpc}",
        "p2p_host": n.p2p_host, "tls_cert": str(n.tls_cert), "macaroon": str(n.macaroon_path),
    }


def write_state(path: Path, cluster: Cluster) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(to_state(cluster), indent=2))
    os.chmod(tmp, 0o600)  # it holds RPC credentials
    tmp.replace(path)


def read_state(path: Path) -> dict:
    if not path.is_file():
        raise ClusterError(f"no detached cluster: {path} does not exist "
                           "(start one with `escrowlab cluster up --detach`)")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ClusterError(f"cluster state file {path} is not valid JSON: {exc}") from None
    if data.get("version") != STATE_VERSION:
        raise ClusterError(f"cluster state file {path} has version {data.get('version')}, expected {STATE_VERSION}")
    return data


def backend_of(data: dict) -> ProcessBackend:
    """The backend a state file was written by, ready to adopt its daemons."""
    if data.get("backend", "process") == "docker":
        from .docker.backend import DockerBackend

        return DockerBackend.from_record(data.get("backend_state") or {})
    return ProcessBackend.from_record(data.get("backend_state") or {}, Path(data["run_dir"]))


def attach(data: dict) -> Cluster:
    """A Cluster object over daemons that an earlier command started."""
    topology = parse(data["topology"], "state file topology")
    binaries = Binaries(**{k: Path(v) for k, v in data["binaries"].items()})
    run_dir = Path(data["run_dir"])
    cluster = Cluster.__new__(Cluster)
    cluster.topology, cluster.binaries, cluster.run_dir = topology, binaries, run_dir
    cluster.owned = False
    backend = cluster.backend = backend_of(data)
    bd = data["bitcoind"]
    cluster.bitcoind = backend.bitcoind(binaries, Path(bd["datadir"]), BitcoinDPorts(**bd["ports"]),
                                        rpc_password=bd["rpc_password"], daemon_factory=backend.adopt(bd, run_dir))
    cluster.nodes = {}
    cluster.ldkd = Path(data["ldkd"]) if data.get("ldkd") else None
    for name, nd in data["nodes"].items():
        if nd.get("impl") == "ldk":
            node = backend.ldk(name, nd["role"], cluster.ldkd or Path("ldkd"), Path(nd["datadir"]),
                               LdkPorts(**nd["ports"]), cluster.bitcoind, daemon_factory=backend.adopt(nd, run_dir))
            node.pubkey = nd["pubkey"]
            cluster.nodes[name] = node
            continue
        node = backend.lnd(name, nd["role"], binaries, Path(nd["lnddir"]), LndPorts(**nd["ports"]),
                           cluster.bitcoind, daemon_factory=backend.adopt(nd, run_dir),
                           accept_keysend=topology.keysend(name))
        node.pubkey = nd["pubkey"]
        cluster.nodes[name] = node
    cluster.timings = Timings()
    return cluster


def status(cluster: Cluster) -> dict:
    """Each node's endpoints, credentials, balances and channels, read from the nodes."""
    b = cluster.bitcoind
    pubkey_to_name = {n.pubkey: name for name, n in cluster.nodes.items()}
    expected = cluster.expected_channels()
    try:
        chain = b.rpc.getblockchaininfo()
        btc_info = {"running": True, "height": chain["blocks"], "best_block": chain["bestblockhash"],
                    "miner_balance_sats": sats(b.miner().getbalance())}
    except Exception as exc:  # report a dead node rather than fail the whole status
        btc_info = {"running": False, "error": str(exc)}
    btc_info.update({
        "rpc_url": b.rpc_url, "rpc_user": b.rpc_user, "rpc_password": b.rpc_password,
        "datadir": str(b.datadir), "zmq_block": f"tcp://127.0.0.1:{b.ports.zmq_block}",
        "zmq_tx": f"tcp://127.0.0.1:{b.ports.zmq_tx}",
        "cli": f"{cluster.binaries.bitcoin_cli} -regtest -rpcport={b.ports.rpc} "
               f"-rpcuser={b.rpc_user} -rpcpassword={b.rpc_password}",
    })

    def ldk_status(name: str, n: LdkNode) -> dict:
        out = {
            "name": name, "impl": "ldk", "role": n.role, "pubkey": n.pubkey, "api_url": n.api_url,
            "p2p_host": n.p2p_host, "datadir": str(n.datadir), "log": str(n.log_file),
            "expected_channels": expected[name], **cluster.backend.node_record(n.daemon),
        }
        try:
            info = n.client.info()
            balances = n.client.balances()
            chans = n.client.channels()
        except (LdkError, OSError) as exc:
            out.update(running=False, error=str(exc))
            return out
        out.update(
            running=True, block_height=int(info["block_height"]), synced_to_chain=bool(info.get("synced")),
            onchain_confirmed_sats=int(balances["spendable_onchain_sats"]),
            onchain_total_sats=int(balances["total_onchain_sats"]),
            channels=[{
                "peer": pubkey_to_name.get(c["counterparty_node_id"], c["counterparty_node_id"]),
                "channel_point": c["funding_txo"], "capacity_sats": int(c["capacity_sats"]),
                "local_sats": int(c["outbound_capacity_msat"]) // 1000,
                "remote_sats": int(c["inbound_capacity_msat"]) // 1000,
                "active": bool(c["is_usable"]), "private": not c["is_announced"],
                "channel_ready": bool(c["is_channel_ready"]), "user_channel_id": c["user_channel_id"],
            } for c in chans],
        )
        out["active_channels"] = sum(1 for c in out["channels"] if c["active"])
        return out

    def node_status(item: tuple[str, LndNode | LdkNode]) -> dict:
        name, n = item
        if isinstance(n, LdkNode):
            return ldk_status(name, n)
        out = {
            "name": name, "impl": "lnd", "role": n.role, "pubkey": n.pubkey, "rest_url": n.rest_url,
            "grpc_host": f"127.0.0.1:{n.ports.rpc}", "p2p_host": n.p2p_host,
            "tls_cert": str(n.tls_cert), "macaroon": str(n.macaroon_path), "lnddir": str(n.lnddir),
            "accept_keysend": n.accept_keysend,
            "cli": f"{cluster.binaries.lncli} --network=regtest --lnddir={n.lnddir} "
                   f"--rpcserver=127.0.0.1:{n.ports.rpc}",
            "expected_channels": expected[name], **cluster.backend.node_record(n.daemon),
        }
        try:
            info = n.rest.getinfo()
            wallet = n.rest.walletbalance()
            chans = n.rest.listchannels()
        except (LndError, OSError) as exc:
            out.update(running=False, error=str(exc))
            return out
        out.update(
            running=True, block_height=int(info["block_height"]), synced_to_chain=info.get("synced_to_chain", False),
            onchain_confirmed_sats=int(wallet.get("confirmed_balance", 0)),
            onchain_unconfirmed_sats=int(wallet.get("unconfirmed_balance", 0)),
            channels=[{
                "peer": pubkey_to_name.get(c["remote_pubkey"], c["remote_pubkey"]),
                "channel_point": c["channel_point"], "capacity_sats": int(c["capacity"]),
                "local_sats": int(c.get("local_balance", 0)), "remote_sats": int(c.get("remote_balance", 0)),
                "active": bool(c.get("active")), "private": bool(c.get("private")),
            } for c in chans],
        )
        out["active_channels"] = sum(1 for c in out["channels"] if c["active"])
        return out

    nodes = parallel(node_status, cluster.nodes.items())
    declared = len(cluster.topology.channels)
    all_active = all(n.get("active_channels", 0) >= n["expected_channels"] for n in nodes)
    return {
        "topology": cluster.topology.name, "backend": cluster.backend.name, "run_dir": str(cluster.run_dir),
        "declared_channels": declared, "all_channels_active": all_active,
        "bitcoind": btc_info, "nodes": nodes,
    }
