"""Every scenario of the catalogue under pytest, on the session's shared cluster,
then every planted bug: the oracle must fail the scenario that exposes it."""

from __future__ import annotations

import pytest

from scenarios.catalogue import ALL, BUG_SCENARIOS
from harness.world import World

pytestmark = pytest.mark.cluster

SEED = 20261121
# Scenarios fail payments back, stop nodes and crash the app on purpose; the
# node logs say so. The oracle judges them on node truth instead.
EXPECTED_NODE_ERRORS = r"\[ERR\] (CRTR|HSWC|PEER|SRVR|CMGR|NTFN|DISC|RPCS|INVC|CNCT|LNWL|HLCK|CHFT|FNDG):"


def _run(cluster, tmp_path, name: str, bug: str | None = None):
    world = World(cluster, tmp_path / "world")
    return ALL[name](world, SEED, planted_bug=bug).execute()


def _explain(result) -> str:
    lines = [f"{result.name}: error={result.error}"]
    lines += [f"  {v.invariant} order {v.order_id}: {v.message}" for v in result.violations]
    lines += [f"  | {s.message}" for s in result.steps[-12:]]
    return "\n".join(lines)


@pytest.mark.allow_log(EXPECTED_NODE_ERRORS)
@pytest.mark.parametrize("name", list(ALL))
def test_scenario_holds_every_invariant(cluster, tmp_path, name):
    result = _run(cluster, tmp_path, name)
    assert result.passed, _explain(result)
    assert len(result.checked) >= 16


@pytest.mark.allow_log(EXPECTED_NODE_ERRORS)
@pytest.mark.parametrize("bug", list(BUG_SCENARIOS))
def test_planted_bug_is_caught_by_the_oracle(cluster, tmp_path, bug):
    result = _run(cluster, tmp_path, BUG_SCENARIOS[bug], bug)
    caught = {v.invariant for v in result.violations}
    assert caught, f"planted bug {bug} went unnoticed:\n{_explain(result)}"
