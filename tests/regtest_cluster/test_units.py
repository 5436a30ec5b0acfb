"""Pure helpers: wait_for, ports, run folders, env, Debian source parsing."""

import socket
import threading

import pytest

from regtest_cluster import waiting
from regtest_cluster.env import ClusterEnv, ConfigError
from regtest_cluster.ports import PortAllocator, ephemeral_low, port_is_free
from regtest_cluster.provision.bitcoind import debian_source
from regtest_cluster.provision.errors import ProvisionError
from regtest_cluster.rundir import new_run_dir


def test_wait_for_returns_first_truthy_value():
    calls = iter([0, None, "", 7])
    assert waiting.wait_for(lambda: next(calls), timeout=5, interval=0.001) == 7


def test_wait_for_timeout_names_condition_and_last_value():
    values = iter(range(100))
    with pytest.raises(waiting.WaitTimeout, match=r"waiting for the answer; last saw: \[\]"):
        waiting.wait_for(lambda: [] if next(values) > 1 else 0, timeout=0.05, what="the answer")


def test_wait_for_ignored_exception_is_reported():
    def boom():
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(waiting.WaitTimeout, match="nobody home"):
        waiting.wait_for(boom, timeout=0.05, ignore=(ConnectionRefusedError,))


def test_wait_for_timeout_factor_stretches_deadline(monkeypatch):
    monkeypatch.setattr(waiting, "TIMEOUT_FACTOR", 3.0)
    with pytest.raises(waiting.WaitTimeout, match=r"after 0\.3s"):
        waiting.wait_for(lambda: False, timeout=0.1)


def test_port_allocator_skips_busy_base_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        base = busy.getsockname()[1]
        alloc = PortAllocator(base)
        port = alloc.take()
        assert port != base and port > base and port_is_free(port)


def test_port_allocator_never_repeats():
    alloc = PortAllocator()
    ports = [alloc.take() for _ in range(50)]
    assert len(set(ports)) == 50


def test_allocators_of_one_process_never_hand_out_the_same_random_port(monkeypatch):
    """A port stays free until its owner binds it, so two allocators (two scenario lanes, two
    apps) drawing the same random port must not both get it: the second draws again."""
    from regtest_cluster import ports

    drawn = PortAllocator().take()  # a port this process has handed out, free until its owner binds it
    draws = iter([drawn, *(port for port in ports.UNCLAIMED if port != drawn)])
    monkeypatch.setattr(ports._PICK, "choice", lambda _seq: next(draws))
    again = PortAllocator().take()  # another allocator drawing the same port first
    assert again != drawn and port_is_free(again)


def test_port_allocator_stays_below_the_ephemeral_range(tmp_path):
    """No outgoing connection can take a node's port while the node restarts on it."""
    low = ephemeral_low()
    ports = [PortAllocator().take() for _ in range(50)]
    assert all(1024 <= port < low and port_is_free(port) for port in ports)
    (tmp_path / "range").write_text("40000\t60999\n")
    assert ephemeral_low(str(tmp_path / "range")) == 40000
    assert ephemeral_low(str(tmp_path / "missing")) == 32768


def test_new_run_dir_numbers_are_unique_under_threads(tmp_path):
    made = []
    threads = [threading.Thread(target=lambda: made.append(new_run_dir(tmp_path, "x"))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({p.name for p in made}) == 10
    assert sorted(p.name for p in made)[0] == "0001-x"


def test_env_rejects_bad_timeout_factor():
    with pytest.raises(ConfigError, match="ESCROWLAB_TIMEOUT_FACTOR"):
        ClusterEnv.from_environ({"ESCROWLAB_TIMEOUT_FACTOR": "fast"})


def test_env_rejects_binary_that_is_not_executable(tmp_path):
    f = tmp_path / "lnd"
    f.write_text("")
    with pytest.raises(ConfigError, match=r"LND=.*is not an executable file"):
        ClusterEnv.from_environ({"LND": str(f)})


def test_debian_source_reads_deb822_and_skips_security(tmp_path):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/k.gpg\n")
    assert debian_source((tmp_path / "none.list", d)) == ("http://mirror.example/debian", "/usr/share/keyrings/k.gpg")


def test_debian_source_reads_one_line_format(tmp_path):
    f = tmp_path / "sources.list"
    f.write_text("# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian/ trixie main\n")
    assert debian_source((f,)) == ("http://m.example/debian", "/k.gpg")


def test_debian_source_none_configured_says_what_to_do(tmp_path):
    with pytest.raises(ProvisionError, match="set BITCOIND and BITCOIN_CLI"):
        debian_source((tmp_path / "missing.list",))


def test_bitcoin_rpc_gives_each_thread_a_connection_of_its_own():
    """No connection pool is shared between threads (httpcore's pool can close a connection
    another thread was just handed: encode/httpcore#1110): calls one after another from two
    threads arrive on two connections, and one thread's calls keep to its own."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from regtest_cluster.nodes.bitcoind import BitcoinRpc

    peers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as bitcoind

        def do_POST(self):  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers["Content-Length"]))
            peers.append(self.client_address[1])
            body = json.dumps({"result": 7, "error": None, "id": 0}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rpc = BitcoinRpc(f"http://127.0.0.1:{server.server_address[1]}", "user", "password")
    try:
        assert [rpc.getblockcount(), rpc.getblockcount()] == [7, 7]
        other = threading.Thread(target=lambda: [rpc.getblockcount(), rpc.getblockcount()])
        other.start()
        other.join(10)
        assert len(peers) == 4 and peers[0] == peers[1] and peers[2] == peers[3] and peers[0] != peers[2]
    finally:
        rpc.close()
        server.shutdown()
        server.server_close()
    with pytest.raises(RuntimeError, match="closed"):
        rpc.getblockcount()  # this thread's client was closed with the others


def test_thread_clients_one_client_a_thread_and_close_closes_them_all():
    """The helper bitcoind's and ldkd's clients share: each thread keeps its own client, a
    thread's client goes with the thread, and ``close`` closes those still open."""
    import gc

    from regtest_cluster.nodes.thread_clients import ThreadClients

    clients = ThreadClients(timeout=5)
    mine = clients.get()
    assert clients.get() is mine
    theirs: list = []
    other = threading.Thread(target=lambda: theirs.append(clients.get()))
    other.start()
    other.join(10)
    assert theirs[0] is not mine and not theirs[0].is_closed
    theirs.clear()
    other = None
    gc.collect()
    assert list(clients._open) == [mine]  # the ended thread's client is gone with it
    clients.close()
    assert mine.is_closed
