"""A running regtest network built from a topology: bring-up, helpers, tear-down.

Bring-up order, chosen for speed on two cores: bitcoind first (lnd needs its
RPC and ZMQ), then every LND at once while the miner wallet matures coinbase;
one ``sendmany`` funds every node, one batch transaction per opener opens its
channels, and one 6-block step confirms and announces them all.

A node is LND or, with ``impl: ldk`` in the topology, ldkd (``nodes/ldk.py``); the
hub is always LND. An LDK opener opens its channels one funding transaction each.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .daemon import PORT_CLASH, DaemonError, ProcessDaemon, runs_from, start_with_port_retry
from .nodes.bitcoind import BitcoinD, BitcoinDPorts
from .nodes.ldk import LdkNode, LdkPorts
from .nodes.lnd import LndNode, LndPorts
from .ports import PortAllocator
from .provision import Binaries
from .topology import Topology
from .waiting import wait_for

Progress = Callable[[str], None]
MINE_STEP = 6  # blocks per step; nodes sync between steps (hundreds at once can force-close channels)


class ClusterError(RuntimeError):
    """Raised when a cluster cannot start or a cluster operation fails; names the run folder."""

    def __init__(self, message: str, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir
        super().__init__(message + (f"\nrun folder kept: {run_dir}" if run_dir else ""))


@dataclass
class Timings:
    bitcoind_start_s: float = 0.0
    lnd_start_s: float = 0.0
    funding_s: float = 0.0
    channels_s: float = 0.0
    bringup_s: float = 0.0
    graph_sync_s: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)


def parallel(fn: Callable, items: Iterable) -> list:
    """Run ``fn`` over ``items`` in threads; re-raise the first failure."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(fn, items))


