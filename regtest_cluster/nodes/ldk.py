"""An LDK node (ldkd: our daemon on the ``ldk-node`` crate) on regtest against our bitcoind.

``LdkNode`` handles the process like ``LndNode`` does (same ``Daemon``, same log scan);
``LdkClient`` speaks ldkd's loopback JSON API (``provision/ldkd/src/main.rs`` lists it).
Amounts are msat where LDK counts msat; hashes, preimages and ids are hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from ..daemon import Daemon, ProcessDaemon
from ..waiting import wait_for
from .thread_clients import ThreadClients


class LdkError(RuntimeError):
    """Raised when an ldkd call fails or ldkd cannot be reached; carries ldkd's message."""

    def __init__(self, node: str, call: str, status: int, message: str) -> None:
        self.node, self.call, self.status, self.message = node, call, status, message
        super().__init__(f"ldk {node} {call}: {message} (HTTP {status})")


class LdkClient:
    """ldkd's JSON API for one node. Thread-safe: each calling thread has a client of its own
    (``ThreadClients``: httpcore's shared pool can close a connection another thread is using)."""

    def __init__(self, name: str, base_url: str, timeout: float = 60.0) -> None:
        self.name = name
        self.base_url = base_url
        self._clients = ThreadClients(base_url=base_url, timeout=timeout)

    def close(self) -> None:
        self._clients.close()

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            resp = self._clients.get().request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise LdkError(self.name, path, 0, f"cannot reach {self.base_url}: {exc}") from exc
        try:
            data = resp.json() if resp.text else {}
        except ValueError:
            raise LdkError(self.name, path, resp.status_code, resp.text.strip()[:300]) from None
        if resp.status_code >= 400:
            raise LdkError(self.name, path, resp.status_code, str(data.get("error", data)))
        return data

    # --- node and wallet
    def info(self) -> dict:
        return self._request("GET", "/v1/info")

    def balances(self) -> dict:
        return self._request("GET", "/v1/balances")

    def new_address(self) -> str:
        return self._request("POST", "/v1/address/new")["address"]

    def sync(self) -> dict:
        return self._request("POST", "/v1/sync")

    # --- peers and channels
    def peers(self) -> list[dict]:
        return self._request("GET", "/v1/peers")["peers"]

    def connect(self, node_id: str, address: str, persist: bool = True) -> None:
        self._request("POST", "/v1/peers/connect", {"node_id": node_id, "address": address, "persist": persist})

    def disconnect(self, node_id: str) -> None:
        self._request("POST", "/v1/peers/disconnect", {"node_id": node_id})

    def channels(self) -> list[dict]:
        return self._request("GET", "/v1/channels")["channels"]

    def open_channel(self, node_id: str, address: str, capacity_sats: int, push_sats: int = 0,
                     announce: bool = True) -> str:
        """Open a channel (connecting first); return its user_channel_id."""
        return self._request("POST", "/v1/channels/open", {
            "node_id": node_id, "address": address, "capacity_sats": capacity_sats,
            "push_sats": push_sats, "announce": announce})["user_channel_id"]

    def close_channel(self, user_channel_id: str, counterparty_node_id: str, force: bool = False) -> None:
        self._request("POST", "/v1/channels/close", {
            "user_channel_id": user_channel_id, "counterparty_node_id": counterparty_node_id, "force": force})

    def graph(self) -> dict:
        return self._request("GET", "/v1/graph")

    # --- invoices and payments
    def receive(self, amount_msat: int, description: str = "", expiry_secs: int = 3600) -> dict:
        """A BOLT11 invoice claimed on arrival: ``{invoice, payment_hash, payment_id, ...}``."""
        return self._request("POST", "/v1/invoices", {
            "amount_msat": amount_msat, "description": description, "expiry_secs": expiry_secs})

    def receive_for_hash(self, payment_hash: bytes | str, amount_msat: int, description: str = "",
                         expiry_secs: int = 3600) -> dict:
        """A BOLT11 invoice for a hash whose preimage we do not know: held until ``claim_for_hash``."""
        return self._request("POST", "/v1/invoices/hash", {
            "payment_hash": _hex(payment_hash), "amount_msat": amount_msat, "description": description,
            "expiry_secs": expiry_secs})

    def claim_for_hash(self, payment_hash: bytes | str, preimage: bytes | str,
                       claimable_amount_msat: int | None = None) -> dict:
        body = {"payment_hash": _hex(payment_hash), "preimage": _hex(preimage)}
        if claimable_amount_msat is not None:
            body["claimable_amount_msat"] = claimable_amount_msat
        return self._request("POST", "/v1/invoices/claim", body)

    def fail_for_hash(self, payment_hash: bytes | str) -> None:
        self._request("POST", "/v1/invoices/fail", {"payment_hash": _hex(payment_hash)})

    def pay(self, invoice: str, amount_msat: int | None = None, *, max_total_cltv_expiry_delta: int | None = None,
            max_path_count: int | None = None, max_total_routing_fee_msat: int | None = None) -> dict:
        """Start paying a BOLT11 invoice; returns ``{payment_id, payment_hash, payment}`` at once."""
        body: dict = {"invoice": invoice}
        for key, value in (("amount_msat", amount_msat), ("max_total_cltv_expiry_delta", max_total_cltv_expiry_delta),
                           ("max_path_count", max_path_count),
                           ("max_total_routing_fee_msat", max_total_routing_fee_msat)):
            if value is not None:
                body[key] = value
        return self._request("POST", "/v1/payments/pay", body)

    def payments(self) -> list[dict]:
        return self._request("GET", "/v1/payments")["payments"]

    def payment(self, payment_id: bytes | str) -> dict:
        return self._request("GET", f"/v1/payments/{_hex(payment_id)}")

    def wait_payment(self, payment_id: bytes | str, statuses: tuple[str, ...] = ("succeeded", "failed"),
                     timeout: float = 60.0) -> dict:
        """Poll one payment until its status is one of ``statuses``; return it."""
        found: dict = {}

        def done() -> bool:
            found.update(self.payment(payment_id))
            return found.get("status") in statuses

        wait_for(done, timeout=timeout, what=f"{self.name} payment {_hex(payment_id)[:16]}… {'/'.join(statuses)}")
        return found

    def wait_claimable(self, payment_hash: bytes | str, timeout: float = 60.0) -> dict:
        """Poll a receive-for-hash payment until its HTLCs arrived (a PaymentClaimable event)."""
        found: dict = {}

        def arrived() -> bool:
            try:
                found.update(self.payment(payment_hash))
            except LdkError as exc:
                if exc.status == 404:
                    return False
                raise
            return bool(found.get("claimable"))

        wait_for(arrived, timeout=timeout, what=f"{self.name} holds the payment {_hex(payment_hash)[:16]}…")
        return found

    def stop(self) -> None:
        self._request("POST", "/v1/stop")


