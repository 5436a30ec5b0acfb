"""Running scenarios: one cluster for the run, a fresh app and database per
scenario, then every planted bug against the scenario that must expose it."""

from __future__ import annotations

import importlib
import os
import random
import sys
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
        attach: str | None = None, market: MarketplaceFactory | None = None) -> RunResult:
    """Start the hub cluster (on ``backend``), run the scenarios and planted bugs on it, stop it.
    With ``attach``, use that detached cluster instead and leave it running.

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
        return run_on(cluster, names, seed, mode, planted_bugs, progress, bug_everywhere, run_dir, market)
    cluster = launcher.launch(load("hub"), env, progress, backend=backend)
    try:
        return run_on(cluster, names, seed, mode, planted_bugs, progress, bug_everywhere, market=market)
    finally:
        cluster.stop()


def run_on(cluster, names: list[str], seed: int | None = None, mode: str = "ln_hold",
           planted_bugs: list[str] | None = None, progress: Progress = lambda _m: None,
           bug_everywhere: str | None = None, run_dir: Path | None = None,
           market: MarketplaceFactory | None = None) -> RunResult:
    seed = seed if seed is not None else random.SystemRandom().randrange(10**6)
    progress(f"seed {seed} (replay with --seed {seed})")
    run_dir = run_dir or cluster.run_dir
    result = RunResult(seed, run_dir)
    for i, name in enumerate(select(names)):
        progress(f"[{i + 1}/{len(names)}] {name}")
        world = World(cluster, run_dir / f"scenario-{i + 1:02d}-{name}", market)
        r = ALL[name](world, seed, mode_for(name, mode), planted_bug=bug_everywhere).execute()
        result.scenarios.append(r)
        progress(f"    {'passed' if r.passed else 'FAILED'} in {r.duration_s}s")
    bug_scenarios = planted_for(market)
    for j, bug in enumerate(planted_bugs or []):
        name = bug_scenarios[bug]
        progress(f"[planted bug {j + 1}/{len(planted_bugs)}] {bug} against {name}")
        world = World(cluster, run_dir / f"planted-{j + 1:02d}-{bug}", market)
        r = ALL[name](world, seed, ALL[name].modes[0], planted_bug=bug).execute()
        result.planted.append(r)
        caught = sorted({v.invariant for v in r.violations})
        progress(f"    {'caught by ' + ', '.join(caught) if caught else 'NOT CAUGHT'}")
    return result
