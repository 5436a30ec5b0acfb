"""What the database layer does on every statement, on SQLite and on PostgreSQL: count it
(the benchmarks' queries per escrow), refuse a write from a read session, and nothing more;
and the hot one-row reads that skip SQLAlchemy's execution (``store.db.Prepared``).

Both are done in the dialect (``store.db._watch_statements``), not by connection event
listeners: one listener of any kind makes SQLAlchemy dispatch its execution events on every
statement, which cost a one-row read a sixth of its CPU."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time

import pytest
from sqlalchemy import Boolean, Column, Integer, String, bindparam, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from reference_app.store.db import WROTE_ALONE, Prepared, PreparedUpdate, ReaderWrote, WroteAlone, update_of, update_rows
from reference_app.store.models import UtcDateTime, utcnow


@pytest.fixture()
def counted(scratch_table):
    return scratch_table("counted_rows", Column("id", Integer, primary_key=True), Column("n", Integer))


def test_every_statement_is_counted_once_and_begin_and_commit_are_not(counted):
    db, table = counted
    before = db.queries
    with db.session() as session:
        session.execute(insert(table).values(id=1, n=1))
        session.execute(insert(table), [{"id": 2, "n": 2}, {"id": 3, "n": 3}])  # one executemany
        session.execute(update(table).where(table.c.id == 1).values(n=10))
    with db.session(write=False) as session:
        assert session.execute(select(table.c.n).order_by(table.c.id)).scalars().all() == [10, 2, 3]
    assert db.queries - before == 4


def test_a_read_session_refuses_a_write_and_leaves_the_row_alone(counted):
    db, table = counted
    with db.session() as session:
        session.execute(insert(table).values(id=1, n=1))
    with pytest.raises(ReaderWrote, match="DELETE"):
        with db.session(write=False) as session:
            session.execute(table.delete())
    with db.session(write=False) as session:
        assert session.execute(select(table.c.n)).scalars().all() == [1]
    with db.session() as session:  # a writer of the same database may
        session.execute(table.delete())


def test_a_read_session_ends_without_a_commit_and_refuses_changed_objects(counted, monkeypatch):
    """A reader is closed, not committed (the ORM's commit was a sixth of a one-row read). An
    object it changed would have been flushed by a commit, and refused: it is refused still."""
    from sqlalchemy.orm import Session

    db, table = counted
    with db.session() as session:
        session.execute(insert(table).values(id=1, n=1))
    commits = []
    real_commit = Session.commit
    monkeypatch.setattr(Session, "commit", lambda self: commits.append(self) or real_commit(self))
    with db.session(write=False) as session:
        assert session.execute(select(table.c.n)).scalars().all() == [1]
    assert commits == []
    with db.session() as session:
        session.execute(update(table).values(n=2))
    assert len(commits) == 1  # a writer commits

    class Row:
        pass
    from sqlalchemy.orm import registry
    registry().map_imperatively(Row, table)
    with db.session(write=False) as session:
        session.get(Row, 1).n = 2  # the value it has: nothing a flush would write
    with pytest.raises(ReaderWrote, match="changed objects"):
        with db.session(write=False) as session:
            session.get(Row, 1).n = 99
    with db.session(write=False) as session:
        assert session.execute(select(table.c.n)).scalars().all() == [2]


def test_no_connection_event_listener_is_left_on_the_engines(counted):
    db, _table = counted
    assert not db.engine._has_events
    if db.single_writer:
        assert not db.read_engine._has_events
    # PostgreSQL's readers share the writers' pool through execution_options(isolation_level=
    # "AUTOCOMMIT"), for which SQLAlchemy itself listens to engine_connect: not one of ours.


def test_a_prepared_read_gives_what_sqlalchemy_gives_and_is_counted(scratch_table):
    db, table = scratch_table("prepared_rows", Column("id", Integer, primary_key=True), Column("name", String(20)),
                              Column("on", Boolean), Column("at", UtcDateTime()))
    now = utcnow()
    with db.session() as session:
        session.execute(insert(table), [{"id": 1, "name": "a", "on": True, "at": now},
                                        {"id": 2, "name": "b", "on": False, "at": None}])
    by_id = select(table.c.id, table.c.name, table.c.on, table.c.at).where(table.c.id == bindparam("id"))
    flagged = select(table.c.id).where(table.c.on.is_(True), table.c.name != "zz").order_by(table.c.id)
    for write in (False, True):
        with db.session(write=write) as session:
            for key in (1, 2, 3):
                expected = session.execute(by_id, {"id": key}).first()
                before = db.queries
                got = Prepared(by_id).first(session, {"id": key})
                assert db.queries - before == 1
                assert got == (None if expected is None else tuple(expected))
            _id, _name, on, at = Prepared(by_id).first(session, {"id": 1})
            assert on is True and at == now and at.tzinfo is not None  # as the column types read them
            assert Prepared(flagged).rows(session, {}) == [(1,)]  # a literal of the statement's own


def test_a_reader_that_has_not_begun_reads_on_a_connection_it_gives_back_at_once(scratch_table):
    """No session transaction for a Prepared read of a fresh reader: the rows are the same, the
    pooled connection is back in the pool after the statement, and on PostgreSQL it comes back
    as the pool lends it (no autocommit left on, no transaction open)."""
    db, table = scratch_table("alone_rows", Column("id", Integer, primary_key=True), Column("on", Boolean))
    with db.session() as session:
        session.execute(insert(table), [{"id": 1, "on": True}, {"id": 2, "on": False}])
    read = Prepared(select(table.c.id, table.c.on).order_by(table.c.id))
    pool = db.read_engine.pool
    with db.session(write=False) as session:
        lent = pool.checkedout()
        before = db.queries
        assert read.rows(session, {}) == [(1, True), (2, False)]
        assert db.queries - before == 1
        assert not session.in_transaction() and pool.checkedout() == lent
        # once the session has begun (an ORM statement), the read joins its transaction
        assert session.execute(select(table.c.id).where(table.c.id == 1)).scalar() == 1
        assert read.rows(session, {}) == [(1, True), (2, False)]
    with db.session() as writer:  # a writer's reads stay in its transaction, even before its first statement
        assert read.rows(writer, {}) == [(1, True), (2, False)] and writer.in_transaction()
    if not db.single_writer:
        raw = db.read_engine.raw_connection()
        try:
            assert raw.dbapi_connection.autocommit is False
            assert raw.dbapi_connection.info.transaction_status == 0  # IDLE
        finally:
            raw.close()


def test_a_read_without_a_session_is_a_fresh_reader_s_and_refuses_an_insert(scratch_table, monkeypatch):
    """``Prepared.read`` and ``aread`` give what a read session that has not begun gives, counted
    once, without making a session, the connection given back at once (on an event loop, the one
    its thread keeps; awaited on PostgreSQL). An INSERT is refused and writes nothing."""
    db, table = scratch_table("sessionless_rows", Column("id", Integer, primary_key=True), Column("on", Boolean))
    with db.session() as session:
        session.execute(insert(table), [{"id": 1, "on": True}, {"id": 2, "on": False}])
    read = Prepared(select(table.c.id, table.c.on).order_by(table.c.id))
    pool = db.read_engine.pool
    lent = pool.checkedout()

    def no_session():
        raise AssertionError("a session was made")

    monkeypatch.setattr(db, "_readers", no_session)
    monkeypatch.setattr(db, "_writers", no_session)
    before = db.queries
    assert read.read(db, {}) == [(1, True), (2, False)]
    assert db.queries - before == 1 and pool.checkedout() == lent

    async def on_the_loop():
        first = await read.aread(db, {})  # (on SQLite the loop thread's kept connection is made here)
        counted = db.queries
        second = await read.aread(db, {})
        return first, second, db.queries - counted

    first, second, counted = asyncio.run(on_the_loop())
    assert first == second == [(1, True), (2, False)] and counted == 1
    assert pool.checkedout() <= lent + 1  # at most the loop thread's one, kept (Database.loop_connection)
    for attempt in (lambda: Prepared(insert(table)).read(db, {"id": 3, "on": True}),
                    lambda: asyncio.run(Prepared(insert(table)).aread(db, {"id": 3, "on": True}))):
        with pytest.raises(ReaderWrote):
            attempt()
    monkeypatch.undo()
    with db.session(write=False) as session:
        assert session.execute(select(table.c.id).order_by(table.c.id)).scalars().all() == [1, 2]


def test_a_statement_whose_parameters_expand_is_refused_and_a_moment_is_converted(scratch_table):
    db, table = scratch_table("refused_rows", Column("id", Integer, primary_key=True), Column("at", UtcDateTime()))
    then = utcnow()
    with db.session() as session:
        session.execute(insert(table), [{"id": 1, "at": then}])
    with db.session(write=False) as session:
        with pytest.raises(TypeError, match="Prepared"):
            Prepared(select(table.c.id).where(table.c.id.in_(bindparam("ids", expanding=True)))).rows(
                session, {"ids": [1]})
        # a moment is written as text on SQLite: converted as SQLAlchemy converts it
        before = Prepared(select(table.c.id).where(table.c.at < bindparam("t", type_=UtcDateTime())))
        assert before.rows(session, {"t": utcnow()}) == [(1,)]
        assert before.rows(session, {"t": then}) == []
        # one parameter in two places is converted once (twice, its text was refused as no moment)
        around = Prepared(select(table.c.id).where(table.c.at <= bindparam("t"), table.c.at >= bindparam("t")))
        assert around.rows(session, {"t": then}) == [(1,)]


def test_a_prepared_insert_stores_and_returns_what_sqlalchemy_would(scratch_table):
    """Every column but the autoincrement key: Python defaults taken where a value is not given
    (a callable called for each column, as SQLAlchemy calls it), values converted as SQLAlchemy
    converts them, RETURNING read back through the columns' types; counted once, in the writer's
    transaction (rolled back with it)."""
    db, table = scratch_table("inserted_rows", Column("id", Integer, primary_key=True), Column("name", String(20)),
                              Column("on", Boolean, default=True), Column("made", UtcDateTime(), default=utcnow),
                              Column("seen", UtcDateTime(), default=utcnow))
    add = Prepared(insert(table).returning(table.c.id, table.c.name, table.c.on, table.c.made))
    with db.session() as session:
        before, start = db.queries, utcnow()
        first = add.rows(session, {"name": "a"})
        assert db.queries - before == 1 and session.in_transaction()
        (key, name, on, made), = first
        assert name == "a" and on is True and start <= made <= utcnow() and made.tzinfo is not None
        (key2, *_), = add.rows(session, {"name": "b", "on": False, "made": start})
        assert key2 == key + 1
    with db.session(write=False) as session:
        stored = session.execute(select(table).order_by(table.c.id)).all()
    assert [(r.id, r.name, r.on, r.made) for r in stored] == [(key, "a", True, made), (key2, "b", False, start)]
    assert stored[0].seen >= stored[0].made  # each default called on its own, as SQLAlchemy does
    try:
        with db.session() as session:
            add.rows(session, {"name": "c"})
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    with db.session(write=False) as session:
        assert session.execute(select(table.c.name).order_by(table.c.id)).scalars().all() == ["a", "b"]


def test_a_prepared_insert_names_what_is_missing_and_a_reader_refuses_it(scratch_table):
    db, table = scratch_table("strict_rows", Column("id", Integer, primary_key=True), Column("name", String(20)),
                              Column("size", Integer))
    add = Prepared(insert(table).returning(table.c.id))
    with db.session() as session:
        with pytest.raises(TypeError, match="no value for size"):
            add.rows(session, {"name": "a"})
        with pytest.raises(TypeError, match="no value for name; no column colour"):
            add.rows(session, {"size": 1, "colour": "red"})
    for reads in (add.rows, add.arows):
        with db.session(write=False) as session:
            with pytest.raises(ReaderWrote, match="INSERT"):
                result = reads(session, {"name": "a", "size": 1})
                if asyncio.iscoroutine(result):
                    asyncio.run(result)
    with db.session(write=False) as session:
        assert session.execute(select(table.c.id)).all() == []
    with db.session() as session:  # without RETURNING: no rows
        assert Prepared(insert(table)).rows(session, {"name": "a", "size": 1}) == []
    with db.session(write=False) as session:
        assert session.execute(select(table.c.name, table.c.size)).all() == [("a", 1)]


def test_a_prepared_update_is_a_counted_compare_and_swap_in_the_writer_s_transaction(scratch_table):
    """``update_rows`` says how many rows it changed (what a compare-and-swap needs), converts its
    values as SQLAlchemy would (a moment is text on SQLite), is one counted statement in the
    writer's transaction (rolled back with it), keeps one statement for each set of columns, and
    a read session refuses it."""
    db, table = scratch_table("updated_rows", Column("id", Integer, primary_key=True), Column("state", String(20)),
                              Column("version", Integer), Column("at", UtcDateTime()))
    with db.session() as session:
        session.execute(insert(table), [{"id": 1, "state": "A", "version": 1}, {"id": 2, "state": "A", "version": 1}])
    then = utcnow()
    with db.session() as session:
        before = db.queries
        assert update_rows(session, table, {"id": 1, "state": "A", "version": 1},
                           {"state": "B", "version": 2, "at": then}) == 1
        assert db.queries - before == 1 and session.in_transaction()
        # the same guard again matches nothing: the row moved on
        assert update_rows(session, table, {"id": 1, "state": "A", "version": 1},
                           {"state": "C", "version": 2, "at": then}) == 0
        assert update_rows(session, table, {"state": "A"}, {"version": 5}) == 1  # row 2 only
    assert update_of(table, ("state", "version", "at"), ("id", "state", "version")) is \
        update_of(table, ("state", "version", "at"), ("id", "state", "version"))
    with db.session(write=False) as session:
        rows = session.execute(select(table).order_by(table.c.id)).all()
    assert [tuple(r) for r in rows] == [(1, "B", 2, then), (2, "A", 5, None)]
    try:
        with db.session() as session:
            update_rows(session, table, {"id": 2}, {"state": "Z"})
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    with db.session(write=False) as session:
        assert session.execute(select(table.c.state).where(table.c.id == 2)).scalar() == "A"
        with pytest.raises(ReaderWrote, match="UPDATE"):
            update_rows(session, table, {"id": 2}, {"state": "Z"})
        with pytest.raises(TypeError, match="run"):
            update_of(table, ("state",), ("id",)).rows(session, {})
    with pytest.raises(TypeError, match="UPDATE"):
        PreparedUpdate(select(table.c.id))


def test_a_prepared_insert_of_several_rows_is_one_counted_statement_in_the_writer_s_transaction(scratch_table):
    """``insert_many``: each row with its own defaults and converted values, one executemany
    counted once, rolled back with its transaction; refused with RETURNING and in a reader."""
    db, table = scratch_table("many_rows", Column("id", Integer, primary_key=True), Column("name", String(20)),
                              Column("on", Boolean, default=True), Column("made", UtcDateTime(), default=utcnow))
    add = Prepared(insert(table))
    start = utcnow()
    with db.session() as session:
        before = db.queries
        add.insert_many(session, [{"name": "a"}, {"name": "b", "on": False, "made": start}])
        assert db.queries - before == 1 and session.in_transaction()
    with db.session(write=False) as session:
        stored = session.execute(select(table.c.name, table.c.on, table.c.made).order_by(table.c.id)).all()
    assert [(r.name, r.on) for r in stored] == [("a", True), ("b", False)]
    assert start <= stored[0].made <= utcnow() and stored[1].made == start
    try:
        with db.session() as session:
            add.insert_many(session, [{"name": "c"}, {"name": "d"}])
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    with pytest.raises(TypeError, match="without RETURNING"):
        with db.session() as session:
            Prepared(insert(table).returning(table.c.id)).insert_many(session, [{"name": "e"}])
    with pytest.raises(ReaderWrote, match="INSERT"):
        with db.session(write=False) as session:
            add.insert_many(session, [{"name": "f"}])
    with db.session(write=False) as session:
        assert session.execute(select(table.c.name).order_by(table.c.id)).scalars().all() == ["a", "b"]


def test_an_awaited_insert_of_a_writer_that_has_not_begun_commits_alone(scratch_table):
    """``Prepared.arows`` of an INSERT in a writer that has not begun is its own transaction,
    committed when it returns: another session sees the row at once, and a later error of the
    request keeps it. A transaction the session begins after it is refused at the session's end
    and rolled back, and so is a second such INSERT. On PostgreSQL it runs on one of the loop's
    connections (none of the pool's); on SQLite on the writer connection the loop's thread keeps,
    in this process's write turn, given up once it returns."""
    db, table = scratch_table("alone_rows", Column("id", Integer, primary_key=True), Column("name", String(20)))
    add = Prepared(insert(table).returning(table.c.id))
    pool = db.engine.pool

    def names() -> list[str]:
        with db.session(write=False) as session:
            return session.execute(select(table.c.name).order_by(table.c.id)).scalars().all()

    async def scenario():
        held = pool.checkedout()
        with pytest.raises(RuntimeError, match="after the insert"):
            with db.session() as session:
                before = db.queries
                (key,), = await add.arows(session, {"name": "a"})
                assert db.queries - before == 1
                assert not session.in_transaction()
                # SQLite: the loop thread's writer connection, kept; PostgreSQL: none of the pool's
                assert pool.checkedout() == held + db.single_writer
                if db.single_writer:
                    assert not db.writer_turn.lock.locked()  # the turn is free again
                assert names() == ["a"]
                raise RuntimeError("the request fails after the insert")
        assert names() == ["a"]
        with pytest.raises(WroteAlone):
            with db.session() as session:
                await add.arows(session, {"name": "b"})
                session.execute(insert(table).values(name="c"))  # a second unit of work in one session
        assert names() == ["a", "b"]
        with db.session() as session:
            await add.arows(session, {"name": "d"})
            with pytest.raises(WroteAlone, match="second INSERT"):
                await add.arows(session, {"name": "e"})
        assert names() == ["a", "b", "d"]
        if db.single_writer:  # the kept connection waits for no other process's lock: busy timeout off
            assert db._loop_held.writer.fairy.dbapi_connection.execute("PRAGMA busy_timeout").fetchone() == (0,)

    asyncio.run(scenario())
    if db.single_writer:  # given back (its thread ended, or dispose), it waits as any pooled connection does
        kept = db._loop_held.writer
        raw = kept.fairy.dbapi_connection
        kept.give_back()
        assert raw.execute("PRAGMA busy_timeout").fetchone() == (30_000,)


def test_an_awaited_sqlite_insert_that_would_wait_begins_in_a_thread(scratch_table):
    """On SQLite, an awaited INSERT never waits on the event loop. If this process's write turn is
    taken (a worker's transaction), or another process holds the database's write lock, the
    writer begins in a worker thread, which waits for it, and the INSERT runs in that
    transaction: rolled back with it on an error, and the loop free meanwhile."""
    db, table = scratch_table("waiting_rows", Column("id", Integer, primary_key=True), Column("name", String(20)))
    if not db.single_writer:
        pytest.skip("SQLite: PostgreSQL's writers do not queue for one lock")
    add = Prepared(insert(table).returning(table.c.id))

    def names() -> list[str]:
        with db.session(write=False) as session:
            return session.execute(select(table.c.name).order_by(table.c.id)).scalars().all()

    def hold_turn(began: threading.Event, seconds: float) -> None:
        with db.session() as other:  # this process's writer: holds the turn until it commits
            other.execute(insert(table).values(name="worker"))
            began.set()
            time.sleep(seconds)

    def hold_file_lock(began: threading.Event, seconds: float) -> None:
        other = sqlite3.connect(db.engine.url.database, isolation_level=None)  # as another process would
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute(f"INSERT INTO {table.name} (name) VALUES ('elsewhere')")
            began.set()
            time.sleep(seconds)
            other.execute("COMMIT")
        finally:
            other.close()

    async def scenario(holder, expected: list[str]):
        began = threading.Event()
        thread = threading.Thread(target=holder, args=(began, 0.5))
        thread.start()
        began.wait()
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1
        ticker = asyncio.create_task(tick())
        try:
            with pytest.raises(RuntimeError, match="after the insert"):
                with db.session() as session:
                    await add.arows(session, {"name": "mine"})
                    assert session.in_transaction() and WROTE_ALONE not in session.info
                    raise RuntimeError("the request fails after the insert")
        finally:
            ticker.cancel()
        thread.join()
        assert ticks >= 3  # the loop ran while the writer waited in its thread (blocked: none)
        assert names() == expected  # the holder's row; the failed request's went with its transaction
        assert not db.writer_turn.lock.locked()

    asyncio.run(scenario(hold_turn, ["worker"]))
    asyncio.run(scenario(hold_file_lock, ["worker", "elsewhere"]))


def test_a_prepared_read_reports_a_driver_error_as_sqlalchemy_does(scratch_table):
    """Wrapped in SQLAlchemy's DBAPIError, naming the statement, as the rest of the app sees them."""
    db, table = scratch_table("dropped_rows", Column("id", Integer, primary_key=True))
    read = Prepared(select(table.c.id).where(table.c.id == bindparam("id")))
    table.drop(db.engine)
    try:
        with db.session(write=False) as session:
            with pytest.raises(DBAPIError, match="dropped_rows") as caught:
                read.first(session, {"id": 1})
            assert not caught.value.connection_invalidated
    finally:
        table.create(db.engine)  # for the fixture's own drop


def test_a_prepared_read_on_a_dead_postgresql_connection_invalidates_it(scratch_table):
    """The server ends the connection under a read: the read fails as a disconnect, and the pool
    does not hand that connection to the next session."""
    db, table = scratch_table("dead_rows", Column("id", Integer, primary_key=True))
    if db.single_writer:
        pytest.skip("PostgreSQL: SQLite has no server to end a connection")
    read = Prepared(select(table.c.id).where(table.c.id == bindparam("id")))
    with pytest.raises(DBAPIError) as caught:
        with db.session(write=False) as session:
            pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with db.session() as other:
                other.connection().exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
            read.first(session, {"id": 1})
    assert caught.value.connection_invalidated
    with db.session(write=False) as session:  # a live connection, not the dead one
        assert read.first(session, {"id": 1}) is None


def _on_a_loop(fn):
    """``fn()`` called from a coroutine: on a thread running an event loop, as the API's reads are."""
    async def run():
        return fn()
    return asyncio.run(run())


def test_reads_on_an_event_loop_use_the_one_connection_its_thread_keeps(scratch_table):
    """The loop runs each read to its end, so its thread keeps one reader connection for them
    all (``Database.loop_connection``) instead of a checkout and check-in for each; it is given
    back when the thread ends and at ``dispose``. A thread with no loop still gives its
    connection back at once."""
    db, table = scratch_table("loop_rows", Column("id", Integer, primary_key=True))
    with db.session() as session:
        session.execute(insert(table), [{"id": 1}, {"id": 2}])
    read = Prepared(select(table.c.id).order_by(table.c.id))
    pool = db.read_engine.pool
    lent = pool.checkedout()

    def twice():
        seen = []
        for _ in range(2):
            with db.session(write=False) as session:
                before = db.queries
                assert read.rows(session, {}) == [(1,), (2,)]
                assert db.queries - before == 1 and not session.in_transaction()
            held = db.loop_connection()
            seen.append(held.fairy.dbapi_connection)
            if not db.single_writer:  # autocommit, as the reader engine's: nothing left open
                assert held.fairy.dbapi_connection.autocommit is True
                assert held.fairy.dbapi_connection.info.transaction_status == 0  # IDLE
        return seen, pool.checkedout()

    seen, out_during = _on_a_loop(twice)
    assert seen[0] is seen[1] and out_during == lent + 1  # one connection, kept between reads

    # another thread with its own loop keeps its own; when it ends, it is given back
    elsewhere: list = []
    thread = threading.Thread(target=lambda: elsewhere.append(_on_a_loop(twice)))
    thread.start()
    thread.join()
    (other, other_out), = elsewhere
    assert other[0] is not seen[0] and other_out == lent + 2
    del other, elsewhere, thread
    gc.collect()
    assert pool.checkedout() == lent + 1

    db.dispose()  # gives back the main thread's too
    assert pool.checkedout() == lent
    with db.session(write=False) as session:  # no loop here: checked out and given back
        assert read.rows(session, {}) == [(1,), (2,)] and pool.checkedout() == lent
    if not db.single_writer:  # a connection given back by its loop thread is as the pool lends it
        raw = db.read_engine.raw_connection()
        try:
            assert raw.dbapi_connection.autocommit is False
        finally:
            raw.close()


def test_a_loop_connection_the_server_ended_is_replaced(scratch_table, monkeypatch):
    """A read on the loop's kept connection that the server ended fails as a disconnect, once;
    the next read has a new connection. One that sat idle is checked before use, as the pool
    checks its own, so then not even one read fails."""
    from reference_app.store import db as store_db

    db, table = scratch_table("loop_dead_rows", Column("id", Integer, primary_key=True))
    if db.single_writer:
        pytest.skip("PostgreSQL: SQLite has no server to end a connection")
    read = Prepared(select(table.c.id).where(table.c.id == bindparam("id")))

    def backend() -> int:
        held = db.loop_connection()
        return held.fairy.dbapi_connection.info.backend_pid

    def end(pid: int) -> None:
        with db.session() as other:
            other.connection().exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")

    def scenario():
        with db.session(write=False) as session:
            assert read.first(session, {"id": 1}) is None
        first = backend()
        end(first)
        with pytest.raises(DBAPIError) as caught:
            with db.session(write=False) as session:
                read.first(session, {"id": 1})
        assert caught.value.connection_invalidated
        with db.session(write=False) as session:
            assert read.first(session, {"id": 1}) is None
        second = backend()
        assert second != first
        monkeypatch.setattr(store_db, "IDLE_PING_S", 0.0)
        end(second)
        with db.session(write=False) as session:  # checked before use: replaced, no error
            assert read.first(session, {"id": 1}) is None
        assert backend() != second

    _on_a_loop(scenario)


def test_postgresql_sessions_are_in_utc_beside_the_url_s_own_options(settings):
    """In the zone UTC psycopg reads a ``timestamptz`` with ``timezone.utc``; in a named zone
    (a server's default ``Etc/UTC`` too) it converts each value through zoneinfo. Options the
    URL gives are kept."""
    from datetime import timezone

    from sqlalchemy.engine import make_url

    from reference_app.store.db import Database

    if settings.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL: SQLite has no session time zone")
    url = make_url(settings.database_url).update_query_dict({"options": "-c statement_timeout=4321"})
    db = Database(url.render_as_string(hide_password=False))
    try:
        for write in (True, False):
            with db.session(write=write) as session:
                conn = session.connection()
                assert conn.exec_driver_sql("SHOW TimeZone").scalar() == "UTC"
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "4321ms"
                assert conn.exec_driver_sql("SELECT now()").scalar().tzinfo is timezone.utc

        async def awaited():  # the connections of awaited reads (Prepared.arows) too
            _connection, cursor = await db.awaited_connections().take()
            shown = []
            for setting in ("TimeZone", "statement_timeout"):
                await cursor.execute(f"SHOW {setting}")
                shown.append((await cursor.fetchone())[0])
            return shown
        assert asyncio.run(awaited()) == ["UTC", "4321ms"]
    finally:
        db.dispose()


def _sleep_read():
    from sqlalchemy import Float, func

    return Prepared(select(func.pg_sleep(bindparam("s", type_=Float))))


def test_awaited_reads_leave_the_loop_free_and_keep_their_connections(scratch_table):
    """On PostgreSQL ``Prepared.arows`` awaits the server on one of the loop's own connections
    (psycopg's AsyncConnection): another coroutine runs while a read waits, a second read reuses
    the first one's connection, and no pooled connection is taken; so does a writer's read before
    the writer has begun. Once it has, it reads in the writer's transaction. On SQLite it is
    ``rows``, with no connection of its own; a writer's read before it has begun is a reader's,
    on the loop thread's reader connection."""
    db, table = scratch_table("awaited_rows", Column("id", Integer, primary_key=True))
    with db.session() as session:
        session.execute(insert(table), [{"id": 1}, {"id": 2}])
    read = Prepared(select(table.c.id).order_by(table.c.id))
    pool = db.read_engine.pool

    async def scenario():
        lent = pool.checkedout()
        with db.session(write=False) as session:
            before = db.queries
            assert await read.arows(session, {}) == [(1,), (2,)]
            assert db.queries - before == 1 and not session.in_transaction()
        with db.session() as session:  # a writer that has begun reads in its transaction
            session.execute(select(table.c.id).limit(1))
            assert await read.afirst(session, {}) == (1,) and session.in_transaction()
        with db.session() as session:  # before it has: outside it, beginning nothing
            assert await read.afirst(session, {}) == (1,) and not session.in_transaction()
        if db.single_writer:
            assert db._awaited == {}
            return
        readers = db.awaited_connections()
        (first, _cursor, _since), = readers.idle
        with db.session(write=False) as session:
            assert await read.afirst(session, {}) == (1,)
        (second, _cursor, _since), = readers.idle
        assert second is first and pool.checkedout() == lent
        assert first.autocommit and first.info.transaction_status == 0  # IDLE: nothing left open

        order = []

        async def slow():
            with db.session(write=False) as session:
                await _sleep_read().arows(session, {"s": 0.3})
            order.append("read")
        task = asyncio.create_task(slow())
        await asyncio.sleep(0.05)  # the read has begun, and waits for the server
        order.append("loop")
        await task
        assert order == ["loop", "read"]  # a blocking read would have held the loop to its end
        return first

    first = asyncio.run(scenario())
    if first is not None:
        asyncio.run(scenario())  # a new loop: the closed loop's connection is closed, a new one made
        assert first.closed and len(db._awaited) == 1
        db.dispose()
        assert db._awaited == {}


def test_awaited_reads_hold_at_most_their_slots_and_replace_failed_connections(scratch_table, monkeypatch):
    """At most ``AWAITED_CONNECTIONS`` connections a loop; a read past them waits for one. A read
    cancelled while it waits for the server, or one on a connection the server ended, leaves
    that connection closed and its slot free; the failed read is reported as a disconnect, once.
    One that sat idle is checked before use, so then no read fails."""
    from reference_app.store import db as store_db

    db, _table = scratch_table("awaited_slot_rows", Column("id", Integer, primary_key=True))
    if db.single_writer:
        pytest.skip("PostgreSQL: SQLite's reads are this process's CPU, with nothing to await")
    monkeypatch.setattr(store_db, "AWAITED_CONNECTIONS", 2)
    sleep = _sleep_read()

    async def read(seconds: float) -> None:
        with db.session(write=False) as session:
            await sleep.arows(session, {"s": seconds})

    def end(pid: int) -> None:
        with db.session() as other:
            other.connection().exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")

    async def scenario():
        readers = db.awaited_connections()
        await asyncio.gather(*(read(0.1) for _ in range(5)))
        assert len(readers.open) == 2 and len(readers.idle) == 2

        task = asyncio.create_task(read(5))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(readers.open) == 1  # the cancelled read's connection is closed
        await asyncio.gather(read(0), read(0))  # and its slot is free

        connection = readers.idle[-1][0]  # the next read takes it: the last given back
        end(connection.info.backend_pid)
        with pytest.raises(DBAPIError) as caught:
            await read(0)
        assert caught.value.connection_invalidated and connection.closed and connection not in readers.open
        await read(0)  # on the other one, alive
        kept = set(readers.open)
        with pytest.raises(DBAPIError) as caught:  # an error that is no disconnect: reported as such,
            with db.session(write=False) as session:  # and its connection is kept
                await Prepared(select(text("no_such_column"))).arows(session, {})
        assert not caught.value.connection_invalidated and readers.open == kept

        monkeypatch.setattr(store_db, "IDLE_PING_S", 0.0)
        for connection, _cursor, _since in list(readers.idle):
            end(connection.info.backend_pid)
        await asyncio.gather(read(0), read(0))  # checked before use: replaced, no error
        assert not any(connection.closed for connection in readers.open)

    asyncio.run(scenario())
