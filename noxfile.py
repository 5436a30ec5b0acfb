"""nox sessions, for those who use nox; `./dev` does the same without it."""

import nox

nox.options.sessions = ["unit", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def unit(session: nox.Session) -> None:
    """Pure-logic tests: no nodes and no PostgreSQL needed."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "not cluster and not postgres", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite on real bitcoind and LND (provisioned first); needs apt-get install postgresql."""
    session.install("-e", ".[dev]")
    session.run("escrowlab", "nodes", "install")
    session.run("pytest", *session.posargs)


@nox.session
def tests_postgres(session: nox.Session) -> None:
    """The app's tests again, on a throwaway PostgreSQL server (needs apt-get install postgresql)."""
    session.install("-e", ".[dev]")
    session.run("escrowlab", "nodes", "install")
    paths = session.posargs or ["tests/reference_app", "tests/regtest_cluster/test_postgres.py"]
    session.run("pytest", *paths, env={"ESCROWLAB_TEST_DB": "postgres"})


@nox.session
def demo(session: nox.Session) -> None:
    """The main job."""
    session.install("-e", ".[dev]")
    session.run("escrowlab", "nodes", "install")
    session.run("escrowlab", "demo", *session.posargs)