class ProcessBackend:
    """How a cluster's daemons are built: here, as child processes on loopback ports.

    The docker backend (``regtest_cluster.docker``) subclasses this and builds
    the same nodes as containers, with a network and volumes around them;
    everything else about a cluster is the ``Cluster`` below, whatever the backend.
    Both implement ``regtest_cluster.faults.Backend``, faults included.

    Every LND's p2p port is reached through the cluster's relay
    (``regtest_cluster.faults.relay``, its own small process): lnd listens on a
    private port and advertises the relay's, so a partition can refuse the
    connections between two nodes whichever of them dials.
    """

    name = "process"
    relays_p2p = True
    relay: ProcessDaemon | None = None
    relay_port: int | None = None

    def __init__(self, relay: ProcessDaemon | None = None, relay_port: int | None = None) -> None:
        self.relay = relay
        self.relay_port = relay_port

    @classmethod
    def from_record(cls, record: dict, run_dir: Path) -> "ProcessBackend":
        """The backend a state file recorded, its relay adopted (if still ours and running)."""
        relay = record.get("relay")
        if not relay:
            return cls()
        pid = relay.get("pid")
        daemon = ProcessDaemon.adopt("relay", pid if runs_from(pid, run_dir) else None, run_dir / "relay.log", run_dir)
        return cls(daemon, relay.get("control_port"))

    def bitcoind(self, binaries: Binaries, datadir: Path, ports: BitcoinDPorts, *,
                 rpc_password: str | None = None, daemon_factory=None) -> BitcoinD:
        return BitcoinD(binaries.bitcoind, datadir, ports, daemon_factory=daemon_factory,
                        rpc_password=rpc_password)

    def lnd(self, name: str, role: str, binaries: Binaries, lnddir: Path, ports: LndPorts,
            bitcoind: BitcoinD, *, daemon_factory=None, accept_keysend: bool = False) -> LndNode:
        return LndNode(name, role, binaries.lnd, lnddir, ports, bitcoind, daemon_factory=daemon_factory,
                       accept_keysend=accept_keysend)

    def ldk(self, name: str, role: str, ldkd: Path, datadir: Path, ports: LdkPorts, bitcoind: BitcoinD, *,
            daemon_factory=None) -> LdkNode:
        if self.name != "process":
            raise ClusterError(f"{name}: the {self.name} backend cannot build LDK nodes "
                               "(the process and docker backends can)")
        return LdkNode(name, role, ldkd, datadir, ports, bitcoind, daemon_factory=daemon_factory)

    def ldk_ports(self, take: Callable[[], int]) -> dict[str, int]:
        """One ldkd's ports: its API, and p2p like an LND's (behind the relay when there is one)."""
        ports = {"api": take(), "p2p": take()}
        if self.relays_p2p:
            ports["p2p_listen"] = take()
        return ports

    def lnd_ports(self, take: Callable[[], int]) -> dict[str, int]:
        """One LND's ports; behind the relay, peers dial ``p2p`` and lnd listens on ``p2p_listen``."""
        ports = {"rpc": take(), "rest": take(), "p2p": take()}
        if self.relays_p2p:
            ports["p2p_listen"] = take()
        return ports

    def prepare(self, cluster: "Cluster | None" = None) -> None:
        """Before any daemon starts (the docker backend makes its network here). For a cluster
        with LNDs, start the relay; it gets ready while bitcoind and lnd start."""
        if cluster is None or not cluster.nodes or not self.relays_p2p:
            return
        from .faults import relay

        run_dir = cluster.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        # Run as a script (it imports nothing of ours): starts fast, and needs no installed package.
        argv = [sys.executable, relay.__file__, "--run-dir", str(run_dir)]
        self.relay = ProcessDaemon("relay", argv, run_dir / "relay.log", run_dir)
        self.relay.start()

    def nodes_ready(self, cluster: "Cluster") -> None:
        """Every LND runs on its final ports: route each relay port to its lnd."""
        if self.relay is None:
            return
        from .faults.relay import RelayError

        line = self.relay.wait_for_log(r"relay control on ", timeout=30)
        self.relay_port = int(line.rsplit(":", 1)[1])
        for attempt in range(3):
            try:
                # owner: how the relay knows each node's process, the argument naming its folder
                # that leads its own dir_args (lnd's --lnddir=, ldkd's --datadir=)
                self.relay_client().set_routes({
                    name: {"listen": n.ports.p2p, "target": n.ports.p2p_listen, "owner": n.dir_args()[0]}
                    for name, n in cluster.nodes.items() if n.ports.p2p_listen})
                return
            except RelayError as exc:
                # Another process took a node's p2p port after it was picked (the daemons'
                # own ports get the same treatment): that node moves to new ports.
                if attempt == 2 or exc.busy not in cluster.nodes:
                    raise self.relay.died(str(exc)) from None
                cluster.move_node(exc.busy)

    def release(self) -> None:
        """After every daemon stopped (the docker backend removes containers, network, volumes)."""
        if self.relay is not None:
            self.relay.stop(timeout=5)

    def record(self) -> dict:
        """What a state file keeps to attach to this backend's daemons again."""
        if self.relay is None:
            return {}
        return {"relay": {"pid": self.relay.pid, "control_port": self.relay_port}}

    def leftovers(self) -> list[str]:
        """What ``release`` should have removed but is still there."""
        return ["relay"] if self.relay is not None and self.relay.is_running() else []

    def node_record(self, daemon) -> dict:
        return {}

    def adopt(self, entry: dict, run_dir: Path):
        """A daemon factory wrapping the daemon recorded in a state file ``entry``."""
        pid = entry.get("pid")

        def factory(name, argv, log, cwd):
            # A pid is only ours if the process still runs from this run folder.
            daemon = ProcessDaemon.adopt(name, pid if runs_from(pid, run_dir) else None, log, cwd)
            daemon.argv = argv  # so a node stopped on purpose can be started again
            return daemon

        return factory

    # --- faults (the ``regtest_cluster.faults.Backend`` protocol)
    def pause(self, daemon) -> None:
        _signal_group(daemon, signal.SIGSTOP)
        # SIGSTOP lands asynchronously: return once the kernel shows the process stopped
        deadline = time.monotonic() + 5
        while not self.is_paused(daemon) and time.monotonic() < deadline:
            time.sleep(0.01)

    def resume(self, daemon) -> None:
        _signal_group(daemon, signal.SIGCONT)

    def is_paused(self, daemon) -> bool:
        pid = daemon.pid
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[-1].split()[0] in ("T", "t")
        except (OSError, IndexError, TypeError):
            return False

    def relay_client(self):
        from .faults.relay import RelayClient

        if self.relay_port is None:
            raise ClusterError("this cluster's LNDs are not behind the p2p relay (a cluster started "
                               "by an older escrowlab?), so two of them cannot be partitioned")
        return RelayClient(self.relay_port)

    def partition(self, cluster: "Cluster", a: LndNode, b: LndNode) -> None:
        self.relay_client().partition(a.name, b.name)

    def heal(self, cluster: "Cluster", a: LndNode, b: LndNode) -> None:
        self.relay_client().heal(a.name, b.name)

    def partitions(self, cluster: "Cluster") -> list[tuple[str, str]]:
        if self.relay_port is None:
            return []
        return [tuple(p) for p in self.relay_client().status()["partitions"]]

    def heal_partitions(self, cluster: "Cluster") -> list[tuple[str, str]]:
        if self.relay_port is None:
            return []
        return [tuple(p) for p in self.relay_client().heal_all()]


