"""Faults on a real cluster (partition, pause, stop, kill, reorg, fee spike, heal_all), the relay
on plain sockets, and the faults' error messages on stand-ins."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from regtest_cluster.cluster import ClusterError, ProcessBackend
from regtest_cluster.daemon import ProcessDaemon
from regtest_cluster.faults import Backend, FaultError, Faults
from regtest_cluster.faults import relay as relay_mod
from regtest_cluster.faults.relay import RelayClient, RelayError
from regtest_cluster.nodes.lnd import LndError, LndNode, LndPorts, LndRest
from regtest_cluster.pytest_plugin import LogCheck, _daemons, _finish, _new_cluster
from regtest_cluster.topology import parse

# A line a - b - c: a payment a -> b crosses one channel, b -> c another.
TRIO = {"name": "trio", "nodes": [{"name": "a", "funding_sats": 4_000_000}, {"name": "b", "funding_sats": 4_000_000},
                                  {"name": "c"}],
        "channels": [{"from": "a", "to": "b", "capacity_sats": 1_000_000},
                     {"from": "b", "to": "c", "capacity_sats": 1_000_000}]}
# What peers of a partitioned, paused, stopped or killed node log; outcomes are asserted on node truth.
FAULT_LOGS = (r"\[ERR\] (BTWL|CMGR|PEER|SRVR|HSWC|CRTR|NTFN|DISC|RPCS|CHDB|LNWL|BTCN|SWPR|UTXN|CNCT|INVC|NANN):",)


# --------------------------------------------------------------------------- the relay, no nodes


class Echo:
    """A loopback server standing in for one lnd's p2p listener: echoes what it reads."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)


# A stand-in node: its command line names its directory (lnd's --lnddir, or ldkd's --datadir: the
# relay identifies nodes by either); it dials the
# given port, then echoes a line per command read from stdin: "ok", "closed" (EOF) or "reset".
DIALER = r"""
import socket, sys
port = int(sys.argv[1])
s = None
for line in sys.stdin:
    cmd = line.strip()
    try:
        if cmd == "dial":
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"ping"); got = s.recv(4)
        else:
            s.sendall(b"ping"); got = s.recv(4)
        print("ok" if got == b"ping" else "closed", flush=True)
    except OSError:
        print("reset", flush=True)
"""


