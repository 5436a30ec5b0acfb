"""nox sessions, for those who use nox; `./dev` does the same without it."""

import nox

nox.options.sessions = ["unit", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def unit(session: nox.Session) -> None:
    """Pure-logic tests: no nodes needed."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "not cluster", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite on real bitcoind and LND (provisioned first)."""
    session.install("-e", ".[dev]")
    session.run("escrowlab", "nodes", "install")
    session.run("pytest", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job."""
    session.install("-e", ".[dev]")
    session.run("escrowlab", "nodes", "install")
    session.run("escrowlab", "demo", *session.posargs)
