"""How `scenario interop` runs its pairs, without nodes: clusters and stories stand in, so
what is checked is the scheduling (several pairs at once, results in pair order, a failing
pair's error raised, nothing left running). The stories on real nodes are in test_interop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness.scenario import ScenarioResult
from regtest_cluster.env import ClusterEnv
from scenarios import interop, runner

NAMES = ["release_after_delivery"]


class Stand:
    """What the pairs did: clusters started and stopped, the most running at once."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail, self.started, self.stopped, self.running, self.most = fail, [], [], 0, 0
        self.lock = threading.Lock()

    def launch(self, topology, env, run_dir: Path, backend: str):
        pair = run_dir.name
        if pair == self.fail:
            raise RuntimeError(f"{pair}: the cluster did not start")
        stand = self

        class Cluster:
            def stop(self) -> None:
                with stand.lock:
                    if pair not in stand.stopped:
                        stand.stopped.append(pair)
                        stand.running -= 1

        with self.lock:
            self.started.append(pair)
            self.running += 1
            self.most = max(self.most, self.running)
        return Cluster()

    def run_on(self, cluster, names, seed, mode, run_dir: Path, **_kw) -> runner.RunResult:
        time.sleep(0.2)  # long enough for a second pair to start meanwhile, when allowed to
        return runner.RunResult(seed, run_dir, [ScenarioResult(n, seed, mode, True, 0.2) for n in names])


@pytest.fixture
def env(tmp_path) -> ClusterEnv:
    return ClusterEnv(cache_dir=tmp_path / "cache", runs_dir=tmp_path / "runs", timeout_factor=1.0,
                      bitcoind=None, bitcoin_cli=None, lnd=None, lncli=None)


def stand_in(monkeypatch, fail: str | None = None) -> Stand:
    stand = Stand(fail)
    monkeypatch.setattr(interop.launcher, "launch", stand.launch)
    monkeypatch.setattr(interop.runner, "run_on", stand.run_on)
    return stand


def test_two_jobs_run_two_pairs_at_once_and_keep_the_pair_order(monkeypatch, env):
    stand = stand_in(monkeypatch)
    reported = []
    matrix = interop.run(env, NAMES, ["lnd", "ldk"], ["lnd", "ldk"], 7, on_pair=lambda r: reported.append(r.run_dir.name),
                         jobs=2)
    assert stand.most == 2 and sorted(stand.stopped) == sorted(stand.started) and len(stand.started) == 4
    assert reported == ["lnd-lnd", "lnd-ldk", "ldk-lnd", "ldk-ldk"]  # each pair's reports, in pair order
    assert list(matrix.cells) == [(a, b, NAMES[0]) for a, b in matrix.pairs]
    assert (matrix.run_dir / "reports" / "interop.md").is_file()


def test_one_job_runs_the_pairs_one_by_one(monkeypatch, env):
    stand = stand_in(monkeypatch)
    interop.run(env, NAMES, ["lnd", "ldk"], ["lnd"], 7)
    assert stand.most == 1 and stand.started == ["lnd-lnd", "ldk-lnd"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_pair_that_fails_raises_stops_the_pairs_not_begun_and_leaves_nothing_running(monkeypatch, env, jobs):
    stand = stand_in(monkeypatch, fail="lnd-ldk")
    with pytest.raises(RuntimeError, match="lnd-ldk: the cluster did not start"):
        interop.run(env, NAMES, ["lnd", "ldk"], ["lnd", "ldk"], 7, jobs=jobs)
    # the pair already running finishes; none after the failure begins
    assert stand.started == ["lnd-lnd"] and stand.stopped == ["lnd-lnd"] and stand.running == 0


def test_jobs_below_one_is_refused(env):
    with pytest.raises(runner.UnknownScenario, match="--jobs must be 1 or more"):
        interop.run(env, NAMES, ["lnd"], ["lnd"], 7, jobs=0)
