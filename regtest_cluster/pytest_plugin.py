"""pytest fixtures for real regtest nodes, in the style of pyln-testing.

- ``bitcoind``: a lone regtest bitcoind with a mature miner wallet.
- ``lnd_factory``: build small networks on demand (``get_nodes``, ``line_graph``,
  ``hub_graph``); all are stopped at teardown.
- ``cluster``: a shipped or given topology, shared across the tests of a session
  (pick one with ``@pytest.mark.topology("line")``). Tests that kill or restart
  nodes ask for ``fresh_cluster`` instead.

Every fixture runs on the process backend, or on containers with
``--cluster-backend docker`` (or ESCROWLAB_BACKEND=docker); a conftest can
override ``cluster_backend`` (and ``cluster_pool``) for one folder.

Teardown scans node logs for errors and panics. A test that expects some
declares them: ``@pytest.mark.allow_log(r"regex")``. Teardown checks raise
last, after every node is stopped. Failed runs keep their run folder.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from . import waiting
from .cluster import Cluster, ClusterError, ProcessBackend
from .daemon import Daemon, LogTail
from .env import BACKENDS, ClusterEnv
from .launcher import backend_maker
from .nodes.bitcoind import BitcoinD, BitcoinDPorts
from .ports import PortAllocator
from .provision import MissingBinaries, resolve
from .rundir import new_run_dir
from .topology import Topology, load, parse

# Lines that fail a test unless it declares them.
LOG_ERROR_PATTERNS = (r"\[ERR\]", r"\[CRT\]", r"^panic:", r"goroutine \d+ \[running\]", r"EXCEPTION:")
# Expected on every regtest run: bitcoind has no fee history to estimate from;
# lnd logs a client closing a stream it no longer needs (a subscription that
# saw its final state) as an error, and so an answer of "never paid" to a
# TrackPayment question, which the at-most-once payout protocol asks on purpose.
BASELINE_ALLOWED = (r"fee estimation data not available yet",
                    r"\[/(invoicesrpc\.Invoices/SubscribeSingleInvoice|routerrpc\.Router/\w+)\]: .*context canceled",
                    r"TrackPaymentV2\]: payment isn't initiated",
                    # the same client-side cancel of a TrackPayment stream, as the router logs it
                    r"RRPC: TrackPayment got error for payment \w+: rpc error: code = Canceled",
                    # lnd exits when another process took its port before it bound it; the cluster
                    # starts it again on new ports (daemon.start_with_port_retry), and a node that
                    # never comes up fails the cluster's start, so this line hides no failure
                    r"LTND: Shutting down due to error in main method .*bind: address already in use")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cluster-backend", choices=BACKENDS, default=None,
                     help="run the cluster fixtures as processes or docker containers "
                          "(default: ESCROWLAB_BACKEND, else process)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology(name): topology for the `cluster` fixture (default: hub)")
    config.addinivalue_line("markers", "allow_log(regex, ...): node log lines this test expects")
    config.addinivalue_line("markers", "docker: runs on the docker backend (skipped when no Docker engine answers)")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def _failed(request: pytest.FixtureRequest) -> bool:
    rep = getattr(request.node, "rep_call", None)
    return bool(rep and rep.failed)


@pytest.fixture(scope="session")
def cluster_env() -> ClusterEnv:
    env = ClusterEnv.from_environ()
    waiting.set_timeout_factor(env.timeout_factor)
    return env


@pytest.fixture(scope="session")
def node_binaries(cluster_env: ClusterEnv):
    try:
        return resolve(cluster_env)
    except MissingBinaries as exc:
        # Fail, not skip: a suite that silently skips its node tests proves nothing.
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def cluster_backend(request, cluster_env: ClusterEnv) -> Callable[[str], ProcessBackend]:
    """Makes each fixture cluster's backend (``maker(label)``): processes, or containers with
    ``--cluster-backend docker`` / ``ESCROWLAB_BACKEND=docker``."""
    name = request.config.getoption("--cluster-backend") or cluster_env.backend
    try:
        return backend_maker(cluster_env, name)
    except ClusterError as exc:
        # Fail, not skip: the backend was asked for by name.
        pytest.fail(str(exc), pytrace=False)


def _new_cluster(topo: Topology, env: ClusterEnv, binaries, backend) -> Cluster:
    return Cluster(topo, binaries, new_run_dir(env.runs_dir, topo.name), backend=backend(topo.name))


class LogCheck:
    """Collects unexpected error lines from daemons' logs written during one test."""

    def __init__(self, daemons: list[Daemon], allowed: list[str], from_start: bool = False) -> None:
        self.tails = [(d, LogTail(d.log_path)) for d in daemons]
        if not from_start:
            for _, tail in self.tails:
                tail.new_lines()  # start from the current end: earlier tests' lines are theirs
        self.allowed = [re.compile(a) for a in (*BASELINE_ALLOWED, *allowed)]
        self.errors = re.compile("|".join(LOG_ERROR_PATTERNS))

    def unexpected(self) -> list[str]:
        found = []
        for daemon, tail in self.tails:
            for line in tail.new_lines():
                if self.errors.search(line) and not any(a.search(line) for a in self.allowed):
                    found.append(f"{daemon.name}: {line.strip()}")
        return found


