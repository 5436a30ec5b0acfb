"""minimarket's escrow: ln_hold only, as DESIGN.md's "Escrow" section states it.

- One transitions table, ``(state, event) -> state``; ``Escrow.move`` applies it with
  compare-and-swap and writes the timeline row and both parties' notifications in the
  same transaction.
- Every irreversible node action (settle, cancel, pay) is taken by the worker, from a
  state whose claim has already committed (``*_PENDING``, ``HELD_IN_CUSTODY``, ``EXPIRED``).
- Deadlines are in blocks: the worker reads the hub's height every tick.
- The guardian: at the lock horizon an unshipped order is cancelled (refund), a shipped
  or disputed one is settled into custody. Never a silent refund after shipment.
- Payouts happen at most once: a marker (the invoice's hash, ``IN_FLIGHT``) commits
  before the payment is sent, and TrackPayment is asked before any retry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from datetime import datetime, timezone

from cryptography.fernet import Fernet

from escrow_protocol.formulas import fee_sats, hold_cltv_blocks, lock_horizon, split_shares
from escrow_protocol.states import Event as E, State as S

from .lnd import Lnd, LndError
from .store import Store

log = logging.getLogger("minimarket")

# What minimarket runs with unless told otherwise (the harness passes its own).
DEFAULTS: dict = dict(
    fee_ppm=10_000, payout_fee_limit_sats=50, funding_timeout_s=3600, funding_timeout_blocks=12,
    ship_window_blocks=36, delivery_window_blocks=72, dispute_window_blocks=24, ruling_window_blocks=2016,
    speedup_factor=1.7, guardian_margin_blocks=24, hold_expiry_delta_blocks=18,
    worker_interval_s=0.25, payout_retry_base_s=1.0, payout_timeout_s=60, payout_max_final_cltv=432,
    fault_points=[],        # crash (exit 70) at these points: after_settle, after_payout_marker, after_payout_sent
    planted_bug=None,       # a deliberate defect, to watch the harness catch it (PLANTED_BUGS)
)
PLANTED_BUGS = {
    "release_without_delivery": "shipping releases the payment at once, with no delivery, confirmation or ruling",
    "double_payout": "a paid payout is forgotten once and paid again to a fresh invoice",
}
FAULT_POINTS = ("after_settle", "after_payout_marker", "after_payout_sent")

FUNDED = (S.FUNDED, S.SHIPPED, S.DELIVERED, S.DISPUTED)  # the lock is held: the guardian watches these
TRANSITIONS: dict[tuple[S, E], S] = {
    (S.CREATED, E.INVOICE_ISSUED): S.AWAITING_FUNDS,
    (S.AWAITING_FUNDS, E.FUNDED): S.FUNDED,
    (S.AWAITING_FUNDS, E.FUNDING_TIMEOUT): S.EXPIRED,
    (S.FUNDED, E.SHIP): S.SHIPPED,
    (S.FUNDED, E.SHIP_TIMEOUT): S.REFUND_PENDING,
    (S.FUNDED, E.GUARDIAN_CANCEL): S.REFUND_PENDING,
    (S.FUNDED, E.OPEN_DISPUTE): S.DISPUTED,
    (S.SHIPPED, E.DELIVERED): S.DELIVERED,
    (S.SHIPPED, E.BUYER_CONFIRM): S.RELEASE_PENDING,
    (S.SHIPPED, E.OPEN_DISPUTE): S.DISPUTED,
    (S.SHIPPED, E.DELIVERY_TIMEOUT): S.DISPUTED,  # never a silent refund after shipment
    (S.DELIVERED, E.BUYER_CONFIRM): S.RELEASE_PENDING,
    (S.DELIVERED, E.DISPUTE_WINDOW_END): S.RELEASE_PENDING,
    (S.DELIVERED, E.OPEN_DISPUTE): S.DISPUTED,
    (S.DISPUTED, E.RULE_RELEASE): S.RELEASE_PENDING,
    (S.DISPUTED, E.RULE_REFUND): S.REFUND_PENDING,
    (S.DISPUTED, E.RULE_SPLIT): S.SPLIT_PENDING,
    **{(s, E.GUARDIAN_CUSTODY): S.HELD_IN_CUSTODY for s in (S.SHIPPED, S.DELIVERED, S.DISPUTED)},
    # in custody the hold is settled and the case goes on; evidence and disputes are recorded
    (S.HELD_IN_CUSTODY, E.DELIVERED): S.HELD_IN_CUSTODY,
    (S.HELD_IN_CUSTODY, E.OPEN_DISPUTE): S.HELD_IN_CUSTODY,
    (S.HELD_IN_CUSTODY, E.BUYER_CONFIRM): S.RELEASE_PENDING,
    (S.HELD_IN_CUSTODY, E.RULE_RELEASE): S.RELEASE_PENDING,
    (S.HELD_IN_CUSTODY, E.RULE_REFUND): S.REFUND_PENDING,
    (S.HELD_IN_CUSTODY, E.RULE_SPLIT): S.SPLIT_PENDING,
    (S.HELD_IN_CUSTODY, E.RULING_TIMEOUT_RELEASE): S.RELEASE_PENDING,
    (S.HELD_IN_CUSTODY, E.RULING_TIMEOUT_REFUND): S.REFUND_PENDING,
    (S.RELEASE_PENDING, E.RELEASED): S.RELEASED,
    (S.REFUND_PENDING, E.REFUNDED): S.REFUNDED,
    (S.SPLIT_PENDING, E.SPLIT_DONE): S.SPLIT,
    # the node cancelled the hold behind our back: the buyer has the money back
    **{(s, E.LOCK_LOST): S.REFUNDED for s in (*FUNDED, S.HELD_IN_CUSTODY, S.RELEASE_PENDING, S.SPLIT_PENDING)},
}
# A state's deadline: the window (a setting, in blocks) and the event its end applies.
DEADLINES = {S.AWAITING_FUNDS: ("funding_timeout_blocks", E.FUNDING_TIMEOUT),
             S.FUNDED: ("ship_window_blocks", E.SHIP_TIMEOUT),
             S.SHIPPED: ("delivery_window_blocks", E.DELIVERY_TIMEOUT),
             S.DELIVERED: ("dispute_window_blocks", E.DISPUTE_WINDOW_END),
             S.HELD_IN_CUSTODY: ("ruling_window_blocks", None)}  # None: the default ruling
# DISPUTED has no deadline of its own: a dispute freezes the clock until a ruling or the guardian.


class Refused(Exception):
    """A request the rules refuse: an HTTP status, a short code and why."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Escrow:
    def __init__(self, store: Store, hub: Lnd, settings: dict, key: bytes) -> None:
        self.store, self.hub, self.s = store, hub, {**DEFAULTS, **settings}
        self.box = Fernet(key)  # the preimages are kept sealed
        self.height: int | None = None
        self.bug = self.s["planted_bug"]

    def tip(self) -> int | None:
        if self.height is None:
            try:
                self.height = self.hub.height()
            except LndError:
                pass
        return self.height

    def crash_point(self, name: str) -> None:
        if name in self.s["fault_points"]:
            log.warning("fault point %s: exiting", name)
            os._exit(70)

    # --- the one way an order changes state
    def move(self, db, order_id: int, event: E, actor: str, detail: str = "", **changes) -> dict:
        order = dict(db.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone())
        current = S(order["state"])
        target = TRANSITIONS.get((current, event))
        if self.bug == "release_without_delivery" and (current, event) == (S.FUNDED, E.SHIP):
            target = S.RELEASE_PENDING
        if target is None:
            raise Refused(409, "invalid_transition", f"order {order_id} is {current}; '{event}' is not allowed there")
        height = self.tip()
        window = DEADLINES.get(target)
        if target != current:
            changes["deadline_height"] = height + self.s[window[0]] if window and height is not None else None
        sets = ", ".join(f"{k} = ?" for k in ("state", *changes))
        cas = db.execute(f"UPDATE orders SET {sets} WHERE id = ? AND state = ?",  # compare-and-swap
                         (target.value, *changes.values(), order_id, current.value))
        if cas.rowcount != 1:
            raise Refused(409, "conflict", f"order {order_id} changed concurrently; '{event}' was not applied")
        at = now()
        db.execute("INSERT INTO events (order_id, event, from_state, to_state, actor, height, at, detail) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (order_id, event.value, current.value, target.value, actor,
                                                       height, at, detail))
        if target != current:
            for user_id in {order["buyer_id"], order["seller_id"]}:
                db.execute("INSERT INTO notifications (user_id, order_id, kind, message, at) VALUES (?, ?, ?, ?, ?)",
                           (user_id, order_id, f"order.{target.value.lower()}",
                            f"Order #{order_id} is now {target.value} ({event.value}).", at))
        return {**order, **changes, "state": target.value}

    # --- opening: a hold invoice on the hub
    def open_order(self, buyer: dict, listing: dict, quantity: int) -> int:
        price = listing["price_sats"] * quantity
        with self.store.tx() as db:
            taken = db.execute("UPDATE listings SET stock = stock - ? WHERE id = ? AND stock >= ?",
                               (quantity, listing["id"], quantity))
            if taken.rowcount != 1:
                raise Refused(409, "out_of_stock", f"listing {listing['id']} has fewer than {quantity} left")
            order_id = db.execute(
                "INSERT INTO orders (listing_id, buyer_id, seller_id, state, price_sats, fee_sats, address_hash) "
                "VALUES (?, ?, ?, 'CREATED', ?, ?, ?)", (listing["id"], buyer["id"], listing["seller_id"], price,
                                                         fee_sats(price, self.s["fee_ppm"]), buyer["address_hash"])
            ).lastrowid
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).digest()
        cltv = hold_cltv_blocks(self.s["ship_window_blocks"], self.s["delivery_window_blocks"],
                                self.s["dispute_window_blocks"], self.s["speedup_factor"],
                                self.s["guardian_margin_blocks"], self.s["hold_expiry_delta_blocks"])
        try:
            request = self.hub.add_hold_invoice(payment_hash, price, cltv, self.s["funding_timeout_s"],
                                                f"minimarket order {order_id}")
        except LndError as exc:
            with self.store.tx() as db:  # nothing was locked: undo the order and the stock
                db.execute("DELETE FROM orders WHERE id = ?", (order_id,))
                db.execute("UPDATE listings SET stock = stock + ? WHERE id = ?", (quantity, listing["id"]))
            raise Refused(503, "node_unavailable", f"the hub could not issue the invoice: {exc.message}") from None
        with self.store.tx() as db:
            self.move(db, order_id, E.INVOICE_ISSUED, f"user:{buyer['id']}", f"hold cltv {cltv}",
                      payment_hash=payment_hash.hex(), payment_request=request, cltv_expiry=cltv,
                      preimage_sealed=self.box.encrypt(preimage), lnd_state="OPEN")
        return order_id

    # --- what a payout must be, by the pending outcome
    def plan(self, order: dict) -> list[tuple[str, int, int]]:
        """(beneficiary, user id, sats) of the order's payouts now."""
        price, state = order["price_sats"], S(order["state"])
        if state == S.RELEASE_PENDING:
            return [("seller", order["seller_id"], price - order["fee_sats"])]
        if state == S.SPLIT_PENDING:
            buyer, seller, _fee = split_shares(price, order["buyer_share_ppm"], self.s["fee_ppm"])
            return [("buyer", order["buyer_id"], buyer), ("seller", order["seller_id"], seller)]
        if state == S.REFUND_PENDING and order["lnd_state"] == "SETTLED":  # repaid from custody
            return [("buyer", order["buyer_id"], price)]
        return []

    def check_invoice(self, request: str, amount: int, pubkey: str | None) -> dict:
        """A payout invoice must be for exactly the amount, to the payee's node, with a sane final CLTV."""
        try:
            decoded = self.hub.decode(request)
        except LndError as exc:
            raise Refused(422, "bad_invoice", f"not an invoice: {exc.message}") from None
        if int(decoded.get("num_satoshis", 0) or 0) != amount:
            raise Refused(422, "bad_invoice", f"the invoice is for {decoded.get('num_satoshis')} sats; "
                                              f"the payout is exactly {amount}")
        if pubkey and decoded["destination"] != pubkey:
            raise Refused(422, "bad_invoice", "the invoice is not payable to your bound node")
        if int(decoded.get("cltv_expiry", 0) or 0) > self.s["payout_max_final_cltv"]:
            raise Refused(422, "bad_invoice", f"final CLTV {decoded['cltv_expiry']} is too long")
        return decoded

    # --- the worker: reads the height, then funding, the guardian, deadlines, outcomes
    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except LndError as exc:  # the hub is away (restarting): try again next tick
                log.info("tick: %s", exc)
            except Exception:
                log.exception("tick failed")
            stop.wait(self.s["worker_interval_s"])

    def tick(self) -> None:
        self.height = self.hub.height()
        self.reconcile()
        self.timers(self.height)
        for order in self.store.all("SELECT * FROM orders WHERE state IN (?, ?, ?, ?) OR (state = ? AND lnd_state "
                                    "!= 'CANCELED')", S.RELEASE_PENDING, S.REFUND_PENDING, S.SPLIT_PENDING,
                                    S.HELD_IN_CUSTODY, S.EXPIRED):
            try:
                self.drive(order)
            except (LndError, Refused) as exc:
                log.info("order %s: %s (retrying)", order["id"], exc)

    def reconcile(self) -> None:
        """Compare each open hold with the hub and record what it says: one ListInvoices for the
        open and accepted ones, a LookupInvoiceV2 for any that left that list (settled or cancelled)."""
        watched = [S.AWAITING_FUNDS, *FUNDED, S.HELD_IN_CUSTODY, S.RELEASE_PENDING, S.SPLIT_PENDING]
        orders = self.store.all(f"SELECT * FROM orders WHERE state IN ({','.join('?' * len(watched))}) "
                                "AND lnd_state != 'SETTLED'", *watched)
        pending = self.hub.pending_invoices() if orders else {}
        for order in orders:
            invoice = pending.get(order["payment_hash"])
            state, paid, expiry = self.truth(invoice) if invoice else self.lookup(order["payment_hash"])
            with self.store.tx() as db:
                db.execute("UPDATE orders SET lnd_state = ?, htlc_expiry_height = COALESCE(?, htlc_expiry_height) "
                           "WHERE id = ?", (state, expiry, order["id"]))
                current = S(order["state"])
                try:
                    if current == S.AWAITING_FUNDS and state == "ACCEPTED" and paid >= order["price_sats"]:
                        self.move(db, order["id"], E.FUNDED, "worker", f"ACCEPTED {paid} sats, HTLC expiry {expiry}")
                    elif current == S.AWAITING_FUNDS and state == "CANCELED":
                        self.move(db, order["id"], E.FUNDING_TIMEOUT, "worker", "the hub cancelled the invoice")
                    elif current != S.AWAITING_FUNDS and state == "CANCELED":
                        self.move(db, order["id"], E.LOCK_LOST, "worker", "the hub cancelled the held payment")
                except Refused as exc:  # a user's request moved it first: next tick sees the new state
                    log.info("order %s: %s", order["id"], exc.detail)

    def lookup(self, payment_hash: str) -> tuple[str, int, int | None]:
        """What the hub says of one hold (LookupInvoiceV2); a vanished invoice is cancelled."""
        try:
            return self.truth(self.hub.lookup_invoice(bytes.fromhex(payment_hash)))
        except LndError as exc:
            if "unable to locate invoice" in exc.message:
                return "CANCELED", 0, None
            raise

    @staticmethod
    def truth(invoice: dict) -> tuple[str, int, int | None]:
        """(state, sats paid, lowest expiry height of the held HTLCs) of an invoice."""
        held = [int(h["expiry_height"]) for h in invoice.get("htlcs", []) if h.get("state") in ("ACCEPTED", "SETTLED")]
        return invoice.get("state", "OPEN"), int(invoice.get("amt_paid_sat", 0) or 0), min(held, default=None)

    def timers(self, height: int) -> None:
        """The guardian first (the lock horizon), then each state's own deadline."""
        with self.store.tx() as db:
            for order in db.execute(f"SELECT * FROM orders WHERE state IN ({','.join('?' * len(FUNDED))}) "
                                    "AND htlc_expiry_height IS NOT NULL", FUNDED).fetchall():
                horizon = lock_horizon(order["htlc_expiry_height"], self.s["hold_expiry_delta_blocks"],
                                       self.s["guardian_margin_blocks"])
                if height >= horizon:
                    event = E.GUARDIAN_CANCEL if order["state"] == S.FUNDED else E.GUARDIAN_CUSTODY
                    self.move(db, order["id"], event, "guardian", f"lock horizon {horizon} reached at {height}")
            timed = [s.value for s in DEADLINES]
            for order in db.execute(f"SELECT * FROM orders WHERE state IN ({','.join('?' * len(timed))}) "
                                    "AND deadline_height <= ?", (*timed, height)).fetchall():
                _window, event = DEADLINES[S(order["state"])]
                if event is None:  # custody's ruling window ended: release only on undisputed delivery
                    ok = order["delivered"] and not order["disputed"]
                    event = E.RULING_TIMEOUT_RELEASE if ok else E.RULING_TIMEOUT_REFUND
                self.move(db, order["id"], event, "worker", f"deadline {order['deadline_height']} passed",
                          **({"disputed": 1} if event == E.DELIVERY_TIMEOUT else {}))

    # --- outcomes on the node, each after its claim committed
    def drive(self, order: dict) -> None:
        state = S(order["state"])
        if state == S.EXPIRED:  # the unpaid invoice goes; an HTLC that came late fails back
            self.cancel(order)
        elif state == S.HELD_IN_CUSTODY:
            self.settle(order)
        elif state in (S.RELEASE_PENDING, S.SPLIT_PENDING):
            if self.settle(order) and self.pay_all(self.reload(order)):
                event = E.RELEASED if state == S.RELEASE_PENDING else E.SPLIT_DONE
                self.finish(order, event, "paid out")
        elif state == S.REFUND_PENDING:
            if order["lnd_state"] != "SETTLED" and self.cancel(order) == "CANCELED":
                self.finish(order, E.REFUNDED, "hold cancelled: the buyer's HTLC failed back")
            elif self.reload(order)["lnd_state"] == "SETTLED" and self.pay_all(self.reload(order)):
                self.finish(order, E.REFUNDED, f"buyer repaid {order['price_sats']} sats from custody")

    def reload(self, order: dict) -> dict:
        return self.store.one("SELECT * FROM orders WHERE id = ?", order["id"])

    def finish(self, order: dict, event: E, detail: str) -> None:
        with self.store.tx() as db:
            self.move(db, order["id"], event, "worker", detail)

    def settle(self, order: dict) -> bool:
        """Settle the hold (lnd repeats a settle harmlessly); False if it is not settled (yet)."""
        if order["lnd_state"] == "SETTLED":
            return True
        try:
            self.hub.settle_invoice(self.box.decrypt(order["preimage_sealed"]))
            self.crash_point("after_settle")
            state = "SETTLED"
        except LndError as exc:
            if exc.status == 0:
                raise
            state, _paid, _expiry = self.lookup(order["payment_hash"])
        with self.store.tx() as db:
            db.execute("UPDATE orders SET lnd_state = ? WHERE id = ?", (state, order["id"]))
            if state == "CANCELED":  # too late: the node gave the buyer the money back
                self.move(db, order["id"], E.LOCK_LOST, "worker", "the hold was cancelled before it was settled")
        return state == "SETTLED"

    def cancel(self, order: dict) -> str:
        """Cancel the hold; the node's state afterwards (CANCELED, or SETTLED if it was settled)."""
        try:
            self.hub.cancel_invoice(bytes.fromhex(order["payment_hash"]))
        except LndError as exc:
            if exc.status == 0:
                raise
        state, _paid, _expiry = self.lookup(order["payment_hash"])
        with self.store.tx() as db:
            db.execute("UPDATE orders SET lnd_state = ? WHERE id = ?", (state, order["id"]))
        return state

    # --- payouts: at most once each
    def pay_all(self, order: dict) -> bool:
        with self.store.tx() as db:
            for beneficiary, user_id, amount in self.plan(order):
                db.execute("INSERT OR IGNORE INTO payouts (order_id, beneficiary, user_id, amount_sats) "
                           "VALUES (?, ?, ?, ?)", (order["id"], beneficiary, user_id, amount))
        payouts = self.store.all("SELECT * FROM payouts WHERE order_id = ?", order["id"])
        done = all(self.pay(p, order) == "SUCCEEDED" for p in payouts)
        if done and self.bug == "double_payout":
            with self.store.tx() as db:  # the bug: forget a first payout was made, so it is made again
                forgot = db.execute("UPDATE payouts SET status = 'PENDING', payment_hash = NULL, "
                                    "payment_request = NULL WHERE order_id = ? AND attempts = 1", (order["id"],))
            return forgot.rowcount == 0
        return done

    def pay(self, p: dict, order: dict) -> str:
        """One step of the payout protocol; the payout's status afterwards."""
        if p["status"] == "SUCCEEDED" or p["retry_at"] > time.time():
            return p["status"]
        if p["status"] == "IN_FLIGHT":  # a marker: ask the node before anything else
            tracked = self.hub.track(bytes.fromhex(p["payment_hash"]))
            if tracked is None:  # the marker committed but the payment never left: send that same invoice
                return self.send(p, p["payment_request"], order)
            return self.record(p, tracked)  # SUCCEEDED, IN_FLIGHT, or FAILED: then a new attempt is safe
        user = self.store.one("SELECT * FROM users WHERE id = ?", p["user_id"])
        request = p["payment_request"] if p["status"] == "PENDING" else None  # handed in by the payee
        try:
            if request is None and user["node_url"]:
                node = Lnd(user["node_url"], user["node_macaroon"], user["node_cert"], timeout=20)
                try:
                    request = node.add_invoice(p["amount_sats"], f"minimarket payout order {p['order_id']}")
                finally:
                    node.close()
            if request is None:
                return self.note(p, "no payout method: bind a node or hand in an invoice", backoff=False)
            decoded = self.check_invoice(request, p["amount_sats"], user["node_pubkey"])
        except LndError as exc:
            return self.note(p, f"payee node: {exc.message}")
        except Refused as exc:
            return self.note(p, exc.detail)
        with self.store.tx() as db:  # the marker, before anything is sent
            claimed = db.execute("UPDATE payouts SET status = 'IN_FLIGHT', attempts = attempts + 1, "
                                 "payment_request = ?, payment_hash = ?, last_error = NULL "
                                 "WHERE id = ? AND attempts = ? AND status IN ('PENDING', 'FAILED')",
                                 (request, decoded["payment_hash"], p["id"], p["attempts"]))
            if claimed.rowcount != 1:
                return "IN_FLIGHT"
        self.crash_point("after_payout_marker")
        return self.send({**p, "payment_hash": decoded["payment_hash"]}, request, order)

    def send(self, p: dict, request: str, order: dict) -> str:
        fee_limit = self.s["payout_fee_limit_sats"]  # from the marketplace's fee, never the escrowed amount
        if p["beneficiary"] == "seller":
            fee_limit = min(fee_limit, order["fee_sats"])
        try:
            result = self.hub.pay(request, fee_limit, self.s["payout_timeout_s"])
        except LndError as exc:
            if exc.status == 0 or "already paid" in exc.message or "in transition" in exc.message:
                result = self.hub.track(bytes.fromhex(p["payment_hash"])) or {"status": "FAILED",
                                                                              "failure_reason": exc.message}
            else:
                result = {"status": "FAILED", "failure_reason": exc.message}
        self.crash_point("after_payout_sent")
        return self.record(p, result)

    def record(self, p: dict, result: dict) -> str:
        status = result.get("status", "IN_FLIGHT")
        with self.store.tx() as db:
            if status == "SUCCEEDED":
                db.execute("UPDATE payouts SET status = 'SUCCEEDED', fee_sats = ? WHERE id = ?",
                           (int(result.get("fee_sat", 0) or 0), p["id"]))
            elif status == "FAILED":
                retry = time.time() + min(5.0, self.s["payout_retry_base_s"] * 2 ** p["attempts"])
                db.execute("UPDATE payouts SET status = 'FAILED', last_error = ?, retry_at = ? WHERE id = ?",
                           (str(result.get("failure_reason", "FAILED")), retry, p["id"]))
        return status if status in ("SUCCEEDED", "FAILED") else "IN_FLIGHT"

    def note(self, p: dict, error: str, backoff: bool = True) -> str:
        retry = time.time() + min(5.0, self.s["payout_retry_base_s"] * 2 ** p["attempts"]) if backoff else 0
        with self.store.tx() as db:
            db.execute("UPDATE payouts SET last_error = ?, retry_at = ? WHERE id = ?", (error, retry, p["id"]))
        return p["status"]


__all__ = ["DEFAULTS", "Escrow", "FAULT_POINTS", "PLANTED_BUGS", "Refused", "TRANSITIONS"]
