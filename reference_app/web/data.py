"""What the dashboard shows, gathered from the nodes, the database and the runs folder.

Cluster: every node in the cluster state file (or just the hub), read over LND
REST, and the app's bitcoind. Reports: the newest files under ``*/reports/``
(and one level deeper) in the runs folder (``Settings.runs_dir``, from
``ESCROWLAB_RUNS``, else ./runs) and in the app's data dir.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from regtest_cluster.nodes.lnd import LndError, LndRest

from ..context import AppContext
from ..store.models import Order, OrderEvent
from ..store.models_market import Auction

REPORT_SUFFIXES = {".html", ".json", ".png", ".svg", ".xml", ".csv", ".txt", ".md"}
IMAGES = {".png", ".svg"}
REPORT_GLOBS = ("*/reports/*", "*/*/reports/*", "reports/*")
MAX_REPORTS = 24


def _node(name: str, role: str, client: LndRest) -> dict:
    out: dict = {"name": name, "role": role}
    try:
        info = client.getinfo()
        channels = client.listchannels()
        wallet = client.walletbalance()
    except (LndError, OSError) as exc:
        return {**out, "running": False, "error": str(exc)[:200]}
    return {**out, "running": True, "alias": info.get("alias", ""), "pubkey": info.get("identity_pubkey", ""),
            "height": int(info.get("block_height", 0)), "synced": bool(info.get("synced_to_chain")),
            "onchain_sats": int(wallet.get("confirmed_balance", 0)),
            "local_sats": sum(int(c.get("local_balance", 0)) for c in channels),
            "remote_sats": sum(int(c.get("remote_balance", 0)) for c in channels),
            "channels": len(channels), "active_channels": sum(1 for c in channels if c.get("active"))}


def cluster(ctx: AppContext) -> dict:
    state_file = ctx.settings.cluster_state_file
    nodes = []
    if state_file and Path(state_file).is_file():
        state = json.loads(Path(state_file).read_text())
        for name, n in state["nodes"].items():
            client = LndRest(name, n["rest_url"], Path(n["macaroon"]).read_bytes().hex(), Path(n["tls_cert"]))
            try:
                nodes.append(_node(name, n.get("role", ""), client))
            finally:
                client.close()
    elif ctx.hub is not None:
        nodes.append(_node(ctx.settings.hub_node, "hub", ctx.hub))
    chain: dict = {"running": False}
    if ctx.chain is not None:
        try:
            info = ctx.chain.getblockchaininfo()
            chain = {"running": True, "height": info["blocks"], "best_block": info["bestblockhash"]}
        except Exception as exc:  # noqa: BLE001 - a dead bitcoind is shown, not raised
            chain = {"running": False, "error": str(exc)[:200]}
    return {"nodes": nodes, "bitcoind": chain, "state_file": str(state_file or "")}


def orders(session: Session, limit: int = 50) -> list[dict]:
    rows = session.scalars(select(Order).order_by(Order.id.desc()).limit(limit)).all()
    events: dict[int, list] = {}
    for e in session.scalars(select(OrderEvent).where(OrderEvent.order_id.in_([o.id for o in rows]))
                             .order_by(OrderEvent.id)):
        events.setdefault(e.order_id, []).append(e)
    return [{"order": o, "events": events.get(o.id, [])} for o in rows]


def auctions(session: Session) -> list[Auction]:
    return list(session.scalars(select(Auction).order_by(Auction.id.desc()).limit(20)))


def report_roots(ctx: AppContext) -> list[Path]:
    roots = [Path(ctx.settings.runs_dir or Path.cwd() / "runs"), Path(ctx.settings.data_dir)]
    seen, out = set(), []
    for root in roots:
        resolved = root.resolve()
        if resolved not in seen and resolved.is_dir():
            seen.add(resolved)
            out.append(resolved)
    return out


def reports(ctx: AppContext) -> list[dict]:
    found = []
    for index, root in enumerate(report_roots(ctx)):
        for pattern in REPORT_GLOBS:
            for path in root.glob(pattern):
                if path.is_file() and path.suffix in REPORT_SUFFIXES:
                    found.append((path.stat().st_mtime, index, root, path))
    found.sort(key=lambda f: f[0], reverse=True)
    return [{"root": index, "path": str(path.relative_to(root)), "name": path.name,
             "run": path.relative_to(root).parts[0], "image": path.suffix in IMAGES,
             "modified": datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}
            for mtime, index, root, path in found[:MAX_REPORTS]]


def report_file(ctx: AppContext, root: int, relative: str) -> Path | None:
    """The report file, only if it lies inside a report root (no path traversal)."""
    roots = report_roots(ctx)
    if not 0 <= root < len(roots):
        return None
    path = (roots[root] / relative).resolve()
    if not path.is_relative_to(roots[root]) or not path.is_file() or path.suffix not in REPORT_SUFFIXES:
        return None
    return path
