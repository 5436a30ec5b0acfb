"""Crash-recovery torture: plans are seeded and cover every path and kill, and a 10-run
torture on the real hub cluster kills the app on every path and loses nothing (the
CI-sized version of ``escrowlab torture --runs 100``)."""

from __future__ import annotations

import pytest

from reference_app.services.faults import POINTS
from scenarios.torture import PATHS, SIGKILL, plan_for, torture

RUNS = 10
SEED = 2026


def plans(seed: int, runs: int) -> list:
    return [plan_for(seed, i) for i in range(runs)]


def test_plan_same_seed_same_choices():
    assert plans(7, 20) == plans(7, 20)
    assert plans(7, 20) != plans(8, 20)


def test_plan_covers_every_path_and_kill():
    chosen = plans(1, 300)
    kills = {(p.path, p.kill) for p in chosen}
    assert kills == {(path, kill) for path, points in PATHS.items() for kill in (*points, SIGKILL)}
    assert all(p.delay_s == 0 for p in chosen if p.kill != SIGKILL)


def test_plan_first_runs_take_every_path():
    for seed in (SEED, 7, 1, 99):
        assert {p.path for p in plans(seed, len(PATHS))} == set(PATHS)


def test_plan_first_runs_take_every_kill_of_every_path_once():
    every = {(path, kill) for path, points in PATHS.items() for kill in (*points, SIGKILL)}
    for seed in (SEED, 7, 1, 99):
        first = [(p.path, p.kill) for p in plans(seed, len(every))]
        assert sorted(first) == sorted(every)


def test_plan_points_are_the_apps():
    assert {point for points in PATHS.values() for point in points} == set(POINTS)


@pytest.mark.cluster
def test_torture_ten_runs_lose_nothing(cluster_pool, tmp_path):
    summary = torture(cluster_pool.get("hub"), tmp_path, RUNS, seed=SEED)
    print(f"\ntorture: {summary.as_dict()}")
    assert summary.runs == RUNS
    assert summary.sats_lost == 0
    assert not summary.failures, summary.failures
    assert summary.paths_hit() == set(PATHS), f"a path was never killed: {summary.as_dict()}"
    assert sum(summary.kill_points.values()) >= RUNS // 2, f"few kills happened: {summary.as_dict()}"
    assert summary.escrows_checked + summary.withdrawals_checked >= RUNS
