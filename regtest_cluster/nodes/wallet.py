"""One face for a party's Lightning node, whatever its implementation.

The harness reads node truth (channel balances, HTLCs in flight, the payer's own payment
records) and acts as a party's wallet (pay an invoice, issue one) through this interface,
so a story and the oracle run alike with buyers and sellers on LND or on LDK. Node
management (start, fund, open channels, faults) stays on the node classes.

Words are LND's, the harness's lingua franca: a payment's ``status`` is ``SUCCEEDED``,
``FAILED`` or ``IN_FLIGHT``; amounts are whole sats; hashes are hex.
"""

from __future__ import annotations

import base64

from .ldk import LdkError
from .lnd import LndError

STATUS = {"succeeded": "SUCCEEDED", "failed": "FAILED", "pending": "IN_FLIGHT"}


class _Wallet:
    impl = ""
    bindable = False  # whether a marketplace can fetch payout invoices from the node itself

    def __init__(self, node) -> None:
        self.node = node

    @property
    def name(self) -> str:
        return self.node.name


class LndWallet(_Wallet):
    impl = "lnd"
    bindable = True  # an invoice macaroon lets the marketplace ask the node for payout invoices

    def channel_balance_sats(self) -> int:
        return int(self.node.rest.channelbalance()["local_balance"]["sat"])

    def in_flight(self) -> list[dict]:
        out = []
        for ch in self.node.rest.listchannels():
            for h in ch.get("pending_htlcs", []):
                out.append({"node": self.name, "channel_point": ch.get("channel_point"), "chan_id": ch.get("chan_id"),
                            "payment_hash": base64.b64decode(h["hash_lock"]).hex(),
                            "amount_sats": int(h.get("amount", 0)),
                            "expiration_height": int(h.get("expiration_height", 0)),
                            "incoming": bool(h.get("incoming"))})
        return out

    def payments(self) -> list[dict]:
        return self.node.rest.listpayments()

    def funded_commit_fees(self) -> dict[str, tuple[int, int]]:
        """Channel point -> (fee rate in sat/kW, commitment fee) of each channel this node funded."""
        return {c["channel_point"]: (int(c.get("fee_per_kw", 0)), int(c.get("commit_fee", 0)))
                for c in self.node.rest.listchannels() if c.get("initiator")}

    def active_channel_peers(self) -> set[str]:
        """Pubkeys of the peers with which this node has an active channel."""
        return {c["remote_pubkey"] for c in self.node.rest.listchannels(active_only=True)}

    def channel_activity(self) -> list[tuple[str, bool]]:
        """Each open channel: (the peer's pubkey, whether it is active)."""
        return [(c["remote_pubkey"], bool(c.get("active"))) for c in self.node.rest.listchannels()]

    def connected_peers(self) -> set[str]:
        """Pubkeys of the peers connected now."""
        return {p["pub_key"] for p in self.node.rest.listpeers()}

    def connect(self, pubkey: str, host: str) -> None:
        """Connect to a peer at ``host`` (``LndError`` if lnd refuses)."""
        self.node.rest.connect(pubkey, host)

    def pay(self, request: str, timeout_s: int = 60, fee_limit_sats: int = 100) -> dict:
        """Pay and wait for the end: ``{status, payment_hash, failure_reason?}``."""
        try:
            return self.node.rest.send_payment(request, timeout_s=timeout_s, fee_limit_sats=fee_limit_sats)
        except LndError as exc:  # the node went away mid-payment
            return {"status": "ERROR", "error": str(exc)}

    def invoice(self, amount_sats: int, memo: str = "", expiry_s: int = 3600) -> dict:
        created = self.node.rest.addinvoice(amount_sats, memo=memo, expiry_s=expiry_s)
        return {"payment_request": created["payment_request"], "payment_hash": base64.b64decode(created["r_hash"]).hex()}


