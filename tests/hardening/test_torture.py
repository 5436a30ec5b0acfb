"""Crash-recovery torture: plans are seeded and cover every kill, and a 10-run
torture on the real hub cluster loses nothing (the CI-sized version of
``escrowlab torture --runs 100``)."""

from __future__ import annotations

import pytest

from scenarios.torture import PATHS, SIGKILL, TortureRun, torture

RUNS = 10


def plans(seed: int, runs: int) -> list:
    return [TortureRun(None, seed, i).plan for i in range(runs)]  # the world is only used by execute()


def test_plan_same_seed_same_choices():
    assert plans(7, 20) == plans(7, 20)
    assert plans(7, 20) != plans(8, 20)


def test_plan_covers_every_path_and_kill():
    chosen = plans(1, 200)
    kills = {(p.path, p.kill) for p in chosen}
    assert kills == {(path, kill) for path, points in PATHS.items() for kill in (*points, SIGKILL)}
    assert all(p.delay_s == 0 for p in chosen if p.kill != SIGKILL)


@pytest.mark.cluster
def test_torture_ten_runs_lose_nothing(cluster_pool, tmp_path):
    summary = torture(cluster_pool.get("hub"), tmp_path, RUNS, seed=2026)
    print(f"\ntorture: {summary.as_dict()}")
    assert summary.runs == RUNS
    assert summary.sats_lost == 0
    assert not summary.failures, summary.failures
    assert sum(summary.kill_points.values()) >= RUNS // 2, f"few kills happened: {summary.as_dict()}"
    assert summary.escrows_checked >= RUNS
