"""The throwaway PostgreSQL server, on real binaries: CI installs them, so a
missing install fails here instead of skipping."""

import os
import signal
import socket

import pytest
import sqlalchemy

from regtest_cluster import postgres, waiting
from regtest_cluster.postgres import PostgresError, PostgresNotInstalled, PostgresServer, children

pytestmark = pytest.mark.postgres


@pytest.fixture
def server():
    with PostgresServer() as server:
        yield server


def test_create_database_gives_separate_empty_databases(server):
    first, second = server.create_database("first"), server.create_database("second")
    assert first.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    one = sqlalchemy.create_engine(first)
    other = sqlalchemy.create_engine(second)
    try:
        with one.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x int)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with other.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").scalar() == 0
        with one.connect() as conn:
            assert conn.exec_driver_sql("SELECT x FROM t").scalar() == 1
    finally:
        one.dispose()
        other.dispose()


def test_drop_database_ends_open_sessions(server):
    engine = sqlalchemy.create_engine(server.create_database("busy"))
    conn = engine.connect()
    conn.exec_driver_sql("SELECT 1")
    server.drop_database("busy")
    with pytest.raises(sqlalchemy.exc.OperationalError, match="terminating connection"):
        conn.exec_driver_sql("SELECT 1")
    conn.close()
    engine.dispose()
    server.create_database("busy")  # the name is free again


def test_stop_leaves_no_postgres_process():
    server = PostgresServer().start()
    root = server.root
    engine = sqlalchemy.create_engine(server.create_database("app"))
    conn = engine.connect()  # a client backend, besides the server's own workers
    conn.exec_driver_sql("SELECT 1")
    pids = [server.pid, *children(server.pid)]
    server.stop()
    conn.invalidate()
    engine.dispose()
    assert len(pids) > 2
    assert [p for p in pids if postgres._alive(p)] == []
    assert not root.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the service user is for root only")
def test_as_root_runs_as_the_service_user_with_no_sbin_on_path(monkeypatch):
    """A root shell's PATH need not hold sbin (sudo -E, a CI image): the server still starts, as
    its own user with that user's group only, never as root. The switch is setpriv's, not
    subprocess's user=/group=, which would make Python fork() rather than vfork() and run gRPC's
    fork handlers in the child (a busy test process's initdb crashed there)."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    calls, real_run = [], postgres.subprocess.run

    def run(argv, **kwargs):
        calls.append((argv, kwargs))
        return real_run(argv, **kwargs)
    monkeypatch.setattr(postgres.subprocess, "run", run)
    with PostgresServer() as server:
        started = [argv for argv, _ in calls if any(a.endswith(("initdb", "pg_ctl")) for a in argv)]
        assert started and all(argv[0].endswith("setpriv") for argv in started), started
        assert not [kw for _, kw in calls if {"user", "group", "extra_groups", "preexec_fn"} & kw.keys()]
        with sqlalchemy.create_engine(server.create_database("asuser")).connect() as conn:
            assert conn.exec_driver_sql("SELECT current_user").scalar() == postgres.SUPERUSER
        status = dict(line.split(":", 1) for line in open(f"/proc/{server.pid}/status").read().splitlines())
        account = postgres.pwd.getpwnam(postgres.SERVICE_USER)
        assert status["Uid"].split() == [str(account.pw_uid)] * 4
        assert status["Gid"].split() == [str(account.pw_gid)] * 4
        assert status["Groups"].split() in ([], [str(account.pw_gid)])


def test_stop_kills_a_server_that_ignores_shutdown(monkeypatch):
    server = PostgresServer().start()
    pid = server.pid
    os.kill(pid, signal.SIGSTOP)  # a hung postmaster: pg_ctl stop times out
    monkeypatch.setattr(waiting, "TIMEOUT_FACTOR", 0.1)
    pids = [pid, *children(pid)]
    server.stop()
    assert [p for p in pids if postgres._alive(p)] == []


def test_failed_start_names_its_log_and_keeps_it():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = PostgresServer(port=busy.getsockname()[1])
        with pytest.raises(PostgresError, match=r"pg_ctl failed .*log: .*postgres\.log") as failure:
            server.start()
    assert "could not bind" in failure.value.args[0]
    assert server.log_path.exists()
    assert server.pid is None or not postgres._alive(server.pid)
    server.stop()
    assert server.root is None


def test_missing_binaries_dir_names_it_and_the_fix(tmp_path):
    with pytest.raises(PostgresNotInstalled, match=rf"not found in {tmp_path}: apt-get install postgresql"):
        PostgresServer(bindir=tmp_path)


def test_find_bindir_without_any_install_says_what_to_install(monkeypatch):
    monkeypatch.setattr(postgres.shutil, "which", lambda _: None)
    monkeypatch.setattr(postgres.glob, "glob", lambda _: [])
    with pytest.raises(PostgresNotInstalled, match=r"/usr/lib/postgresql/\*/bin: apt-get install postgresql"):
        postgres.find_bindir()


def test_the_app_database_replaces_a_dead_pooled_connection_and_reads_without_begin(server, monkeypatch):
    """The app's pool checks a connection that sat idle before handing it out (not every
    checkout, as pool_pre_ping would: that is a round trip more for every read), so a backend the
    server dropped meanwhile costs no request; and a read session sends neither BEGIN nor COMMIT."""
    from reference_app.store import db as store_db

    url = server.create_database("app_pool")
    database, killer = store_db.Database(url), sqlalchemy.create_engine(url)

    def pooled_backend_killed() -> int:
        with database.session(write=False) as session:
            pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with killer.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar()
        return pid

    try:
        monkeypatch.setattr(store_db, "IDLE_PING_S", 3600.0)
        pooled_backend_killed()
        with pytest.raises(sqlalchemy.exc.OperationalError):  # unchecked, the dead one is handed out
            with database.session(write=False) as session:
                session.connection().exec_driver_sql("SELECT 1")
        pid = pooled_backend_killed()
        monkeypatch.setattr(store_db, "IDLE_PING_S", 0.0)
        with database.session(write=False) as session:
            assert session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
        monkeypatch.setattr(store_db, "IDLE_PING_S", 3600.0)
        with database.session(write=False) as session:
            conn = session.connection()
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
            # a statement in autocommit leaves no transaction open on the server
            assert conn.connection.dbapi_connection.info.transaction_status == 0  # IDLE
        with database.session(write=True) as session:
            conn = session.connection()
            conn.exec_driver_sql("SELECT 1")
            assert conn.connection.dbapi_connection.info.transaction_status == 2  # INTRANS: writers BEGIN
    finally:
        database.dispose()
        killer.dispose()


def test_a_runs_app_database_is_given_to_the_app_and_gone_afterwards(monkeypatch):
    """``bench escrow --db`` and ``load --db``: the app's process inherits DATABASE_URL."""
    monkeypatch.setenv("DATABASE_URL", "sqlite:///before.db")
    with postgres.app_database("sqlite", "run") as pid:
        assert pid is None and os.environ["DATABASE_URL"] == "sqlite:///before.db"
    with postgres.app_database("postgres", "run") as pid:
        url = os.environ["DATABASE_URL"]
        assert url.startswith("postgresql") and url.endswith("/run")
        with sqlalchemy.create_engine(url).connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        pids = [pid, *children(pid)]
    assert os.environ["DATABASE_URL"] == "sqlite:///before.db"
    assert [p for p in pids if postgres._alive(p)] == []
    with pytest.raises(ValueError, match="one of sqlite, postgres, not 'mysql'"):
        with postgres.app_database("mysql", "run"):
            pass
