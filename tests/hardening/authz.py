"""Running the authorization matrix: each operation of the OpenAPI document, sent
as each role, against an object of the sender's own and one of someone else's.

A cell is ``allow`` when the request got past authentication and the permission
check (any answer but 401 or 403, or the 404 that hides another user's object),
``deny`` otherwise. Another party's order is such a 404: the very answer an order id
that was never issued gets, so nobody can count the orders. Requests carry an empty JSON body, so an allowed write stops at
validation (422) and changes nothing; the few writes without a body act on
objects made for that one cell (a fresh listing, webhook or victim account).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from tests.hardening.conftest import Personas

ROLES = ("anonymous", "buyer", "seller", "courier", "arbiter", "admin")
ALLOW, DENY = "allow", "deny"
DENIED = (401, 403)
# Who owns which kind of object: these roles get an own and an other variant.
OWNERS = {"order_id": ("buyer", "seller"), "listing_id": ("seller",),
          "endpoint_id": ("buyer", "seller", "courier", "arbiter", "admin")}
# Writes without a body that would change the sender's session: sent last, in this order.
LAST = ("POST /auth/logout-all", "POST /me/erase")
QUERY = {"/notifications/stream": {"max_events": 1}}  # ends after one event (setup gives everyone one)
# Routes whose permission check runs after body validation get a valid, harmless body.
BODIES = {"POST /orders/{order_id}/rating": {"stars": 5},
          "POST /orders/{order_id}/messages": {"body": "matrix says hello"},
          "POST /auctions/{auction_id}/bids": {"amount_sats": 1}}
# Where a 404 is how the app hides an object that exists from a non-owner.
HIDING_404 = ("DELETE /me/webhooks/{endpoint_id}",)
# An order hidden from a stranger answers exactly what a nonexistent one does.
HIDDEN_ORDER = re.compile(r"order \d+ does not exist")


def variants(op: str, role: str) -> tuple[str, ...]:
    params = re.findall(r"{(\w+)}", op)
    owned = [p for p in params if p in OWNERS and role in OWNERS[p]]
    return ("own", "other") if owned else ("any",)


def expected(row: dict, role: str, variant: str) -> str:
    value = row.get(role, row.get("*"))
    if isinstance(value, tuple):
        return value[0] if variant == "own" else value[1]
    return value


@dataclass
class Objects:
    """The objects cells point at; ``fresh`` ones are made for each cell."""

    personas: Personas
    orders: dict[str, int] = field(default_factory=dict)
    auction: int = 0

    def setup(self) -> None:
        p = self.personas
        for variant, (buyer, seller) in (("own", ("buyer", "seller")), ("other", ("other_buyer", "other_seller"))):
            listing = p[seller].list_item(f"matrix {variant}", 6_000)
            self.orders[variant] = p[buyer].buy(listing["id"])["id"]
        listing = p["seller"].call("POST", "/listings", json={
            "title": "matrix auction", "description": "an auctioned item", "category": "electronics",
            "price_sats": 6_000, "stock": 2, "escrow_mode": "custodial"}, expect=201)
        self.auction = p["seller"].call("POST", "/auctions", json={"listing_id": listing["id"],
                                                                  "start_price_sats": 5_000}, expect=201)["id"]
        self.notify_everyone()

    def notify_everyone(self) -> None:
        """One notification each, so an allowed read of the SSE stream (max_events=1) ends."""
        from reference_app.store.models import Notification

        with self.personas.market.ctx.db.session() as session:
            for party in self.personas.parties.values():
                session.add(Notification(user_id=party.id, kind="matrix.hello", message="hello"))

    def owner(self, role: str, variant: str, param: str) -> str:
        if variant == "own":
            return role
        if param == "listing_id":
            return "other_seller"
        return "other_buyer"

    def value(self, param: str, role: str, variant: str) -> int | str:
        p = self.personas
        if param == "order_id":
            return self.orders["own" if variant == "own" else "other"]
        if param == "listing_id":
            seller = p[self.owner(role, variant, param)] if variant == "own" else p["other_seller"]
            return seller.list_item("matrix cell", 6_000)["id"]
        if param == "endpoint_id":
            name = role if variant == "own" else "other_buyer"
            p.token(name)
            owner = p[name]
            for hook in owner.call("GET", "/me/webhooks"):  # at most 5 each: one at a time
                owner.call("DELETE", f"/me/webhooks/{hook['id']}", expect=204)
            return owner.call("POST", "/me/webhooks", json={"url": "http://127.0.0.1:9/hook"}, expect=201)["id"]
        if param == "auction_id":
            return self.auction
        if param == "courier":
            return "fastship"  # courier webhooks authenticate by HMAC signature, not by role
        if param == "user_id":
            from harness.actors import Party

            return Party.register(p.market.http, "victim", ["buyer"]).id
        raise KeyError(f"no object for path parameter {param}")


def operations(document: dict) -> list[str]:
    ops = [f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
           if method in ("get", "post", "put", "patch", "delete")]
    return sorted(ops, key=lambda op: (op in LAST, LAST.index(op) if op in LAST else 0))


def send(personas: Personas, objects: Objects, op: str, role: str, variant: str):
    method, template = op.split(" ", 1)
    path = re.sub(r"{(\w+)}", lambda m: str(objects.value(m.group(1), role, variant)), template)
    headers = {} if role == "anonymous" else {"Authorization": f"Bearer {personas.token(role)}"}
    kwargs: dict = {"params": QUERY.get(template, {}), "headers": headers}
    if method != "GET":
        kwargs["json"] = BODIES.get(op, {})
    return personas.market.http.request(method, path, **kwargs)


def hidden_order(op: str, response) -> bool:
    """A 404 that hides an order that exists: the nonexistent order's body, not another 404
    (an order without an on-chain escrow, or with no PSBT awaiting, is a 404 of its own)."""
    if "{order_id}" not in op or response.status_code != 404:
        return False
    body = response.json()
    return body.get("code") == "not_found" and bool(HIDDEN_ORDER.fullmatch(body.get("detail", "")))


def verdict(op: str, response) -> str:
    status = response.status_code
    if status in DENIED:
        return DENY
    if status == 404 and (op in HIDING_404 or hidden_order(op, response)):
        return DENY  # the object exists: the 404 hides it from this sender
    return ALLOW


def run(personas: Personas, objects: Objects, ops: list[str],
        on_cell: Callable[[str, str, str, int], None] | None = None) -> dict[tuple[str, str, str], str]:
    cells = {}
    for op in ops:
        roles = ROLES if op not in LAST else ROLES[:-1] + ("admin",)
        for role in roles:
            for variant in variants(op, role):
                response = send(personas, objects, op, role, variant)
                cells[(op, role, variant)] = verdict(op, response)
                if on_cell:
                    on_cell(op, role, variant, response.status_code)
    return cells