def _allowed(request: pytest.FixtureRequest) -> list[str]:
    return [p for m in request.node.iter_markers("allow_log") for p in m.args]


def _daemons(cluster: Cluster) -> list[Daemon]:
    return [cluster.bitcoind.daemon, *(n.daemon for n in cluster.nodes.values())]


def _finish(request: pytest.FixtureRequest, check: LogCheck, run_dir: Path, stop, remove=True) -> None:
    """Read the logs before stopping (peers going away log errors of their own),
    stop, and only then raise: teardown checks raise last."""
    bad = check.unexpected()
    stop()
    if _failed(request) or bad:
        print(f"\nrun folder kept: {run_dir}")
    elif remove:
        shutil.rmtree(run_dir, ignore_errors=True)
    if bad:
        pytest.fail("unexpected errors in node logs (declare them with @pytest.mark.allow_log):\n"
                    + "\n".join(bad[:20]), pytrace=False)


@pytest.fixture
def bitcoind(request, cluster_env: ClusterEnv, node_binaries, cluster_backend) -> Iterator[BitcoinD]:
    run_dir = new_run_dir(cluster_env.runs_dir, "bitcoind")
    t = PortAllocator().take
    backend = cluster_backend("bitcoind")
    node = backend.bitcoind(node_binaries, run_dir / "bitcoind",
                            BitcoinDPorts(rpc=t(), p2p=t(), zmq_block=t(), zmq_tx=t()))

    def stop() -> None:
        try:
            node.stop()
        finally:
            backend.release()

    try:
        backend.prepare()
        node.start()
        node.ensure_miner_wallet()
        node.mine(101)
    except BaseException:
        stop()
        raise
    check = LogCheck([node.daemon], _allowed(request), from_start=True)
    yield node
    _finish(request, check, run_dir, stop)


