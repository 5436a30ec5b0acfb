"""Locust's habits carry over: its flags as aliases, its reports where asked, the stages' spawn
rate; and a run that cannot be judged still names what it waited on. Pure logic: no cluster."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from escrowlab.cli import app
from harness import evidence
from loadtests import orchestrate
from loadtests.orchestrate import LoadOptions, LoadResult, copy_reports, plan_stages, unchecked
from loadtests.budgets import parse_budgets
from loadtests.profiles import load_profile


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """`escrowlab load` with the run replaced by one that records its options (no cluster, no Locust)."""
    seen: list[LoadOptions] = []

    def fake_run(opts, _env, _progress):
        seen.append(opts)
        (tmp_path / "summary.md").write_text("# load run\n")
        return LoadResult(tmp_path, {"files": {"copies": []}, "oracle": {"passed": True}})

    monkeypatch.setattr(orchestrate, "run", fake_run)
    return seen


def test_load_locust_flags_are_aliases(captured, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["load", "-t", "30s", "-u", "4", "-r", "2", "--html", "out.html",
                                      "--csv", "stats/run", "--processes", "3", "--headless"])
    assert result.exit_code == 0, result.output
    opts = captured[0]
    assert (opts.duration, opts.users, opts.spawn_rate, opts.workers, opts.headless) == ("30s", 4, 2.0, 3, True)
    assert opts.html == tmp_path / "out.html" and opts.csv_prefix == tmp_path / "stats" / "run"  # from the cwd


@pytest.mark.parametrize("args, duration, workers", [
    (["--run-time", "1h30m"], "1h30m", 0), (["--duration", "5m", "--workers", "2"], "5m", 2), (["-d", "9s"], "9s", 0)])
def test_load_long_and_own_flag_names_still_work(captured, args, duration, workers):
    assert CliRunner().invoke(app, ["load", *args]).exit_code == 0
    assert (captured[0].duration, captured[0].workers) == (duration, workers)


def test_load_processes_minus_one_is_one_per_cpu(captured, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert CliRunner().invoke(app, ["load", "--processes", "-1"]).exit_code == 0
    assert captured[0].workers == 6


def test_load_spawn_rate_zero_is_refused(captured):
    result = CliRunner().invoke(app, ["load", "-r", "0"])
    assert result.exit_code == 2 and not captured


def test_plan_stages_spawn_rate_replaces_every_stage_and_counts_fixed_users():
    profile = load_profile("ramp")
    own, fixed = plan_stages(profile, LoadOptions(users=4), 60)
    assert fixed == sum(profile.fixed.values())
    forced, _ = plan_stages(profile, LoadOptions(users=4, spawn_rate=2), 60)
    assert [s["spawn_rate"] for s in forced] == [2] * len(own)
    assert [(s["end_s"], s["users"]) for s in forced] == [(s["end_s"], s["users"]) for s in own]
    _, fixed_two = plan_stages(profile, LoadOptions(users=4, workers=2), 60)
    assert fixed_two == 2 * fixed  # every Locust process runs its own sellers, couriers and arbiters


def test_copy_reports_puts_locusts_files_where_asked(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("locust.html", "locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv"):
        (run_dir / name).write_text(name)
    opts = LoadOptions(html=tmp_path / "out" / "report.html", csv_prefix=tmp_path / "csv" / "run1")
    copied = copy_reports(run_dir, opts)
    assert (tmp_path / "out" / "report.html").read_text() == "locust.html"
    assert (tmp_path / "csv" / "run1_stats.csv").read_text() == "locust_stats.csv"
    assert (tmp_path / "csv" / "run1_stats_history.csv").read_text() == "locust_stats_history.csv"
    assert not (tmp_path / "csv" / "run1_exceptions.csv").exists()  # Locust wrote none: nothing to copy
    assert len(copied) == 4
    assert copy_reports(run_dir, LoadOptions()) == []


def test_load_result_unjudged_run_exits_2_and_judged_ones_as_before(tmp_path):
    assert LoadResult(tmp_path, {"oracle": {"passed": False, "error": "timed out"}}).exit_code == 2
    assert LoadResult(tmp_path, {"oracle": {"passed": False, "violations": [1]}}).exit_code == 1
    assert LoadResult(tmp_path, {"oracle": {"passed": True}}, breaches=["b"]).exit_code == 1
    assert LoadResult(tmp_path, {"oracle": {"passed": True}}).exit_code == 0


def test_unchecked_names_a_slope_budget_the_run_was_too_short_for():
    budgets = parse_budgets({"totals": {"max_memory_slope_mib_per_h": 50}})
    short = {"totals": {}, "memory": {"hub": {"slope_mib_per_h": None,
                                              "slope_note": "too short to estimate: 29 s of samples"}}}
    assert unchecked(budgets, short) == ["totals: max_memory_slope_mib_per_h not checked "
                                         "(too short to estimate: 29 s of samples)"]
    assert unchecked(budgets, {"totals": {"memory_slope_mib_per_h": 3.0}, "memory": {}}) == []
    assert unchecked(parse_budgets({}), short) == []


# --- a wait for in-flight HTLCs that times out names them

HASH = bytes.fromhex("ab" * 32)


def _cluster_with_htlc() -> SimpleNamespace:
    """A stand-in whose hub lists one pending HTLC in LND's REST form (the message is under test)."""
    import base64

    channel = {"channel_point": "f00d:1", "chan_id": "123456789", "pending_htlcs": [
        {"incoming": True, "amount": "1000", "hash_lock": base64.b64encode(HASH).decode(),
         "expiration_height": 532}]}
    node = SimpleNamespace(name="hub", daemon=SimpleNamespace(is_running=lambda: True),
                           rest=SimpleNamespace(listchannels=lambda: [channel]))
    return SimpleNamespace(nodes={"hub": node})


def test_wait_quiet_timeout_names_each_htlc_its_channel_expiry_and_order():
    with pytest.raises(evidence.HtlcsInFlight) as caught:
        evidence.wait_quiet(_cluster_with_htlc(), set(), timeout=0.05, owners={HASH.hex(): 17})
    message = str(caught.value)
    assert "waiting for in-flight HTLCs to settle; still in flight: hub in 1000 sats, hash " + HASH.hex() in message
    assert "channel f00d:1, expires at height 532 (order 17)" in message
    assert "last saw" not in message
    assert caught.value.htlcs == [{"node": "hub", "channel_point": "f00d:1", "chan_id": "123456789",
                                   "payment_hash": HASH.hex(), "amount_sats": 1000, "expiration_height": 532,
                                   "incoming": True, "order_id": 17}]


def test_wait_quiet_held_hash_is_quiet_and_a_stranger_says_so():
    evidence.wait_quiet(_cluster_with_htlc(), {HASH.hex()}, timeout=0.05)  # the hold meant to be held
    with pytest.raises(evidence.HtlcsInFlight, match=r"\(no order of this run\)"):
        evidence.wait_quiet(_cluster_with_htlc(), set(), timeout=0.05)
