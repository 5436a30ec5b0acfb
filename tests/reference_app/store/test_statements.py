"""What the database layer does on every statement, on SQLite and on PostgreSQL: count it
(the benchmarks' queries per escrow), refuse a write from a read session, and nothing more.

Both are done in the dialect (``store.db._watch_statements``), not by connection event
listeners: one listener of any kind makes SQLAlchemy dispatch its execution events on every
statement, which cost a one-row read a sixth of its CPU."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, insert, select, update

from reference_app.store.db import ReaderWrote


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


def test_no_connection_event_listener_is_left_on_the_engines(counted):
    db, _table = counted
    assert not db.engine._has_events
    if db.single_writer:
        assert not db.read_engine._has_events
    # PostgreSQL's readers share the writers' pool through execution_options(isolation_level=
    # "AUTOCOMMIT"), for which SQLAlchemy itself listens to engine_connect: not one of ours.
