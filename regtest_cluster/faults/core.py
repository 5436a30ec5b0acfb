"""``Faults``: every fault a scenario or test aims at a running cluster, and their healing.

Node faults take a node name: a Lightning node of the topology (LND or LDK), or ``"bitcoind"``.

| fault | what happens | healed by |
|---|---|---|
| ``stop(n)`` | the daemon exits gracefully (SIGTERM; ``docker stop``) | ``start(n)`` |
| ``kill(n)`` | the daemon dies at once (SIGKILL; ``docker kill``), as a crash | ``start(n)`` |
| ``restart(n)`` | ``stop`` then ``start``, waiting for its channels | (itself) |
| ``pause(n)`` | frozen (SIGSTOP; ``docker pause``): sockets open, nothing answers | ``resume(n)`` |
| ``partition(a, b)`` | no connection between two Lightning nodes, in either direction | ``heal(a, b)`` |
| ``reorg(k)`` | the top ``k`` blocks are invalidated; the tip drops by ``k`` | ``restore(hashes)`` |
| ``fee_spike(...)`` | bitcoind's fee estimate rises (see its docstring) | decays with later blocks |
| ``starve(txid)`` | miners leave one transaction out, as if priced out | ``unstarve(txid)`` |
| ``kill_daemon(d)`` | any ``Daemon`` (e.g. the marketplace app) is SIGKILLed | its owner restarts it |

``heal_all()`` undoes what is still in force: resumes paused daemons, heals
every partition, starts every node that is down, restores reorged blocks and
starved transactions, then waits until the declared channels are active. Use
``with Faults(cluster) as f:`` (or ``cluster.faults`` and ``heal_all()`` in a
teardown). A fault on a node that does not exist, or on a node already down,
raises one ``FaultError`` that names the cause.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..cluster import Cluster, ClusterError, Node
from ..daemon import Daemon
from ..nodes.bitcoind import RpcError
from ..nodes.wallet import wallet
from ..nodes.ldk import LdkError
from ..nodes.lnd import LndError
from ..waiting import WaitTimeout, wait_for
from .relay import RelayError

log = logging.getLogger("escrowlab.faults")
BITCOIND = "bitcoind"


class FaultError(ClusterError):
    """A fault cannot be applied or healed: an unknown node, a node already down, ..."""


@dataclass
class FeeSpike:
    """What ``fee_spike`` did: the estimate before and after, and the transactions it confirmed."""

    sat_per_vbyte: int
    conf_target: int
    estimate_before: float | None
    estimate_after: float | None
    txids: list[str] = field(default_factory=list)


class Faults:
    """Faults for one running ``Cluster``, through its backend (processes or containers)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.backend = cluster.backend
        self.reorgs: list[list[str]] = []      # invalidated blocks, per reorg, lowest first
        self.starved: dict[str, int] = {}      # txid -> fee delta applied (negative)
        self.fee_spikes: list[FeeSpike] = []
        self.killed_daemons: list[str] = []

    def __enter__(self) -> "Faults":
        return self

    def __exit__(self, *exc) -> None:
        self.heal_all()

    # --- naming
    def names(self) -> list[str]:
        return [BITCOIND, *self.cluster.nodes]

    def _node(self, name: str) -> Node:
        if name not in self.cluster.nodes:
            raise FaultError(f"no Lightning node named {name!r} (nodes: {', '.join(self.cluster.nodes)})")
        return self.cluster.nodes[name]

    def _daemon(self, name: str) -> Daemon:
        if name == BITCOIND:
            return self.cluster.bitcoind.daemon
        if name not in self.cluster.nodes:
            raise FaultError(f"no node named {name!r} (nodes: {', '.join(self.names())})")
        return self.cluster.nodes[name].daemon

    def is_up(self, name: str) -> bool:
        return self._daemon(name).is_running()

    def is_paused(self, name: str) -> bool:
        return self.backend.is_paused(self._daemon(name))

    def _running(self, name: str, doing: str) -> Daemon:
        daemon = self._daemon(name)
        if not daemon.is_running() and not self.backend.is_paused(daemon):
            raise FaultError(f"cannot {doing} {name}: it is already down (stopped or killed); "
                             f"bring it back with faults.start({name!r})")
        return daemon

    # --- stop, kill, start, restart
    def stop(self, name: str) -> None:
        """Stop a node gracefully; its channels go inactive. ``start`` brings it back."""
        daemon = self._running(name, "stop")
        if self.backend.is_paused(daemon):
            self.backend.resume(daemon)  # a frozen process cannot act on SIGTERM
        log.info("fault: stop %s", name)
        if name == BITCOIND:
            self.cluster.bitcoind.stop()
        else:
            self.cluster.nodes[name].stop()

    def kill(self, name: str) -> None:
        """SIGKILL a node, as a crash would. ``start`` brings it back."""
        daemon = self._running(name, "kill")
        log.info("fault: kill %s", name)
        if self.backend.is_paused(daemon):
            self.backend.resume(daemon)  # docker kills no paused container; a process dies either way
        daemon.kill()
        if name != BITCOIND:
            node = self.cluster.nodes[name]
            for attr in ("_rest", "_client"):  # LND's REST client, ldkd's: their connections died with it
                if getattr(node, attr, None) is not None:
                    getattr(node, attr).close()
                    setattr(node, attr, None)

    def start(self, name: str, timeout: float = 90.0) -> None:
        """Start a node that is down and wait until it is ready: for an LND, until its channels
        to every reachable peer are active again."""
        daemon = self._daemon(name)
        if daemon.is_running() or self.backend.is_paused(daemon):
            raise FaultError(f"cannot start {name}: it is already running"
                             + (" (paused: resume it)" if self.backend.is_paused(daemon) else ""))
        log.info("fault healed: start %s", name)
        if name == BITCOIND:
            b = self.cluster.bitcoind
            b.start(timeout)
            b.ensure_miner_wallet()
            return
        node = self.cluster.nodes[name]
        node.start(timeout)
        self.wait_channels(name)

    def restart(self, name: str) -> None:
        """Stop a running node and start it again (its channels active before this returns)."""
        self._running(name, "restart")
        self.stop(name)
        self.start(name)

    # --- pause
    def pause(self, name: str) -> None:
        """Freeze a node (SIGSTOP; ``docker pause``): its connections stay open and unanswered,
        which is what a hung node looks like to its peers. ``resume`` unfreezes it."""
        daemon = self._running(name, "pause")
        if self.backend.is_paused(daemon):
            raise FaultError(f"cannot pause {name}: it is already paused")
        log.info("fault: pause %s", name)
        self.backend.pause(daemon)

    def resume(self, name: str) -> None:
        daemon = self._daemon(name)
        if not self.backend.is_paused(daemon):
            raise FaultError(f"cannot resume {name}: it is not paused")
        log.info("fault healed: resume %s", name)
        self.backend.resume(daemon)

    # --- partitions
    def _pair(self, a: str, b: str) -> tuple[Node, Node]:
        na, nb = self._node(a), self._node(b)
        if a == b:
            raise FaultError(f"cannot partition {a} from itself")
        return na, nb

    def partitions(self) -> list[tuple[str, str]]:
        """Pairs partitioned now (by this object or any other)."""
        try:
            return self.backend.partitions(self.cluster)
        except RelayError as exc:
            raise FaultError(str(exc)) from None

    def partition(self, a: str, b: str) -> None:
        """Cut node ``a`` from node ``b`` (LND or LDK): live connections between them close and
        neither can connect to the other until ``heal(a, b)``. Other peers are untouched."""
        na, nb = self._pair(a, b)
        log.info("fault: partition %s | %s", a, b)
        try:
            self.backend.partition(self.cluster, na, nb)
        except FaultError:
            raise
        except (RelayError, ClusterError) as exc:
            raise FaultError(f"cannot partition {a} and {b}: {exc}") from None
        # A cut connection is noticed at once; wait until both sides have let go of it.
        for x, y in ((na, nb), (nb, na)):
            if x.daemon.is_running() and not self.backend.is_paused(x.daemon) and y.pubkey:
                wait_for(lambda x=x, y=y: y.pubkey not in wallet(x).connected_peers(),
                         timeout=30, what=f"{x.name} to drop its connection to {y.name}")

    def heal(self, a: str, b: str, timeout: float = 60.0) -> None:
        """Let ``a`` and ``b`` connect again, reconnect them now (not after lnd's backoff),
        and wait until the channels between them are active."""
        na, nb = self._pair(a, b)
        log.info("fault healed: heal %s | %s", a, b)
        try:
            self.backend.heal(self.cluster, na, nb)
        except FaultError:
            raise
        except (RelayError, ClusterError) as exc:
            raise FaultError(f"cannot heal {a} and {b}: {exc}") from None
        self._reconnect(na, nb, timeout)

    def _reconnect(self, na: Node, nb: Node, timeout: float) -> None:
        live = [n for n in (na, nb) if n.daemon.is_running() and not self.backend.is_paused(n.daemon)]
        if len(live) < 2 or not (na.pubkey and nb.pubkey):
            return  # the other side reconnects when it comes back
        wa = wallet(na)
        if not any(peer == nb.pubkey for peer, _ in wa.channel_activity()):
            return  # no channel between them: nothing in a node reconnects them, and neither do we

        def connected() -> bool:
            if nb.pubkey in wa.connected_peers():
                return True
            try:
                wa.connect(nb.pubkey, nb.p2p_host)
            except (LndError, LdkError) as exc:  # the node may be mid-reconnect itself; ask again next round
                log.debug("reconnect %s -> %s: %s", na.name, nb.name, exc)
            return False

        wait_for(connected, timeout=timeout, what=f"{na.name} to reconnect to {nb.name}")
        for x, y in ((na, nb), (nb, na)):
            wait_for(lambda x=x, y=y: all(active for peer, active in wallet(x).channel_activity() if peer == y.pubkey),
                     timeout=timeout, what=f"{x.name}'s channels with {y.name} to be active")

    # --- chain
    def reorg(self, blocks: int = 1) -> list[str]:
        """Invalidate the top ``blocks`` blocks (``invalidateblock``); return their hashes, lowest
        first. Their transactions go back to the mempool and the tip drops by ``blocks``; mining
        again builds a competing branch. ``restore`` makes them valid again.

        An LND that was down across the reorg and whose last block went with it stays unsynced
        until a new block arrives: restore (or mine) before starting it (``heal_all`` does)."""
        rpc = self.cluster.bitcoind.rpc
        tip = rpc.getblockcount()
        if not 1 <= blocks <= tip:
            raise FaultError(f"cannot reorg {blocks} blocks: the chain has {tip} (1 to {tip} can go)")
        hashes = [rpc.getblockhash(h) for h in range(tip - blocks + 1, tip + 1)]
        log.info("fault: reorg %d block(s) from height %d", blocks, tip - blocks + 1)
        rpc.invalidateblock(hashes[0])  # its descendants go with it
        rpc.syncwithvalidationinterfacequeue()
        self.reorgs.append(hashes)
        return hashes

    def restore(self, hashes: list[str] | None = None) -> None:
        """Make reorged blocks valid again (``reconsiderblock``): all of this object's reorgs, or
        ``hashes``. bitcoind then follows the branch with the most work (on a tie, the one it
        has): a longer original branch comes back as the tip, a reorg of its own."""
        rpc = self.cluster.bitcoind.rpc
        groups = self.reorgs if hashes is None else [list(hashes)]
        for group in list(groups):
            if group:
                rpc.reconsiderblock(group[0])
        self.reorgs = [] if hashes is None else [g for g in self.reorgs if g[0] not in set(hashes)]
        rpc.syncwithvalidationinterfacequeue()
        self.cluster.wait_synced()

    def fee_spike(self, sat_per_vbyte: int = 50, blocks: int = 6, txs_per_block: int = 6,
                  conf_target: int = 2, timeout: float = 120.0) -> FeeSpike:
        """Raise bitcoind's fee estimate (``estimatesmartfee``) to about ``sat_per_vbyte``.

        On regtest nothing competes for block space, so the meaningful fee spike is the
        estimate: lnd (sweeps, closes, opens without an explicit fee) and every bitcoind wallet
        send without a fee rate ask ``estimatesmartfee``. Its estimator learns from transactions
        it saw in the mempool and then in a block, so for ``blocks`` rounds the miner wallet
        sends ``txs_per_block`` self-payments at ``sat_per_vbyte`` (each spending confirmed coins
        only, as the estimator requires) and one block confirms them. The mempool minimum fee is
        not raised: that takes a full mempool (300 MB by default), not a test's worth of work.

        The estimator has no reset on a running node; the spike decays as later blocks confirm
        cheaper transactions. A scenario that spikes fees runs on a fresh cluster.
        """
        if sat_per_vbyte < 1 or blocks < 1 or txs_per_block < 1:
            raise FaultError("a fee spike needs a positive fee rate, block count and transactions per block")
        rpc, miner = self.cluster.bitcoind.rpc, self.cluster.bitcoind.miner()
        before = self._estimate(conf_target)
        log.info("fault: fee spike to %d sat/vB over %d blocks", sat_per_vbyte, blocks)
        txids: list[str] = []
        for _ in range(blocks):
            address = miner.getnewaddress()
            for _ in range(txs_per_block):
                sent = miner.send([(address, 100_000)], minconf=1, fee_rate_sat_vb=sat_per_vbyte, replaceable=False)
                txids.append(sent["txid"])
            self.cluster.mine(1)
        target = sat_per_vbyte * 0.9
        try:
            after = wait_for(lambda: (e := self._estimate(conf_target)) is not None and e >= target and e,
                             timeout=timeout, what=f"estimatesmartfee({conf_target}) >= {target} sat/vB")
        except WaitTimeout as exc:
            raise FaultError(f"the fee spike did not lift the estimate: {exc}") from None
        spike = FeeSpike(sat_per_vbyte, conf_target, before, after, txids)
        self.fee_spikes.append(spike)
        rpc.syncwithvalidationinterfacequeue()
        return spike

    def _estimate(self, conf_target: int) -> float | None:
        """estimatesmartfee in sat/vB, or None while bitcoind has too little data."""
        got = self.cluster.bitcoind.rpc.call("estimatesmartfee", conf_target)
        rate = got.get("feerate")
        return None if rate is None else float(rate) * 100_000_000 / 1000

    def starve(self, txid: str) -> int:
        """Miners leave ``txid`` out of their blocks, as if a fee spike priced it out: its fee
        counts as zero for block building (``prioritisetransaction``), while relay and CPFP
        still see it. Returns the fee delta applied; ``unstarve`` takes it back."""
        rpc = self.cluster.bitcoind.rpc
        if txid in self.starved:
            raise FaultError(f"transaction {txid} is already starved")
        try:
            entry = rpc.getmempoolentry(txid)
        except RpcError:
            raise FaultError(f"cannot starve {txid}: it is not in bitcoind's mempool") from None
        fee = int(round(float(entry["fees"]["base"]) * 100_000_000))
        log.info("fault: starve %s (fee %d sat counted as 0)", txid[:16], fee)
        rpc.prioritisetransaction(txid, -fee)
        self.starved[txid] = -fee
        return -fee

    def unstarve(self, txid: str) -> None:
        if txid not in self.starved:
            raise FaultError(f"transaction {txid} is not starved")
        delta = self.starved.pop(txid)
        rpc = self.cluster.bitcoind.rpc
        try:
            rpc.getmempoolentry(txid)
        except RpcError:
            return  # mined (its delta went with it) or gone
        rpc.prioritisetransaction(txid, -delta)

    # --- any daemon
    def kill_daemon(self, daemon: Daemon) -> None:
        """SIGKILL any daemon (``docker kill`` for a container), e.g. the marketplace app. Its owner
        restarts it; ``heal_all`` does not."""
        if not daemon.is_running():
            raise FaultError(f"cannot kill {daemon.name}: it is not running")
        log.info("fault: kill daemon %s", daemon.name)
        daemon.kill()
        self.killed_daemons.append(daemon.name)

    # --- healing
    def wait_channels(self, name: str, timeout: float = 60.0) -> None:
        """Wait until ``name``'s declared channels to reachable peers (running, not paused, not
        partitioned from it) are active, as both ends see them."""
        node = self._node(name)
        cut = {frozenset(p) for p in self.partitions()}
        peers: list[Node] = []
        for ch in self.cluster.topology.channels:
            if name not in (ch.from_, ch.to):
                continue
            peer = self.cluster.nodes[ch.to if ch.from_ == name else ch.from_]
            if (peer.daemon.is_running() and not self.backend.is_paused(peer.daemon)
                    and frozenset((name, peer.name)) not in cut):
                peers.append(peer)

        def active(x: Node, y: Node) -> bool:
            return y.pubkey in wallet(x).active_channel_peers()

        for peer in peers:
            wait_for(lambda p=peer: active(node, p) and active(p, node), timeout=timeout,
                     what=f"the channel between {name} and {peer.name} to be active")

    def active(self) -> dict:
        """What is in force now: down and paused nodes, partitions, reorgs, starved transactions."""
        return {
            "down": [n for n in self.names() if not self._daemon(n).is_running()
                     and not self.backend.is_paused(self._daemon(n))],
            "paused": [n for n in self.names() if self.is_paused(n)],
            "partitions": [list(p) for p in self.partitions()],
            "reorgs": [list(g) for g in self.reorgs],
            "starved": self._still_starved(),
        }

    def _still_starved(self) -> list[str]:
        """Starved transactions still waiting in the mempool (a mined one is over)."""
        if not self.starved or not self._daemon(BITCOIND).is_running():
            return list(self.starved)
        pool = set(self.cluster.bitcoind.rpc.getrawmempool())
        return [t for t in self.starved if t in pool]

    def heal_all(self, timeout: float = 90.0) -> list[str]:
        """Undo every fault still in force (see the module's table); return what was healed."""
        healed: list[str] = []
        errors: list[str] = []

        def step(what: str, fn) -> None:
            try:
                fn()
                healed.append(what)
            except Exception as exc:  # noqa: BLE001 - heal the rest; report every failure at the end
                errors.append(f"{what}: {exc}")

        for name in self.names():
            if self.is_paused(name):
                step(f"resume {name}", lambda n=name: self.backend.resume(self._daemon(n)))
        try:
            pairs = self.backend.heal_partitions(self.cluster)
        except (RelayError, ClusterError) as exc:
            errors.append(f"heal partitions: {exc}")
            pairs = []
        if not self._daemon(BITCOIND).is_running():
            step(f"start {BITCOIND}", lambda: self.start(BITCOIND, timeout))
        if self.reorgs:  # before lnd starts: an lnd whose tip was reorged away waits for a new block
            step(f"restore {sum(len(g) for g in self.reorgs)} reorged block(s)", self.restore)
        down = [n for n in self.cluster.nodes if not self._daemon(n).is_running()]

        def start(name: str) -> None:
            self.cluster.nodes[name].start(timeout)

        for name in down:
            step(f"start {name}", lambda n=name: start(n))
        for a, b in pairs:
            step(f"heal {a} | {b}", lambda a=a, b=b: self._reconnect(self._node(a), self._node(b), timeout))
        for txid in list(self.starved):
            step(f"unstarve {txid[:16]}", lambda t=txid: self.unstarve(t))
        if healed and self.cluster.topology.channels:
            step("channels active", lambda: self.cluster.wait_channels_active(timeout))
        if errors:
            raise FaultError("could not heal every fault:\n" + "\n".join(errors))
        if healed:
            log.info("faults healed: %s", ", ".join(healed))
        return healed
