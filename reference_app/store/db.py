"""Engine and sessions.

SQLite runs in WAL mode. Write sessions start with BEGIN IMMEDIATE, so
concurrent writers queue (busy_timeout) instead of failing when a read lock
would need upgrading; read sessions use deferred transactions, so readers
never wait for writers. (A writer whose one write is an awaited INSERT
commits it alone: ``Prepared.arows``.) A unit of work must not open a second
write session while its own is open: pass the session down instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
import weakref
import zlib
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Hashable, Iterable, Iterator

import anyio
from sqlalchemy import Engine, Insert, Select, Update, bindparam, create_engine, event, update
from sqlalchemy.engine.interfaces import Dialect, ExecutionContext
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection


log = logging.getLogger("escrowlab.store")

POOL_SIZE, POOL_OVERFLOW = 20, 40
# Requests hold at most this many sessions at once (api/deps.get_session queues the rest
# on the event loop); one connection of each pool is the event loop's own, for its reads outside
# a transaction (Database.loop_connection), and the rest is the worker's, so a read that checks
# out its connection on the event loop never waits for one.
REQUEST_SESSIONS = POOL_SIZE + POOL_OVERFLOW - 1 - 16
WRITER_WAIT_S = 30  # as SQLite's busy_timeout
# Set by Database.begin_now: a writer's BEGIN that must not wait (it runs on the event loop).
_NO_WAIT: ContextVar[bool] = ContextVar("escrowlab_sqlite_no_wait", default=False)


class WriterBusy(sqlite3.OperationalError):
    """A BEGIN that must not wait found the write lock taken (by this process or another)."""


# Writers' turns between two checkpoints of SQLite's WAL (_Checkpointer); SQLite's own automatic
# checkpoint came every thousand pages, about a hundred listing writes. Every RESTART_EVERY-th
# checkpoint holds the writers' turn, so that the WAL can start over.
CHECKPOINT_EVERY = 100
RESTART_EVERY = 10


class _Checkpointer:
    """SQLite's WAL copied back into the database file off the writers' path: every
    ``CHECKPOINT_EVERY`` writers' turns, a passive checkpoint in a thread of its own.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, and with
    ``synchronous=NORMAL`` a checkpoint syncs the database file: such a commit took 5-15 ms
    here against 0.05 for the others. It ran while the writer held this process's write turn,
    and a listing write commits on the event loop (``routing.database_only``), so every
    request waited. A passive checkpoint waits for no reader or writer, and writers append to
    the WAL while it runs.

    Frames appended during a checkpoint are left for the next one, so under steady writes the
    WAL would never be wholly copied, and never start over: it would grow without end. Every
    ``RESTART_EVERY``-th checkpoint therefore copies the rest while holding the writers' turn
    (a few milliseconds, mostly the sync), and the next writer starts the WAL over. A request
    on the event loop that finds the turn taken begins in a thread (``Database.begin_now``), so
    the loop never waits for it. Writers of another process may keep a WAL from starting over
    that time; a later checkpoint catches up."""

    def __init__(self, path: str | None, writer: threading.Lock) -> None:
        self.path = path
        self.writer = writer
        self.turns = 0
        self.checkpoints = 0
        self.running = threading.Lock()

    def turn_ended(self) -> None:
        self.turns += 1  # called while the writer's turn is still held: one caller at a time
        if self.turns % CHECKPOINT_EVERY == 0 and self.running.acquire(blocking=False):
            self.checkpoints += 1
            restart = self.checkpoints % RESTART_EVERY == 0
            try:
                threading.Thread(target=self.run, args=(restart,), name="sqlite-checkpoint", daemon=True).start()
            except RuntimeError:  # no new threads (the interpreter is ending): the writer's commit stands
                self.running.release()

    def run(self, restart: bool) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                self.copy(conn, final=False)
                if restart and self.writer.acquire(timeout=WRITER_WAIT_S):
                    try:
                        self.copy(conn, final=True)
                    finally:
                        self.writer.release()
            finally:
                conn.close()  # not the last connection: the pools' keep the WAL open
        except sqlite3.Error as exc:  # a database removed under a test, a disk gone: the next one tries again
            log.warning("SQLite checkpoint of %s failed: %s", self.path, exc)
        finally:
            self.running.release()

    @staticmethod
    def copy(conn: sqlite3.Connection, final: bool) -> None:
        """One passive checkpoint; ``final`` while holding the writers' turn, so it copies all."""
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _sqlite_engine(url: str, immediate: bool) -> tuple[Engine, "_WriterTurn | None"]:
    """An SQLite engine; for writers (``immediate``) also this process's turn at the write lock."""
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
    path = engine.url.database
    on_disk = bool(path) and path != ":memory:"  # a WAL to checkpoint

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={WRITER_WAIT_S * 1000}")
        if on_disk:
            cur.execute("PRAGMA wal_autocheckpoint=0")  # the writers' _Checkpointer's work, off their path
        cur.close()

    # BEGIN goes to the driver's connection, as COMMIT does (and PostgreSQL's BEGIN): through
    # SQLAlchemy's execution (events, cursor, result) it cost a listing page 5 % of its CPU. It
    # is the dialect's do_begin, not a "begin" listener: see _watch_statements for what any
    # connection event costs. What do_begin raises reaches the caller wrapped in SQLAlchemy's
    # DBAPIError (Database.begin_now looks inside for WriterBusy).
    if not immediate:
        def _begin(fairy) -> None:
            fairy.dbapi_connection.execute("BEGIN")

        engine.dialect.do_begin = _begin
        return engine, None

    # SQLite has one writer. Writers of this process queue on a lock handed over the moment
    # the last one's COMMIT has returned (the connection's check-in), instead of in SQLite's
    # busy handler, which sleeps 1, 2, 5, ... up to 100 ms between tries and so leaves the
    # write lock idle while a queue waits. Other processes still meet busy_timeout.
    turn = _WriterTurn(path, on_disk)
    writer = turn.lock
    turns: set[int] = set()  # the connection records (their record_info, which outlives an invalidation) holding it

    def _begin_immediate(fairy) -> None:
        record = id(fairy.record_info)
        no_wait = _NO_WAIT.get()
        if not (writer.acquire(blocking=False) if no_wait else writer.acquire(timeout=WRITER_WAIT_S)):
            if no_wait:
                raise WriterBusy("this process's writer lock is taken")
            raise sqlite3.OperationalError(f"database is locked: no turn at this process's writer lock "
                                           f"in {WRITER_WAIT_S} s")
        turns.add(record)
        try:
            if no_wait:
                _begin_without_waiting(fairy.dbapi_connection)
            else:
                fairy.dbapi_connection.execute("BEGIN IMMEDIATE")
        except BaseException:
            turns.discard(record)
            writer.release()
            raise

    engine.dialect.do_begin = _begin_immediate

    @event.listens_for(engine, "checkin")
    def _end_turn(_dbapi_conn, record):
        key = id(record.record_info)
        if key in turns:
            turns.discard(key)
            turn.ended()

    return engine, turn


