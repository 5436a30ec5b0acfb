"""Which database the app's tests run on: a SQLite file per test by default;
``ESCROWLAB_TEST_DB=postgres`` starts one PostgreSQL server for the session
and gives every ``make_settings`` call a fresh database on it."""

from __future__ import annotations

import os
import re
from typing import Iterator

import pytest

from regtest_cluster.postgres import PostgresNotInstalled, PostgresServer

BACKENDS = ("sqlite", "postgres")


def backend() -> str:
    return os.environ.get("ESCROWLAB_TEST_DB") or "sqlite"


class TestDatabases:
    """Fresh databases on the session's server; each test's are dropped after it, unless it failed."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.made: list[str] = []
        self._count = 0

    def fresh_url(self, hint: str) -> str:
        # The number keeps names unique; the hint (the test's tmp_path name) says whose it is.
        self._count += 1
        name = f"t{self._count:04d}_{re.sub(r'[^a-z0-9_]', '_', hint.lower())}"[:63]
        self.made.append(name)
        return self.server.create_database(name)

    def end_test(self, failed: bool) -> None:
        for name in [] if failed else self.made:
            self.server.drop_database(name)
        self.made.clear()


# make_settings is a plain function (called from fixtures and tests alike), so it
# reaches the session's databases here rather than through a fixture argument.
_active: TestDatabases | None = None
_kept: list[str] = []  # said in the terminal summary: output of session teardown is captured


def fresh_database_url(hint: str) -> str | None:
    """A new, empty PostgreSQL database's URL, or None when the suite runs on SQLite."""
    if backend() != "postgres":
        return None
    if _active is None:
        raise RuntimeError("ESCROWLAB_TEST_DB=postgres but the test_databases fixture has not started")
    return _active.fresh_url(hint)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL server binaries (apt-get install postgresql)")
    if backend() not in BACKENDS:
        raise pytest.UsageError(f"ESCROWLAB_TEST_DB={backend()!r}: expected one of {', '.join(BACKENDS)}")


def pytest_report_header() -> str:
    return f"app database: {backend()} (ESCROWLAB_TEST_DB)"


def pytest_terminal_summary(terminalreporter) -> None:
    for line in _kept:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def test_databases(request) -> Iterator[TestDatabases | None]:
    """The session's PostgreSQL server under ESCROWLAB_TEST_DB=postgres; None on SQLite."""
    global _active
    if backend() != "postgres":
        yield None
        return
    try:
        server = PostgresServer().start()
    except PostgresNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)  # fail, not skip: CI installs PostgreSQL
    _active = TestDatabases(server)
    yield _active
    _active = None
    keep = request.session.testsfailed > 0
    server.stop(keep=keep)
    if keep:
        _kept.append(f"PostgreSQL folder kept (failed tests' databases, log): {server.root}")


@pytest.fixture(autouse=True)
def _drop_test_databases(request, test_databases: TestDatabases | None) -> Iterator[None]:
    # Autouse, so torn down after the test's app fixtures have closed their pools.
    yield
    if test_databases is not None:
        report = getattr(request.node, "rep_call", None)
        test_databases.end_test(failed=bool(report and report.failed))
