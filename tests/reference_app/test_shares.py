"""Of several app processes, each worker carries out its own share of the orders
(``reference_app/shares.py``) and tells an order's owner what it committed for it. No nodes:
the sockets are real, the orders are rows, the escrow mode records what it is asked to do."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

from reference_app.shares import CREATED, IDS_PER_MESSAGE, NOTIFIED, OUTCOME, Shares
from reference_app.store.models import Listing, Order
from reference_app.worker import Worker

from .test_accounts import register


def _group() -> str:
    return secrets.token_hex(6)


class Heard:
    def __init__(self) -> None:
        self.messages: list[tuple[str, int]] = []
        self.arrived = threading.Condition()

    def __call__(self, what: str, order_id: int) -> None:
        with self.arrived:
            self.messages.append((what, order_id))
            self.arrived.notify_all()

    def wait_for(self, count: int) -> list[tuple[str, int]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.messages) >= count, timeout=5), self.messages
        return sorted(self.messages)


@contextmanager
def _listening(count: int) -> Iterator[tuple[list[Shares], list[Heard]]]:
    """``count`` processes' shares of one group, each listening."""
    group = _group()
    shares = [Shares(i, count, group) for i in range(count)]
    heard = [Heard() for _ in shares]
    for s, h in zip(shares, heard):
        s.listen(h)
    try:
        yield shares, heard
    finally:
        for s in shares:
            s.stop()


def test_each_order_has_one_owner_and_messages_reach_only_it():
    with _listening(3) as (shares, heard):
        assert [[s.mine(order_id) for s in shares].count(True) for order_id in range(30)] == [1] * 30
        for order_id in range(9):
            shares[0].tell(order_id, OUTCOME)  # its own (0, 3, 6) are not sent
        assert heard[1].wait_for(3) == [(OUTCOME, 1), (OUTCOME, 4), (OUTCOME, 7)]
        assert heard[2].wait_for(3) == [(OUTCOME, 2), (OUTCOME, 5), (OUTCOME, 8)]
        assert (shares[0].sent, shares[0].dropped, heard[0].messages) == (6, 0, [])


def test_a_message_to_an_owner_not_listening_is_dropped_and_stop_ends_the_listener():
    alone = Shares(0, 2, _group())
    alone.listen(Heard())
    alone.tell(1, OUTCOME)  # process 1 never started: its next tick would find the order
    assert (alone.sent, alone.dropped) == (0, 1)
    alone.stop()
    assert not any(t.name == "shares" for t in threading.enumerate())
    alone.tell(1, OUTCOME)  # stopped: nothing is sent
    assert (alone.sent, alone.dropped) == (0, 1)


def test_a_second_process_with_the_same_index_is_refused_by_name():
    group = _group()
    first, twin = Shares(1, 2, group), Shares(1, 2, group)
    first.listen(Heard())
    try:
        with pytest.raises(RuntimeError, match=f"app process 1 of 2 .process_group '{group}'. is already running"):
            twin.listen(Heard())
    finally:
        first.stop()


def test_one_process_owns_everything_and_several_need_a_group():
    assert all(Shares().mine(order_id) for order_id in range(10))
    with pytest.raises(ValueError, match="process_group"):
        Shares(0, 2)
    with pytest.raises(ValueError, match="process_index 2"):
        Shares(2, 2, "g")


class Recorder:
    """An escrow mode that records what the worker asks of it."""
    name = "recorder"

    def __init__(self) -> None:
        self.driven: list[int] = []
        self.created: list[int] = []
        self.done = threading.Semaphore(0)

    def drive(self, order_id: int, height: int | None) -> str:
        self.driven.append(order_id)
        self.done.release()
        return "RELEASE_PENDING"

    def on_created(self, order_id: int) -> None:
        self.created.append(order_id)

    def opened_here(self, order_id: int) -> bool:
        return True

    def stop(self) -> None:
        pass


def test_a_worker_drives_only_its_share_and_tells_the_owners_of_the_rest(api):
    buyer, seller = register(api, "buyer@example.com"), register(api, "seller@example.com", ["seller"])
    ctx, group = api.app.state.ctx, _group()
    with ctx.db.session() as session:
        listing = Listing(seller_id=seller["id"], title="lamp", category="home", price_sats=6_000, stock=99)
        session.add(listing)
        session.flush()
        rows = [Order(listing_id=listing.id, buyer_id=buyer["id"], seller_id=seller["id"], state="RELEASE_PENDING",
                      price_sats=6_000, fee_sats=60, escrow_mode="recorder") for _ in range(6)]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]
    mode, peer, heard = Recorder(), Shares(1, 2, group), Heard()
    ctx.modes, ctx.shares = {"recorder": mode}, Shares(0, 2, group)
    worker = Worker(ctx, interval_s=3600)
    peer.listen(heard)
    ctx.shares.listen(Heard())
    try:
        worker.drive_pending(100)
        mine = sorted(order_id for order_id in ids if order_id % 2 == 0)
        for _ in mine:
            assert mode.done.acquire(timeout=5)
        time.sleep(0.1)  # nothing else is driven
        assert sorted(mode.driven) == mine

        theirs = [order_id for order_id in ids if order_id % 2 == 1]
        worker._wake.clear()
        worker._committed({(theirs[0], "recorder")})  # the owner is told, this worker sleeps on
        assert heard.wait_for(1) == [(OUTCOME, theirs[0])] and not worker._wake.is_set()
        worker._committed({(theirs[1], "recorder"), (mine[0], "recorder")})  # its own: driven at once
        assert mode.done.acquire(timeout=5) and mode.driven[len(mine):] == [mine[0]]
        assert heard.wait_for(2)[1] == (OUTCOME, theirs[1]) and not worker._wake.is_set()

        worker._created(theirs[2])
        worker._created(mine[1])
        assert heard.wait_for(3)[0] == (CREATED, theirs[2]) and mode.created == [mine[1]]
    finally:
        peer.stop()
        worker.stop()


def test_notified_users_are_told_to_every_other_process_in_as_few_messages_as_fit():
    with _listening(3) as (shares, heard):
        users = set(range(100, 100 + IDS_PER_MESSAGE + 2))  # two messages to each of the others
        shares[1].tell_all(NOTIFIED, users)
        expected = sorted((NOTIFIED, u) for u in users)
        assert heard[0].wait_for(len(users)) == expected
        assert heard[2].wait_for(len(users)) == expected
        assert (shares[1].rings_sent, shares[1].rings_dropped, heard[1].messages) == (4, 0, [])
        assert (shares[1].sent, shares[1].dropped) == (0, 0)  # the owners' count stays apart
    alone = Shares()
    alone.tell_all(NOTIFIED, {1})  # one process: no one to tell
    assert (alone.rings_sent, alone.rings_dropped) == (0, 0)


def test_a_notification_committed_in_another_process_rings_the_streams_of_this_one(api):
    ctx, group = api.app.state.ctx, _group()
    ctx.modes, ctx.shares = {"recorder": Recorder()}, Shares(0, 2, group)
    worker = Worker(ctx, interval_s=3600)
    other = Shares(1, 2, group)  # the other process's side: its commit notified users 42 and 43
    other.listen(Heard())
    ctx.shares.listen(worker._heard)  # as the worker's start does

    async def stream_of_42() -> None:
        with ctx.bell.listening(42) as rung:
            await asyncio.to_thread(other.tell_all, NOTIFIED, {42, 43})
            await asyncio.wait_for(rung.wait(), 30)

    try:
        asyncio.run(stream_of_42())
        assert ctx.bell.rung == 1  # 43 has no stream here
    finally:
        other.stop()
        worker.stop()
