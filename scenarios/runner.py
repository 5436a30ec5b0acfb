"""Running scenarios: one cluster for the run, a fresh app and database per
scenario, then every planted bug against the scenario that must expose it.

With ``jobs`` above 1, that many scenarios run at once, each *lane* on a hub cluster of
its own (the run's cluster is the first lane; the others start beside it, inside the run
folder). A lane runs its stories one at a time, as a serial run does, so every story
still has its cluster to itself: the oracle's node truth is every node's channel balance
(I1), every hub payment since the story began (I3) and every HTLC in flight, and its
deadlines are block heights; none of these could tell two stories on the same nodes
apart. Results come back in catalogue order, whichever lane finished first.
"""

from __future__ import annotations

import importlib
import os
import random
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from regtest_cluster import launcher
from regtest_cluster.env import ClusterEnv
from regtest_cluster.rundir import new_run_dir
from regtest_cluster.topology import load
from harness.scenario import ScenarioResult
from escrow_protocol.modes import MODE_NAMES as MODES
from harness.world import MarketplaceFactory, World
from scenarios.catalogue import ALL, BUG_SCENARIOS

Progress = Callable[[str], None]
# Starts one more lane's hub cluster in the given folder (``jobs`` above 1).
LaneLauncher = Callable[[Path], "object"]


class UnknownScenario(ValueError):
    """A scenario name that is not in the catalogue."""


@dataclass
class RunResult:
    seed: int
    run_dir: Path
    scenarios: list[ScenarioResult] = field(default_factory=list)
    planted: list[ScenarioResult] = field(default_factory=list)


def of_mode(mode: str | None) -> list[str]:
    """The catalogue, or the scenarios of one escrow mode."""
    if mode is not None and mode not in MODES:
        raise UnknownScenario(f"no escrow mode {mode!r} (modes: {', '.join(MODES)})")
    return [n for n, s in ALL.items() if mode is None or mode in s.modes]


def marketplace(spec: str | None) -> MarketplaceFactory | None:
    """``module:Class`` (a ``harness.driver.Marketplace``), or None for the reference app."""
    if spec is None:
        return None
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UnknownScenario(f"--marketplace takes module:Class, got {spec!r}")
    if os.getcwd() not in sys.path:  # a driver in the working directory, as uvicorn finds apps
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownScenario(f"cannot load the marketplace driver {spec!r}: {exc}") from None
    return factory


def planted_for(market: MarketplaceFactory | None) -> dict[str, str]:
    """The planted bugs of the marketplace judged, each with the scenario that must expose it:
    the reference app's catalogue list, or what a foreign driver declares."""
    return BUG_SCENARIOS if market is None else dict(getattr(market, "planted_bugs", {}))


def mode_for(name: str, mode: str | None) -> str:
    """The mode a scenario runs in: the one asked for, if the scenario has it."""
    modes = ALL[name].modes
    if mode is None or mode == "all":
        return modes[0]
    if mode not in modes:
        raise UnknownScenario(f"scenario {name} has no {mode} story (it runs in {', '.join(modes)})")
    return mode