class Dialer:
    def __init__(self, tmp: Path, name: str, port: int, flag: str = "--lnddir") -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", DIALER, str(port), f"{flag}={tmp / name}"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, cmd: str) -> str:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def relay(tmp_path):
    proc = subprocess.Popen([sys.executable, relay_mod.__file__, "--run-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().rsplit(":", 1)[1])
    echoes = {"a": Echo(), "b": Echo()}
    listen = {}
    for name in echoes:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            listen[name] = s.getsockname()[1]
    client = RelayClient(port)
    owner = {"a": f"--lnddir={tmp_path / 'a'}", "b": f"--datadir={tmp_path / 'b'}"}  # as lnd and ldkd name theirs
    client.set_routes({n: {"listen": listen[n], "target": echoes[n].port, "owner": owner[n]} for n in echoes})
    yield SimpleNamespace(client=client, listen=listen, tmp=tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)


def test_relay_partition_cuts_live_link_and_refuses_both_directions_until_healed(relay):
    a_to_b = Dialer(relay.tmp, "a", relay.listen["b"])  # a as lnd names itself,
    b_to_a = Dialer(relay.tmp, "b", relay.listen["a"], flag="--datadir")  # b as ldkd does
    try:
        assert a_to_b.ask("dial") == "ok" and b_to_a.ask("dial") == "ok"
        assert sorted(relay.client.status()["links"]) == [["a", "b"], ["b", "a"]]  # dialers known by pid

        assert relay.client.partition("a", "b")["cut_links"] == 2
        assert a_to_b.ask("send") in ("closed", "reset")  # the live links are gone
        assert b_to_a.ask("send") in ("closed", "reset")
        assert a_to_b.ask("dial") in ("closed", "reset")  # and new ones are refused, both ways
        assert b_to_a.ask("dial") in ("closed", "reset")
        assert relay.client.status()["partitions"] == [["a", "b"]]

        relay.client.heal("a", "b")
        assert a_to_b.ask("dial") == "ok" and b_to_a.ask("dial") == "ok"
    finally:
        a_to_b.close()
        b_to_a.close()


def test_relay_lets_third_parties_through_and_names_bad_requests(relay):
    with socket.create_connection(("127.0.0.1", relay.listen["b"]), timeout=5) as s:  # not an lnd: unknown
        s.sendall(b"hi")
        assert s.recv(2) == b"hi"
    with pytest.raises(RelayError, match="no node named 'x'"):
        relay.client.partition("a", "x")
    with pytest.raises(RelayError, match="from itself"):
        relay.client.partition("a", "a")
    with pytest.raises(RelayError, match="are not partitioned"):
        relay.client.heal("a", "b")
    relay.client.partition("a", "b")
    with pytest.raises(RelayError, match="already partitioned"):
        relay.client.partition("b", "a")
    assert relay.client.heal_all() == [["a", "b"]]


def test_relay_client_names_a_relay_that_is_gone():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RelayError, match=f"127.0.0.1:{port} does not answer"):
        RelayClient(port, timeout=2).ping()


# --------------------------------------------------------------------------- pure logic


def test_both_backends_implement_the_backend_protocol():
    from regtest_cluster.docker.backend import DockerBackend

    assert isinstance(ProcessBackend(), Backend)
    docker = DockerBackend.__new__(DockerBackend)
    assert isinstance(docker, Backend)
    assert "p2p_listen" not in docker.lnd_ports(iter(range(10)).__next__)


class _Container:
    def __init__(self) -> None:
        self.status = "running"

    def pause(self) -> None:
        self.status = "paused"

    def unpause(self) -> None:
        self.status = "running"

    def reload(self) -> None:
        pass


def test_docker_backend_pauses_containers_and_refuses_pair_partitions():
    from regtest_cluster.docker.backend import DockerBackend

    backend = DockerBackend.__new__(DockerBackend)
    daemon = SimpleNamespace(name="lnd-a", _container=_Container())
    backend.pause(daemon)
    assert backend.is_paused(daemon) and daemon._container.status == "paused"
    backend.resume(daemon)
    assert not backend.is_paused(daemon)
    with pytest.raises(ClusterError, match="the docker backend has no pair partitions"):
        backend.partition(None, SimpleNamespace(name="a"), SimpleNamespace(name="b"))
    assert backend.partitions(None) == [] and backend.heal_partitions(None) == []


def test_process_backend_puts_lnd_behind_the_relay_port():
    ports = LndPorts(**ProcessBackend().lnd_ports(iter(range(100, 110)).__next__))
    assert (ports.p2p, ports.p2p_listen) == (102, 103)
    node = LndNode("n", "user", Path("/bin/lnd"), Path("/tmp/n"), ports, SimpleNamespace(
        peer_endpoints=lambda: ("h:1", "tcp://h:2", "tcp://h:3"), rpc_user="u", rpc_password="p"),
        daemon_factory=lambda *a: SimpleNamespace(argv=a[1]))
    argv = node.argv()
    assert "--listen=127.0.0.1:103" in argv  # lnd listens privately
    assert "--externalip=127.0.0.1:102" in argv and node.p2p_host == "127.0.0.1:102"  # peers dial the relay


def test_process_backend_without_relay_names_why_it_cannot_partition():
    with pytest.raises(ClusterError, match="not behind the p2p relay"):
        ProcessBackend().relay_client()


class _Daemon:
    def __init__(self, name: str, running: bool = True) -> None:
        self.name, self.running, self.pid = name, running, None

    def is_running(self) -> bool:
        return self.running


def _stand_in_cluster() -> SimpleNamespace:
    nodes = {n: SimpleNamespace(name=n, daemon=_Daemon(f"lnd-{n}")) for n in ("hub", "buyer1")}
    nodes["buyer1"].daemon.running = False
    backend = SimpleNamespace(is_paused=lambda d: False)
    return SimpleNamespace(nodes=nodes, bitcoind=SimpleNamespace(daemon=_Daemon("bitcoind")), backend=backend)


@pytest.mark.parametrize("fault", ["stop", "kill", "pause", "restart", "start", "resume"])
def test_fault_on_unknown_node_names_the_nodes(fault):
    with pytest.raises(FaultError, match=r"no node named 'nope' \(nodes: bitcoind, hub, buyer1\)"):
        getattr(Faults(_stand_in_cluster()), fault)("nope")


@pytest.mark.parametrize("fault", ["stop", "kill", "pause", "restart"])
def test_fault_on_node_already_down_says_so(fault):
    with pytest.raises(FaultError, match=rf"cannot {fault} buyer1: it is already down .*faults.start\('buyer1'\)"):
        getattr(Faults(_stand_in_cluster()), fault)("buyer1")


def test_partition_of_unknown_or_same_node_is_refused_before_the_backend():
    faults = Faults(_stand_in_cluster())
    with pytest.raises(FaultError, match="no Lightning node named 'bitcoind'"):
        faults.partition("hub", "bitcoind")
    with pytest.raises(FaultError, match="from itself"):
        faults.partition("hub", "hub")


def test_kill_daemon_refuses_a_daemon_that_is_not_running():
    with pytest.raises(FaultError, match="cannot kill app-1: it is not running"):
        Faults(_stand_in_cluster()).kill_daemon(_Daemon("app-1", running=False))


# --------------------------------------------------------------------------- on a real cluster


@pytest.fixture(scope="module")
def trio(request, cluster_env, node_binaries, cluster_backend):
    """One line cluster a - b - c for this module's fault tests (they heal what they do)."""
    c = _new_cluster(parse(TRIO), cluster_env, node_binaries, cluster_backend)
    c.start()
    check = LogCheck(_daemons(c), list(FAULT_LOGS), from_start=True)
    yield c
    _finish(request, check, c.run_dir, c.stop)


@pytest.fixture
def faults(trio):
    with Faults(trio) as f:
        yield f
    assert f.active() == {"down": [], "paused": [], "partitions": [], "reorgs": [], "starved": []}


def _pays(cluster, src: str, dst: str, sats: int = 1_000) -> bool:
    try:
        return cluster.pay(src, dst, sats)["status"] == "SUCCEEDED"
    except ClusterError:
        return False


def _connect_fails(src: LndNode, dst: LndNode) -> bool:
    try:
        src.rest.connect(dst.pubkey, dst.p2p_host)
    except LndError:
        return True
    return dst.pubkey not in {p["pub_key"] for p in src.rest.listpeers()}


@pytest.mark.cluster
def test_partition_stops_payments_between_the_pair_in_both_directions_and_heal_restores(trio, faults):
    a, b = trio.node("a"), trio.node("b")
    assert _pays(trio, "a", "b")
    faults.partition("a", "b")
    assert faults.partitions() == [("a", "b")]
    assert b.pubkey not in {p["pub_key"] for p in a.rest.listpeers()}
    assert not _pays(trio, "a", "b")
    assert _connect_fails(a, b) and _connect_fails(b, a)  # neither side gets through, whoever dials
    assert _pays(trio, "b", "c")  # the rest of the network is untouched

    faults.heal("a", "b")
    assert faults.partitions() == []
    # paid outright, not through _pays: if it fails, the error says how (CI of 0993149 saw it
    # fail once under load, with nothing to say why; alone it passes in 4-5 s)
    assert trio.pay("a", "b", 1_000)["status"] == "SUCCEEDED"


@pytest.mark.cluster
def test_a_cluster_attached_from_its_state_partitions_through_the_same_relay(trio, faults):
    from regtest_cluster.state import attach, to_state

    other = attach(json.loads(json.dumps(to_state(trio))))  # as a later command sees it
    assert other.backend.relay.is_running() and other.backend.leftovers() == ["relay"]
    Faults(other).partition("b", "c")
    assert faults.partitions() == [("b", "c")]  # one relay, whoever asks
    assert not _pays(trio, "b", "c")
    assert Faults(other).heal_all() == ["heal b | c", "channels active"]
    assert _pays(trio, "b", "c")


@pytest.mark.cluster
def test_pause_freezes_a_node_and_resume_brings_it_back(trio, faults):
    b = trio.node("b")
    faults.pause("b")
    assert faults.is_paused("b") and b.daemon.is_running()
    frozen = LndRest("b", b.rest_url, b.macaroon_path.read_bytes().hex(), b.tls_cert, timeout=1)
    try:
        with pytest.raises(LndError, match="cannot reach"):
            frozen.getinfo()
    finally:
        frozen.close()
    with pytest.raises(FaultError, match="already paused"):
        faults.pause("b")
    trio.mine(1)  # a paused node does not hold the others' sync back

    faults.resume("b")
    assert not faults.is_paused("b")
    with pytest.raises(FaultError, match="not paused"):
        faults.resume("b")
    trio.wait_synced()
    faults.wait_channels("b")
    assert _pays(trio, "a", "c")


@pytest.mark.cluster
def test_stop_kill_restart_and_start_again(trio, faults):
    faults.stop("c")
    assert not faults.is_up("c")
    with pytest.raises(FaultError, match=r"cannot stop c: it is already down"):
        faults.stop("c")
    faults.start("c")
    with pytest.raises(FaultError, match="cannot start c: it is already running"):
        faults.start("c")
    faults.kill("c")
    assert not faults.is_up("c")
    faults.start("c")
    faults.restart("b")
    assert _pays(trio, "a", "c")


@pytest.mark.cluster
def test_reorg_returns_the_invalidated_hashes_and_the_tip_drops(trio, faults):
    rpc = trio.bitcoind.rpc
    trio.mine(3)
    tip = rpc.getblockcount()
    top = [rpc.getblockhash(h) for h in range(tip - 1, tip + 1)]
    hashes = faults.reorg(2)
    assert hashes == top
    assert rpc.getblockcount() == tip - 2
    assert all(rpc.getblock(h)["confirmations"] == -1 for h in hashes)  # no longer on the active chain
    with pytest.raises(FaultError, match="cannot reorg 0 blocks"):
        faults.reorg(0)
    faults.restore(hashes)
    assert rpc.getbestblockhash() == top[-1]  # the longer branch is back


@pytest.mark.cluster
def test_heal_all_undoes_every_fault_in_force(trio):
    faults = Faults(trio)
    tip = trio.bitcoind.rpc.getbestblockhash()
    faults.partition("b", "c")
    faults.pause("a")
    faults.kill("c")
    faults.reorg(1)
    assert faults.active()["down"] == ["c"] and faults.active()["paused"] == ["a"]
    healed = faults.heal_all()
    assert {"resume a", "start c", "heal b | c"} <= set(healed)
    assert faults.active() == {"down": [], "paused": [], "partitions": [], "reorgs": [], "starved": []}
    assert trio.bitcoind.rpc.getbestblockhash() == tip
    assert _pays(trio, "a", "c")
    assert faults.heal_all() == []  # nothing left


@pytest.mark.cluster
def test_kill_daemon_ends_any_daemon(trio, faults, tmp_path):
    other = ProcessDaemon("sleeper", ["sleep", "60"], tmp_path / "sleeper.log", tmp_path)
    other.start()
    faults.kill_daemon(other)
    assert not other.is_running() and other.returncode() == -signal.SIGKILL
    with pytest.raises(FaultError, match="cannot kill sleeper: it is not running"):
        faults.kill_daemon(other)


@pytest.mark.cluster
def test_starve_keeps_a_transaction_out_of_blocks_until_unstarved(trio, faults):
    rpc = trio.bitcoind.rpc
    txid = trio.bitcoind.miner().sendtoaddress(trio.bitcoind.miner().getnewaddress(), 50_000)
    assert faults.starve(txid) < 0
    trio.mine(1)
    assert txid in rpc.getrawmempool()
    faults.unstarve(txid)
    trio.mine(1)
    assert txid not in rpc.getrawmempool()


@pytest.mark.cluster
def test_fee_spike_raises_bitcoinds_estimate(trio, faults):
    spike = faults.fee_spike(sat_per_vbyte=40)
    assert spike.estimate_after >= 36
    assert spike.estimate_before is None or spike.estimate_before < spike.estimate_after
    assert all(tx not in trio.bitcoind.rpc.getrawmempool() for tx in spike.txids)
