"""`bench api` measures its baseline and both databases in one run, with no failed request;
with ``--app-processes N``, PostgreSQL and the ping again, served by N processes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from bench import api
from regtest_cluster.env import ClusterEnv
from regtest_cluster.postgres import PostgresNotInstalled, find_bindir


def _has_postgres() -> bool:
    try:
        find_bindir()
    except PostgresNotInstalled:
        return False
    return True


def test_run_api_bench_reports_reads_writes_and_ratio(tmp_path):
    env = dataclasses.replace(ClusterEnv.from_environ(), runs_dir=tmp_path)
    result = api.run(env, seconds=1, concurrency=4, postgres=_has_postgres(), seed=20)
    assert result["baseline_ping"]["requests"] > 0 and result["baseline_ping"]["failed"] == 0
    dbs = ["sqlite_wal", "postgres"] if _has_postgres() else ["sqlite_wal"]
    for db in dbs:
        for kind in ("reads", "writes"):
            figures = result[db][kind]
            assert figures["requests"] > 0 and figures["failed"] == 0, (db, kind, figures["errors"])
            assert figures["p50_ms"] <= figures["p99_ms"]
            assert figures["server_cpu_ms_per_request"] > 0 and len(figures["server_cpu_share_per_process"]) == 1
        assert result[db]["reads_ratio_to_ping"] > 0 and result[db]["processes"] == 1
    assert "app_processes" not in result


def test_many_concurrent_sqlite_writers_none_fails(tmp_path):
    """More writers than the server's 40 worker threads: each queues in the event loop
    (deps.get_session, its writer gate), not on SQLite's lock inside a thread, where the lock
    holder could not get a thread back and every writer failed after the busy timeout."""
    env = dataclasses.replace(ClusterEnv.from_environ(), runs_dir=tmp_path)
    result = api.run(env, seconds=4, concurrency=64, postgres=False, seed=5)
    writes = result["sqlite_wal"]["writes"]
    assert writes["requests"] > 0 and writes["failed"] == 0, writes["errors"]


@pytest.mark.skipif(not _has_postgres(), reason="PostgreSQL is not installed")
def test_app_processes_serve_postgres_and_the_ping_from_each_process(tmp_path):
    env = dataclasses.replace(ClusterEnv.from_environ(), runs_dir=tmp_path)
    result = api.run(env, seconds=1, concurrency=8, postgres=True, seed=20, app_processes=2)
    many = result["app_processes"]
    assert many["processes"] == 2
    assert many["baseline_ping"]["failed"] == 0 and len(many["baseline_ping"]["server_cpu_share_per_process"]) == 2
    for kind in ("reads", "writes"):
        figures = many["postgres"][kind]
        assert figures["requests"] > 0 and figures["failed"] == 0, (kind, figures["errors"])
        # each worker served: none was left out of the clients' connections
        shares = figures["server_cpu_share_per_process"]
        assert len(shares) == 2 and min(shares) > 0.05, shares
        ratios = (many["postgres"][f"{kind}_ratio_to_ping"], many["postgres"][f"{kind}_ratio_to_one_process_ping"])
        assert min(ratios) > 0, ratios
    assert result["postgres"]["processes"] == 1 and many["postgres"]["processes"] == 2


def test_app_processes_without_postgres_is_refused_naming_the_cause(tmp_path):
    argv = [sys.executable, "-m", "escrowlab", "bench", "api", "--app-processes", "2", "--no-postgres"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ESCROWLAB_RUNS": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert "--app-processes above 1 measures PostgreSQL" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # refused before anything started


def test_a_server_that_never_gets_ready_is_stopped_with_its_workers(tmp_path, monkeypatch):
    """Nothing is left running when a served app does not answer: not the server, not a worker."""
    import psutil

    from regtest_cluster.waiting import WaitTimeout, wait_for

    monkeypatch.setattr(api, "READY_S", 3)
    server = api.Served("bench.ping_app:app", tmp_path, "never", {}, processes=2)
    supervisor = psutil.Process(server.proc.pid)
    wait_for(lambda: len(server.serving()) == 2, timeout=60, what="two workers started")
    started = [supervisor, *supervisor.children(recursive=True)]
    with pytest.raises(WaitTimeout):
        server.wait_ready("/no-such-path")  # answers 404 for ever
    assert [p.pid for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []


def test_a_server_whose_port_was_taken_starts_again_on_another(tmp_path, monkeypatch):
    """A port picked free may be bound by another process before uvicorn binds it (CI runs two
    test workers beside clusters): the server is started again on another port. A server that
    exits for any other reason is reported with what its log says."""
    import socket

    from regtest_cluster.ports import PortAllocator

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real = PortAllocator.take
    ports = iter([taken.getsockname()[1]])
    monkeypatch.setattr(PortAllocator, "take", lambda self: next(ports, None) or real(self))
    try:
        server = api.Served("bench.ping_app:app", tmp_path, "clash", {}).wait_ready(api.PID_PATH)
        try:
            assert server.tries == 2 and server.port != taken.getsockname()[1]
        finally:
            server.stop()
    finally:
        taken.close()
    with pytest.raises(RuntimeError, match=r"server exited \d+: .*no_such_module.*\(log: "):
        api.Served("no_such_module:app", tmp_path, "broken", {}).wait_ready(api.PID_PATH)