class LndFactory:
    """Builds small networks on demand; each call is its own cluster with its own bitcoind."""

    def __init__(self, env: ClusterEnv, binaries, backend=lambda _label: ProcessBackend()) -> None:
        self.env, self.binaries, self.backend = env, binaries, backend
        self.clusters: list[Cluster] = []

    def _start(self, topo: Topology) -> Cluster:
        cluster = _new_cluster(topo, self.env, self.binaries, self.backend)
        cluster.start()
        self.clusters.append(cluster)
        return cluster

    def get_nodes(self, n: int, funding_sats: int = 5_000_000) -> Cluster:
        return self._start(parse({"name": "nodes", "nodes": [
            {"name": f"n{i}", "funding_sats": funding_sats} for i in range(n)]}))

    def line_graph(self, n: int, capacity_sats: int = 1_000_000) -> Cluster:
        nodes = [{"name": f"n{i}", "funding_sats": capacity_sats * 2} for i in range(n)]
        chans = [{"from": f"n{i}", "to": f"n{i + 1}", "capacity_sats": capacity_sats} for i in range(n - 1)]
        return self._start(parse({"name": "line", "nodes": nodes, "channels": chans}))

    def hub_graph(self, spokes: int, capacity_sats: int = 1_000_000) -> Cluster:
        nodes = [{"name": "hub", "role": "hub", "funding_sats": capacity_sats * spokes + 1_000_000}]
        nodes += [{"name": f"s{i}", "funding_sats": capacity_sats * 2} for i in range(spokes)]
        chans = [{"from": f"s{i}", "to": "hub", "capacity_sats": capacity_sats} for i in range(spokes)]
        return self._start(parse({"name": "hubgraph", "nodes": nodes, "channels": chans}))


@pytest.fixture
def lnd_factory(request, cluster_env: ClusterEnv, node_binaries, cluster_backend) -> Iterator[LndFactory]:
    factory = LndFactory(cluster_env, node_binaries, cluster_backend)
    yield factory
    for cluster in factory.clusters:
        check = LogCheck(_daemons(cluster), _allowed(request), from_start=True)
        _finish(request, check, cluster.run_dir, cluster.stop)


class ClusterPool:
    """One running cluster per topology, shared by the tests of a session."""

    def __init__(self, env: ClusterEnv, binaries, backend=lambda _label: ProcessBackend()) -> None:
        self.env, self.binaries, self.backend = env, binaries, backend
        self.clusters: dict[str, Cluster] = {}

    def get(self, topology: str) -> Cluster:
        topo = load(topology)
        cluster = self.clusters.get(topo.name)
        if cluster is None or not all(d.is_running() for d in _daemons(cluster)):
            if cluster is not None:
                cluster.stop()
            cluster = _new_cluster(topo, self.env, self.binaries, self.backend)
            cluster.start()
            self.clusters[topo.name] = cluster
        return cluster

    def close(self, keep: bool) -> None:
        for cluster in self.clusters.values():
            cluster.stop()
            if keep:
                print(f"\nrun folder kept: {cluster.run_dir}")
            else:
                cluster.remove_run_dir()


@pytest.fixture(scope="session")
def cluster_pool(request, cluster_env: ClusterEnv, node_binaries, cluster_backend) -> Iterator[ClusterPool]:
    pool = ClusterPool(cluster_env, node_binaries, cluster_backend)
    yield pool
    pool.close(keep=request.session.testsfailed > 0)


def _topology_name(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("topology")
    if marker:
        return marker.args[0]
    return getattr(request, "param", "hub")


@pytest.fixture
def cluster(request, cluster_pool: ClusterPool) -> Iterator[Cluster]:
    """A shared, running cluster. Do not kill or reconfigure its nodes: use ``fresh_cluster``."""
    c = cluster_pool.get(_topology_name(request))
    check = LogCheck(_daemons(c), _allowed(request))
    yield c
    bad = check.unexpected()
    if bad:
        pytest.fail("unexpected errors in node logs (declare them with @pytest.mark.allow_log):\n"
                    + "\n".join(bad[:20]), pytrace=False)


@pytest.fixture
def fresh_cluster(request, cluster_env: ClusterEnv, node_binaries, cluster_backend) -> Iterator[Cluster]:
    """A cluster of this test's own, stopped at teardown; free to kill and restart nodes."""
    topo = load(_topology_name(request))
    c = _new_cluster(topo, cluster_env, node_binaries, cluster_backend)
    c.start()
    check = LogCheck(_daemons(c), _allowed(request), from_start=True)
    yield c
    _finish(request, check, c.run_dir, c.stop)