Node = LndNode | LdkNode


def node_dir(node: Node) -> Path:
    return node.datadir if isinstance(node, LdkNode) else node.lnddir


def _new_address(node: Node) -> str:
    return node.client.new_address() if isinstance(node, LdkNode) else node.rest.newaddress()


def _onchain_sats(node: Node) -> int:
    """Confirmed on-chain balance (for LDK: its wallet's total, read after the confirming block)."""
    if isinstance(node, LdkNode):
        return node.onchain_sats()
    return int(node.rest.walletbalance().get("confirmed_balance", 0))


def _active_channels(node: Node) -> int:
    if isinstance(node, LdkNode):
        return len(node.usable_channels())
    return len(node.rest.listchannels(active_only=True))


def _synced_to(node: Node, height: int) -> bool:
    if isinstance(node, LdkNode):
        return node.synced_to(height)
    info = node.rest.getinfo()
    return int(info["block_height"]) >= height and bool(info.get("synced_to_chain"))


def _signal_group(daemon, sig: int) -> None:
    pid = daemon.pid
    if pid is None:
        raise ClusterError(f"{daemon.name} has no process to signal")
    try:
        os.killpg(pid, sig)  # its own session: the daemon and anything it forked
    except PermissionError:
        os.kill(pid, sig)


class Cluster:
    def __init__(self, topology: Topology, binaries: Binaries, run_dir: Path,
                 ports: PortAllocator | None = None, backend: ProcessBackend | None = None,
                 ldkd: Path | None = None) -> None:
        self.topology = topology
        self.binaries = binaries
        self.run_dir = run_dir
        self.backend = backend or ProcessBackend()
        self._ports = ports or PortAllocator(topology.base_port)
        self.bitcoind = self.backend.bitcoind(binaries, run_dir / "bitcoind", self._bitcoind_ports())
        # ldkd is optional: looked up only when the topology has LDK nodes
        self.ldkd: Path | None = ldkd or (_find_ldkd() if any(s.impl == "ldk" for s in topology.nodes) else None)
        self.nodes: dict[str, Node] = {spec.name: self._make_node(spec) for spec in topology.nodes}
        self.timings = Timings()
        self.owned = True  # False for a cluster attached from a state file

    # --- ports
    def _bitcoind_ports(self) -> BitcoinDPorts:
        t = self._ports.take
        return BitcoinDPorts(rpc=t(), p2p=t(), zmq_block=t(), zmq_tx=t())

    def _lnd_ports(self) -> LndPorts:
        return LndPorts(**self.backend.lnd_ports(self._ports.take))

    def _ldk_ports(self) -> LdkPorts:
        return LdkPorts(**self.backend.ldk_ports(self._ports.take))

    def _node_ports(self, node: Node) -> LndPorts | LdkPorts:
        return self._ldk_ports() if isinstance(node, LdkNode) else self._lnd_ports()

    def _make_node(self, spec) -> Node:
        if spec.impl == "ldk":
            assert self.ldkd is not None
            return self.backend.ldk(spec.name, spec.role, self.ldkd, self.run_dir / f"ldk-{spec.name}",
                                    self._ldk_ports(), self.bitcoind)
        return self.backend.lnd(spec.name, spec.role, self.binaries, self.run_dir / f"lnd-{spec.name}",
                                self._lnd_ports(), self.bitcoind, accept_keysend=self.topology.keysend(spec.name))

    def move_node(self, name: str) -> None:
        """Restart a started node on newly picked ports (one it was given is taken)."""
        node = self.nodes[name]
        node.stop()
        repick = self._repicker(node)
        repick()
        start_with_port_retry(node.start, repick)

    def _repicker(self, node: Node) -> Callable[[], None]:
        def repick() -> None:
            node.ports = self._node_ports(node)
            node.reconfigure()
        return repick

    # --- lifecycle
    def start(self, progress: Progress = lambda _m: None) -> Timings:
        t0 = time.monotonic()
        self.timings.marks["start"] = t0
        try:
            self._start(progress, t0)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise ClusterError(f"cluster {self.topology.name} failed to start: {exc}", self.run_dir) from exc
        return self.timings

    def _start(self, progress: Progress, t0: float) -> None:
        tm = self.timings
        self.backend.prepare(self)
        progress("starting bitcoind")

        def repick_bitcoind() -> None:
            self.bitcoind.ports = self._bitcoind_ports()
            self.bitcoind.reconfigure()
            for node in self.nodes.values():
                node.reconfigure()

        start_with_port_retry(self.bitcoind.start, repick_bitcoind)
        tm.bitcoind_start_s = time.monotonic() - t0

        ldk = sum(1 for n in self.nodes.values() if isinstance(n, LdkNode))
        progress(f"starting {len(self.nodes) - ldk} LND nodes" + (f" and {ldk} LDK nodes" if ldk else ""))
        t_lnd = time.monotonic()

        def launch(node: Node) -> None:
            node_dir(node).mkdir(parents=True, exist_ok=True)
            # A process clashes on a port once running; a container already when it starts.
            start_with_port_retry(node.daemon.start, self._repicker(node))

        parallel(launch, self.nodes.values())  # containers take seconds each to create
        self.bitcoind.ensure_miner_wallet()
        self.bitcoind.mine(101)  # no channels yet, so one step is safe

        def ready(node: Node) -> None:
            repick = self._repicker(node)
            try:
                node.wait_ready()
            except DaemonError as exc:
                if not PORT_CLASH.search(exc.tail):
                    raise
                repick()
                start_with_port_retry(node.start, repick)

        parallel(ready, self.nodes.values())
        self.backend.nodes_ready(self)
        tm.lnd_start_s = time.monotonic() - t_lnd

        progress("funding nodes on-chain")
        t_fund = time.monotonic()
        self._fund_all()
        tm.funding_s = time.monotonic() - t_fund

        if self.topology.channels:
            progress(f"opening {len(self.topology.channels)} channels")
            t_ch = time.monotonic()
            self._open_channels()
            tm.channels_s = time.monotonic() - t_ch
        tm.bringup_s = time.monotonic() - t0
        if self.topology.channels:
            progress("waiting for the channel graph to reach every node")
            t_g = time.monotonic()
            self.wait_graph_synced()
            tm.graph_sync_s = time.monotonic() - t_g

    def _fund_all(self) -> None:
        specs = [s for s in self.topology.nodes if s.funding_sats > 0]
        if not specs:
            return

        def addresses(spec) -> dict[str, int]:
            node = self.nodes[spec.name]
            share, rest = divmod(spec.funding_sats, spec.utxos)
            return {_new_address(node): share + (rest if i == 0 else 0) for i in range(spec.utxos)}

        outputs: dict[str, int] = {}
        for part in parallel(addresses, specs):
            outputs.update(part)
        self.bitcoind.miner().sendmany(outputs)
        self.mine(1)

        def funded(spec) -> None:
            node = self.nodes[spec.name]
            wait_for(lambda: _onchain_sats(node) >= spec.funding_sats,
                     timeout=60, what=f"{spec.name} confirmed balance >= {spec.funding_sats}")

        parallel(funded, specs)

    def _open_channels(self) -> None:
        by_opener: dict[str, list] = {}
        for ch in self.topology.channels:
            by_opener.setdefault(ch.from_, []).append(ch)

        def open_for(opener: str) -> None:
            node = self.nodes[opener]
            if isinstance(node, LdkNode):  # LDK has no batch open: one funding transaction per channel
                for ch in by_opener[opener]:
                    peer = self.nodes[ch.to]
                    node.client.open_channel(peer.pubkey, peer.p2p_host, ch.capacity_sats,
                                             push_sats=ch.push_sats, announce=not ch.private)
                return
            for ch in by_opener[opener]:
                peer = self.nodes[ch.to]
                node.rest.connect(peer.pubkey, peer.p2p_host)
            node.rest.batch_open_channels([
                {"pubkey": self.nodes[ch.to].pubkey, "capacity_sats": ch.capacity_sats,
                 "push_sats": ch.push_sats, "private": ch.private}
                for ch in by_opener[opener]
            ])

        parallel(open_for, by_opener)
        txs = sum(len(chs) if isinstance(self.nodes[o], LdkNode) else 1 for o, chs in by_opener.items())
        wait_for(lambda: len(self.bitcoind.rpc.getrawmempool()) >= txs,
                 timeout=30, what="channel funding transactions in the mempool")
        self.mine(MINE_STEP)  # 1 conf opens them; 6 lets them be announced
        self.wait_channels_active()

    def expected_channels(self) -> dict[str, int]:
        """How many channels each node should have, from the topology."""
        count = {n: 0 for n in self.nodes}
        for ch in self.topology.channels:
            count[ch.from_] += 1
            count[ch.to] += 1
        return count

    def wait_channels_active(self, timeout: float = 60.0) -> None:
        expected = self.expected_channels()

        def active(name: str) -> None:
            node = self.nodes[name]
            wait_for(lambda: _active_channels(node) >= expected[name],
                     timeout=timeout, what=f"{name}: {expected[name]} active channels")

        parallel(active, [n for n, c in expected.items() if c])

    def wait_graph_synced(self, timeout: float = 60.0, ldk_resync_after: float = 10.0) -> None:
        """Every node sees every public channel with both policies. An LDK node still missing some
        after ``ldk_resync_after`` seconds reconnects to its peers (see ``LdkNode.resync_gossip``),
        and so does each LDK node whose own ``channel_update`` it lacks (a reconnecting LDK node
        sends its channels' announcement and update again: the hub may never have relayed the
        first); then the channels are waited usable again."""
        public = sum(1 for ch in self.topology.channels if not ch.private)
        resynced: list[str] = []
        one_at_a_time = threading.Lock()  # two nodes reconnecting the same peer would race
        ldk_by_key = {n.pubkey: n for n in self.nodes.values() if isinstance(n, LdkNode) and n.pubkey}

        def resync(nodes: list[LdkNode]) -> None:
            addresses = {n.pubkey: n.p2p_host for n in self.nodes.values() if n.pubkey}
            with one_at_a_time:
                for n in nodes:
                    n.resync_gossip(addresses)
                    resynced.append(n.name)

        def synced(node: Node) -> None:
            resync_at = [time.monotonic() + ldk_resync_after]

            def edges_with_policies() -> bool:
                if isinstance(node, LdkNode):
                    if node.public_edges_with_policies() >= public:
                        return True
                    if time.monotonic() >= resync_at[0]:
                        origins = [ldk_by_key[k] for k in sorted(node.missing_policy_origins())
                                   if k in ldk_by_key and ldk_by_key[k] is not node]
                        resync([node, *origins])
                        resync_at[0] = time.monotonic() + ldk_resync_after
                    return False
                edges = node.rest.describegraph().get("edges", [])
                full = [e for e in edges if e.get("node1_policy") and e.get("node2_policy")]
                return len(full) >= public

            wait_for(edges_with_policies, timeout=timeout, what=f"{node.name} sees {public} channels in its graph")

        parallel(synced, self.nodes.values())
        if resynced:
            self.wait_channels_active()

    def stop_node(self, name: str) -> None:
        """Stop one LND node (gracefully); its channels go inactive."""
        self.node(name).stop()

    def start_node(self, name: str) -> None:
        """Start a stopped LND node again and wait until its declared channels are active."""
        node = self.node(name)
        node.start()
        expected = self.expected_channels()[name]
        wait_for(lambda: _active_channels(node) >= expected, timeout=60,
                 what=f"{name}: {expected} channels active after restart")

    def stop(self) -> None:
        """Stop every node; LND first so it does not log a lost chain backend. Then the
        backend removes what surrounded them (for docker: containers, network, volumes)."""
        try:
            parallel(lambda n: n.stop(), self.nodes.values())
            self.bitcoind.stop()
        finally:
            self.backend.release()

    def remove_run_dir(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # --- helpers for tests, scenarios and the CLI
    @property
    def faults(self):
        """This cluster's ``regtest_cluster.faults.Faults``: stop, kill, pause, partition, reorg..."""
        faults = self.__dict__.get("_faults")
        if faults is None:
            from .faults import Faults

            faults = self.__dict__["_faults"] = Faults(self)
        return faults

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise ClusterError(f"no node named {name!r} (nodes: {', '.join(self.nodes)})") from None

    def wait_synced(self, height: int | None = None, timeout: float = 60.0) -> int:
        height = height if height is not None else self.bitcoind.rpc.getblockcount()

        def synced(node: Node) -> None:
            if not node.daemon.is_running() or self.backend.is_paused(node.daemon):
                return  # a node stopped or paused on purpose does not hold the others back

            def at_height() -> bool:
                return _synced_to(node, height)

            wait_for(at_height, timeout=timeout, what=f"{node.name} synced to height {height}")

        parallel(synced, self.nodes.values())
        return height

    def mine(self, n: int, step: int = MINE_STEP) -> int:
        """Mine ``n`` blocks in steps, letting every running LND sync between steps."""
        if n < 0:
            raise ClusterError(f"cannot mine a negative number of blocks ({n})")
        height = self.bitcoind.rpc.getblockcount()
        while n > 0:
            k = min(step, n)
            self.bitcoind.mine(k)
            height += k
            n -= k
            self.wait_synced(height)
        return height

    def fund(self, name: str, amount_sats: int) -> str:
        """Send ``amount_sats`` on-chain to a node, confirm it, and return the txid."""
        if amount_sats <= 0:
            raise ClusterError(f"amount must be positive, got {amount_sats}")
        node = self.node(name)
        before = _onchain_sats(node)
        txid = self.bitcoind.miner().sendtoaddress(_new_address(node), amount_sats)
        self.mine(1)
        wait_for(lambda: _onchain_sats(node) >= before + amount_sats,
                 timeout=30, what=f"{name} confirmed balance grows by {amount_sats}")
        return txid

    def pay(self, src: str, dst: str, amount_sats: int, fee_limit_sats: int = 1000) -> dict:
        """``dst`` issues an invoice and ``src`` pays it; return the final payment."""
        if amount_sats <= 0:
            raise ClusterError(f"amount must be positive, got {amount_sats}")
        sender, receiver = self.node(src), self.node(dst)
        if isinstance(receiver, LdkNode):
            request = receiver.client.receive(amount_sats * 1000, description=f"{src}->{dst}")["invoice"]
        else:
            request = receiver.rest.addinvoice(amount_sats, memo=f"{src}->{dst}")["payment_request"]
        if isinstance(sender, LdkNode):
            payment = sender.pay_invoice(request, max_total_routing_fee_msat=fee_limit_sats * 1000)
            if payment.get("status") != "succeeded":
                raise ClusterError(f"payment {src} -> {dst} of {amount_sats} sats failed: "
                                   f"{payment.get('failure_reason') or payment.get('status')}")
            # the same shape as an LND payment's where callers read it (status, fee_sat)
            return {**payment, "status": "SUCCEEDED", "fee_sat": str((payment.get("fee_paid_msat") or 0) // 1000)}
        payment = sender.rest.send_payment(request, fee_limit_sats=fee_limit_sats)
        if payment.get("status") != "SUCCEEDED":
            raise ClusterError(f"payment {src} -> {dst} of {amount_sats} sats failed: "
                               f"{payment.get('failure_reason', payment.get('status'))}")
        return payment


def _find_ldkd() -> Path:
    """ldkd for a topology with LDK nodes: ``LDKD``, else the cache; a clear error when not built."""
    from .env import ClusterEnv
    from .provision import ldk as ldk_provision

    try:
        return ldk_provision.resolve(ClusterEnv.from_environ().cache_dir)
    except ldk_provision.ProvisionError as exc:
        raise ClusterError(str(exc)) from None
