"""Pure helpers: wait_for, ports, run folders, env, Debian source parsing."""

import socket
import threading
import time

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


def _tls_pair(tmp_path) -> tuple[str, str, str]:
    """A self-signed certificate for 127.0.0.1: (its PEM, the PEM's file, the key's file)."""
    import ipaddress
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lnd")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (tmp_path / "tls.cert").write_text(pem)
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return pem, str(tmp_path / "tls.cert"), str(tmp_path / "tls.key")


def test_lnd_rest_per_thread_gives_each_thread_a_connection_of_its_own(tmp_path):
    """The app's client of a seller's own node (``per_thread``, shared by the worker's drive
    threads) keeps no pool between threads, as bitcoind's client (below); the default client
    keeps one pool, whose connection both threads reuse."""
    import json
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from regtest_cluster.nodes.lnd import LndRest

    pem, cert_file, key_file = _tls_pair(tmp_path)
    peers: list[int] = []
    hang_up_after_next: list[bool] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as lnd's REST proxy

        def do_POST(self):  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            peers.append(self.client_address[1])
            body = json.dumps({"payment_request": "lnbcrt1", "r_hash": ""}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if hang_up_after_next:  # an idle connection the node closes without saying so
                hang_up_after_next.clear()
                self.close_connection = True

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}"

    def two_calls_from_two_threads(client: LndRest) -> list[int]:
        peers.clear()
        assert client.addinvoice(1000, "a", 3600)["payment_request"] == "lnbcrt1"
        client.addinvoice(1000, "b", 3600)
        other = threading.Thread(target=lambda: [client.addinvoice(1000, "c", 3600), client.addinvoice(1000, "d", 3600)])
        other.start()
        other.join(10)
        assert len(peers) == 4
        return list(peers)

    try:
        own = LndRest("seller-node", url, "ab" * 8, pem, per_thread=True)
        try:
            peers_seen = two_calls_from_two_threads(own)
            assert peers_seen[0] == peers_seen[1] and peers_seen[2] == peers_seen[3] and peers_seen[0] != peers_seen[2]
            # a kept connection the node closed meanwhile is opened again, once, and the call goes through
            hang_up_after_next.append(True)
            own.addinvoice(1000, "e", 3600)
            time.sleep(0.2)
            assert own.addinvoice(1000, "f", 3600)["payment_request"] == "lnbcrt1"
            assert peers[-1] != peers[-2]
            with pytest.raises(TypeError, match="single requests"):
                next(own._stream("/v2/router/send", {}))
        finally:
            own.close()
        with pytest.raises(RuntimeError, match="closed"):
            own.addinvoice(1000, "after close", 3600)
        shared = LndRest("hub", url, "ab" * 8, cert_file)
        try:
            assert len(set(two_calls_from_two_threads(shared))) == 1
        finally:
            shared.close()
    finally:
        server.shutdown()
        server.server_close()


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
