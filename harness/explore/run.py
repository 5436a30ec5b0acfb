"""Exploring: generated histories within a time budget, failures shrunk to short traces.

Each history runs on a fresh marketplace on the same cluster (reset by orders and
parties, never by clusters). A history with a finding is shrunk and written as a trace
file that ``escrowlab replay`` reruns and ``escrowlab explore --to-scenario`` turns into
a catalogue scenario.

Why not Hypothesis's shrinker: it replays the whole test for every candidate and its
shrink phase cannot be bounded in time, while one replay here costs seconds of real
nodes (a marketplace start, funding, blocks). Shrinking here is two cheap cuts that need
no replay to propose (drop every step after the finding's step; drop every step about
another order) followed by delta debugging (ddmin) over the steps, each candidate
replayed once, within a replay budget. Generation is seeded: the same seed takes the
same choices, given the same answers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.explore.history import History
from harness.world import MarketplaceFactory, World

Progress = Callable[[str], None]
SCHEMA = "escrowlab.explore/1"


@dataclass
class Outcome:
    """One history's verdict, as the report keeps it."""

    seed: int
    steps: list[dict]
    findings: list[dict]
    model_checks: dict[str, int]
    exercised: dict[str, int]
    coverage: dict[tuple[str, str, str], int]
    error: str | None
    duration_s: float

    @property
    def failed(self) -> bool:
        return bool(self.findings)


@dataclass
class ExploreReport:
    seed: int
    budget_s: float
    histories: list[Outcome] = field(default_factory=list)
    traces: list[dict] = field(default_factory=list)   # each finding's original and shrunk trace


def run_history(cluster, run_dir: Path, seed: int, planted_bug: str | None, market: MarketplaceFactory | None,
                steps: list[dict] | None = None, **options) -> Outcome:
    world = World(cluster, run_dir, market)
    history = History(world, seed, planted_bug, steps=steps, **options)
    result = history.execute()
    (run_dir / "story.log").write_text("".join(f"{s.at:.3f} {s.message}\n" for s in result.steps))
    labels = {view["id"]: label for label, view in history.labels.items()}
    findings = [{"rule": v.invariant, "order_id": v.order_id, "order": labels.get(v.order_id), "message": v.message,
                 "step": (v.evidence or {}).get("step") if isinstance(v.evidence, dict) else None}
                for v in result.violations]
    if result.error and not findings:
        findings = [{"rule": "error", "order_id": None, "message": result.error, "step": None}]
    return Outcome(seed, history.trace, findings, history.model.counts() if history.model else {},
                   result.exercised, history.coverage, result.error, result.duration_s)


def _signature(finding: dict) -> str:
    return finding["rule"]


def _fails_alike(outcome: Outcome, rules: set[str]) -> bool:
    return bool(rules & {_signature(f) for f in outcome.findings})


def shrink(cluster, run_dir: Path, outcome: Outcome, planted_bug: str | None, market, max_replays: int,
           deadline: float, progress: Progress) -> tuple[list[dict], int]:
    """The shortest trace found that still fails with one of the same rules; replays used."""
    rules = {_signature(f) for f in outcome.findings}
    steps = list(outcome.steps)
    replays = 0

    def still_fails(candidate: list[dict]) -> bool:
        nonlocal replays
        if replays >= max_replays or time.time() > deadline:
            return False
        replays += 1
        got = run_history(cluster, run_dir / f"shrink-{replays:02d}", outcome.seed, planted_bug, market,
                          steps=candidate)
        progress(f"    shrink replay {replays}: {len(candidate)} steps -> "
                 f"{'fails' if _fails_alike(got, rules) else 'passes'}")
        return _fails_alike(got, rules)

    return reduce(steps, outcome.findings, still_fails), replays


def reduce(steps: list[dict], findings: list[dict], still_fails: Callable[[list[dict]], bool]) -> list[dict]:
    """The shortest sub-history ``still_fails`` accepts: cut after the finding's step, cut
    other orders' steps, then delta debugging (ddmin). ``still_fails`` returns False once
    its budget is spent, which ends the search with the best found so far."""
    first = min((f["step"] for f in findings if f.get("step") is not None), default=None)
    if first is not None and first + 1 < len(steps) and still_fails(steps[:first + 1]):
        steps = steps[:first + 1]
    about = {f["order"] for f in findings if f.get("order")}
    if about:
        kept = [s for s in steps if "order" not in s or s["order"] in about]
        if len(kept) < len(steps) and still_fails(kept):
            steps = kept
    n = 2
    while len(steps) >= 2:
        chunk = max(1, len(steps) // n)
        reduced = False
        for start in range(0, len(steps), chunk):
            candidate = steps[:start] + steps[start + chunk:]
            if candidate and still_fails(candidate):
                steps, n, reduced = candidate, max(n - 1, 2), True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(steps), n * 2)
    return steps