def _hex(value: bytes | str) -> str:
    return value.hex() if isinstance(value, (bytes, bytearray)) else value


@dataclass
class LdkPorts:
    api: int
    p2p: int  # where peers reach ldkd (the relay's port, for a process behind the cluster's relay)
    p2p_listen: int | None = None  # where ldkd itself listens, when that is not ``p2p``


class LdkNode:
    """One ldkd process: its folder, flags, readiness and API client."""

    impl = "ldk"
    bind_host = "127.0.0.1"

    def __init__(self, name: str, role: str, binary: Path, datadir: Path, ports: LdkPorts, bitcoind,
                 daemon_factory=None) -> None:
        self.name = name
        self.role = role
        self.binary = binary
        self.datadir = datadir
        self.ports = ports
        self.bitcoind = bitcoind
        factory = daemon_factory or ProcessDaemon
        self.daemon: Daemon = factory(f"ldk-{name}", self.argv(), self.log_file, datadir)
        self._client: LdkClient | None = None
        self.pubkey: str | None = None

    @property
    def log_file(self) -> Path:
        return self.datadir / "ldkd.log"

    def argv(self) -> list[str]:
        rpchost, _zmq_block, _zmq_tx = self.bitcoind.peer_endpoints()
        host, port = rpchost.rsplit(":", 1)
        return [
            str(self.binary), *self.dir_args(), "--network=regtest", *self.address_args(),
            f"--bitcoind-rpc-host={host}", f"--bitcoind-rpc-port={port}",
            f"--bitcoind-rpc-user={self.bitcoind.rpc_user}", f"--bitcoind-rpc-password={self.bitcoind.rpc_password}",
            # LDK accepts an announced inbound channel only with an alias and a listening address
            f"--alias={self.name}", "--log-level=debug",
        ]

    def dir_args(self) -> list[str]:
        return [f"--datadir={self.datadir}"]

    def address_args(self) -> list[str]:
        """Where ldkd listens for peers and its API, and the p2p address it announces."""
        p = self.ports
        return [f"--listen={self.bind_host}:{p.p2p_listen or p.p2p}", f"--announce=127.0.0.1:{p.p2p}",
                f"--api-port={p.api}"]

    def reconfigure(self) -> None:
        """Take new ``ports`` (or a moved bitcoind) into the daemon's next start."""
        self.daemon.argv = self.argv()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def p2p_host(self) -> str:
        return f"127.0.0.1:{self.ports.p2p}"

    @property
    def client(self) -> LdkClient:
        if self._client is None:
            self._client = LdkClient(self.name, self.api_url)
        return self._client

    def start(self, timeout: float = 90.0) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.daemon.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Up when the API answers and the wallets have synced with bitcoind at least once."""
        def ready() -> bool:
            self.daemon.check_alive()
            try:
                info = self.client.info()
            except LdkError:
                return False
            self.pubkey = info["node_id"]
            return bool(info.get("synced"))

        wait_for(ready, timeout=timeout, what=f"ldk {self.name} synced to chain")

    def stop(self) -> None:
        """SIGTERM: ldkd stops its node (channel state persisted) and exits."""
        if self._client:
            self._client.close()
            self._client = None
        self.daemon.stop()

    def block_height(self) -> int:
        return int(self.client.info()["block_height"])

    def synced_to(self, height: int) -> bool:
        info = self.client.info()
        return int(info["block_height"]) >= height and bool(info.get("synced"))

    def onchain_sats(self) -> int:
        """On-chain balance (ldk-node counts confirmed and unconfirmed alike in its total)."""
        return int(self.client.balances()["total_onchain_sats"])

    def usable_channels(self) -> list[dict]:
        return [c for c in self.client.channels() if c["is_usable"]]

    def public_edges_with_policies(self) -> int:
        return sum(1 for c in self.client.graph()["channels"] if c["one_to_two"] and c["two_to_one"])

    def missing_policy_origins(self) -> set[str]:
        """Node ids whose policy (``channel_update``) for a channel this node knows is missing
        from its graph: the nodes that must send that update again."""
        out = set()
        for c in self.client.graph()["channels"]:
            if not c["one_to_two"]:
                out.add(c["node_one"])
            if not c["two_to_one"]:
                out.add(c["node_two"])
        return out

    def resync_gossip(self, addresses: dict[str, str], timeout: float = 30.0) -> list[str]:
        """Reconnect to every connected peer (``addresses``: node id -> its p2p host:port, as a
        peer that dialled us shows only its source port), so that each replays its gossip to us.

        LDK asks a peer for gossip once per connection (a ``gossip_timestamp_filter``) and then
        only takes what the peer forwards live; a ``channel_update`` that reaches it before the
        channel's announcement is dropped and never sent again. A new connection asks again, and
        the peer sends the whole graph in order. Returns the peers reconnected."""
        again = []
        for peer in self.client.peers():
            if not peer["is_connected"] or peer["node_id"] not in addresses:
                continue
            self.client.disconnect(peer["node_id"])
            address = addresses[peer["node_id"]]

            def reconnected(node_id=peer["node_id"], address=address) -> bool:
                try:
                    self.client.connect(node_id, address, persist=True)
                except LdkError as exc:
                    if exc.status == 409:  # the peer may still be closing the old connection
                        return False
                    raise
                return True

            wait_for(reconnected, timeout=timeout, interval=0.2, what=f"{self.name} reconnected to {address}")
            again.append(peer["node_id"])
        return again

    def pay_invoice(self, invoice: str, timeout: float = 60.0, **route) -> dict:
        """Pay and wait for the outcome; return the final payment."""
        started = self.client.pay(invoice, **route)
        return self.client.wait_payment(started["payment_id"], timeout=timeout)

