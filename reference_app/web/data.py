"""What the dashboard shows, read from node truth and the app's database.

Nodes: every node in the cluster's state file (``Settings.cluster_state_file``, the
file ``escrowlab cluster up --detach`` writes), read over LND REST with the node
credentials named there; an app configured with only its hub sees the hub, its
channels and peers, which is what a marketplace operator sees of the network.
Chain height: the app's bitcoind, else the hub's view of the tip.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from escrow_protocol.states import TERMINAL
from regtest_cluster.nodes.lnd import LndError, LndRest

from ..context import AppContext
from ..services import transitions
from ..store.models import Order, OrderEvent, User
from ..store.models_market import Auction

MAX_HTLC_SLOTS = 483          # BOLT 2's cap on HTLCs one side of a channel may hold
NODE_TIMEOUT_S = 5.0          # a paused node must not hang the page


def _int(value) -> int:
    return int(value or 0)


def _channel(owner: str, c: dict) -> dict:
    htlcs = c.get("pending_htlcs") or []
    local, remote = _int(c.get("local_balance")), _int(c.get("remote_balance"))
    limit = _int((c.get("local_constraints") or {}).get("max_accepted_htlcs")) or MAX_HTLC_SLOTS
    return {"chan_id": str(c.get("chan_id", "")), "owner": owner, "remote_pubkey": c.get("remote_pubkey", ""),
            "capacity": _int(c.get("capacity")), "local": local, "remote": remote,
            "local_pct": round(100 * local / (local + remote), 1) if local + remote else 0.0,
            "active": bool(c.get("active")), "htlcs": len(htlcs),
            "incoming": sum(1 for h in htlcs if h.get("incoming")),
            "outgoing": sum(1 for h in htlcs if not h.get("incoming")),
            "held_sats": sum(_int(h.get("amount")) for h in htlcs if h.get("incoming")),
            "slots": limit}


def _node(name: str, role: str, client: LndRest) -> dict:
    out: dict = {"name": name, "role": role, "channels": []}
    try:
        info = client.getinfo()
        channels = client.listchannels()
        wallet = client.walletbalance()
        # the app's own hub client (gRPC) may not list peers; the REST clients here do
        peers = client.listpeers() if hasattr(client, "listpeers") else None
    except (LndError, OSError) as exc:
        return {**out, "running": False, "error": str(exc)[:200]}
    rows = [_channel(name, c) for c in channels]
    return {**out, "running": True, "alias": info.get("alias", ""), "pubkey": info.get("identity_pubkey", ""),
            "height": _int(info.get("block_height")), "synced": bool(info.get("synced_to_chain")),
            "onchain_sats": _int(wallet.get("confirmed_balance")),
            "local_sats": sum(c["local"] for c in rows), "remote_sats": sum(c["remote"] for c in rows),
            "active_channels": sum(1 for c in rows if c["active"]),
            "peers": None if peers is None else len(peers),
            "htlcs": sum(c["htlcs"] for c in rows), "channels": rows}


def _state(ctx: AppContext) -> dict | None:
    path = ctx.settings.cluster_state_file
    if path and Path(path).is_file():
        return json.loads(Path(path).read_text())
    return None


def _targets(ctx: AppContext) -> list[tuple[str, str, dict | None]]:
    """(name, role, REST credentials) of each node the app knows; credentials None means
    "ask ``ctx.hub``" (an app given only its hub client, as tests build it)."""
    state = _state(ctx)
    if state is not None:
        return [(name, n.get("role", ""), n) for name, n in state["nodes"].items()]
    s = ctx.settings
    if s.lnd_rest_url and s.lnd_macaroon_path and s.lnd_tls_cert_path:
        return [(s.hub_node, "hub", {"rest_url": s.lnd_rest_url, "macaroon": str(s.lnd_macaroon_path),
                                     "tls_cert": str(s.lnd_tls_cert_path)})]
    return [(s.hub_node, "hub", None)] if ctx.hub is not None else []


def _read(ctx: AppContext, name: str, role: str, creds: dict | None) -> dict:
    """One node's truth over its own short-lived REST client (the app's hub client may be
    another transport; the dashboard only needs these four read calls)."""
    if creds is None:
        return _node(name, role, ctx.hub)
    try:
        client = LndRest(name, creds["rest_url"], Path(creds["macaroon"]).read_bytes().hex(),
                         Path(creds["tls_cert"]), timeout=NODE_TIMEOUT_S)
    except OSError as exc:
        return {"name": name, "role": role, "channels": [], "running": False, "error": str(exc)[:200]}
    try:
        return _node(name, role, client)
    finally:
        client.close()


def nodes(ctx: AppContext) -> list[dict]:
    """Every node the app knows, as it answers now (a node that does not answer is shown down)."""
    return [_read(ctx, name, role, creds) for name, role, creds in _targets(ctx)]


def hub(ctx: AppContext) -> dict | None:
    for name, role, creds in _targets(ctx):
        if name == ctx.settings.hub_node:
            return _read(ctx, name, role or "hub", creds)
    return None


def names_by_pubkey(ctx: AppContext) -> dict[str, str]:
    """Node names from the state file, without asking the nodes."""
    state = _state(ctx)
    return {n.get("pubkey", ""): name for name, n in (state or {}).get("nodes", {}).items() if n.get("pubkey")}


def chain(ctx: AppContext, known: list[dict]) -> dict:
    if ctx.chain is not None:
        try:
            info = ctx.chain.getblockchaininfo()
            return {"running": True, "height": int(info["blocks"]), "source": "bitcoind"}
        except Exception as exc:  # noqa: BLE001 - a dead bitcoind is shown, not raised
            return {"running": False, "error": str(exc)[:200]}
    heights = [n["height"] for n in known if n.get("running")]
    return {"running": bool(heights), "height": max(heights) if heights else None, "source": "lnd"}


def network(ctx: AppContext) -> dict:
    """Nodes and each channel once (seen from the first node that has it), with its
    liquidity split and pending HTLCs; peers outside the known nodes by pubkey."""
    known = nodes(ctx)
    names = {n["pubkey"]: n["name"] for n in known if n.get("pubkey")}
    seen, channels = set(), []
    for n in known:
        for c in n["channels"]:
            if c["chan_id"] in seen:
                continue
            seen.add(c["chan_id"])
            channels.append({**c, "peer": names.get(c["remote_pubkey"], c["remote_pubkey"][:12] + "…"),
                             "peer_known": c["remote_pubkey"] in names})
    return {"nodes": known, "channels": channels, "chain": chain(ctx, known), "graph": graph(known, channels)}


def graph(known: list[dict], channels: list[dict], size: int = 420) -> dict:
    """Positions for the server-drawn SVG: the hub in the middle (as a marketplace operator
    thinks of it), the other nodes on a circle around it; each channel a line split where
    its liquidity splits, the owner's local part drawn from the owner's end."""
    peers = sorted({c["peer"] for c in channels if not c["peer_known"]})
    names = [n["name"] for n in known] + peers
    hubs = [n["name"] for n in known if n.get("role") == "hub"]
    centre = hubs[0] if len(hubs) == 1 and len(names) > 2 else None
    ring = [name for name in names if name != centre]
    r, mid = size / 2 - 50, size / 2
    pos = {name: (round(mid + r * math.cos(2 * math.pi * i / len(ring) - math.pi / 2), 1),
                  round(mid + r * math.sin(2 * math.pi * i / len(ring) - math.pi / 2), 1))
           for i, name in enumerate(ring)}
    if centre:
        pos[centre] = (mid, mid)
    lines = []
    for c in channels:
        (x1, y1), (x2, y2) = pos[c["owner"]], pos[c["peer"]]
        f = c["local_pct"] / 100
        lines.append({"chan_id": c["chan_id"], "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                      "xm": round(x1 + (x2 - x1) * f, 1), "ym": round(y1 + (y2 - y1) * f, 1),
                      "xh": round((x1 + x2) / 2, 1), "yh": round((y1 + y2) / 2, 1),
                      "htlcs": c["htlcs"], "active": c["active"]})
    roles = {n["name"]: (n.get("role", ""), n.get("running", False)) for n in known}
    points = [{"name": name, "x": x, "y": y, "role": roles.get(name, ("peer", True))[0],
               "up": roles.get(name, ("peer", True))[1]} for name, (x, y) in pos.items()]
    return {"size": size, "nodes": points, "lines": lines}


# --- escrow -------------------------------------------------------------------------------------

def _parties(session: Session, orders) -> dict[int, User]:
    ids = {o.buyer_id for o in orders} | {o.seller_id for o in orders}
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}


def _party(users: dict[int, User], user_id: int | None) -> str:
    user = users.get(user_id) if user_id is not None else None
    return f"{user.display_name} (#{user.id})" if user else "-"


def open_orders(ctx: AppContext, session: Session, tip: int | None, limit: int = 200) -> list[dict]:
    """Orders not yet final, soonest deadline first: parties, state, mode, amount, and the
    next height that decides something (the state's deadline, or the guardian's lock horizon)."""
    terminal = [s.value for s in TERMINAL]
    rows = list(session.scalars(select(Order).where(Order.state.not_in(terminal)).limit(limit)))
    users = _parties(session, rows)
    entered: dict[int, int] = {}
    for e in session.scalars(select(OrderEvent).where(OrderEvent.order_id.in_([o.id for o in rows]))
                             .order_by(OrderEvent.id)):
        if e.height is not None:
            entered[e.order_id] = e.height   # the last one: when the order entered its state
    out = []
    for o in rows:
        horizon = transitions.lock_horizon(ctx.settings, o.hold.htlc_expiry_height if o.hold else None)
        candidates = [(h, what) for h, what in ((o.deadline_height, "deadline"), (horizon, "lock horizon"))
                      if h is not None]
        next_height, what = min(candidates) if candidates else (None, "")
        since = entered.get(o.id)
        pct = None
        if next_height is not None and tip is not None and since is not None and next_height > since:
            pct = round(min(100.0, max(0.0, 100 * (tip - since) / (next_height - since))), 1)
        out.append({"id": o.id, "state": o.state, "mode": o.escrow_mode, "amount": o.price_sats,
                    "buyer": _party(users, o.buyer_id), "seller": _party(users, o.seller_id),
                    "courier": o.courier or "-", "tracking": o.tracking_number or "",
                    "next_height": next_height, "next_what": what, "since_height": since,
                    "blocks_left": None if next_height is None or tip is None else next_height - tip,
                    "elapsed_pct": pct, "deadline_at": o.deadline_at,
                    "htlc_expiry": o.hold.htlc_expiry_height if o.hold else None,
                    "hold_state": o.hold.lnd_state if o.hold else None})
    out.sort(key=lambda r: (r["next_height"] is None, r["next_height"] or 0, r["id"]))
    return out


def escrow(ctx: AppContext, session: Session) -> dict:
    """Held HTLCs on each of the hub's channels against its slots, and the open orders
    against the tip."""
    node = hub(ctx)
    tip = chain(ctx, [node] if node else [])
    known = names_by_pubkey(ctx)
    channels = []
    if node and node.get("running"):
        for c in node["channels"]:
            channels.append({**c, "peer": known.get(c["remote_pubkey"], c["remote_pubkey"][:12] + "…"),
                             "slots_pct": round(100 * c["incoming"] / c["slots"], 1) if c["slots"] else 0.0})
    orders = open_orders(ctx, session, tip.get("height"))
    return {"hub": node, "tip": tip, "channels": channels, "orders": orders,
            "held_htlcs": sum(c["incoming"] for c in channels),
            "held_sats": sum(c["held_sats"] for c in channels)}


# --- overview -----------------------------------------------------------------------------------

def recent_orders(session: Session, limit: int = 30) -> list[dict]:
    rows = session.scalars(select(Order).order_by(Order.id.desc()).limit(limit)).all()
    users = _parties(session, rows)
    events: dict[int, list] = {}
    for e in session.scalars(select(OrderEvent).where(OrderEvent.order_id.in_([o.id for o in rows]))
                             .order_by(OrderEvent.id)):
        events.setdefault(e.order_id, []).append(e)
    return [{"order": o, "buyer": _party(users, o.buyer_id), "seller": _party(users, o.seller_id),
             "events": events.get(o.id, [])} for o in rows]


def auctions(session: Session) -> list[Auction]:
    return list(session.scalars(select(Auction).order_by(Auction.id.desc()).limit(20)))
