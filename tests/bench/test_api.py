"""`bench api` measures its baseline and both databases in one run, with no failed request."""

from __future__ import annotations

import dataclasses

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
        assert result[db]["reads_ratio_to_ping"] > 0


def test_many_concurrent_sqlite_writers_none_fails(tmp_path):
    """More writers than the server's 40 worker threads: each queues in the event loop
    (deps.get_session, its writer gate), not on SQLite's lock inside a thread, where the lock
    holder could not get a thread back and every writer failed after the busy timeout."""
    env = dataclasses.replace(ClusterEnv.from_environ(), runs_dir=tmp_path)
    result = api.run(env, seconds=4, concurrency=64, postgres=False, seed=5)
    writes = result["sqlite_wal"]["writes"]
    assert writes["requests"] > 0 and writes["failed"] == 0, writes["errors"]
