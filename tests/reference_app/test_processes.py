"""The app as several processes on one port (``app serve --processes N``): they share the
database, and its compare-and-swap keeps them correct. The race stories and a crash between
the payout marker and the payment run against two processes, on real nodes."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from harness.http import ReferenceMarketplace
from harness.world import World
from regtest_cluster.waiting import wait_for
from scenarios.catalogue import ALL

pytestmark = pytest.mark.cluster

SEED = 20261203
EXPECTED_NODE_ERRORS = r"\[ERR\] (CRTR|HSWC|PEER|SRVR|CMGR|NTFN|DISC|RPCS|INVC|CNCT|LNWL|HLCK|CHFT|FNDG):"
# Restarted after the crash, both processes may send the payout the marker names; lnd pays a
# hash once and tells the second "payment is in transition" (payouts.py counts on that).
SECOND_SEND = r"\[ERR\] RRPC: SendPayment async error for payment \w+: payment is in transition"


def TwoProcesses(cluster, run_dir):
    return ReferenceMarketplace(cluster, run_dir, processes=2)


def _explain(result) -> str:
    return "\n".join([f"{result.name}: error={result.error}",
                      *(f"  {v.invariant} order {v.order_id}: {v.message}" for v in result.violations),
                      *(f"  | {s.message}" for s in result.steps[-12:])])


@pytest.mark.allow_log(EXPECTED_NODE_ERRORS, SECOND_SEND)
@pytest.mark.parametrize("name", ["double_release_race", "concurrent_duplicate_confirm",
                                  "app_crash_after_payout_marker", "release_after_delivery"])
def test_race_and_crash_stories_hold_with_two_app_processes(cluster, tmp_path, name):
    world = World(cluster, tmp_path / "world", TwoProcesses)
    result = ALL[name](world, SEED, "ln_hold").execute()
    assert result.passed, _explain(result)


def test_two_processes_serve_one_port_and_die_with_the_parent(cluster, tmp_path):
    world = World(cluster, tmp_path / "world", TwoProcesses)
    world.start_app({"password_hashing": "light"})
    try:
        parent = psutil.Process(world.market.daemon.pid)
        children = parent.children()
        assert len(children) == 1  # the parent serves too
        answers = [world.market.http.get("/health") for _ in range(20)]
        assert {a.status_code for a in answers} == {200}
        # each answer names the process that gave it, and counts the wakes it sent to the other
        assert {a.json()["process"]["of"] for a in answers} == {2}
        assert {a.json()["process"]["index"] for a in answers} <= {0, 1}
        counters = [a.json()["counters"] for a in answers]
        assert all(c["wakes_dropped"] == c["rings_dropped"] == 0 for c in counters)
        os.kill(parent.pid, signal.SIGKILL)  # the parent alone dies: its other process goes with it
        wait_for(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
                 timeout=10, what="the app's second process to exit")
    finally:
        world.stop_app()
