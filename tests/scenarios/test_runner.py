"""The runner's bookkeeping for `--jobs`, without nodes: the plan keeps report order, the
board says what runs and what is done, and lanes started early are stopped when unused.
(Running stories in lanes on real clusters is test_catalogue.py's session run.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.scenario import ScenarioResult
from scenarios import runner
from scenarios.catalogue import BUG_SCENARIOS


def test_plan_is_the_serial_order_scenarios_then_planted_bugs():
    names = ["buyer_confirms_early", "onchain_overpaid", "release_after_delivery"]
    jobs = runner.plan(names, "all", ["skip_cas", "fee_from_escrow"], None)
    assert [j.index for j in jobs] == [0, 1, 2, 3, 4]
    assert [j.folder for j in jobs] == ["scenario-01-buyer_confirms_early", "scenario-02-onchain_overpaid",
                                        "scenario-03-release_after_delivery", "planted-01-skip_cas",
                                        "planted-02-fee_from_escrow"]
    assert [j.mode for j in jobs[:3]] == ["ln_hold", "onchain_multisig", "ln_hold"]
    assert [(j.name, j.planted_bug, j.planted) for j in jobs[3:]] == [
        (BUG_SCENARIOS["skip_cas"], "skip_cas", True), (BUG_SCENARIOS["fee_from_escrow"], "fee_from_escrow", True)]
    assert jobs[3].label == f"skip_cas against {BUG_SCENARIOS['skip_cas']}"


def test_plan_refuses_what_the_catalogue_lacks():
    with pytest.raises(runner.UnknownScenario, match="no scenario named nope"):
        runner.plan(["nope"], "all", [], None)
    with pytest.raises(runner.UnknownScenario, match="has no ln_hold story"):
        runner.plan(["onchain_overpaid"], "ln_hold", [], None)


def test_board_shows_running_lanes_and_logs_each_finish():
    logged, shown = [], []

    class Step:
        def __call__(self, message):
            logged.append(message)

        def status(self, message):
            shown.append(message)

    board = runner.Board(Step(), total=2)
    a, b = runner.plan(["release_after_delivery", "buyer_confirms_early"], "all", [], None)
    board.start(1, a)
    board.start(2, b)
    assert shown[-1] == "done 0/2 · running: release_after_delivery (lane 1), buyer_confirms_early (lane 2)"
    result = ScenarioResult(b.name, 1, "ln_hold", False, 3.5)
    board.finish(2, b, result)
    assert logged[-1] == "[1/2] buyer_confirms_early: FAILED in 3.5s (lane 2)"
    assert shown[-1] == "done 1/2 · running: release_after_delivery (lane 1)"


def test_early_lanes_stop_the_clusters_the_run_did_not_take(tmp_path: Path):
    stopped = []

    class Lane:
        def __init__(self, folder):
            self.folder = folder

        def stop(self):
            stopped.append(self.folder.name)

    lanes = runner.EarlyLanes(Lane, tmp_path, jobs=4)
    assert lanes(tmp_path / "lane-3").folder.name == "lane-3"
    lanes.close()
    assert sorted(stopped) == ["lane-2", "lane-4"]


def test_jobs_below_one_is_refused_before_anything_starts():
    proc = subprocess.run([sys.executable, "-m", "escrowlab", "scenario", "run", "--all", "--jobs", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--jobs" in proc.stderr


def test_the_session_run_takes_only_the_stories_pytest_selected():
    from types import SimpleNamespace

    from tests.scenarios import test_catalogue as cat

    def item(test, **params):
        return SimpleNamespace(module=cat, originalname=test, callspec=SimpleNamespace(params=params))

    other = SimpleNamespace(module=runner, originalname=cat.SCENARIO_TEST,
                            callspec=SimpleNamespace(params={"name": "operator_gone"}))
    items = [item(cat.PLANTED_TEST, bug="skip_cas"), item(cat.SCENARIO_TEST, name="onchain_overpaid"),
             item(cat.SCENARIO_TEST, name="release_after_delivery"), other,
             SimpleNamespace(module=cat, originalname="test_node_logs_show_only_the_errors_stories_cause")]
    assert cat.selected(items, cat.__name__) == (["release_after_delivery", "onchain_overpaid"], ["skip_cas"])
