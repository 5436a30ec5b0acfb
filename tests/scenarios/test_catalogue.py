"""Every scenario of the catalogue under pytest, then every planted bug: the oracle must
fail the scenario that exposes it.

The stories run once per session, several at once (``scenario run --jobs``): the first
lane on the session's hub cluster, the others on hub clusters of their own. Each test
then judges its own story's result, so a test id still names one scenario or one planted
bug, and ``-k`` runs only the stories it selects. ``ESCROWLAB_SCENARIO_JOBS`` sets the
lanes (default 4; 1 runs them one by one on the session's cluster, as before).

Under pytest-xdist the module runs whole in one process (``./dev test`` distributes by file):
a process that runs any of its tests runs every story its session selected.
"""

from __future__ import annotations

import os

import pytest

from harness.scenario import ScenarioResult
from regtest_cluster.cluster import Cluster
from regtest_cluster.pytest_plugin import LogCheck
from regtest_cluster.topology import load
from scenarios import runner
from scenarios.catalogue import ALL, BUG_SCENARIOS

pytestmark = pytest.mark.cluster

SEED = 20261121
JOBS = int(os.environ.get("ESCROWLAB_SCENARIO_JOBS", "4"))
# Scenarios fail payments back, stop nodes and crash the app on purpose; the
# node logs say so. The oracle judges them on node truth instead.
EXPECTED_NODE_ERRORS = r"\[ERR\] (CRTR|HSWC|PEER|SRVR|CMGR|NTFN|DISC|RPCS|INVC|CNCT|LNWL|HLCK|CHFT|FNDG):"
SCENARIO_TEST, PLANTED_TEST = "test_scenario_holds_every_invariant", "test_planted_bug_is_caught_by_the_oracle"


class Catalogue:
    """The session's run: each story's result, and the node-log lines nobody expected."""

    def __init__(self, scenarios: dict[str, ScenarioResult], planted: dict[str, ScenarioResult],
                 unexpected: list[str]) -> None:
        self.scenarios, self.planted, self.unexpected = scenarios, planted, unexpected


def selected(items, module: str) -> tuple[list[str], list[str]]:
    """The scenarios and planted bugs this session's selection (``-k``, node ids) kept, in catalogue order."""
    names, bugs = set(), set()
    for item in items:
        if item.module.__name__ != module or not hasattr(item, "callspec"):
            continue
        if item.originalname == SCENARIO_TEST:
            names.add(item.callspec.params["name"])
        elif item.originalname == PLANTED_TEST:
            bugs.add(item.callspec.params["bug"])
    return [n for n in ALL if n in names], [b for b in BUG_SCENARIOS if b in bugs]


def _daemons(cluster: Cluster) -> list:
    return [cluster.bitcoind.daemon, *(n.daemon for n in cluster.nodes.values())]


@pytest.fixture(scope="session")
def catalogue(request, cluster_pool, cluster_env, node_binaries, cluster_backend, tmp_path_factory) -> Catalogue:
    names, bugs = selected(request.session.items, __name__)
    hub = cluster_pool.get("hub")
    checks = [LogCheck(_daemons(hub), [EXPECTED_NODE_ERRORS])]
    unexpected: list[str] = []

    def lane(folder) -> Cluster:
        """Another lane's hub cluster, started as the pool starts its own; its logs are read
        before it stops (peers going away log errors of their own)."""
        cluster = Cluster(load("hub"), node_binaries, folder, backend=cluster_backend("hub"))
        cluster.start()
        check, stop = LogCheck(_daemons(cluster), [EXPECTED_NODE_ERRORS], from_start=True), cluster.stop

        def checked_stop() -> None:
            unexpected.extend(check.unexpected())
            stop()

        cluster.stop = checked_stop
        return cluster

    result = runner.run_on(hub, names, SEED, "all", bugs, run_dir=tmp_path_factory.mktemp("catalogue"),
                           jobs=JOBS, lanes=lane)
    for check in checks:
        unexpected.extend(check.unexpected())
    return Catalogue({r.name: r for r in result.scenarios}, {r.planted_bug: r for r in result.planted}, unexpected)


def _explain(result) -> str:
    lines = [f"{result.name}: error={result.error}"]
    lines += [f"  {v.invariant} order {v.order_id}: {v.message}" for v in result.violations]
    lines += [f"  | {s.message}" for s in result.steps[-12:]]
    return "\n".join(lines)


@pytest.mark.parametrize("name", list(ALL))
def test_scenario_holds_every_invariant(catalogue, name):
    result = catalogue.scenarios[name]
    if result.skipped and ALL[name].needs:  # e.g. an LDK buyer: tests/scenarios/test_interop.py runs it
        pytest.skip(f"{name} {result.skipped}")
    assert result.passed, _explain(result)
    assert len(result.checked) >= 16


@pytest.mark.parametrize("bug", list(BUG_SCENARIOS))
def test_planted_bug_is_caught_by_the_oracle(catalogue, bug):
    result = catalogue.planted[bug]
    caught = {v.invariant for v in result.violations}
    assert caught, f"planted bug {bug} went unnoticed:\n{_explain(result)}"


def test_node_logs_show_only_the_errors_stories_cause(catalogue):
    """What the per-test log check of the ``cluster`` fixture did, for the whole run."""
    assert not catalogue.unexpected, "unexpected errors in node logs:\n" + "\n".join(catalogue.unexpected[:20])