def select(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise UnknownScenario(f"no scenario named {', '.join(unknown)} (see `escrowlab scenario list`)")
    return names


def run(env: ClusterEnv, names: list[str], seed: int | None = None, mode: str = "ln_hold",
        planted_bugs: list[str] | None = None, progress: Progress = lambda _m: None,
        bug_everywhere: str | None = None, backend: str | None = None,
        attach: str | None = None, market: MarketplaceFactory | None = None, jobs: int = 1) -> RunResult:
    """Start the hub cluster (on ``backend``), run the scenarios and planted bugs on it, stop it.
    With ``attach``, use that detached cluster instead and leave it running. With ``jobs``
    above 1, the other lanes' clusters start on ``backend`` and stop at the end.

    ``bug_everywhere`` runs the named scenarios themselves with that defect on:
    their results then fail, as a real defect's would.
    """
    for name in select(names):
        mode_for(name, mode)
    if attach is not None:
        cluster = launcher.attached(env, attach)
        missing = sorted({"hub", "buyer1", "buyer2", "seller1", "seller2"} - set(cluster.nodes))
        if missing:
            raise UnknownScenario(f"the detached cluster {attach!r} lacks the nodes scenarios use: "
                                  f"{', '.join(missing)} (start it with the hub topology)")
        # The cluster's folder outlives this run: the run's own folder holds apps and reports.
        run_dir = new_run_dir(env.runs_dir, "scenarios")
        progress(f"on detached cluster {attach!r}; run folder {run_dir}")
        return run_on(cluster, names, seed, mode, planted_bugs, progress, bug_everywhere, run_dir, market,
                      jobs=jobs, lanes=lane_launcher(env, backend))
    cluster = launcher.launch(load("hub"), env, progress, backend=backend)
    try:
        return run_on(cluster, names, seed, mode, planted_bugs, progress, bug_everywhere, market=market,
                      jobs=jobs, lanes=lane_launcher(env, backend))
    finally:
        cluster.stop()


def lane_launcher(env: ClusterEnv, backend: str | None = None) -> LaneLauncher:
    """Starts a lane's hub cluster (quietly: the run's progress says which lane is up)."""
    return lambda folder: launcher.launch(load("hub"), env, run_dir=folder, backend=backend)


class EarlyLanes:
    """Lanes 2..``jobs`` whose clusters start now, in the background, for a run that comes
    later on ``run_dir`` (the demo starts them while its own story runs). Pass it as
    ``run_on(lanes=...)``; ``close()`` stops whichever the run did not take."""

    def __init__(self, launch: LaneLauncher, run_dir: Path, jobs: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs - 1), thread_name_prefix="lane-start")
        self._futures = {run_dir / f"lane-{k}": self._pool.submit(launch, run_dir / f"lane-{k}")
                         for k in range(2, jobs + 1)}
        self._taken: set[Path] = set()

    def __call__(self, folder: Path):
        self._taken.add(folder)
        return self._futures[folder].result()

    def close(self) -> None:
        for folder, future in self._futures.items():
            if folder not in self._taken:
                try:
                    future.result().stop()
                except Exception:  # noqa: BLE001 - it never started: nothing to stop
                    pass
        self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class Job:
    """One story to run: a catalogue scenario, or a planted bug against the scenario that exposes it."""
    index: int          # its place in the report: the scenarios in catalogue order, then the planted bugs
    name: str           # the scenario
    mode: str
    folder: str         # its world's folder in the run folder
    planted_bug: str | None = None
    planted: bool = False   # a planted-bug run (judged by whether the oracle caught it)

    @property
    def label(self) -> str:
        return f"{self.planted_bug} against {self.name}" if self.planted else self.name


def plan(names: list[str], mode: str | None, planted_bugs: list[str] | None, bug_everywhere: str | None,
         market: MarketplaceFactory | None = None) -> list[Job]:
    """The run's stories in report order (the order a serial run takes them)."""
    out = [Job(i, name, mode_for(name, mode), f"scenario-{i + 1:02d}-{name}", bug_everywhere)
           for i, name in enumerate(select(names))]
    bug_scenarios = planted_for(market)
    first = len(out)
    out += [Job(first + j, bug_scenarios[bug], ALL[bug_scenarios[bug]].modes[0], f"planted-{j + 1:02d}-{bug}", bug,
                planted=True) for j, bug in enumerate(planted_bugs or [])]
    return out


def verdict(job: Job, r: ScenarioResult) -> str:
    if job.planted:
        caught = sorted({v.invariant for v in r.violations})
        return "caught by " + ", ".join(caught) if caught else "NOT CAUGHT"
    return f"{'passed' if r.passed else 'FAILED'} in {r.duration_s}s"


def execute(cluster, job: Job, seed: int, run_dir: Path, market: MarketplaceFactory | None = None) -> ScenarioResult:
    world = World(cluster, run_dir / job.folder, market)
    return ALL[job.name](world, seed, job.mode, planted_bug=job.planted_bug).execute()


def check_jobs(jobs: int) -> None:
    """Refuse a lane or pair count below one (``--jobs``), before anything starts."""
    if jobs < 1:
        raise UnknownScenario(f"--jobs must be 1 or more, got {jobs}")