class _WriterTurn:
    """This process's turn at SQLite's write lock: the lock its writers queue on, and the
    checkpoints that come every ``CHECKPOINT_EVERY`` turns (``_Checkpointer``)."""

    def __init__(self, path: str | None, on_disk: bool) -> None:
        self.lock = threading.Lock()
        self.checkpointer = _Checkpointer(path, self.lock) if on_disk else None

    def ended(self) -> None:
        """Called by the turn's holder as it gives the turn up."""
        if self.checkpointer is not None:
            self.checkpointer.turn_ended()
        self.lock.release()


def _begin_without_waiting(raw: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE with SQLite's busy timeout off for this one statement: another
    process's writer makes it fail at once, with WriterBusy, instead of sleeping."""
    raw.execute("PRAGMA busy_timeout=0")
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise WriterBusy(f"the database is locked by another process: {exc}") from None
        raise
    finally:
        raw.execute(f"PRAGMA busy_timeout={WRITER_WAIT_S * 1000}")


READ_VERBS = frozenset({"SELECT", "WITH", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA", "SHOW"})


class ReaderWrote(RuntimeError):
    """A read session sent a write: on SQLite it would pass the process's writer queue, on
    PostgreSQL (autocommit) each statement would commit alone."""


def _reader_never_writes(statement: str) -> None:
    head = statement.lstrip()[:10].split(None, 1)
    verb = head[0].upper() if head else ""
    if verb not in READ_VERBS:
        raise ReaderWrote(f"a read session (write=False) sent {verb}: open a write session for writes")


def _watch_statements(dialect: Dialect, before: Callable[[str, ExecutionContext | None], None]) -> None:
    """Call ``before(statement, context)`` ahead of every statement ``dialect`` sends (it may
    raise to refuse it).

    In the dialect, not as a ``before_cursor_execute`` listener: one connection event of any
    kind (that one, or ``begin``) makes SQLAlchemy dispatch its execution events on every
    statement of every connection, and join each new connection's dispatcher to the
    engine's. That was a sixth of the CPU of a one-row read."""
    execute, execute_no_params, executemany = dialect.do_execute, dialect.do_execute_no_params, dialect.do_executemany

    def do_execute(cursor, statement, parameters, context=None):
        before(statement, context)
        execute(cursor, statement, parameters, context)

    def do_execute_no_params(cursor, statement, context=None):
        before(statement, context)
        execute_no_params(cursor, statement, context)

    def do_executemany(cursor, statement, parameters, context=None):
        before(statement, context)
        executemany(cursor, statement, parameters, context)

    dialect.do_execute, dialect.do_execute_no_params, dialect.do_executemany = (
        do_execute, do_execute_no_params, do_executemany)


DATABASE = "escrowlab_database"  # in every session's info: the Database it came from
_CURSOR = "escrowlab_prepared_cursor"  # in a pooled connection's info: Prepared's cursor on it
READER = "escrowlab_reader"  # in a read session's info (write=False): it is closed, never committed
WROTE_ALONE = "escrowlab_wrote_alone"  # in a write session's info: an INSERT of it committed by itself
# What a write session notes for after its commit (in its info, a set each), for
# ``Database.on_commit``: nothing is told of a change that then rolls back.
WAKE_ORDERS = "wake_orders"      # (order id, escrow mode) moved to an outcome pending: the worker carries it out
NOTIFIED_USERS = "notified_users"    # ids of users a notification was written to: their open streams


def note_after_commit(session: Session, key: str, *items: Hashable) -> None:
    """Tell ``Database.on_commit[key]`` about ``items`` once this write session commits."""
    session.info.setdefault(key, set()).update(items)


AT_COMMIT = "escrowlab_at_commit"  # in a write session's info: inserts held to its commit (insert_at_commit)


def insert_at_commit(session: Session, statement: "Prepared", rows: list[dict[str, Any]],
                     serial_keys: Iterable[int]) -> None:
    """Insert ``rows`` with ``statement`` in this write session's transaction: on PostgreSQL when it
    commits, as its last statements; on SQLite at once.

    For rows read back in id order from a cursor, "everything after the last id I saw" (the
    notification stream: ``outbox.feed_page``). On PostgreSQL two transactions may take their ids
    in one order and commit in the other, and a reader that saw the later id first would move past
    the earlier one for good. So before the rows are inserted the transaction takes an advisory
    lock on each of ``serial_keys`` (a user each, for notifications), in ascending order, held to
    its commit: for one key, the next transaction takes its ids only once this one has committed,
    and ids become visible in their order. Every transaction takes all of its locks in one
    statement, in one order, after everything else it did: so no two can each hold a lock the
    other waits for. SQLite has one writer at a time, which orders the ids already: there the rows
    are inserted at once, as any other statement (held to the commit, the escrow's path cost the app
    more CPU and its ship and confirm more time, in four alternated pairs of ``bench escrow``).

    A savepoint that rolls back does not take back rows held here (no writer holds any inside one)."""
    if session.info[DATABASE].single_writer:
        statement.insert_many(session, rows)
        return
    held = session.info.setdefault(AT_COMMIT, {})
    pending, keys = held.setdefault(statement, ([], set()))
    pending.extend(rows)
    keys.update(serial_keys)


def _insert_held(session: Session) -> None:
    """``insert_at_commit``'s rows, before the session's commit (its ``before_commit`` event)."""
    held = session.info.pop(AT_COMMIT, None)
    if not held:
        return
    session.flush()  # what the rows refer to (an order added through the ORM) goes first
    connection = session.connection()  # PostgreSQL's: SQLite's single writer holds no rows
    locks = sorted({(zlib.crc32(statement.statement.table.name.encode()) & 0x7FFFFFFF, int(key))
                    for statement, (_rows, keys) in held.items() for key in keys})
    if locks:  # evaluated left to right: in this order
        connection.exec_driver_sql("SELECT " + ", ".join(f"pg_advisory_xact_lock({space}, {key})"
                                                          for space, key in locks))
    for statement, (rows, _keys) in held.items():
        statement.insert_many(session, rows)


def _forget_held(session: Session) -> None:
    session.info.pop(AT_COMMIT, None)  # rolled back: never inserted


class WroteAlone(RuntimeError):
    """A write session began a transaction after one of its statements had committed alone."""


# A statement compiled for one dialect: its SQL, its parameters' order (positional styles), its
# own values, the (name, processor) of each parameter that has one, and the (position,
# processor) of each result column that has one.
_Plan = tuple[str, tuple[str, ...] | None, dict, list[tuple[str, Callable]] | None, list[tuple[int, Callable]] | None]


class Prepared:
    """A Core SELECT, or an INSERT, run straight on its session's DBAPI connection: compiled once
    for each dialect, its parameters' and its result columns' processors applied as SQLAlchemy
    applies them, and counted like any other statement.

    For the hottest statements (the signed-in user, a listing by id, the search page, a new
    listing). SQLAlchemy's execution (its compiled cache, an execution context, a cursor result)
    took 96 % of a one-row read: about 100 µs against SQLite's 4; and a seventh of a listing
    write's CPU on PostgreSQL, where psycopg also built the RETURNING columns' description for
    SQLAlchemy's result. Only for a statement whose parameters expand into nothing (no
    ``IN`` list): another is refused at its first run. The statement's own values (a literal, a
    weight) are converted once, when it is compiled.

    An INSERT (``insert(table)``, with or without ``.returning(...)``) names every column of the
    table but the autoincrement key and those only the server fills (``server_default``): a column
    with a Python default takes it, called once per row as SQLAlchemy calls it, unless given; every
    other column must be given. It runs in its session's transaction, and a read session refuses it."""

    def __init__(self, statement: Select | Insert) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, str], _Plan] = {}
        # an INSERT's columns, in order, and the defaults of those that have one
        self._columns: tuple[str, ...] | None = None
        self._defaults: dict[str, Callable[[], Any]] = {}
        if isinstance(statement, Insert):
            self._columns, self._defaults = _insert_columns(statement.table)
            if not statement.exported_columns:  # no RETURNING: nor the key PostgreSQL's dialect would add
                self.statement = statement.inline()
        self._named = frozenset(self._columns or ())

    def _plan(self, dialect: Dialect) -> _Plan:
        key = (dialect.name, dialect.paramstyle)
        plan = self._plans.get(key)
        if plan is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=self._columns)
            if compiled.literal_execute_params or compiled.post_compile_params:
                raise TypeError(f"store.db.Prepared runs statements whose parameters expand into nothing; "
                                f"this one's need SQLAlchemy's execution: {compiled.string}")
            fixed, binders = {}, []  # the statement's own values, converted once; the given ones' processors
            for bind, name in compiled.bind_names.items():
                if name in fixed or any(name == bound for bound, _ in binders):
                    continue  # a parameter used twice (``bindparam("now")`` in two places): converted once
                process = _bind_processor(bind.type, dialect)
                if not bind.required:
                    fixed[name] = bind.effective_value if process is None else process(bind.effective_value)
                elif process is not None:
                    binders.append((name, process))
            # (position, processor) of each column that has one; most have none
            processors = [(i, process) for i, column in enumerate(self.statement.exported_columns)
                          if (process := column.type.dialect_impl(dialect).result_processor(dialect, None))]
            plan = self._plans[key] = (compiled.string, compiled.positiontup, fixed, binders or None,
                                       processors or None)
        return plan

    def rows(self, session: Session, params: dict[str, Any]) -> list[tuple]:
        """The statement's rows. A read in a read session that has not begun (no statement yet)
        runs on a connection of its own: on an event loop's thread the one that thread keeps
        (``Database.loop_connection``), elsewhere a pooled one, given back at once. Otherwise it
        runs in the session's transaction, as any statement would (a writer's reads stay inside
        its transaction, and so does an INSERT).

        A read on its own connection skips the session's transaction: SQLAlchemy's connection and
        transaction objects, SQLite's BEGIN and the session's close were a fifth of a read by
        id. The statement is one snapshot by itself; a reader's later ORM statements take their
        own, as each statement of a PostgreSQL reader (autocommit) always did. A request that
        reads here holds no pooled connection of its own meanwhile."""
        database: Database = session.info[DATABASE]
        if self._columns is not None:
            if session.info.get(READER):
                raise ReaderWrote("a read session (write=False) sent INSERT: open a write session for writes")
            params = self._with_defaults(params)
        elif session.info.get(READER) and not session.in_transaction():
            return self._read_alone(database, params)
        connection = session.connection()  # begins the session's transaction as any statement would
        return self._run(database, connection.dialect, connection.connection, params, connection.invalidate)

    def _read_alone(self, database: "Database", params: dict[str, Any]) -> list[tuple]:
        """A read outside any transaction: on the connection an event loop's thread keeps, elsewhere
        on a pooled one given back at once."""
        held = database.loop_connection()
        if held is not None:
            return self._run(database, database.read_engine.dialect, held.fairy, params, held.give_back)
        lent = _ReaderConnection(database).take()
        try:
            return self._run(database, database.read_engine.dialect, lent.fairy, params, lent.give_back)
        finally:
            lent.give_back()

    def _run(self, database: "Database", dialect: Dialect, pooled: PoolProxiedConnection, params: dict[str, Any],
             invalidate: Callable[[BaseException], None]) -> list[tuple]:
        sql, values, processors = self._bound(database, dialect, params)
        return _processed(_execute(dialect, pooled, sql, values, invalidate), processors)

    def insert_many(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """An INSERT without RETURNING of several rows in the session's transaction, in one call
        of the driver (``executemany``: one statement prepared once, counted once, as SQLAlchemy
        counts an executemany). A transition's two notifications were two statements."""
        if self._columns is None or self.statement.exported_columns:
            raise TypeError("Prepared.insert_many is for an INSERT without RETURNING")
        if session.info.get(READER):
            raise ReaderWrote("a read session (write=False) sent INSERT: open a write session for writes")
        database: Database = session.info[DATABASE]
        connection = session.connection()
        dialect = connection.dialect
        sql, order, fixed, binders, _ = self._plan(dialect)
        values = [self._converted(order, fixed, binders, self._with_defaults(row)) for row in rows]
        database._before_statement(sql, None)
        _execute(dialect, connection.connection, sql, values, connection.invalidate, many=True)

    def _with_defaults(self, params: dict[str, Any]) -> dict[str, Any]:
        """An INSERT's values: ``params`` and the defaults of the columns it leaves out."""
        values = {name: make() for name, make in self._defaults.items() if name not in params}
        values.update(params)
        if values.keys() != self._named:
            missing = [c for c in self._columns if c not in values]
            unknown = sorted(values.keys() - self._named)
            raise TypeError(f"INSERT INTO {self.statement.table.name}: "
                            + "; ".join(part for part in (missing and f"no value for {', '.join(missing)}",
                                                          unknown and f"no column {', '.join(unknown)}") if part))
        return values

    def _bound(self, database: "Database", dialect: Dialect, params: dict[str, Any]) -> tuple[str, Any, Any]:
        """The SQL, its values in the driver's form, and the result processors; counted."""
        sql, order, fixed, binders, processors = self._plan(dialect)
        database._before_statement(sql, None)  # counted; an INSERT met the reader guard in rows or arows
        return sql, self._converted(order, fixed, binders, params), processors

    @staticmethod
    def _converted(order: tuple[str, ...] | None, fixed: dict, binders: list[tuple[str, Callable]] | None,
                   params: dict[str, Any]) -> Any:
        """``params`` with the statement's own values and its parameters' processors applied, in the
        driver's form (a tuple in ``order`` for a positional paramstyle)."""
        if fixed or binders:
            params = {**fixed, **params}
            for name, process in binders or ():
                params[name] = process(params[name])
        return params if order is None else tuple(params[name] for name in order)

    def first(self, session: Session, params: dict[str, Any]) -> tuple | None:
        rows = self.rows(session, params)
        return rows[0] if rows else None

    async def arows(self, session: Session, params: dict[str, Any]) -> list[tuple]:
        """``rows`` for a coroutine on the event loop. On PostgreSQL, a statement of a session that
        has not begun awaits the server on one of the loop's own connections
        (``Database.awaited_connections``, in autocommit) instead of blocking the loop: while
        PostgreSQL ranks a search, the loop serves other requests.

        - A read there is one snapshot by itself, a reader's or a writer's: under READ COMMITTED
          a writer's read before its first statement sees what its first statement would see.
        - An INSERT there is its own transaction, committed when it returns: for a request whose
          write is that one statement, with no BEGIN, COMMIT, pooled connection or worker thread
          around it. The session is marked as having written alone (``WROTE_ALONE``): a second such
          INSERT is refused, and so, at the session's end, is a transaction begun after it
          (``Database.session``): the two would not be one.

        On SQLite, whose work is this process's CPU either way, the same holds without awaiting:
        a writer's read before it has begun is a reader's (``rows``), and its INSERT commits
        alone on the writer connection the loop's thread keeps, if this process's write turn is
        free and no other process holds the write lock (``_sqlite_alone``). Without BEGIN
        IMMEDIATE, COMMIT and the ORM session's transaction around that one INSERT, a served
        listing write costs 0.69-0.71 ms of CPU instead of 0.82 (bench api). Otherwise, and
        everywhere else, it is ``rows``: a transaction's statements stay in it."""
        database: Database = session.info[DATABASE]
        if session.in_transaction():
            return self.rows(session, params)
        if self._columns is not None:
            if session.info.get(READER):
                return self.rows(session, params)  # refused there
            if session.info.get(WROTE_ALONE):
                raise WroteAlone("a write session's second INSERT would commit apart from its first "
                                 "(Prepared.arows writes one statement alone): write both in one transaction")
            params = self._with_defaults(params)
            if database.single_writer:
                return await self._sqlite_alone(session, database, params)
            session.info[WROTE_ALONE] = True
        elif database.single_writer:  # a reader's, or a writer's before it has begun
            return self._read_alone(database, params)
        return await self._awaited(database, params)

    def read(self, database: "Database", params: dict[str, Any]) -> list[tuple]:
        """A read by itself, with no session: what ``rows`` does for a read session that has not
        begun, without making the session. Making and closing a read session for its one
        statement cost a page of a notification stream more CPU than the statement (py-spy,
        bench escrow)."""
        self._refuse_writes()
        return self._read_alone(database, params)

    async def aread(self, database: "Database", params: dict[str, Any]) -> list[tuple]:
        """``read`` for a coroutine on the event loop: awaited on PostgreSQL, as ``arows``."""
        self._refuse_writes()
        if database.single_writer:
            return self._read_alone(database, params)
        return await self._awaited(database, params)

    def _refuse_writes(self) -> None:
        if self._columns is not None:
            raise ReaderWrote("Prepared.read runs reads: an INSERT needs a write session")

    async def _awaited(self, database: "Database", params: dict[str, Any]) -> list[tuple]:
        """The statement on one of the event loop's own PostgreSQL connections, in autocommit."""
        dialect = database.read_engine.dialect
        sql, values, processors = self._bound(database, dialect, params)
        awaited = database.awaited_connections()
        try:
            connection, cursor = await awaited.take()
        except dialect.loaded_dbapi.Error as exc:  # no connection to be had: as the pool reports it
            raise _wrapped(dialect, sql, values, exc, True) from exc
        try:
            await cursor.execute(sql, values)
            rows = await cursor.fetchall() if cursor.description is not None else []
        except BaseException as exc:
            error = isinstance(exc, dialect.loaded_dbapi.Error)
            gone = error and dialect.is_disconnect(exc, connection, cursor)
            if error and not gone and connection.info.transaction_status == 0:  # IDLE: the statement failed
                awaited.give_back(connection, cursor)
            else:  # dead, or the request cancelled mid-statement: the next one takes a new connection
                awaited.discard(connection)
            if error:
                raise _wrapped(dialect, sql, values, exc, gone) from exc
            raise
        awaited.give_back(connection, cursor)
        return _processed(rows, processors)

    async def _sqlite_alone(self, session: Session, database: "Database", params: dict[str, Any]) -> list[tuple]:
        """An INSERT of an SQLite writer that has not begun, committed by itself on the event loop
        if this process's write turn is free and no other process writes; else in the session's
        transaction, begun in a worker thread (which may wait for the turn)."""
        held = database.write_turn_now()
        if held is not None:
            try:
                rows = self._run(database, database.engine.dialect, held.fairy, params, held.give_back)
            except DBAPIError as exc:
                if not (isinstance(exc.orig, sqlite3.OperationalError) and "locked" in str(exc.orig)):
                    raise  # (locked: another process writes; the thread below waits for it)
            else:
                session.info[WROTE_ALONE] = True
                return rows
            finally:
                database.writer_turn.ended()
        await anyio.to_thread.run_sync(session.connection)
        return self.rows(session, params)

    async def afirst(self, session: Session, params: dict[str, Any]) -> tuple | None:
        rows = await self.arows(session, params)
        return rows[0] if rows else None


class PreparedUpdate(Prepared):
    """An UPDATE run as ``Prepared`` runs its statements (compiled once, on the session's DBAPI
    connection, counted), always in its session's transaction; ``run`` returns how many rows it
    changed, for a compare-and-swap. Its parameters are ``bindparam``s: a value written anew on
    each run has to be one. For the updates every escrow sends: building an UPDATE's expression,
    its cache key and SQLAlchemy's execution of it took more CPU than SQLite took to run it
    (the order's compare-and-swap alone was 7 % of the app's CPU in bench escrow, py-spy)."""

    def __init__(self, statement: Update) -> None:
        if not isinstance(statement, Update):
            raise TypeError("PreparedUpdate runs an UPDATE")
        super().__init__(statement)

    def run(self, session: Session, params: dict[str, Any]) -> int:
        if session.info.get(READER):
            raise ReaderWrote("a read session (write=False) sent UPDATE: open a write session for writes")
        database: Database = session.info[DATABASE]
        connection = session.connection()  # begins the session's transaction as any statement would
        sql, values, _ = self._bound(database, connection.dialect, params)
        return _execute(connection.dialect, connection.connection, sql, values, connection.invalidate, count=True)

    def rows(self, session: Session, params: dict[str, Any]) -> list[tuple]:
        raise TypeError("PreparedUpdate.run sends the UPDATE and says how many rows it changed")

    arows = read = aread = rows


_UPDATES: dict[tuple[Any, tuple[str, ...], tuple[str, ...]], PreparedUpdate] = {}


def update_of(table: Any, keys: Iterable[str], where: Iterable[str]) -> PreparedUpdate:
    """``UPDATE table SET k = :new_k, ... WHERE w = :was_w AND ...``, made once for each table,
    set of columns and guard, and kept: for a write whose columns vary from call to call."""
    key = (table, tuple(keys), tuple(where))
    statement = _UPDATES.get(key)
    if statement is None:
        columns = table.c
        statement = _UPDATES[key] = PreparedUpdate(
            update(table).where(*(columns[w] == bindparam(f"was_{w}", type_=columns[w].type) for w in key[2]))
            .values({k: bindparam(f"new_{k}", type_=columns[k].type) for k in key[1]}))
    return statement


def update_rows(session: Session, table: Any, where: dict[str, Any], values: dict[str, Any]) -> int:
    """``UPDATE table SET values WHERE where`` (each a column's equality) in the session's
    transaction, as the kept ``update_of`` those columns; how many rows it changed."""
    return update_of(table, values, where).run(
        session, {**{f"was_{k}": v for k, v in where.items()}, **{f"new_{k}": v for k, v in values.items()}})


def _insert_columns(table: Any) -> tuple[tuple[str, ...], dict[str, Callable[[], Any]]]:
    """The columns ``Prepared`` names in an INSERT into ``table``, and the Python defaults of those
    that have one: every column but the autoincrement key and those only the server fills."""
    columns, defaults = [], {}
    for column in table.columns:
        default = column.default
        if default is None:
            if column is table.autoincrement_column or column.server_default is not None:
                continue
        elif default.is_scalar:
            defaults[column.key] = lambda value=default.arg: value
        elif default.is_callable:
            defaults[column.key] = functools.partial(default.arg, None)  # SQLAlchemy's wrapper takes a context
        else:
            raise TypeError(f"store.db.Prepared: {table.name}.{column.key}'s default is computed by SQLAlchemy's "
                            "execution (a SQL expression or a sequence)")
        columns.append(column.key)
    return tuple(columns), defaults


def _execute(dialect: Dialect, pooled: PoolProxiedConnection, sql: str, values: Any,
             invalidate: Callable[[BaseException], None], many: bool = False, count: bool = False) -> Any:
    """Run ``sql`` on the driver connection's kept cursor (``values`` a list of rows if ``many``);
    its rows (none for a statement without any), or with ``count`` how many rows it changed, or
    the error as SQLAlchemy's execution reports it."""
    # One cursor per driver connection, kept with it in the pool (its info is cleared when it
    # reconnects): psycopg builds each new cursor's adapters anew, a quarter of a one-row read in
    # the driver (80 against 60 µs).
    cursor = pooled.info.get(_CURSOR)
    if cursor is None:
        cursor = pooled.info[_CURSOR] = pooled.dbapi_connection.cursor()
    try:
        if many:
            cursor.executemany(sql, values)
            return []
        cursor.execute(sql, values)
        if count:
            return cursor.rowcount
        return cursor.fetchall() if cursor.description is not None else []  # an INSERT without RETURNING
    except dialect.loaded_dbapi.Error as exc:
        pooled.info.pop(_CURSOR, None)
        # wrapped, and a dead connection invalidated
        gone = dialect.is_disconnect(exc, pooled.dbapi_connection, cursor)
        if gone:
            invalidate(exc)
        raise _wrapped(dialect, sql, values, exc, gone) from exc


def _processed(rows: list[tuple], processors: list[tuple[int, Callable]] | None) -> list[tuple]:
    if processors is None:
        return rows
    # only the columns that have a processor: a generator over every column of every row took
    # 40 µs for a page of twenty listings, this 16
    out = []
    for row in rows:
        row = list(row)
        for i, process in processors:
            row[i] = process(row[i])
        out.append(tuple(row))
    return out


def _wrapped(dialect: Dialect, sql: str, values: Any, exc: Exception, gone: bool) -> DBAPIError:
    """A driver's error as SQLAlchemy's execution reports it."""
    return DBAPIError.instance(sql, values, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone,
                               dialect=dialect)


def _bind_processor(type_, dialect: Dialect):
    return type_.dialect_impl(dialect).bind_processor(dialect)


IDLE_PING_S = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use if it sat idle for ``IDLE_PING_S``: a server that
    restarted, or a network that dropped it, is found before a request meets it, and the pool
    opens a new one. ``pool_pre_ping`` does this on every checkout, one round trip more for
    every read; a connection in steady use has just proved itself."""
    @event.listens_for(engine, "connect")
    def _born(_dbapi_conn, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _idle(_dbapi_conn, record):
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_conn, record, _proxy):
        if time.monotonic() - record.info.get("idle_since", 0.0) > IDLE_PING_S:
            _ping(engine, dbapi_conn)


def _ping(engine: Engine, dbapi_conn: Any) -> None:
    """Raise ``DisconnectionError`` unless the server answers on ``dbapi_conn``."""
    try:
        alive = engine.dialect.do_ping(dbapi_conn)
    except engine.dialect.loaded_dbapi.Error as exc:
        raise DisconnectionError(f"pooled connection is dead: {exc}") from exc
    if not alive:
        raise DisconnectionError("pooled connection is dead")


class _ReaderConnection:
    """A pooled connection for ``Prepared``'s reads outside a transaction: on PostgreSQL in
    autocommit while taken, as the reader engine's AUTOCOMMIT (no transaction left open between
    statements; SQLite's connections are in autocommit already, the app sends its own BEGIN),
    and as the pool lends it once given back; invalidated when a read finds it dead.

    A read on a thread without an event loop takes one and gives it back at once. An event
    loop's thread keeps one between requests (``Database.loop_connection``), given back when
    the thread ends or at ``Database.dispose``."""

    def __init__(self, database: "Database") -> None:
        self.database = database
        self.fairy: PoolProxiedConnection | None = None
        self.used = 0.0

    def take(self) -> "_ReaderConnection":
        database, now = self.database, time.monotonic()
        if self.fairy is not None and not database.single_writer and now - self.used > IDLE_PING_S:
            try:  # as the pool checks a connection that sat idle (_ping_when_idle)
                _ping(database.read_engine, self.fairy.dbapi_connection)
            except DisconnectionError as exc:
                self.give_back(exc)
        if self.fairy is None:
            self.fairy = database.read_engine.raw_connection()
            if not database.single_writer:
                self.fairy.dbapi_connection.autocommit = True
        self.used = now
        return self

    def give_back(self, exc: BaseException | None = None) -> None:
        """Return the connection to the pool; with ``exc``, invalidated (the pool reconnects it)."""
        fairy, self.fairy = self.fairy, None
        if fairy is None:
            return
        if exc is not None:
            fairy.invalidate(exc)
        elif not self.database.single_writer and fairy.is_valid:
            fairy.dbapi_connection.autocommit = False
        fairy.close()

    def __del__(self) -> None:  # the loop thread that kept it has ended
        try:
            self.give_back()
        except Exception:  # a pool already disposed, a server gone: nothing left to return
            pass


class _WriterConnection(_ReaderConnection):
    """An event loop thread's connection of SQLite's writer pool, for an INSERT that commits
    alone (``Database.write_turn_now``): kept as the thread's reader connection is, with the
    busy timeout off while kept, since the event loop must not sleep in SQLite's busy handler."""

    def take(self) -> "_WriterConnection":
        if self.fairy is None:
            self.fairy = self.database.engine.raw_connection()
            self.fairy.dbapi_connection.execute("PRAGMA busy_timeout=0")
        return self

    def give_back(self, exc: BaseException | None = None) -> None:
        fairy = self.fairy
        if fairy is not None and exc is None and fairy.is_valid:
            fairy.dbapi_connection.execute(f"PRAGMA busy_timeout={WRITER_WAIT_S * 1000}")
        super().give_back(exc)


def _sessions_in_utc(engine: Engine) -> None:
    """Every PostgreSQL session of ``engine`` in the time zone UTC, set as it connects (a
    connection option: no round trip), added to any options the URL gives.

    Moments are the same in any zone; what changes is how psycopg reads ``timestamptz``. In UTC
    it makes each value with ``timezone.utc``; in a named zone, even a server's default
    ``Etc/UTC``, it converts each one through ``zoneinfo``: 1.5 µs a value, a fifth of
    psycopg's time for a page of twenty listings (159 against 126 µs)."""
    @event.listens_for(engine, "do_connect")
    def _utc(_dialect, _record, _cargs, cparams):
        _in_utc(cparams)


def _in_utc(cparams: dict[str, Any]) -> None:
    cparams["options"] = f"{cparams.get('options', '')} -c TimeZone=UTC".strip()


# PostgreSQL connections one event loop holds at most for its awaited statements (Prepared.arows);
# a statement that finds them all busy waits for one. Beside the pool's, one set per loop.
AWAITED_CONNECTIONS = 8


class _AwaitedConnections:
    """One event loop's PostgreSQL connections for ``Prepared.arows``: psycopg's own
    ``AsyncConnection`` (SQLAlchemy's asyncio layer cost a read by id 0.735 ms of CPU against
    0.50 blocking), made with the engine's connect arguments, in UTC and in autocommit as the
    reader engine's, each with its one kept cursor (as ``Prepared`` keeps one per pooled
    connection).

    A connection idle for over ``IDLE_PING_S`` is checked before use, as the pool checks its
    own; one found dead, or whose statement lost it or was cancelled, is closed, and the next
    statement opens a new one (after a statement's own error it is kept). They close once their
    loop has closed (``Database.awaited_connections``), at ``Database.dispose``, and when the
    database is collected."""

    def __init__(self, database: "Database") -> None:
        cargs, cparams = database.engine.dialect.create_connect_args(database.engine.url)
        _in_utc(cparams)
        self.connect_args = (cargs, cparams)
        self.idle: list[tuple[Any, Any, float]] = []  # (connection, its cursor, idle since)
        self.open: set[Any] = set()
        self.slots = asyncio.Semaphore(AWAITED_CONNECTIONS)

    async def take(self) -> tuple[Any, Any]:
        await self.slots.acquire()
        try:
            while self.idle:
                connection, cursor, since = self.idle.pop()
                if time.monotonic() - since <= IDLE_PING_S:
                    return connection, cursor
                try:
                    await connection.execute("SELECT 1")
                except BaseException as exc:  # dead (a new one below), or the read cancelled
                    self.discard(connection, release=False)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                return connection, cursor
            import psycopg

            cargs, cparams = self.connect_args
            connection = await psycopg.AsyncConnection.connect(*cargs, autocommit=True, **cparams)
            self.open.add(connection)
            return connection, connection.cursor()
        except BaseException:
            self.slots.release()
            raise

    def give_back(self, connection: Any, cursor: Any) -> None:
        self.idle.append((connection, cursor, time.monotonic()))
        self.slots.release()

    def discard(self, connection: Any, release: bool = True) -> None:
        self.open.discard(connection)
        connection.pgconn.finish()  # closes the socket now, with no round trip and no loop needed
        if release:
            self.slots.release()

    def close(self) -> None:
        for connection in list(self.open):
            self.discard(connection, release=False)
        self.idle.clear()

    def __del__(self) -> None:  # its database is gone
        try:
            self.close()
        except Exception:
            pass


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        # SQLite takes one writer at a time (BEGIN IMMEDIATE); callers queue writers early.
        self.single_writer = url.startswith("sqlite")
        if self.single_writer:
            self.engine, self.writer_turn = _sqlite_engine(url, immediate=True)
            self.read_engine, _ = _sqlite_engine(url, immediate=False)
        else:
            self.engine = create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
            self.writer_turn = None
            _ping_when_idle(self.engine)
            _sessions_in_utc(self.engine)
            # Reads send no BEGIN and no COMMIT, each a round trip: under PostgreSQL's READ
            # COMMITTED every statement of a transaction takes its own snapshot anyway, so a
            # read session's statements see what they would have seen inside one. Same pool.
            self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._writers = sessionmaker(self.engine, expire_on_commit=False, info={DATABASE: self})
        self._readers = sessionmaker(self.read_engine, expire_on_commit=False, info={DATABASE: self, READER: True})
        if not self.single_writer:  # only there are rows held to the commit (insert_at_commit)
            event.listen(self._writers, "before_commit", _insert_held)
            event.listen(self._writers, "after_rollback", _forget_held)
        # who hears, after a write session commits, what it noted (note_after_commit): the worker
        # the orders it must carry out (WAKE_ORDERS), the streams their users (NOTIFIED_USERS)
        self.on_commit: dict[str, Callable[[set[Any]], None]] = {}
        # each event loop thread's reader connection (loop_connection), and all of them for dispose
        self._loop_held = threading.local()
        self._loop_connections: weakref.WeakSet[_ReaderConnection] = weakref.WeakSet()
        # each event loop's PostgreSQL connections for awaited statements (awaited_connections)
        self._awaited: dict[asyncio.AbstractEventLoop, _AwaitedConnections] = {}
        self.queries = 0  # statements sent, for the benchmarks' queries-per-escrow figure
        # PostgreSQL's read engine, made by execution_options(), shares the writer's dialect.
        for dialect in {self.engine.dialect, self.read_engine.dialect}:
            _watch_statements(dialect, self._before_statement)

    def _before_statement(self, statement: str, context: ExecutionContext | None) -> None:
        self.queries += 1  # approximate under threads (no lock on the hot path); a benchmark figure
        if context is not None and context.root_connection.engine is self.read_engine:
            _reader_never_writes(statement)

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """One unit of work: a writer commits on success, and rolls back on any error. A reader
        is closed, which ends its transaction (it has nothing to commit): the ORM's commit of a
        read session, with its flush and state changes, was a sixth of a one-row read's cost."""
        with (self._writers if write else self._readers)() as s:
            if not write:
                yield s
                # what a commit would have flushed, and the guard refused: not an attribute set to
                # the value it had (Session.dirty lists those too; the flush writes nothing for them)
                if s.new or s.deleted or any(s.is_modified(obj) for obj in s.dirty):
                    raise ReaderWrote("a read session (write=False) changed objects: open a write session for writes")
                return
            try:
                yield s
                if s.info.get(WROTE_ALONE) and s.in_transaction():
                    raise WroteAlone("a write session whose INSERT committed alone (Prepared.arows) began a "
                                     "transaction after it: the two would not be one unit of work")
                s.commit()
            except BaseException:
                s.rollback()
                raise
            for key, hear in self.on_commit.items():
                noted = s.info.pop(key, None)
                if noted:
                    hear(noted)

    def begin_now(self, session: Session) -> bool:
        """Begin a write session's transaction on SQLite if that needs no wait: this process's
        writer lock is free and no other process writes. False, with nothing begun, if it
        would have to wait; then begin in a thread that may (``session.connection()``)."""
        token = _NO_WAIT.set(True)
        try:
            session.connection()
            return True
        except DBAPIError as exc:  # SQLAlchemy wraps what the dialect's do_begin raises
            if not isinstance(exc.orig, WriterBusy):
                raise
            session.rollback()
            return False
        finally:
            _NO_WAIT.reset(token)

    def loop_connection(self) -> _ReaderConnection | None:
        """On a thread running an event loop, the reader connection it keeps for
        ``Prepared``'s reads outside a transaction; elsewhere None (they check one out of the pool).

        The loop runs such a read to its end before anything else, so one connection is all its
        thread ever needs. Kept, it spares each read the pool's checkout and check-in (and on
        PostgreSQL turning autocommit on and off): a third of a read by id."""
        if asyncio._get_running_loop() is None:
            return None
        return self._kept("connection", _ReaderConnection)

    def _kept(self, name: str, kind: type["_ReaderConnection"]) -> "_ReaderConnection":
        """This thread's kept connection ``name``, made the first time; all of them are given
        back at ``dispose`` (or when their thread ends)."""
        held = getattr(self._loop_held, name, None)
        if held is None:
            held = kind(self)
            setattr(self._loop_held, name, held)
            self._loop_connections.add(held)
        return held.take()

    def write_turn_now(self) -> "_WriterConnection | None":
        """On an event loop's thread over SQLite: this process's write turn, taken if that needs
        no wait, with the connection the thread keeps for an INSERT that commits alone
        (``Prepared.arows``); None if another writer of this process has the turn. The caller
        gives the turn up (``writer_turn.ended()``). The connection's busy timeout is off: a
        write lock another process holds fails its statement at once."""
        lock = self.writer_turn.lock
        if not lock.acquire(blocking=False):
            return None
        try:
            return self._kept("writer", _WriterConnection)
        except BaseException:
            lock.release()
            raise

    def awaited_connections(self) -> _AwaitedConnections:
        """The running event loop's PostgreSQL connections for ``Prepared.arows``. A loop seen
        for the first time first closes those of loops that have closed since (a test's
        client runs a loop for each request; a server runs one for its life)."""
        loop = asyncio.get_running_loop()
        awaited = self._awaited.get(loop)
        if awaited is None:
            for gone in [other for other in list(self._awaited) if other.is_closed()]:
                closed = self._awaited.pop(gone, None)  # (another thread's loop may sweep too)
                if closed is not None:
                    closed.close()
            awaited = self._awaited[loop] = _AwaitedConnections(self)
        return awaited

    def dispose(self) -> None:
        for held in list(self._loop_connections):
            held.give_back()
        for loop in list(self._awaited):
            awaited = self._awaited.pop(loop, None)
            if awaited is not None:
                awaited.close()
        self.engine.dispose()
        if self.single_writer:
            self.read_engine.dispose()
