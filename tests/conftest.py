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
# Lines for the end of pytest's report, by heading (a kept PostgreSQL folder, the wheel's install
# figures): what session teardown prints is captured, and a reader of CI's log looks there. Under
# pytest-xdist (./dev test runs two processes) a worker's lines reach the controller, which
# writes the report, through xdist's ``workeroutput``.
SUMMARY: dict[str, list[str]] = {}
_SUMMARY_KEY = "escrowlab_summary"


def summarize(heading: str, line: str) -> None:
    SUMMARY.setdefault(heading, []).append(line)


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


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker, after its session fixtures' teardown
        workeroutput[_SUMMARY_KEY] = SUMMARY


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, on the controller
def pytest_testnodedown(node, error) -> None:
    for heading, lines in getattr(node, "workeroutput", {}).get(_SUMMARY_KEY, {}).items():
        SUMMARY.setdefault(heading, []).extend(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for heading, lines in SUMMARY.items():
        terminalreporter.section(heading)
        for line in lines:
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
        summarize("PostgreSQL", f"folder kept (failed tests' databases, log): {server.root}")


@pytest.fixture(autouse=True)
def _drop_test_databases(request, test_databases: TestDatabases | None) -> Iterator[None]:
    # Autouse, so torn down after the test's app fixtures have closed their pools.
    yield
    if test_databases is not None:
        report = getattr(request.node, "rep_call", None)
        test_databases.end_test(failed=bool(report and report.failed))
