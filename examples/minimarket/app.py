"""minimarket's HTTP API: users with API keys, listings, orders, disputes, the courier webhook.

Every request that changes an order validates, then claims its transition with
compare-and-swap (``Escrow.move``), and answers; the worker does the node work.
A refusal is ``{"code", "detail"}`` with a 4xx status.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
import time
from typing import Literal

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from escrow_protocol.formulas import split_shares
from escrow_protocol.states import Event as E, State as S
from escrow_protocol.webhook import COURIER_STATUSES, SIGNATURE_HEADER, TIMESTAMP_HEADER, address_hash, sign_courier

from .escrow import Escrow, Refused

# The rules the harness judges by (the escrow protocol's names, as in the reference app's GET /rules).
RULES = ("fee_ppm", "payout_fee_limit_sats", "funding_timeout_s", "funding_timeout_blocks", "ship_window_blocks",
         "delivery_window_blocks", "dispute_window_blocks", "ruling_window_blocks", "speedup_factor",
         "guardian_margin_blocks", "hold_expiry_delta_blocks")
# Who may do what to an order, by their relation to it.
MAY = {"view": {"buyer", "seller", "arbiter", "admin"}, "ship": {"seller"}, "confirm": {"buyer"},
       "dispute": {"buyer", "seller"}, "rule": {"arbiter"}, "payout_invoice": {"buyer", "seller"},
       "message": {"buyer", "seller", "arbiter"}}
WEBHOOK_TOLERANCE_S = 300


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=80)
    roles: list[Literal["buyer", "seller"]] = ["buyer"]
    address: str = ""


class PayoutNode(BaseModel):
    rest_url: str
    macaroon_hex: str     # an invoice macaroon: all minimarket needs is to ask for invoices
    tls_cert_pem: str
    pubkey: str


class NewListing(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    price_sats: int = Field(gt=0, le=10_000_000)
    stock: int = Field(default=1, ge=1)


class NewOrder(BaseModel):
    listing_id: int
    quantity: int = Field(default=1, ge=1, le=100)


class Ship(BaseModel):
    courier: str
    tracking: str = Field(min_length=3, max_length=80)


class Ruling(BaseModel):
    ruling: Literal["release", "refund", "split"]
    buyer_share_pct: float | None = Field(default=None, gt=0, lt=100)


class Text(BaseModel):
    body: str = Field(min_length=1, max_length=5000)


class Invoice(BaseModel):
    payment_request: str = Field(min_length=20, max_length=2000)


def create_app(escrow: Escrow, couriers: dict[str, str]) -> FastAPI:
    app = FastAPI(title="minimarket")
    store = escrow.store

    @app.exception_handler(Refused)
    def refused(_request, exc: Refused) -> JSONResponse:
        return JSONResponse({"code": exc.code, "detail": exc.detail}, exc.status)

    # --- who is asking, and may they
    def me(x_api_key: str | None = Header(default=None)) -> dict:
        user = store.one("SELECT * FROM users WHERE api_key = ?", x_api_key) if x_api_key else None
        if user is None:
            raise Refused(401, "unauthenticated", "send your API key in X-Api-Key")
        return {**user, "roles": set(user["roles"].split(","))}

    def relations(user: dict, order: dict) -> set[str]:
        rel = {r for r, uid in (("buyer", order["buyer_id"]), ("seller", order["seller_id"])) if uid == user["id"]}
        if "admin" in user["roles"]:
            rel.add("admin")
        ruled = order["disputed"] or order["state"] in (S.DISPUTED, S.HELD_IN_CUSTODY)
        if "arbiter" in user["roles"] and not rel & {"buyer", "seller"} and ruled:
            rel.add("arbiter")  # arbiters see the cases that need or had a ruling, never their own
        return rel

    def order_for(user: dict, order_id: int, action: str) -> dict:
        order = store.one("SELECT * FROM orders WHERE id = ?", order_id)
        if order is None:
            raise Refused(404, "not_found", f"no order {order_id}")
        if not relations(user, order) & MAY[action]:
            raise Refused(403, "forbidden", f"you may not {action} order {order_id}")
        return order

    def view(order: dict) -> dict:
        payouts = store.all("SELECT beneficiary, amount_sats, payment_hash, status, attempts, fee_sats, last_error "
                            "FROM payouts WHERE order_id = ? ORDER BY id", order["id"])
        hold = None if order["payment_hash"] is None else {
            "payment_hash": order["payment_hash"], "payment_request": order["payment_request"],
            "amount_sats": order["price_sats"], "cltv_expiry": order["cltv_expiry"],
            "htlc_expiry_height": order["htlc_expiry_height"], "lnd_state": order["lnd_state"]}
        return {"id": order["id"], "listing_id": order["listing_id"], "escrow_mode": "ln_hold",
                "state": order["state"], "price_sats": order["price_sats"], "fee_sats": order["fee_sats"],
                "buyer_id": order["buyer_id"], "seller_id": order["seller_id"],
                "buyer_share_ppm": order["buyer_share_ppm"], "courier": order["courier"],
                "tracking_number": order["tracking"], "delivered_evidence": bool(order["delivered"]),
                "disputed": bool(order["disputed"]), "deadline_height": order["deadline_height"],
                "hold": hold, "payouts": payouts}

    def act(order: dict, event: E, user: dict, detail: str = "", **changes) -> dict:
        with store.tx() as db:
            escrow.move(db, order["id"], event, f"user:{user['id']}", detail, **changes)
        return view(store.one("SELECT * FROM orders WHERE id = ?", order["id"]))

    # --- health and rules
    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "height": escrow.height}

    @app.get("/rules")
    def rules() -> dict:
        return {"modes": ["ln_hold"], **{name: escrow.s[name] for name in RULES}}

    # --- users
    @app.post("/users", status_code=201)
    def register(body: NewUser) -> dict:
        key = secrets.token_urlsafe(24)
        with store.tx() as db:
            uid = db.execute("INSERT INTO users (name, roles, api_key, address_hash) VALUES (?, ?, ?, ?)",
                             (body.name, ",".join(body.roles), key,
                              address_hash(body.address) if body.address else None)).lastrowid
        return {"id": uid, "api_key": key}

    @app.get("/me")
    def whoami(user: dict = Depends(me)) -> dict:
        return {"id": user["id"], "name": user["name"], "roles": sorted(user["roles"])}

    @app.post("/users/{user_id}/roles")
    def grant(user_id: int, role: Literal["arbiter"], user: dict = Depends(me)) -> dict:
        if "admin" not in user["roles"]:
            raise Refused(403, "forbidden", "only the admin grants roles")
        with store.tx() as db:
            db.execute("UPDATE users SET roles = roles || ',' || ? WHERE id = ?", (role, user_id))
        return {"id": user_id, "granted": role}

    @app.put("/me/payout-node")
    def payout_node(body: PayoutNode, user: dict = Depends(me)) -> dict:
        with store.tx() as db:
            db.execute("UPDATE users SET node_url = ?, node_macaroon = ?, node_cert = ?, node_pubkey = ? WHERE id = ?",
                       (body.rest_url, body.macaroon_hex, body.tls_cert_pem, body.pubkey, user["id"]))
        return {"bound": body.pubkey}

    @app.get("/me/notifications")
    def notifications(user: dict = Depends(me)) -> list[dict]:
        return store.all("SELECT kind, order_id, message, at FROM notifications WHERE user_id = ? ORDER BY id",
                         user["id"])

    # --- listings and orders
    @app.post("/listings", status_code=201)
    def list_item(body: NewListing, user: dict = Depends(me)) -> dict:
        if "seller" not in user["roles"]:
            raise Refused(403, "forbidden", "only sellers list items")
        with store.tx() as db:
            lid = db.execute("INSERT INTO listings (seller_id, title, price_sats, stock) VALUES (?, ?, ?, ?)",
                             (user["id"], body.title, body.price_sats, body.stock)).lastrowid
        return {"id": lid, "title": body.title, "price_sats": body.price_sats, "stock": body.stock}

    @app.post("/orders", status_code=201)
    def place_order(body: NewOrder, user: dict = Depends(me)) -> dict:
        listing = store.one("SELECT * FROM listings WHERE id = ?", body.listing_id)
        if listing is None:
            raise Refused(404, "not_found", f"no listing {body.listing_id}")
        if listing["seller_id"] == user["id"] or not user["address_hash"]:
            raise Refused(422, "cannot_buy", "you cannot buy your own listing, or without a shipping address")
        order_id = escrow.open_order(user, listing, body.quantity)
        return view(store.one("SELECT * FROM orders WHERE id = ?", order_id))

    @app.get("/orders")
    def orders(offset: int = 0, limit: int = 50, user: dict = Depends(me)) -> dict:
        mine = [o for o in store.all("SELECT * FROM orders ORDER BY id DESC") if relations(user, o) & MAY["view"]]
        return {"items": [view(o) for o in mine[offset:offset + limit]], "total": len(mine)}

    @app.get("/orders/{order_id}")
    def get_order(order_id: int, user: dict = Depends(me)) -> dict:
        return view(order_for(user, order_id, "view"))

    @app.get("/orders/{order_id}/timeline")
    def timeline(order_id: int, user: dict = Depends(me)) -> list[dict]:
        order_for(user, order_id, "view")
        return store.all("SELECT event, from_state, to_state, actor, height, at, detail FROM events "
                         "WHERE order_id = ? ORDER BY id", order_id)

    @app.post("/orders/{order_id}/ship")
    def ship(order_id: int, body: Ship, user: dict = Depends(me)) -> dict:
        order = order_for(user, order_id, "ship")
        if body.courier not in couriers:
            raise Refused(422, "unknown_courier", f"couriers: {', '.join(sorted(couriers))}")
        try:
            return act(order, E.SHIP, user, f"{body.courier} {body.tracking}", courier=body.courier,
                       tracking=body.tracking)
        except sqlite3.IntegrityError:
            raise Refused(409, "tracking_taken", f"tracking number {body.tracking} is used already") from None

    @app.post("/orders/{order_id}/confirm")
    def confirm(order_id: int, user: dict = Depends(me)) -> dict:
        return act(order_for(user, order_id, "confirm"), E.BUYER_CONFIRM, user, "buyer confirmed receipt")

    @app.post("/orders/{order_id}/dispute")
    def dispute(order_id: int, body: Text, user: dict = Depends(me)) -> dict:
        order = order_for(user, order_id, "dispute")
        if order["disputed"] and order["state"] == S.HELD_IN_CUSTODY:
            raise Refused(409, "already_disputed", f"order {order_id} has a dispute already")
        answer = act(order, E.OPEN_DISPUTE, user, body.body[:200], disputed=1)
        message(order_id, body, user)
        return answer

    @app.post("/orders/{order_id}/messages", status_code=201)
    def message(order_id: int, body: Text, user: dict = Depends(me)) -> dict:
        order_for(user, order_id, "message")
        with store.tx() as db:
            db.execute("INSERT INTO messages (order_id, user_id, body, at) VALUES (?, ?, ?, datetime('now'))",
                       (order_id, user["id"], body.body))
        return {"order_id": order_id}

    @app.post("/orders/{order_id}/rule")
    def rule(order_id: int, body: Ruling, user: dict = Depends(me)) -> dict:
        order = order_for(user, order_id, "rule")
        if body.ruling != "split":
            event = E.RULE_RELEASE if body.ruling == "release" else E.RULE_REFUND
            return act(order, event, user, f"ruling: {body.ruling}")
        if body.buyer_share_pct is None:
            raise Refused(422, "share_needed", "a split needs buyer_share_pct between 0 and 100")
        share_ppm = round(body.buyer_share_pct * 10_000)
        _buyer, _seller, fee = split_shares(order["price_sats"], share_ppm, escrow.s["fee_ppm"])
        return act(order, E.RULE_SPLIT, user, f"ruling: split, buyer {body.buyer_share_pct}%",
                   buyer_share_ppm=share_ppm, fee_sats=fee)

    @app.get("/disputes")
    def disputes(user: dict = Depends(me)) -> list[dict]:
        cases = store.all("SELECT * FROM orders WHERE state IN (?, ?) ORDER BY id", S.DISPUTED, S.HELD_IN_CUSTODY)
        return [{"order_id": o["id"], "state": o["state"],
                 "messages": store.all("SELECT user_id, body, at FROM messages WHERE order_id = ?", o["id"])}
                for o in cases if relations(user, o) & {"arbiter", "admin"}]

    @app.post("/orders/{order_id}/payout-invoice")
    def payout_invoice(order_id: int, body: Invoice, user: dict = Depends(me)) -> dict:
        """The payee hands in the invoice its payout should pay (instead of binding a node)."""
        order = order_for(user, order_id, "payout_invoice")
        beneficiary = "seller" if order["seller_id"] == user["id"] else "buyer"
        due = {b: amount for b, _uid, amount in escrow.plan(order)}
        if beneficiary not in due:
            raise Refused(409, "nothing_due", f"order {order_id} owes its {beneficiary} no payout now")
        escrow.check_invoice(body.payment_request, due[beneficiary], user["node_pubkey"])
        with store.tx() as db:
            row = db.execute("SELECT status FROM payouts WHERE order_id = ? AND beneficiary = ?",
                             (order_id, beneficiary)).fetchone()
            if row and row["status"] in ("IN_FLIGHT", "SUCCEEDED"):
                raise Refused(409, "payout_started", f"the {beneficiary} payout is {row['status']} already")
            db.execute("INSERT INTO payouts (order_id, beneficiary, user_id, amount_sats) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (order_id, beneficiary) DO NOTHING",
                       (order_id, beneficiary, user["id"], due[beneficiary]))
            db.execute("UPDATE payouts SET payment_request = ?, payment_hash = NULL, status = 'PENDING', "
                       "retry_at = 0 WHERE order_id = ? AND beneficiary = ?",
                       (body.payment_request, order_id, beneficiary))
        return view(store.one("SELECT * FROM orders WHERE id = ?", order_id))

    # --- the courier webhook (escrow_protocol.webhook): signed, timestamped, once per event id
    @app.post("/couriers/{courier}/events")
    async def courier_event(courier: str, request: Request) -> dict:
        body = await request.body()
        secret = couriers.get(courier)
        ts, signature = request.headers.get(TIMESTAMP_HEADER, ""), request.headers.get(SIGNATURE_HEADER, "")
        if secret is None or not ts.isdigit() or abs(time.time() - int(ts)) > WEBHOOK_TOLERANCE_S:
            raise Refused(401, "bad_webhook", "unknown courier, or a missing or stale timestamp")
        if not hmac.compare_digest(sign_courier(secret, int(ts), body), signature):
            raise Refused(401, "bad_signature", "the signature does not match the body")
        try:
            event = json.loads(body)
            tracking, status, event_id = event["tracking_number"], event["status"], str(event["event_id"])
        except (ValueError, KeyError, TypeError):
            raise Refused(422, "bad_body", "event_id, tracking_number and status are required") from None
        if status not in COURIER_STATUSES:
            raise Refused(422, "bad_status", f"status is one of {', '.join(COURIER_STATUSES)}")
        return await run_in_threadpool(delivery, courier, tracking, status, event_id, event.get("address_hash"))

    def delivery(courier: str, tracking: str, status: str, event_id: str, where: str | None) -> dict:
        with store.tx() as db:
            order = db.execute("SELECT * FROM orders WHERE courier = ? AND tracking = ?", (courier, tracking)).fetchone()
            if order is None:
                raise Refused(404, "not_found", f"no order shipped with {courier} {tracking}")
            try:
                db.execute("INSERT INTO courier_events (courier, event_id) VALUES (?, ?)", (courier, event_id))
            except sqlite3.IntegrityError:
                raise Refused(409, "replayed", f"event {event_id} was processed already") from None
            if status != "delivered":
                return {"order_id": order["id"], "state": order["state"], "applied": False}
            if where != order["address_hash"]:
                raise Refused(422, "wrong_address", "the delivery address is not the buyer's")
            moved = escrow.move(db, order["id"], E.DELIVERED, f"courier:{courier}", f"delivered ({event_id})",
                                delivered=1)
        return {"order_id": order["id"], "state": moved["state"], "applied": True}

    return app
