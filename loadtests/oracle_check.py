"""After a load run: bring every order it created to an end, then let the oracle judge them.

Locust stops mid-trade, so a run leaves orders open: unpaid, paid but not
shipped, shipped, delivered, disputed. Time alone must end each of them (I15),
so the drain lets time pass the way the rules count it: open disputes get a
ruling, then blocks are mined in steps until every order is terminal. Then the
scenarios' oracle checks the same invariants it checks after a scenario, on
node truth, for every order of the run, with each trader's own notifications
and node payments (the traders' logins are in ``parties.jsonl``, written by
the Locust users), and each trader's notification stream against its inbox
(what the streams sent is in ``streams.jsonl``, written as the users stop).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from regtest_cluster.waiting import WaitTimeout, wait_for
from harness import evidence, oracle
from harness.actors import ApiError, Party
from harness.driver import Streamed
from harness.oracle import TERMINAL
from harness.world import World

PAGE = 100
WAITING_ON_NODES = {"RELEASE_PENDING", "REFUND_PENDING", "SPLIT_PENDING"}  # no block needed to end these


class OracleSkipped(RuntimeError):
    """The run cannot be judged (e.g. remote workers' traders are not known here)."""


def all_orders(world: World) -> list[dict]:
    orders, offset = [], 0
    while True:
        page = world.market.orders(world.admin, offset, PAGE)
        orders += page["items"]
        offset += PAGE
        if offset >= page["total"]:
            return orders


def parties(world: World, path: Path) -> list[Party]:
    """Each recorded trader, logged in again, with the node it pays from or is paid to."""
    out = []
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        party = Party(world.market, rec["email"].split("@")[0], rec["roles"], world.cluster.node(rec["node"]),
                      email=rec["email"], password=rec["password"])
        party.login()
        out.append(party)
    return out


def streams(path: Path, traders: list[Party]) -> dict[int, Streamed]:
    """What each trader's notification stream sent while the run lasted, by user id (I18). A
    stream whose inbox could not be read as it closed (``upto`` null) is not judged."""
    ids = {p.email: p.id for p in traders}
    out = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["upto"] is None or rec["email"] not in ids:
            continue
        out[ids[rec["email"]]] = Streamed(rec["after"], {nid: (kind, oid) for nid, kind, oid in rec["delivered"]},
                                          rec["upto"])
    return out


def drain(world: World, max_blocks: int, step: int = 6, progress=lambda _m: None) -> dict:
    """Rule open disputes, then mine in steps until every order is terminal (or ``max_blocks``)."""
    arbiter = world.arbiter("drain-arbiter")
    ruled = 0
    for dispute in world.market.disputes(arbiter):
        try:
            arbiter.rule(dispute["order_id"], "release")
            ruled += 1
        except ApiError:
            pass  # ruled meanwhile by the run's own arbiter, or already timed out
    mined = 0
    open_now = [o for o in all_orders(world) if o["state"] not in TERMINAL]

    def still_open() -> list[dict]:  # no order is made meanwhile: look again only at the open ones
        return [o for o in (world.market.order(world.admin, o["id"]) for o in open_now)
                if o["state"] not in TERMINAL]

    while open_now:
        if all(o["state"] in WAITING_ON_NODES for o in open_now) or mined >= max_blocks:
            try:  # no block helps these: the worker finishes them against the nodes
                wait_for(lambda: not still_open(), timeout=60, what="pending payouts and cancels to finish")
            except WaitTimeout:
                pass
            open_now = still_open()
            break
        world.mine(step)
        mined += step
        before = len(open_now)
        try:
            wait_for(lambda: len(still_open()) < before, timeout=3, what="the worker to act on the new blocks")
        except WaitTimeout:
            pass  # this step ended no order; the next one may
        open_now = still_open()
        progress(f"drain: {len(open_now)} orders open after {mined} blocks")
    return {"disputes_ruled": ruled, "blocks_mined": mined, "still_open": len(open_now),
            "open_states": sorted({o["state"] for o in open_now}),
            "open_orders": [{"id": o["id"], "state": o["state"]} for o in open_now[:100]]}


def check(world: World, run_dir: Path, settings: dict, balances_before: dict[str, int], started_at: float,
          max_blocks: int, progress=lambda _m: None) -> dict:
    """Drain, gather node truth and run every invariant over all orders of the run."""
    t0 = time.time()
    progress("oracle: ending the orders left open")
    drained = drain(world, max_blocks, progress=progress)
    traders = parties(world, run_dir / "parties.jsonl")
    orders = all_orders(world)
    known = {p.id for p in traders}
    strangers = {o["buyer_id"] for o in orders} | {o["seller_id"] for o in orders}
    if strangers - known:
        raise OracleSkipped(f"{len(strangers - known)} traders' logins are not in {run_dir / 'parties.jsonl'} "
                            "(remote workers keep theirs)")
    cx = oracle.Context(settings={**world.market.rules(), "_start": started_at},
                        user_nodes={p.id: p.node.name for p in traders})
    progress(f"oracle: gathering node truth for {len(orders)} orders")
    try:
        ev = evidence.gather(world, [o["id"] for o in orders], traders, balances_before, started_at)
    except evidence.HtlcsInFlight as exc:  # not judged: say what it waited on, and let the reports be written
        return {"passed": False, "error": str(exc), "in_flight": exc.htlcs, "orders_checked": 0,
                "traders": len(traders), "invariants": [], "violations": [], "final_states": {},
                **drained, "seconds": round(time.time() - t0, 1)}
    ev.streamed.update(streams(run_dir / "streams.jsonl", traders))
    found = oracle.check(ev, cx)
    violations = [{"invariant": v.invariant, "order_id": v.order_id, "message": v.message}
                  for vs in found.values() for v in vs]
    states: dict[str, int] = {}
    for oe in ev.orders.values():
        states[oe.order["state"]] = states.get(oe.order["state"], 0) + 1
    return {"orders_checked": len(ev.orders), "traders": len(traders), "streams_judged": len(ev.streamed),
            "notifications_streamed": sum(len(s.owed(ev.notifications.get(uid, []))) for uid, s in ev.streamed.items()),
            "invariants": sorted(found),
            "violations": violations, "passed": not violations, "final_states": states,
            "balance_deltas": {n: ev.balances_after[n] - balances_before[n] for n in ev.balances_after},
            **drained, "seconds": round(time.time() - t0, 1)}
