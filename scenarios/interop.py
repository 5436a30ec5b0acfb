"""The interop matrix: the ln_hold stories with buyers and sellers on each Lightning implementation.

For each pair (payer implementation, payee implementation) the hub topology is started with
every buyer node on the payer's implementation and every seller node on the payee's (the hub
stays LND: the marketplace drives its hold invoices over LND's API), and the stories run on
it as ``scenario run`` runs them. The report is a table, payer x payee x scenario: what
passed, the exact error of what failed, what was skipped and why, and for each story the
hold invoice's CLTV the app issued beside each payer's route CLTV cap.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from escrow_protocol.formulas import PAYER_CLTV_CAPS
from harness.scenario import ScenarioResult
from regtest_cluster import launcher
from regtest_cluster.env import ClusterEnv
from regtest_cluster.rundir import new_run_dir
from regtest_cluster.topology import IMPLS, Topology, load

from . import runner

Progress = Callable[[str], None]


def pairs(payers: list[str], payees: list[str]) -> list[tuple[str, str]]:
    for impl in (*payers, *payees):
        if impl not in IMPLS:
            raise runner.UnknownScenario(f"no Lightning implementation {impl!r} (known: {', '.join(IMPLS)})")
    return [(a, b) for a in payers for b in payees]


def topology_for(payer: str, payee: str, base: str = "hub") -> Topology:
    """``base`` with every buyer node on ``payer``'s implementation and every seller on ``payee``'s."""
    topo = load(base)
    impl = {"buyer": payer, "seller": payee}
    nodes = [n.model_copy(update={"impl": impl.get(n.role, n.impl)}) for n in topo.nodes]
    return Topology.model_validate({**topo.model_dump(by_alias=True), "name": f"{base}-{payer}-{payee}",
                                    "nodes": [n.model_dump(by_alias=True) for n in nodes]})


@dataclass
class Cell:
    verdict: str              # passed | FAILED | skipped
    duration_s: float
    hold_cltv: int | None     # the CLTV of the hold invoices the app issued in this story
    error: str | None = None  # the story's error, or the invariants violated, or why it was skipped
    folder: str = ""


@dataclass
class Matrix:
    seed: int
    run_dir: Path
    pairs: list[tuple[str, str]]
    names: list[str]
    planted_bug: str | None = None
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)  # (payer, payee, scenario)

    def row(self, name: str) -> tuple[list[int], list[Cell | None]]:
        """A scenario's hold CLTVs (each distinct one issued) and its cell in each pair."""
        cells = [self.cells.get((a, b, name)) for a, b in self.pairs]
        return sorted({c.hold_cltv for c in cells if c and c.hold_cltv}), cells

    @property
    def failed(self) -> int:
        return sum(1 for c in self.cells.values() if c.verdict == "FAILED")

    def summary(self) -> dict:
        return {
            "seed": self.seed, "run_dir": str(self.run_dir), "planted_bug": self.planted_bug,
            "payer_cltv_caps": dict(PAYER_CLTV_CAPS),
            "pairs": [{"payer": a, "payee": b} for a, b in self.pairs],
            "scenarios": self.names,
            "cells": [{"payer": a, "payee": b, "scenario": n, **vars(c)} for (a, b, n), c in self.cells.items()],
            "passed": sum(1 for c in self.cells.values() if c.verdict == "passed"),
            "failed": self.failed,
            "skipped": sum(1 for c in self.cells.values() if c.verdict == "skipped"),
        }


def cell_of(r: ScenarioResult, folder: str) -> Cell:
    if r.skipped:
        return Cell("skipped", r.duration_s, r.hold_cltv, r.skipped, folder)
    if r.passed:
        return Cell("passed", r.duration_s, r.hold_cltv, None, folder)
    why = r.error or "; ".join(f"{v.invariant} order {v.order_id}: {v.message}" for v in r.violations[:3])
    return Cell("FAILED", r.duration_s, r.hold_cltv, why, folder)


