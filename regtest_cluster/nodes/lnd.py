"""LND on regtest against our bitcoind: command line, readiness, typed REST client.

REST conventions (lnd's grpc-gateway): the macaroon goes in the
``Grpc-Metadata-macaroon`` header as hex; bytes are base64 in JSON bodies and
base64url in paths and queries; int64 values arrive as strings; streams are
newline-delimited ``{"result": ...}`` objects.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlencode, urlsplit

import httpx

from ..daemon import Daemon, ProcessDaemon
from ..waiting import wait_for
from .thread_clients import PerThread


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class LndError(RuntimeError):
    """Raised when an LND call fails or LND cannot be reached; carries lnd's message."""

    def __init__(self, node: str, call: str, status: int, message: str) -> None:
        self.node, self.call, self.status, self.message = node, call, status, message
        super().__init__(f"lnd {node} {call}: {message} (HTTP {status})")


# What a request on a kept connection meets when the node had closed it (with or without TLS's
# close_notify): the request never reached the node.
_HUNG_UP = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ssl.SSLEOFError,
            ssl.SSLZeroReturnError)


class _ThreadConnections:
    """Kept-alive ``http.client`` connections to one node, one for each calling thread
    (``thread_clients.PerThread``): for the app's client of a seller's own node, which the
    worker's drive threads share. No pool is shared between threads, so none can close a
    connection under another (httpcore's pool can: encode/httpcore#1110). And a request costs a
    third of httpx's CPU: a payout invoice fetched through httpx was 7.6 % of the app's CPU in an
    escrow (py-spy, ``bench escrow``), and a request 1.9 ms of a thread's CPU against 0.66 ms
    here, TLS included. Single requests only."""

    def __init__(self, base_url: str, tls: ssl.SSLContext, timeout: float, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        self._prefix = parts.path.rstrip("/")
        self._headers = {**headers, "Content-Type": "application/json"}
        self._connections = PerThread(functools.partial(http.client.HTTPSConnection, parts.hostname,
                                                        parts.port or 443, context=tls, timeout=timeout))
        self._closed = False

    def request(self, method: str, path: str, body: bytes | None, params: dict | None) -> tuple[int, str]:
        """(status, text). A kept connection that the node had closed is opened again once: the
        request never reached it (at worst, a new invoice asked for twice: the first is unused)."""
        if self._closed:
            raise RuntimeError("the client has been closed")
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        for again in (True, False):
            kept = self._connections.peek() is not None
            connection = self._connections.get()
            try:
                connection.request(method, target, body=body, headers=self._headers)
                response = connection.getresponse()
                text = response.read().decode()
            except _HUNG_UP:
                self._connections.drop()
                if kept and again:
                    continue
                raise
            except BaseException:
                self._connections.drop()
                raise
            if response.will_close:
                self._connections.drop()
            return response.status, text
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._closed = True
        self._connections.close()


class LndRest:
    """Typed REST client for one LND node. Thread-safe: one httpx pool, or with ``per_thread`` a
    kept connection for each calling thread (``_ThreadConnections``), for single requests."""

    def __init__(self, name: str, base_url: str, macaroon_hex: str, tls_cert: Path | str,
                 timeout: float = 60.0, per_thread: bool = False) -> None:
        """``tls_cert`` is the path of lnd's tls.cert, or its PEM text. ``per_thread``: for a client
        that a fixed pool of long-lived threads shares, where a TLS handshake for each thread is
        paid once. The harness pays each invoice from a thread of its own, and reads streams, so
        its clients keep one pool."""
        self.name = name
        self.base_url = base_url
        if isinstance(tls_cert, str) and tls_cert.lstrip().startswith("-----BEGIN"):
            tls = ssl.create_default_context(cadata=tls_cert)
        else:
            tls = ssl.create_default_context(cafile=str(tls_cert))
        headers = {"Grpc-Metadata-macaroon": macaroon_hex}
        self._threads = _ThreadConnections(base_url, tls, timeout, headers) if per_thread else None
        self._http = None if per_thread else httpx.Client(
            base_url=base_url, verify=tls, timeout=timeout, headers=headers,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))

    def close(self) -> None:
        if self._threads is None:
            self._http.close()
        else:
            self._threads.close()

    def _request(self, method: str, path: str, body: dict | None = None,
                 params: dict | None = None) -> dict:
        if self._threads is not None:
            try:
                status, text = self._threads.request(method, path, None if body is None else json.dumps(body).encode(),
                                                     params)
            except (OSError, http.client.HTTPException) as exc:
                raise LndError(self.name, path, 0, f"cannot reach {self.base_url}: {exc}") from exc
            return self._decode(path, status, text)
        try:
            resp = self._http.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise LndError(self.name, path, 0, f"cannot reach {self.base_url}: {exc}") from exc
        return self._decode(path, resp.status_code, resp.text)

    def _decode(self, path: str, status: int, text: str) -> dict:
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            raise LndError(self.name, path, status, text.strip()[:300]) from None
        if status >= 400 or (isinstance(data, dict) and "error" in data and "result" not in data):
            err = data.get("error", data) if isinstance(data, dict) else data
            message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            raise LndError(self.name, path, status, message)
        return data

    def _stream(self, path: str, body: dict | None = None, method: str = "POST",
                timeout: float | None = None) -> Iterator[dict]:
        if self._threads is not None:
            raise TypeError(f"lnd {self.name}: a per_thread client makes single requests, not streams ({path})")
        try:
            with self._http.stream(method, path, json=body, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._decode(path, resp.status_code, resp.text)
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if "error" in item:
                        err = item["error"]
                        raise LndError(self.name, path, resp.status_code, err.get("message", str(err)))
                    yield item.get("result", item)
        except httpx.HTTPError as exc:
            raise LndError(self.name, path, 0, f"stream broke: {exc}") from exc

    # --- node and wallet
    def state(self) -> str:
        """lnd's server state; safe to poll while lnd starts (GetInfo logs errors then)."""
        return self._request("GET", "/v1/state").get("state", "")

    def getinfo(self) -> dict:
        return self._request("GET", "/v1/getinfo")

    def newaddress(self) -> str:
        return self._request("GET", "/v1/newaddress", params={"type": "WITNESS_PUBKEY_HASH"})["address"]

    def walletbalance(self) -> dict:
        return self._request("GET", "/v1/balance/blockchain")

    def channelbalance(self) -> dict:
        return self._request("GET", "/v1/balance/channels")

    # --- peers and channels
    def connect(self, pubkey: str, host: str) -> None:
        try:
            self._request("POST", "/v1/peers", {"addr": {"pubkey": pubkey, "host": host}, "perm": False})
        except LndError as exc:
            if "already connected" not in exc.message:
                raise

    def listpeers(self) -> list[dict]:
        return self._request("GET", "/v1/peers").get("peers", [])

    def disconnect(self, pubkey: str) -> None:
        self._request("DELETE", f"/v1/peers/{pubkey}")

    def batch_open_channels(self, channels: list[dict], sat_per_vbyte: int = 2) -> dict:
        """Open several channels in one funding transaction.

        Each item: ``{"pubkey", "capacity_sats", "push_sats", "private"}``.
        """
        body = {
            "channels": [
                {"node_pubkey": b64(bytes.fromhex(c["pubkey"])),
                 "local_funding_amount": str(c["capacity_sats"]),
                 "push_sat": str(c.get("push_sats", 0)),
                 "private": bool(c.get("private", False))}
                for c in channels
            ],
            "sat_per_vbyte": str(sat_per_vbyte),
            "min_confs": 1,
        }
        return self._request("POST", "/v1/channels/batch", body)

    def listchannels(self, active_only: bool = False) -> list[dict]:
        params = {"active_only": "true"} if active_only else None
        return self._request("GET", "/v1/channels", params=params).get("channels", [])

    def pendingchannels(self) -> dict:
        return self._request("GET", "/v1/channels/pending")

    def describegraph(self) -> dict:
        return self._request("GET", "/v1/graph")

    def close_channel(self, channel_point: str, force: bool = False) -> None:
        txid, index = channel_point.split(":")
        # The close stream runs until the channel closes; we only need it started.
        stream = self._stream(f"/v1/channels/{txid}/{index}?force={'true' if force else 'false'}",
                              method="DELETE")
        next(stream)

    # --- invoices and payments
    def addinvoice(self, value_sats: int, memo: str = "", expiry_s: int = 3600) -> dict:
        return self._request("POST", "/v1/invoices",
                             {"value": str(value_sats), "memo": memo, "expiry": str(expiry_s)})

    def lookup_invoice(self, payment_hash: bytes) -> dict:
        return self._request("GET", "/v2/invoices/lookup",
                             params={"payment_hash": b64url(payment_hash)})

    def add_hold_invoice(self, payment_hash: bytes, value_sats: int, cltv_expiry: int,
                         expiry_s: int = 3600, memo: str = "") -> dict:
        return self._request("POST", "/v2/invoices/hodl", {
            "hash": b64(payment_hash), "value": str(value_sats), "cltv_expiry": str(cltv_expiry),
            "expiry": str(expiry_s), "memo": memo,
        })

    def settle_invoice(self, preimage: bytes) -> None:
        self._request("POST", "/v2/invoices/settle", {"preimage": b64(preimage)})

    def cancel_invoice(self, payment_hash: bytes) -> None:
        self._request("POST", "/v2/invoices/cancel", {"payment_hash": b64(payment_hash)})

    def subscribe_single_invoice(self, payment_hash: bytes, timeout: float | None = None) -> Iterator[dict]:
        return self._stream(f"/v2/invoices/subscribe/{b64url(payment_hash)}", method="GET", timeout=timeout)

    def decodepayreq(self, payment_request: str) -> dict:
        return self._request("GET", f"/v1/payreq/{payment_request}")

    def send_payment(self, payment_request: str, timeout_s: int = 60, fee_limit_sats: int = 1000,
                     wait: bool = True) -> dict:
        """Pay an invoice through routerrpc's SendPaymentV2; return the final payment update.

        With ``wait=False`` return the first update (IN_FLIGHT for a hold invoice).
        """
        body = {"payment_request": payment_request, "timeout_seconds": timeout_s,
                "fee_limit_sat": str(fee_limit_sats), "no_inflight_updates": wait}
        last: dict = {}
        final: dict | None = None
        for update in self._stream("/v2/router/send", body):
            if not wait:
                return update
            last = update
            # lnd ends the stream after the final update: read on to its end, so that the
            # connection goes back to the pool (left unread, it was closed, and every payment
            # paid for a new TLS handshake on both sides)
            final = final or (update if update.get("status") in ("SUCCEEDED", "FAILED") else None)
        return final or last

    def track_payment(self, payment_hash: bytes) -> dict:
        """The current status of a payment (first update of TrackPaymentV2)."""
        stream = self._stream(f"/v2/router/track/{b64url(payment_hash)}?no_inflight_updates=false",
                              method="GET")
        return next(stream)

    def listpayments(self, page: int = 1_000) -> list[dict]:
        """Every payment, oldest first, page by page (lnd returns 100 a call unless told)."""
        payments: list[dict] = []
        offset = 0
        while True:
            got = self._request("GET", "/v1/payments", params={
                "include_incomplete": "true", "index_offset": str(offset), "max_payments": str(page)})
            batch = got.get("payments", [])
            payments += batch
            if len(batch) < page:
                return payments
            offset = int(got["last_index_offset"])


@dataclass
class LndPorts:
    rpc: int
    rest: int
    p2p: int  # where peers reach lnd (the relay's port, for a process behind the cluster's relay)
    p2p_listen: int | None = None  # where lnd itself listens, when that is not ``p2p``


class LndNode:
    """One LND process: its folder, flags, readiness and REST client."""

    impl = "lnd"

    def __init__(self, name: str, role: str, binary: Path, lnddir: Path, ports: LndPorts,
                 bitcoind, daemon_factory=None, extra_args: tuple[str, ...] = (),
                 accept_keysend: bool = False) -> None:
        self.name = name
        self.role = role
        self.binary = binary
        self.lnddir = lnddir
        self.ports = ports
        self.bitcoind = bitcoind
        self.extra_args = extra_args
        self.accept_keysend = accept_keysend  # the topology's accept_keysend (SimLN pays by keysend)
        factory = daemon_factory or ProcessDaemon
        self.daemon: Daemon = factory(f"lnd-{name}", self.argv(), self.log_file, lnddir)
        self._rest: LndRest | None = None
        self._grpc = None
        self.pubkey: str | None = None

    # Where the daemon listens and how peers reach it. Here: loopback, host ports.
    # The docker backend overrides these; the flags themselves are shared.
    bind_host = "127.0.0.1"

    @property
    def log_file(self) -> Path:
        return self.lnddir / "lnd.log"

    def listen_ports(self) -> LndPorts:
        """The ports lnd binds (for a process, the host's own; behind the relay, its private p2p port)."""
        p = self.ports
        return LndPorts(p.rpc, p.rest, p.p2p_listen) if p.p2p_listen else p

    def dir_args(self) -> list[str]:
        return [f"--lnddir={self.lnddir}"]

    def address_args(self) -> list[str]:
        return [f"--externalip=127.0.0.1:{self.ports.p2p}"]

    def argv(self) -> list[str]:
        p, host = self.listen_ports(), self.bind_host
        rpchost, zmq_block, zmq_tx = self.bitcoind.peer_endpoints()
        return [
            str(self.binary), *self.dir_args(), f"--alias={self.name}",
            "--bitcoin.regtest", "--bitcoin.node=bitcoind",
            f"--bitcoind.rpchost={rpchost}", f"--bitcoind.rpcuser={self.bitcoind.rpc_user}",
            f"--bitcoind.rpcpass={self.bitcoind.rpc_password}",
            f"--bitcoind.zmqpubrawblock={zmq_block}", f"--bitcoind.zmqpubrawtx={zmq_tx}",
            f"--rpclisten={host}:{p.rpc}", f"--restlisten={host}:{p.rest}",
            f"--listen={host}:{p.p2p}", *self.address_args(),
            "--noseedbackup", "--debuglevel=info", "--nobootstrap",
            # lnd's own test harness speed settings
            "--bitcoin.defaultchanconfs=1", "--trickledelay=50", "--db.batch-commit-interval=10ms",
            "--gossip.sub-batch-delay=5ms",
            "--maxpendingchannels=32", "--protocol.wumbo-channels",
            "--maxlogfiles=1", "--maxlogfilesize=50",
            *(["--accept-keysend"] if self.accept_keysend else []),
            *self.extra_args,
        ]

    def reconfigure(self) -> None:
        """Take new ``ports`` (or a moved bitcoind) into the daemon's next start."""
        self.daemon.argv = self.argv()

    @property
    def tls_cert(self) -> Path:
        return self.lnddir / "tls.cert"

    @property
    def macaroon_path(self) -> Path:
        return self.lnddir / "data/chain/bitcoin/regtest/admin.macaroon"

    @property
    def rest_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.rest}"

    @property
    def p2p_host(self) -> str:
        return f"127.0.0.1:{self.ports.p2p}"

    @property
    def grpc_host(self) -> str:
        return f"127.0.0.1:{self.ports.rpc}"

    @property
    def grpc(self):
        """A gRPC client (``LndGrpc``) on this node's RPC listener, made on first use."""
        if self._grpc is None:
            from .lnd_grpc import LndGrpc

            self._grpc = LndGrpc(self.name, self.grpc_host, self.macaroon_path.read_bytes().hex(), self.tls_cert)
        return self._grpc

    @property
    def rest(self) -> LndRest:
        if self._rest is None:
            self._rest = LndRest(self.name, self.rest_url, self.macaroon_path.read_bytes().hex(), self.tls_cert)
        return self._rest

    def start(self, timeout: float = 90.0) -> None:
        self.lnddir.mkdir(parents=True, exist_ok=True)
        self.daemon.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            self.daemon.check_alive()
            if not (self.macaroon_path.is_file() and self.tls_cert.is_file()):
                return False
            try:
                if self.rest.state() != "SERVER_ACTIVE":
                    return False
                info = self.rest.getinfo()
            except LndError:
                return False
            self.pubkey = info["identity_pubkey"]
            return bool(info.get("synced_to_chain"))

        wait_for(ready, timeout=timeout, what=f"lnd {self.name} synced to chain")

    def stop(self) -> None:
        if self._rest:
            self._rest.close()
            self._rest = None
        if self._grpc:
            self._grpc.close()
            self._grpc = None
        self.daemon.stop()

    def block_height(self) -> int:
        return int(self.rest.getinfo()["block_height"])
