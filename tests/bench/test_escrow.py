"""`bench escrow` runs escrows end to end through the app, its raw-LND baseline and its floor
(an escrow's node calls with no app) in one run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bench import escrow
from regtest_cluster.env import ClusterEnv

pytestmark = pytest.mark.cluster


def test_run_escrow_bench_settles_every_escrow_and_reports_ratio(tmp_path):
    env = dataclasses.replace(ClusterEnv.from_environ(), runs_dir=tmp_path)
    result = escrow.run(env, escrows=6, concurrency=3, raw=6, floor_hold_s=0.2)
    assert (result["escrows"], result["failed"]) == (6, 0), result["errors"]
    assert (result["baseline"]["payments"], result["baseline"]["failed"]) == (6, 0), result["baseline"]["errors"]
    assert result["ratio"] == round(result["escrows_per_s"] / result["baseline"]["payments_per_s"], 3)
    # the baseline ran in two halves, before the escrows and after them, and is reported as one
    halves = result["baseline"]["halves"]
    assert [(h["when"], h["payments"]) for h in halves] == [("before the escrows", 3), ("after the escrows", 3)]
    assert all(h["cpu_s_per_payment_total"] > 0 for h in halves)
    assert result["cpu_s_per_raw_payment_total"] == pytest.approx(
        sum(h["cpu_s_per_payment_total"] for h in halves) / 2, abs=0.0002)
    assert result["p50_s"] <= result["p99_s"]
    # the buyers were told FUNDED and RELEASED by the app's stream, open since before each order:
    # an order is read only by a wait's fallback look (after 2 s with no word), never before it
    # (two reads an escrow until 2026-12-07)
    assert result["waits"] == "push" and "poll_interval_s" not in result
    assert result["unpushed_waits"] == 0  # no wait needed its fallback read to see the state
    assert result["order_reads_per_escrow"] < 2, result["order_reads_per_escrow"]
    assert set(result["cpu_s_per_escrow"]) >= {"app", "lnd-hub", "bench-client"}
    # every process's threads were switched out while they carried the escrows, and the app's
    # CPU is told thread by thread: its request loop by its Python name (py-spy, the dev extra)
    assert set(result["switches_per_escrow"]) == set(result["cpu_s_per_escrow"]) - {"bench-client"}
    assert result["switches_per_escrow"]["app"]["voluntary"] > 0 < result["switches_per_escrow"]["lnd-hub"]["voluntary"]
    app_threads = result["app_threads"]
    assert "MainThread" in app_threads and "escrow-worker" in app_threads, list(app_threads)
    assert sum(t["cpu_s_per_escrow"] for t in app_threads.values()) <= result["cpu_s_per_escrow"]["app"] + 0.01
    # each escrow's hold was added on the hub and settled there, and its payout sent from it
    by_method = result["lnd_calls_per_escrow_by_method"]
    assert by_method["AddHoldInvoice"] == by_method["SettleInvoice"] == by_method["SendPaymentV2"] == 1, by_method
    assert sum(by_method.values()) == pytest.approx(result["lnd_calls_per_escrow"], abs=0.1)
    assert result["oracle"]["passed"] and result["oracle"]["orders_checked"] == 6, result["oracle"]
    # the run folder keeps the figures and their picture
    assert json.loads((Path(result["run_dir"]) / "bench-escrow.json").read_text())["escrows"] == 6
    assert Path(result["plot"]).read_bytes()[:4] == b"\x89PNG"
    floor = result["floor"]
    assert (floor["escrows"], floor["failed"]) == (6, 0), floor["errors"]
    assert floor["ratio_to_raw"] == round(floor["escrows_per_s"] / result["baseline"]["payments_per_s"], 3)
    assert result["ratio_to_floor"] == round(result["escrows_per_s"] / floor["escrows_per_s"], 3)
    # the nodes' CPU only: the app did no work for the floor, and its hub carried each escrow
    assert "app" not in floor["cpu_s_per_escrow"] and floor["cpu_s_per_escrow"]["lnd-hub"] > 0
    # each floor escrow was held before its settle (a bound the wait guarantees, not a speed claim)
    assert floor["hold_s"] == 0.2 and floor["p50_s"] >= 0.2


def test_escrow_bench_counts_queries_and_hub_calls_with_two_app_processes(tmp_path):
    env = dataclasses.replace(ClusterEnv.from_environ(), runs_dir=tmp_path)
    result = escrow.run(env, escrows=4, concurrency=2, raw=2, app_processes=2, floor=0, waits="poll")
    assert result["waits"] == "poll" and result["order_reads_per_escrow"] >= 2 and "unpushed_waits" not in result
    assert result["floor"]["skipped"] == "--floor 0" and result["ratio_to_floor"] is None
    assert (result["escrows"], result["failed"], result["app_processes"]) == (4, 0, 2), result["errors"]
    assert result["db_queries_per_escrow"] > 0 and result["lnd_calls_per_escrow"] > 0
    assert set(result["wakes_per_escrow"]) == {"sent", "dropped"}  # one process's hints to the other
    assert result["rings_per_escrow"]["sent"] > 0  # its commits notified both parties: the other process was told
    assert result["cpu_s_per_escrow_total"] > 0 and result["cpu_s_per_raw_payment_total"] > 0
    assert result["oracle"]["passed"], result["oracle"]
