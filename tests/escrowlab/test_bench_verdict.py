"""A benchmark whose oracle found something fails: its figures are printed, and then the
violations and exit 1 (pure logic: the verdict as ``bench.escrow.judge`` returns it)."""

from __future__ import annotations

import io

import pytest
import typer
from rich.console import Console

from escrowlab.cli import bench


@pytest.fixture
def said(monkeypatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(bench, "console", Console(file=out, width=200, highlight=False))
    return out


def test_a_run_the_oracle_passed_says_so_and_goes_on(said):
    bench._oracle_verdict({"passed": True, "invariants": 18, "orders_checked": 40, "violations": 0,
                           "first_violations": []}, json_out=False)
    assert said.getvalue() == "oracle: 18 invariants held on all 40 orders\n"
    bench._oracle_verdict({"passed": True, "invariants": 18, "orders_checked": 40, "violations": 0,
                           "first_violations": []}, json_out=True)
    assert said.getvalue() == "oracle: 18 invariants held on all 40 orders\n"  # the JSON says it


def test_a_run_the_oracle_failed_names_the_violations_and_exits_1_even_with_json(said):
    first = ["I18 order 456: the buyer's notification stream never sent notification 4605 (order.released) [x]"]
    with pytest.raises(typer.Exit) as exited:
        bench._oracle_verdict({"passed": False, "invariants": 18, "orders_checked": 500, "violations": 56,
                               "first_violations": first}, json_out=True)
    assert exited.value.exit_code == 1
    assert said.getvalue().splitlines() == ["oracle: 56 violations on the run's 500 orders; the first:", f"  {first[0]}"]