class LdkWallet(_Wallet):
    """ldkd's API in LND's words. Balances and HTLCs come from ldk-node's ``list_balances``
    (``/v1/balances``' ``lightning_balances``): an open channel's ``claimable_on_channel_close``
    is its own balance, as LND's local balance (the commitment fee left out), and each HTLC on
    our latest commitment is ``htlc_out`` or ``htlc_in`` with its hash and expiry."""

    impl = "ldk"
    bindable = False  # no marketplace can ask it for invoices: its owner hands them in

    def _balances(self) -> list[dict]:
        return self.node.client.balances()["lightning_balances"]

    def channel_balance_sats(self) -> int:
        return sum(int(b["amount_sats"]) for b in self._balances() if b["kind"] == "claimable_on_channel_close")

    def in_flight(self) -> list[dict]:
        return [{"node": self.name, "channel_point": b["channel_id"], "chan_id": b["channel_id"],
                 "payment_hash": b["payment_hash"], "amount_sats": int(b["amount_sats"]),
                 "expiration_height": int(b["expiry_height"]), "incoming": b["kind"] == "htlc_in"}
                for b in self._balances() if b["kind"] in ("htlc_in", "htlc_out")]

    def active_channel_peers(self) -> set[str]:
        return {c["counterparty_node_id"] for c in self.node.usable_channels()}

    def channel_activity(self) -> list[tuple[str, bool]]:
        # open channels only, as LND lists them: one still being funded is never "usable"
        return [(c["counterparty_node_id"], bool(c["is_usable"])) for c in self.node.client.channels()
                if c["is_channel_ready"]]

    def connected_peers(self) -> set[str]:
        return {p["node_id"] for p in self.node.client.peers() if p["is_connected"]}

    def connect(self, pubkey: str, host: str) -> None:
        """Connect (and keep reconnecting, as ldk-node does for persisted peers); ``LdkError`` if refused."""
        self.node.client.connect(pubkey, host, persist=True)

    def funded_commit_fees(self) -> dict[str, tuple[int, int]]:
        return {}  # ldkd keeps its fallback rate on regtest: no update_fee to account for

    def payments(self) -> list[dict]:
        """Outbound BOLT11 payments, as LND lists its own."""
        return [_lnd_words(p) for p in self.node.client.payments()
                if p["direction"] == "outbound" and p["kind"] == "bolt11"]

    def pay(self, request: str, timeout_s: int = 60, fee_limit_sats: int = 100, hold_s: float = 900) -> dict:
        """Pay and wait for the end (a hold may last ``hold_s``): ``{status, payment_hash, failure_reason?}``.
        A payment LDK refuses to start (no route within its limits) is FAILED with LDK's words."""
        try:
            started = self.node.client.pay(request, max_total_routing_fee_msat=fee_limit_sats * 1000)
        except LdkError as exc:
            if exc.status >= 500 or exc.status == 0:
                return {"status": "ERROR", "error": str(exc)}
            return {"status": "FAILED", "failure_reason": exc.message, "error": str(exc)}
        try:
            return _lnd_words(self.node.client.wait_payment(started["payment_id"], timeout=hold_s))
        except (LdkError, RuntimeError) as exc:  # the node went away mid-payment (its client closed)
            return {"status": "ERROR", "error": str(exc)}
        except TimeoutError:
            return {"status": "IN_FLIGHT", "payment_hash": started["payment_hash"]}

    def invoice(self, amount_sats: int, memo: str = "", expiry_s: int = 3600) -> dict:
        created = self.node.client.receive(amount_sats * 1000, memo, expiry_secs=expiry_s)
        return {"payment_request": created["invoice"], "payment_hash": created["payment_hash"]}


def _lnd_words(p: dict) -> dict:
    return {"payment_hash": p["payment_hash"], "status": STATUS.get(p["status"], p["status"].upper()),
            "value_sat": str((p.get("amount_msat") or 0) // 1000), "fee_sat": str((p.get("fee_paid_msat") or 0) // 1000),
            "failure_reason": p.get("failure_reason") or "", "impl": "ldk"}


def wallet(node) -> LndWallet | LdkWallet:
    """The wallet face of a cluster node (``LndNode`` or ``LdkNode``)."""
    return LdkWallet(node) if getattr(node, "impl", "lnd") == "ldk" else LndWallet(node)


__all__ = ["LdkWallet", "LndWallet", "wallet"]
