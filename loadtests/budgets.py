"""Performance budgets: a YAML file of limits, checked against a run's summary.

    totals:                      # the whole run
      max_failure_ratio: 0.0
      min_rps: 20
      min_escrows_settled_per_s: 1
      max_memory_slope_mib_per_h: 50   # the steepest of the app's and nodes' memory lines
    endpoints:                   # "<type> <name>" as Locust groups them; "*" matches anything
      "GET /listings": {max_p95_ms: 300}
      "*": {max_p99_ms: 5000, max_failure_ratio: 0.01}

A broken budget makes ``escrowlab load`` exit 1. Pure data: no locust here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .profiles import one_line


class BudgetError(ValueError):
    """A budgets file that cannot be used; the message names the file and field."""


class EndpointBudget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_p50_ms: float | None = Field(default=None, ge=0)
    max_p95_ms: float | None = Field(default=None, ge=0)
    max_p99_ms: float | None = Field(default=None, ge=0)
    max_failure_ratio: float | None = Field(default=None, ge=0, le=1)
    min_rps: float | None = Field(default=None, ge=0)


LATENCIES = ("max_p50_ms", "max_p95_ms", "max_p99_ms")


class TotalsBudget(BaseModel):
    """The whole run. No latency: Locust's totals take in the parties' calls to their own nodes
    and whole escrows (seconds, order to payout) beside the app's calls, and percentiles of
    different endpoints do not merge. Latency is budgeted per endpoint ("*" matches every one)."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_failure_ratio: float | None = Field(default=None, ge=0, le=1)
    min_rps: float | None = Field(default=None, ge=0)
    min_escrows_settled_per_s: float | None = Field(default=None, ge=0)
    max_failures: int | None = Field(default=None, ge=0)
    max_memory_slope_mib_per_h: float | None = Field(default=None, description="the steepest process's slope")

    @model_validator(mode="before")
    @classmethod
    def _no_latency(cls, data: object) -> object:
        for key in LATENCIES:
            if isinstance(data, dict) and key in data:
                raise ValueError(f"{key} is budgeted per endpoint, not for totals (which mix the app's calls "
                                 f"with node calls and whole escrows): use endpoints: {{'*': {{{key}: ...}}}}")
        return data


class Budgets(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    totals: TotalsBudget = TotalsBudget()
    endpoints: dict[str, EndpointBudget] = Field(default_factory=dict)


# With no budgets file, a run passes when nothing failed (as Locust's own exit code).
DEFAULT = Budgets(totals=TotalsBudget(max_failures=0))


@dataclass(frozen=True)
class Breach:
    where: str
    metric: str
    limit: float
    actual: float

    def __str__(self) -> str:
        return f"{self.where}: {self.metric} is {self.actual:g}, budget {self.limit:g}"


def load_budgets(path: str | Path) -> Budgets:
    path = Path(path)
    if not path.is_file():
        raise BudgetError(f"budgets file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BudgetError(f"{path} is not valid YAML: {exc}") from None
    return parse_budgets(data, str(path))


def parse_budgets(data: object, source: str = "budgets") -> Budgets:
    try:
        return Budgets.model_validate(data or {})
    except ValidationError as exc:
        raise BudgetError(f"{source}: {one_line(exc)}") from None


def _check(where: str, budget: BaseModel, figures: dict) -> list[Breach]:
    out = []
    for field, limit in budget.model_dump(exclude_none=True).items():
        kind, metric = field.split("_", 1)
        actual = figures.get(metric)
        if actual is None:
            continue
        if (kind == "max" and actual > limit) or (kind == "min" and actual < limit):
            out.append(Breach(where, metric, limit, actual))
    return out


def _matches(pattern: str, key: str) -> bool:
    """``*`` matches anything; every other character (``[id]`` too) is itself."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), key) is not None


def check(budgets: Budgets, summary: dict) -> list[Breach]:
    """Every budget the run broke (empty when it kept them all)."""
    breaches = _check("totals", budgets.totals, summary["totals"])
    for pattern, budget in budgets.endpoints.items():
        matched = [key for key in summary["endpoints"] if _matches(pattern, key)]
        if not matched and "*" not in pattern:
            breaches.append(Breach(pattern, "requests", 1, 0))  # a budgeted endpoint that never ran
        for key in matched:
            breaches.extend(_check(key, budget, summary["endpoints"][key]))
    return breaches
