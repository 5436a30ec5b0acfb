"""Budgets parse with clear errors and find every broken limit in a summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.budgets import DEFAULT, BudgetError, check, load_budgets, parse_budgets

SHIPPED = Path(__file__).parents[2] / "loadtests"


def _summary(**totals):
    endpoints = {
        "GET /listings": {"requests": 100, "failures": 0, "failure_ratio": 0.0, "rps": 10, "p50_ms": 5,
                          "p95_ms": 40, "p99_ms": 90},
        "GET /listings/[id]": {"requests": 50, "failures": 1, "failure_ratio": 0.02, "rps": 5, "p50_ms": 4,
                               "p95_ms": 700, "p99_ms": 900},
    }
    return {"totals": {"requests": 150, "failures": 1, "failure_ratio": 0.0067, "rps": 15,
                       "escrows_settled_per_s": 2.0, **totals}, "endpoints": endpoints}


@pytest.mark.parametrize("name", ["budgets.yaml", "budgets-smoke.yaml"])
def test_load_budgets_shipped(name):
    assert load_budgets(SHIPPED / name).endpoints


def test_check_budgets_kept():
    budgets = parse_budgets({"totals": {"min_rps": 10, "min_escrows_settled_per_s": 1},
                             "endpoints": {"GET /listings": {"max_p95_ms": 50}}})
    assert check(budgets, _summary()) == []


def test_check_budgets_broken_names_each_breach():
    budgets = parse_budgets({"totals": {"max_failure_ratio": 0, "min_escrows_settled_per_s": 5},
                             "endpoints": {"GET /listings/[id]": {"max_p95_ms": 500},
                                           "GET *": {"max_p99_ms": 800}}})
    assert sorted(str(b) for b in check(budgets, _summary())) == [
        "GET /listings/[id]: p95_ms is 700, budget 500",
        "GET /listings/[id]: p99_ms is 900, budget 800",
        "totals: escrows_settled_per_s is 2, budget 5",
        "totals: failure_ratio is 0.0067, budget 0",
    ]


def test_check_budgets_endpoint_that_never_ran_is_a_breach():
    budgets = parse_budgets({"endpoints": {"POST /orders": {"max_p95_ms": 100}}})
    assert [str(b) for b in check(budgets, _summary())] == ["POST /orders: requests is 0, budget 1"]


def test_check_default_budget_fails_on_any_failure():
    assert [str(b) for b in check(DEFAULT, _summary(failures=1))] == ["totals: failures is 1, budget 0"]
    assert check(DEFAULT, _summary(failures=0)) == []


@pytest.mark.parametrize("data, message", [
    ({"totals": {"max_p95": 3}}, "totals.max_p95: Extra inputs are not permitted"),
    ({"totals": {"max_p95_ms": 300}}, "max_p95_ms is budgeted per endpoint, not for totals"),
    ({"endpoints": {"GET /x": {"max_p95_ms": -1}}}, "endpoints.GET /x.max_p95_ms: Input should be greater"),
    ({"totals": {"max_failure_ratio": 2}}, "totals.max_failure_ratio: Input should be less than or equal to 1"),
    ([1, 2], "Input should be a valid dictionary"),
])
def test_parse_budgets_rejects_bad_input(data, message):
    with pytest.raises(BudgetError) as err:
        parse_budgets(data, "b.yaml")
    assert str(err.value).startswith("b.yaml: ") and message in str(err.value)


def test_load_budgets_missing_file(tmp_path):
    with pytest.raises(BudgetError, match="does not exist"):
        load_budgets(tmp_path / "nope.yaml")
