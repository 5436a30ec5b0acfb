"""The on-chain mode's watch looks up whether any on-chain order exists only when that can have
changed (no nodes: the mode's database is a stand-in that counts the look-ups).

The worker is woken many times a second by the other modes' commits, and each tick asked the
database whether any on-chain order existed: 2 % of the app's CPU in a Lightning-only
``bench escrow``. Now a tick looks again only after an order was created here or once a worker
interval, and never again once one exists."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from reference_app.services.modes import onchain_multisig
from reference_app.services.modes.onchain_multisig import OnchainMode


class Rows:
    def __init__(self, rows):
        self._rows = rows

    def first(self):
        return self._rows[0] if self._rows else None

    def all(self):
        return list(self._rows)


class Database:
    """Answers the look-up for any on-chain order, and counts it; no open escrow to watch."""

    def __init__(self) -> None:
        self.exists = False
        self.looks = 0
        self.watched = 0

    @contextmanager
    def session(self, write: bool = True):
        db = self

        class Session:
            def connection(self):
                return SimpleNamespace(execute=self.look)

            def look(self, statement):
                assert statement is onchain_multisig._ANY_ORDER
                db.looks += 1
                return Rows([(1,)] if db.exists else [])

            def execute(self, statement):  # the open escrows: none
                db.watched += 1
                return Rows([])
        yield Session()


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """The mode's monotonic clock, moved by the test."""
    now = [100.0]
    monkeypatch.setattr(onchain_multisig, "time", SimpleNamespace(monotonic=lambda: now[0]), raising=False)
    return now


@pytest.fixture
def db() -> Database:
    return Database()


@pytest.fixture
def mode(db, clock) -> OnchainMode:
    """The mode, after its first tick (which looks: nothing is known yet)."""
    settings = SimpleNamespace(onchain_confirmations=1, onchain_fee_rate_sat_vb=1.0, worker_interval_s=0.2)
    mode = OnchainMode(SimpleNamespace(chain=None, settings=settings, db=db))
    mode.watch(1)
    assert db.looks == 1
    return mode


def test_woken_ticks_within_an_interval_do_not_look_again(mode, db, clock):
    for _ in range(50):  # woken by other modes' commits, within one interval
        mode.watch(1)
    assert db.looks == 1
    clock[0] += 0.2  # an interval on: a clock tick looks again (an order another process created)
    mode.watch(1)
    assert (db.looks, db.watched) == (2, 0)


def test_an_order_created_here_is_looked_for_at_the_next_tick_and_then_always_watched(mode, db):
    db.exists = True
    mode.on_created(7)  # the worker hands it a new on-chain order
    mode.watch(1)
    assert (db.looks, db.watched) == (2, 1)
    for _ in range(3):  # one exists: every tick watches, and none asks again
        mode.watch(1)
    assert (db.looks, db.watched) == (2, 4)