def run(env: ClusterEnv, names: list[str], payers: list[str], payees: list[str], seed: int,
        progress: Progress = lambda _m: None, planted_bug: str | None = None,
        on_pair: Callable[[runner.RunResult], object] = lambda _r: None, jobs: int = 1,
        backend: str = "process") -> Matrix:
    """Start one cluster per pair (``jobs`` pairs at a time, on ``backend``), run ``names`` on
    it, stop it. ``planted_bug`` runs every story with that defect on: the oracle must then fail
    them on every pair, LDK nodes' truth included.
    ``on_pair`` gets each pair's run, in pair order (the CLI writes its scenario reports with it).

    A pair that raises (its cluster could not start) stops the pairs not yet begun; the others
    finish, then the error is raised. On Ctrl-C the running pairs' clusters stop before it is."""
    runner.check_jobs(jobs)
    for name in runner.select(names):
        runner.mode_for(name, "ln_hold")
    todo = pairs(payers, payees)
    run_dir = new_run_dir(env.runs_dir, "interop")
    matrix = Matrix(seed, run_dir, todo, list(names), planted_bug)
    said = threading.Lock()  # the progress display is not for several threads at once
    live: list = []
    stopping = threading.Event()

    def say(message: str) -> None:
        with said:
            progress(message)

    def one(k: int, payer: str, payee: str) -> tuple[runner.RunResult, Path] | None:
        if stopping.is_set():  # an earlier pair failed, or Ctrl-C
            return None
        try:
            return started(k, payer, payee)
        except BaseException:
            stopping.set()
            raise

    def started(k: int, payer: str, payee: str) -> tuple[runner.RunResult, Path]:
        say(f"pair {k}/{len(todo)}: buyers on {payer.upper()}, sellers on {payee.upper()}: starting the cluster")
        folder = run_dir / f"{payer}-{payee}"
        cluster = launcher.launch(topology_for(payer, payee), env, run_dir=folder, backend=backend)
        live.append(cluster)
        try:
            return runner.run_on(cluster, names, seed, "ln_hold", run_dir=folder, bug_everywhere=planted_bug,
                                 progress=lambda m, p=f"{payer}->{payee}": say(f"  {p} {m.strip()}")), folder
        finally:
            cluster.stop()
            live.remove(cluster)

    with ThreadPoolExecutor(max_workers=min(jobs, len(todo)), thread_name_prefix="interop-pair") as pool:
        futures = [pool.submit(one, k, payer, payee) for k, (payer, payee) in enumerate(todo, 1)]
        try:
            for (payer, payee), future in zip(todo, futures):
                # a pair skipped for an earlier one's failure comes after it, which raises first
                result, folder = future.result()
                on_pair(result)
                for r, job in zip(result.scenarios, runner.plan(names, "ln_hold", None, planted_bug)):
                    matrix.cells[(payer, payee, r.name)] = cell_of(r, str(folder / job.folder))
        except BaseException as exc:
            stopping.set()
            for future in futures:
                future.cancel()
            if not isinstance(exc, Exception):  # Ctrl-C: do not wait for the running stories
                for cluster in list(live):
                    cluster.stop()
            raise
    write(matrix)
    return matrix


def markdown(m: Matrix) -> str:
    caps = ", ".join(f"{impl.upper()} {cap}" for impl, cap in sorted(PAYER_CLTV_CAPS.items()))
    heads = [f"{a.upper()} → {b.upper()}" for a, b in m.pairs]
    bug = f", planted bug {m.planted_bug}: every story should fail" if m.planted_bug else ""
    lines = [f"# Interop matrix (seed {m.seed}{bug})", "",
             "Payer (buyers' nodes) → payee (sellers' nodes); the hub is LND. "
             f"Payers' route CLTV caps at their defaults: {caps} blocks.", "",
             "| scenario | hold CLTV | " + " | ".join(heads) + " |",
             "|---|---|" + "---|" * len(heads)]
    notes = []
    for name in m.names:
        cltvs, row = m.row(name)
        shown = []
        for (a, b), c in zip(m.pairs, row):
            if c is None:
                shown.append("")
                continue
            if c.error:
                notes.append(f"**{name}**, {a.upper()} → {b.upper()}, {c.verdict}: {c.error}")
                shown.append(f"{c.verdict} [{len(notes)}]")
            else:
                shown.append(c.verdict)
        lines.append(f"| {name} | {', '.join(map(str, cltvs)) or '-'} | " + " | ".join(shown) + " |")
    if notes:
        lines += ["", "Notes:", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def write(m: Matrix) -> None:
    out = m.run_dir / "reports"
    out.mkdir(parents=True, exist_ok=True)
    (out / "interop.json").write_text(json.dumps(m.summary(), indent=2, default=str))
    (out / "interop.md").write_text(markdown(m))


__all__ = ["Cell", "Matrix", "markdown", "pairs", "run", "topology_for"]
