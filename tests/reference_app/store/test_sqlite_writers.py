"""SQLite writers: a request's BEGIN on the event loop (``Database.begin_now``) never waits.

It begins at once when the write lock is free, and otherwise reports that it would have to
wait, with nothing begun and nothing held, so the request begins in a thread instead."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from reference_app.store.db import WRITER_WAIT_S, Database


@pytest.fixture()
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'app.db'}")
    with database.session() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    yield database
    database.dispose()


def _busy_timeout(session) -> int:
    return session.connection().connection.dbapi_connection.execute("PRAGMA busy_timeout").fetchone()[0]


def test_begin_now_takes_the_write_lock_when_it_is_free(db, tmp_path):
    with db.session() as session:
        assert db.begin_now(session)
        # the write lock is this session's: another connection cannot begin a write
        other = sqlite3.connect(tmp_path / "app.db", timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
        session.execute(text("INSERT INTO t VALUES (1)"))
        assert _busy_timeout(session) == WRITER_WAIT_S * 1000
    with db.session(write=False) as session:
        assert session.scalar(text("SELECT count(*) FROM t")) == 1


def test_begin_now_declines_while_this_process_has_a_writer_and_holds_nothing(db):
    held, release = threading.Event(), threading.Event()

    def worker() -> None:
        with db.session() as session:
            session.execute(text("INSERT INTO t VALUES (2)"))
            held.set()
            release.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    assert held.wait(10)
    checked_out = db.engine.pool.checkedout()
    try:
        with db.session() as session:
            started = time.monotonic()
            assert not db.begin_now(session)
            assert time.monotonic() - started < 1  # declined, not waited
            assert not session.in_transaction()
            assert db.engine.pool.checkedout() == checked_out  # its connection went back
            release.set()
            session.connection()  # now begins, waiting for the worker's commit as a thread would
            session.execute(text("INSERT INTO t VALUES (3)"))
    finally:
        release.set()
        thread.join(10)
    with db.session(write=False) as session:
        assert session.scalar(text("SELECT count(*) FROM t")) == 2


def test_begin_now_declines_at_once_while_another_process_writes(db, tmp_path):
    other = sqlite3.connect(tmp_path / "app.db", timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with db.session() as session:
            started = time.monotonic()
            assert not db.begin_now(session)
            assert time.monotonic() - started < 1  # not SQLite's 30 s busy timeout
            assert not session.in_transaction()
    finally:
        other.execute("ROLLBACK")
        other.close()
    # the writer lock was given back and the busy timeout restored: the next writer proceeds
    with db.session() as session:
        assert db.begin_now(session)
        assert _busy_timeout(session) == WRITER_WAIT_S * 1000
        session.execute(text("INSERT INTO t VALUES (4)"))


def _checkpoints_done() -> None:
    for thread in threading.enumerate():
        if thread.name == "sqlite-checkpoint":
            thread.join()


def test_the_wal_is_checkpointed_in_a_thread_of_its_own_not_in_a_writer_s_commit(db, tmp_path, monkeypatch):
    """SQLite's automatic checkpoint ran inside the commit that crossed its threshold, syncing
    the database file while the writer held the write turn (on the event loop, for a listing
    write). The app's connections leave it off; every ``CHECKPOINT_EVERY`` writers' turns a
    passive checkpoint runs in a thread of its own, and every ``RESTART_EVERY``-th one finishes
    under the writers' turn, so the WAL starts over instead of growing without end."""
    from reference_app.store import db as store_db

    monkeypatch.setattr(store_db, "CHECKPOINT_EVERY", 10)
    monkeypatch.setattr(store_db, "RESTART_EVERY", 2)
    wal = tmp_path / "app.db-wal"
    ran_in: list[tuple[int, bool]] = []
    run, copy = store_db._Checkpointer.run, store_db._Checkpointer.copy
    monkeypatch.setattr(store_db._Checkpointer, "run",
                        lambda self, restart: ran_in.append((threading.get_ident(), restart)) or run(self, restart))
    # as under steady writes: a writer commits while the checkpoint without the turn copies
    meanwhile = sqlite3.connect(tmp_path / "app.db", isolation_level=None, check_same_thread=False, timeout=30)

    def copy_while_someone_writes(conn, final):
        if final:
            return copy(conn, final)
        meanwhile.execute("BEGIN IMMEDIATE")
        meanwhile.execute("INSERT INTO blobs (b) VALUES (?)", (b"y" * 4000,))
        copy(conn, final)
        meanwhile.execute("COMMIT")
    monkeypatch.setattr(store_db._Checkpointer, "copy", staticmethod(copy_while_someone_writes))
    for write in (True, False):
        with db.session(write=write) as session:
            assert session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    with db.session() as session:
        session.execute(text("CREATE TABLE blobs (b BLOB)"))

    def write(turns: int) -> None:
        for _ in range(turns):
            with db.session() as session:
                session.execute(text("INSERT INTO blobs (b) VALUES (:b)"), {"b": b"x" * 4000})
            _checkpoints_done()  # one at a time, so that each tenth turn starts one

    write(40)
    first = wal.stat().st_size
    write(400)
    assert threading.get_ident() not in {thread for thread, _ in ran_in}
    assert len(ran_in) >= 40 and sum(restart for _, restart in ran_in) >= 20
    # started over again and again: not ten times as long as after the first forty turns
    assert wal.stat().st_size < 2 * first
    meanwhile.close()


def test_a_checkpoint_that_cannot_start_its_thread_fails_no_commit_and_the_next_one_tries(db, monkeypatch):
    """At the interpreter's end no thread starts: the writer whose turn would have started the
    checkpoint still commits, and a later turn starts one again."""
    from reference_app.store import db as store_db

    monkeypatch.setattr(store_db, "CHECKPOINT_EVERY", 2)
    started = []
    real_start = threading.Thread.start

    def start(thread):
        if thread.name == "sqlite-checkpoint":
            started.append(thread)
            if len(started) == 1:
                raise RuntimeError("can't create new thread at interpreter shutdown")
        return real_start(thread)
    monkeypatch.setattr(threading.Thread, "start", start)
    for n in range(4):
        with db.session() as session:
            session.execute(text("INSERT INTO t (x) VALUES (:n)"), {"n": n})
    _checkpoints_done()
    with db.session(write=False) as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 4
    assert len(started) == 2  # the second try ran