def run_on(cluster, names: list[str], seed: int | None = None, mode: str = "ln_hold",
           planted_bugs: list[str] | None = None, progress: Progress = lambda _m: None,
           bug_everywhere: str | None = None, run_dir: Path | None = None,
           market: MarketplaceFactory | None = None, jobs: int = 1,
           lanes: LaneLauncher | None = None) -> RunResult:
    """Run the stories on ``cluster``; with ``jobs`` above 1, ``lanes`` starts the other lanes' clusters."""
    check_jobs(jobs)
    seed = seed if seed is not None else random.SystemRandom().randrange(10**6)
    progress(f"seed {seed} (replay with --seed {seed})")
    run_dir = run_dir or cluster.run_dir
    result = RunResult(seed, run_dir)
    todo = plan(names, mode, planted_bugs, bug_everywhere, market)
    stories = [j for j in todo if not j.planted]
    if jobs == 1 or len(todo) < 2:
        done = _serial(cluster, todo, len(stories), seed, run_dir, market, progress)
    else:
        if lanes is None:
            raise UnknownScenario("--jobs above 1 needs a way to start the other lanes' clusters")
        done = _parallel(cluster, todo, min(jobs, len(todo)), seed, run_dir, market, progress, lanes)
    result.scenarios = [done[j.index] for j in todo if not j.planted]
    result.planted = [done[j.index] for j in todo if j.planted]
    return result


def _serial(cluster, todo: list[Job], stories: int, seed: int, run_dir: Path, market, progress: Progress) -> dict:
    done: dict[int, ScenarioResult] = {}
    for job in todo:
        if job.planted:
            progress(f"[planted bug {job.index - stories + 1}/{len(todo) - stories}] {job.label}")
        else:
            progress(f"[{job.index + 1}/{stories}] {job.name}")
        done[job.index] = execute(cluster, job, seed, run_dir, market)
        progress(f"    {verdict(job, done[job.index])}")
    return done


class Board:
    """What a parallel run shows: a line per finished story, and beside the spinner how many
    are done and which are running on which lane."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total = progress, total
        self.status = getattr(progress, "status", None)  # the CLI's Step updates the spinner alone
        self.running: dict[int, str] = {}
        self.finished = 0
        self.lock = threading.Lock()

    def _show(self) -> None:
        line = f"done {self.finished}/{self.total} · running: " + (
            ", ".join(f"{label} (lane {lane})" for lane, label in sorted(self.running.items())) or "none")
        if self.status is not None:
            self.status(line)

    def note(self, message: str) -> None:
        with self.lock:
            self.progress(message)
            self._show()

    def start(self, lane: int, job: Job) -> None:
        with self.lock:
            self.running[lane] = job.label
            self._show()

    def finish(self, lane: int, job: Job, r: ScenarioResult) -> None:
        with self.lock:
            self.running.pop(lane, None)
            self.finished += 1
            self.progress(f"[{self.finished}/{self.total}] {job.label}: {verdict(job, r)} (lane {lane})")
            self._show()


def _parallel(cluster, todo: list[Job], n: int, seed: int, run_dir: Path, market, progress: Progress,
              lanes: LaneLauncher) -> dict:
    """``n`` lanes take stories from one queue in report order; lane 1 is ``cluster``."""
    queue = deque(todo)
    done: dict[int, ScenarioResult] = {}
    taken = threading.Lock()
    board = Board(progress, len(todo))
    board.note(f"{len(todo)} stories on {n} lanes: lane 1 is the run's cluster, lanes 2-{n} start "
               f"their own in {run_dir}/lane-N")
    failures: list[str] = []
    owned: list = []

    def lane(k: int) -> None:
        own = None
        try:
            if k > 1:
                t0 = time.monotonic()
                own = lanes(run_dir / f"lane-{k}")
                owned.append(own)
                waited = time.monotonic() - t0
                board.note(f"lane {k}: its hub cluster is up" + (f" in {waited:.1f}s" if waited >= 0.1 else ""))
            on = own or cluster
            while True:
                with taken:
                    if not queue:
                        return
                    job = queue.popleft()
                board.start(k, job)
                try:
                    r = execute(on, job, seed, run_dir, market)
                except BaseException:
                    with taken:
                        queue.appendleft(job)  # another lane takes it
                    raise
                done[job.index] = r
                board.finish(k, job, r)
        except Exception as exc:  # noqa: BLE001 - a lane that cannot start leaves its stories to the others
            failures.append(f"lane {k}: {type(exc).__name__}: {exc}")
            board.note(f"lane {k} stopped: {type(exc).__name__}: {exc}")
        finally:
            if own is not None:
                own.stop()

    threads = [threading.Thread(target=lane, args=(k,), name=f"scenario-lane-{k}", daemon=True)
               for k in range(1, n + 1)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:  # Ctrl-C: no new stories; the lanes' own clusters stop before we go
        with taken:
            queue.clear()
        for c in owned:
            c.stop()
        raise
    missing = [j.label for j in todo if j.index not in done]
    if missing:
        raise RuntimeError(f"no lane could run {', '.join(missing)}: {'; '.join(failures)}")
    return done