def explore(cluster, run_dir: Path, budget_s: float, seed: int, planted_bug: str | None = None,
            market: MarketplaceFactory | None = None, progress: Progress = lambda _m: None,
            shrink_share: float = 0.4, max_replays: int = 12, **options) -> ExploreReport:
    """Histories until the budget is spent; the first failure of each rule is shrunk, which
    may take up to ``shrink_share`` of the budget more."""
    started = time.time()
    deadline = started + budget_s
    report = ExploreReport(seed, budget_s)
    shrunk_rules: set[str] = set()
    i = 0
    while time.time() < deadline or i == 0:
        history_seed = seed * 1000 + i
        progress(f"history {i + 1} (seed {history_seed})")
        outcome = run_history(cluster, run_dir / f"history-{i + 1:03d}", history_seed, planted_bug, market,
                              **options)
        report.histories.append(outcome)
        progress(f"    {len(outcome.steps)} steps, {sum(outcome.model_checks.values())} model checks, "
                 f"{len(outcome.findings)} findings in {outcome.duration_s}s")
        new = {_signature(f) for f in outcome.findings} - shrunk_rules
        if new:
            path = write_trace(run_dir / f"trace-{i + 1:03d}.json", outcome, planted_bug)
            progress(f"    FINDING {', '.join(sorted(new))}: {outcome.findings[0]['message'][:160]}")
            steps, replays = shrink(cluster, run_dir, outcome, planted_bug, market, max_replays,
                                    time.time() + shrink_share * budget_s, progress)
            small = Outcome(outcome.seed, steps, outcome.findings, {}, {}, {}, None, 0)
            shrunk = write_trace(run_dir / f"trace-{i + 1:03d}-shrunk.json", small, planted_bug)
            report.traces.append({"rules": sorted(new), "trace": str(path), "steps": len(outcome.steps),
                                  "shrunk": str(shrunk), "shrunk_steps": len(steps), "replays": replays,
                                  "finding": outcome.findings[0]["message"]})
            progress(f"    shrunk {len(outcome.steps)} -> {len(steps)} steps in {replays} replays: {shrunk}")
            shrunk_rules |= new
        i += 1
    return report


def write_trace(path: Path, outcome: Outcome, planted_bug: str | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": "escrowlab.trace/1", "seed": outcome.seed, "planted_bug": planted_bug,
                                "steps": outcome.steps, "findings": outcome.findings}, indent=1))
    return path


def read_trace(path: Path) -> dict:
    try:
        trace = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read trace {path}: {exc}") from None
    if trace.get("schema") != "escrowlab.trace/1" or not isinstance(trace.get("steps"), list):
        raise ValueError(f"{path} is not an escrowlab trace (schema escrowlab.trace/1 with steps)")
    return trace


def _rule_order(rule: str) -> tuple:
    head = rule[1:].split()[0] if rule[1:].split() else ""
    return (rule[0], int(head) if head.isdigit() else 0, rule)


def summary(report: ExploreReport) -> dict:
    """The JSON report: what was generated, what it exercised, and what it found."""
    model: dict[str, int] = {}
    exercised: dict[str, int] = {}
    coverage: dict[str, int] = {}
    for h in report.histories:
        for rule, n in h.model_checks.items():
            model[rule] = model.get(rule, 0) + n
        for inv, n in h.exercised.items():
            exercised[inv] = exercised.get(inv, 0) + n
        for (state, action, role), n in h.coverage.items():
            key = f"{state} × {action} × {role}"
            coverage[key] = coverage.get(key, 0) + n
    findings = [dict(f, history_seed=h.seed) for h in report.histories for f in h.findings]
    return {
        "schema": SCHEMA,
        "seed": report.seed,
        "budget_s": report.budget_s,
        "histories": len(report.histories),
        "actions": sum(len(h.steps) for h in report.histories),
        "requests_judged": sum(n for k, n in model.items() if k.startswith(("M1", "M2", "M3"))),
        "model_checks": dict(sorted(model.items())),
        "invariant_checks": {i: exercised[i] for i in sorted(exercised, key=_rule_order) if i.startswith("I")},
        "not_exercised": [i for i in sorted(exercised, key=_rule_order) if i.startswith("I") and not exercised[i]],
        "coverage": dict(sorted(coverage.items())),
        "coverage_cells": len(coverage),
        "findings": findings,
        "traces": report.traces,
        "passed": not findings,
    }
