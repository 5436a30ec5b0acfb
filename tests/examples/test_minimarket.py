"""The second marketplace, minimarket (examples/minimarket), judged by the same harness
through its own driver: ln_hold scenarios of the catalogue pass, and each of its
planted bugs is caught by the oracle's invariant for it."""

from __future__ import annotations

import pytest

from examples.minimarket.driver import Driver
from harness.driver import Unsupported
from harness.world import World
from scenarios.catalogue import ALL

SEED = 20261203
# As in tests/scenarios/test_catalogue.py: failed-back payments and a killed app make nodes log errors.
EXPECTED_NODE_ERRORS = r"\[ERR\] (CRTR|HSWC|PEER|SRVR|CMGR|NTFN|DISC|RPCS|INVC|CNCT|LNWL|HLCK|CHFT|FNDG):"
# A release, a refund by timeout, an expiry, a split ruling, custody at the lock horizon, a ship racing
# its deadline, a crash between the payout marker and the payment, concurrent confirmations, a forged
# webhook and a refused payout invoice.
SCENARIOS = ("release_after_delivery", "ship_timeout_refund", "unpaid_order_expires", "dispute_ruling_split",
             "guardian_custody_for_disputed", "ship_at_ship_deadline", "app_crash_after_payout_marker",
             "concurrent_duplicate_confirm", "forged_webhook", "wrong_amount_payout_invoice")
# Each planted bug of minimarket, the scenario that exposes it, and the invariant that must catch it.
BUGS = {"release_without_delivery": ("release_after_delivery", "I4"),
        "double_payout": ("release_after_delivery", "I3")}


def _run(cluster, tmp_path, name: str, bug: str | None = None):
    world = World(cluster, tmp_path / "world", Driver)
    assert isinstance(world.market, Driver)
    return ALL[name](world, SEED, "ln_hold", planted_bug=bug).execute()


def _explain(result) -> str:
    lines = [f"{result.name}: error={result.error}"]
    lines += [f"  {v.invariant} order {v.order_id}: {v.message}" for v in result.violations]
    lines += [f"  | {s.message}" for s in result.steps[-12:]]
    return "\n".join(lines)


@pytest.mark.cluster
@pytest.mark.allow_log(EXPECTED_NODE_ERRORS)
@pytest.mark.parametrize("name", SCENARIOS)
def test_minimarket_holds_every_invariant(cluster, tmp_path, name):
    result = _run(cluster, tmp_path, name)
    assert result.passed, _explain(result)
    assert result.orders and len(result.checked) >= 16


@pytest.mark.cluster
@pytest.mark.allow_log(EXPECTED_NODE_ERRORS)
@pytest.mark.parametrize("bug", list(BUGS))
def test_minimarket_planted_bug_is_caught(cluster, tmp_path, bug):
    name, invariant = BUGS[bug]
    result = _run(cluster, tmp_path, name, bug)
    assert not result.passed
    assert invariant in {v.invariant for v in result.violations}, _explain(result)


def test_the_driver_refuses_what_minimarket_lacks(tmp_path):
    market = Driver(None, tmp_path)
    with pytest.raises(Unsupported):
        market.start({"planted_bug": "skip_cas"})  # a bug of the reference app's, not minimarket's
    with pytest.raises(Unsupported):
        market.list_item(None, "a multisig item", 10_000, mode="onchain_multisig")
    with pytest.raises(Unsupported):
        market.courier_secret("pigeonpost")
    market.http.close()
