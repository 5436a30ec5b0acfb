"""The load summary reads Locust's CSVs and the locked-sats samples into per-endpoint figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports import load

STATS_HEADER = ("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
                "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
                "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%")
HISTORY_HEADER = ("Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,"
                  "99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,"
                  "Total Average Response Time,Total Min Response Time,Total Max Response Time,"
                  "Total Average Content Size")


def _stats_row(kind: str, name: str, count: int, failures: int, rps: float, p50: int, p95: int, p99: int) -> str:
    return f"{kind},{name},{count},{failures},{p50},{p50},1,{p99},10,{rps},0,{p50},{p50},{p50},{p50},{p95},{p95},{p99},{p99},{p99},{p99},{p99}"


def _history_row(ts: int, users: int, kind: str, name: str, rps: float, total: int, failed: int = 0) -> str:
    return f"{ts},{users},{kind},{name},{rps},0,5,5,5,5,9,9,9,9,9,9,9,{total},{failed},5,5,1,9,10"


def _write_run(run_dir: Path) -> None:
    (run_dir / "locust_stats.csv").write_text("\n".join([
        STATS_HEADER,
        _stats_row("GET", "/listings", 100, 0, 10.0, 5, 20, 40),
        _stats_row("POST", "/orders", 50, 2, 5.0, 30, 90, 200),
        _stats_row("ESCROW", "settled", 21, 1, 2.0, 3000, 6000, 9000),
        _stats_row("", "Aggregated", 171, 3, 17.0, 8, 3000, 8000),
    ]) + "\n")
    (run_dir / "locust_stats_history.csv").write_text("\n".join([
        HISTORY_HEADER,
        _history_row(1000, 5, "", "Aggregated", 10, 10),
        _history_row(1000, 5, "ESCROW", "settled", 1, 2),
        _history_row(1010, 5, "", "Aggregated", 10, 171),
        _history_row(1010, 5, "ESCROW", "settled", 1, 21, 1),
    ]) + "\n")
    (run_dir / "locked_sats.csv").write_text("t_s,locked_sats,held_htlcs\n1.0,0,0\n2.0,5000,5\n3.0,2000,2\n")


def test_build_summary_per_endpoint_and_totals(tmp_path):
    _write_run(tmp_path)
    summary = load.build(tmp_path, duration_s=10, profile="steady", users=5)
    assert summary["schema"] == "escrowlab.load-run/1"
    orders = summary["endpoints"]["POST /orders"]
    assert (orders["requests"], orders["failures"], orders["failure_ratio"], orders["p95_ms"]) == (50, 2, 0.04, 90)
    t = summary["totals"]
    # app requests only (ESCROW is not an app call) over the 10 s the history spans
    assert t["rps"] == 15.0
    assert (t["escrows_settled"], t["escrows_settled_per_s"]) == (20, 2.0)
    assert (t["failures"], t["locked_sats_max"], t["held_htlcs_max"]) == (3, 5000, 5)


def test_write_summary_files_and_plot(tmp_path):
    _write_run(tmp_path)
    summary = load.build(tmp_path, duration_s=10, profile="steady", users=5)
    summary["budgets"] = {"passed": False, "breaches": ["totals: rps is 15, budget 20"], "file": "b.yaml"}
    load.write(tmp_path, summary)
    text = (tmp_path / "summary.md").read_text()
    assert "| POST /orders | 50 | 2 | 5.0 | 30 | 90 | 200 |" in text
    assert "budgets: BROKEN\n- totals: rps is 15, budget 20" in text
    assert (tmp_path / "load.png").stat().st_size > 0


def _write_memory(run_dir: Path) -> None:
    """10 minutes of samples: the app leaks 1 MiB every 10 s after a warm-up spike, the hub stays flat."""
    rows = ["t_s,process,rss_mib"]
    for t in range(0, 601, 10):
        rows.append(f"{t},app,{300 if t < 60 else 100 + t // 10}")  # warm-up spike, then +360 MiB/h
        rows.append(f"{t},hub,{80 + (t // 10) % 2}")                       # flat, with noise
    (run_dir / "memory.csv").write_text("\n".join(rows) + "\n")


def test_build_memory_slope_after_warmup(tmp_path):
    _write_run(tmp_path)
    _write_memory(tmp_path)
    memory = load.build(tmp_path, duration_s=600)["memory"]
    assert memory["app"]["slope_mib_per_h"] == 360.0        # the spike before 60 s is left out
    assert abs(memory["hub"]["slope_mib_per_h"]) < 1
    assert (memory["app"]["max_mib"], memory["hub"]["samples"]) == (300.0, 61)


def test_memory_slope_breaks_budget(tmp_path):
    from loadtests import budgets

    _write_run(tmp_path)
    _write_memory(tmp_path)
    summary = load.build(tmp_path, duration_s=600)
    breaches = budgets.check(budgets.parse_budgets({"totals": {"max_memory_slope_mib_per_h": 20}}), summary)
    assert [str(b) for b in breaches] == ["totals: memory_slope_mib_per_h is 360, budget 20"]


def test_write_memory_plot_and_oracle_lines(tmp_path):
    _write_run(tmp_path)
    _write_memory(tmp_path)
    summary = load.build(tmp_path, duration_s=600)
    summary["oracle"] = {"passed": False, "orders_checked": 2, "final_states": {"RELEASED": 2},
                         "blocks_mined": 36, "disputes_ruled": 1,
                         "violations": [{"invariant": "I1", "order_id": None, "message": "hub: +1"}]}
    load.write(tmp_path, summary)
    text = (tmp_path / "summary.md").read_text()
    assert "| app | 300 | 160 | 300 | +360 | " in text
    assert "oracle: FAILED on 2 orders (RELEASED 2); drain mined 36 blocks, ruled 1 disputes\n- I1 order None: hub: +1" in text
    assert (tmp_path / "memory.png").stat().st_size > 0


def test_markdown_names_the_database_the_processes_and_the_streams_judged(tmp_path):
    _write_run(tmp_path)
    summary = load.build(tmp_path, duration_s=60)
    summary.update(database="postgres", app_processes=2)
    summary["oracle"] = {"passed": True, "orders_checked": 2, "final_states": {"RELEASED": 2}, "blocks_mined": 30,
                         "disputes_ruled": 0, "violations": [], "streams_judged": 4, "notifications_streamed": 31}
    text = load.markdown(summary)
    assert text.splitlines()[0].endswith(" s on PostgreSQL, 2 app processes")
    assert ("oracle: passed on 2 orders (RELEASED 2); drain mined 30 blocks, ruled 0 disputes; "
            "31 notifications judged against 4 traders' streams") in text
    summary.update(database="sqlite_wal", app_processes=1)
    assert load.markdown(summary).splitlines()[0].endswith(" s")


def test_build_memory_slope_withheld_for_a_30_second_run(tmp_path):
    """30 s of start-up growth scaled to an hour read as +4,764 MiB/h: too short to say, so it says so."""
    _write_run(tmp_path)
    rows = ["t_s,process,rss_mib"] + [f"{t},hub,{60 + 1.3 * t}" for t in range(1, 31)]
    (tmp_path / "memory.csv").write_text("\n".join(rows) + "\n")
    summary = load.build(tmp_path, duration_s=30)
    hub = summary["memory"]["hub"]
    assert (hub["slope_mib_per_h"], hub["slope_pct_per_h"]) == (None, None)
    assert hub["slope_note"] == "too short to estimate: 29 s of samples, a slope needs 300 s"
    assert (hub["start_mib"], hub["max_mib"], hub["samples"]) == (61.3, 99.0, 30)  # the rest is still reported
    assert "memory_slope_mib_per_h" not in summary["totals"]
    load.write(tmp_path, summary)
    text = (tmp_path / "summary.md").read_text()
    assert "| hub | 61.3 | 99 | 99 | n/a | n/a |" in text
    assert "memory slopes withheld: too short to estimate: 29 s of samples" in text
    assert "MiB/h" not in text.split("memory slopes withheld")[1]


def test_memory_slope_withheld_with_too_few_samples_after_warmup():
    t = [0, 100, 200, 300, 400]
    assert load.slope_withheld(t, [1, 2, 3, 4, 5]).startswith("too few samples to estimate: ")
    assert load.memory_slope(t, [1, 2, 3, 4, 5]) is None
    many = list(range(0, 301, 10))
    assert load.slope_withheld(many, many) is None and load.memory_slope(many, many) == pytest.approx(3600)


def test_plot_users_line_is_the_users_asked_for_not_locusts_total(tmp_path):
    _write_run(tmp_path)
    history = load._rows(tmp_path / "locust_stats_history.csv")
    assert load._series(history)["users"] == [5, 5]            # Locust counts every user it runs
    assert load._series(history, fixed_users=4)["users"] == [1, 1]  # --users counts browsers and buyers
    summary = load.build(tmp_path, duration_s=10, users=1, fixed_users=4)
    assert (summary["users"], summary["fixed_users"]) == (1, 4)
    assert load.markdown(summary).startswith("# load run: , 1 users (+4 sellers, couriers and arbiters), ")


def test_markdown_unjudged_run_names_the_htlcs_and_orders_it_waited_on(tmp_path):
    _write_run(tmp_path)
    summary = load.build(tmp_path, duration_s=10)
    summary["oracle"] = {"passed": False, "error": "timed out after 30.0s waiting for in-flight HTLCs to settle; "
                                                   "still in flight: hub in 1000 sats", "blocks_mined": 12,
                         "disputes_ruled": 0, "still_open": 1, "open_orders": [{"id": 9, "state": "FUNDED"}],
                         "in_flight": [{"node": "hub", "incoming": True, "amount_sats": 1000,
                                        "payment_hash": "ab" * 32, "channel_point": "f00d:1",
                                        "expiration_height": 532, "order_id": None}]}
    load.write(tmp_path, summary)
    text = (tmp_path / "summary.md").read_text()
    assert "oracle: NOT JUDGED: timed out after 30.0s waiting for in-flight HTLCs to settle" in text
    assert f"| hub | in | 1000 | {'ab' * 32} | f00d:1 | 532 | not this run |" in text
    assert "- order 9 still FUNDED" in text
    assert (tmp_path / "load.png").is_file() and (tmp_path / "summary.json").is_file()


def test_plot_latency_is_per_app_endpoint_without_the_nodes_or_the_escrows(tmp_path):
    def row(ts: int, kind: str, name: str, rps: float, p95: str, total: int) -> str:
        return f"{ts},5,{kind},{name},{rps},0,5,5,5,5,9,{p95},9,9,9,9,9,{total},0,5,5,1,9,10"

    (tmp_path / "h.csv").write_text("\n".join([
        HISTORY_HEADER,
        _history_row(1000, 5, "", "Aggregated", 10, 10),
        row(1000, "GET", "/listings", 8, "20", 80),
        row(1000, "LND", "pay hold", 1, "4000", 1),
        row(1000, "ESCROW", "settled", 1, "9000", 1),
        _history_row(1001, 5, "", "Aggregated", 10, 20),
        row(1001, "GET", "/listings", 8, "30", 160),
        row(1001, "POST", "/orders", 2, "90", 2),
        row(1001, "LND", "pay hold", 1, "5000", 2),
    ]) + "\n")
    series = load._series(load._rows(tmp_path / "h.csv"))
    # the busiest first; a second in which an endpoint answered nothing has no point
    assert series["p95_by_endpoint"] == {"GET /listings": [20, 30], "POST /orders": [None, 90]}
    assert series["rps"] == [8, 10]


def test_a_channel_the_run_drains_is_named_and_warned_about(tmp_path):
    _write_run(tmp_path)
    rows = ["t_s,channel,local_sats,capacity_sats"]
    for t, (one, two) in enumerate([(900_000, 800_000), (850_000, 300_000), (870_000, 20_000), (860_000, 60_000)]):
        rows += [f"{5.0 * t},hub->seller1,{one},1000000", f"{5.0 * t},hub->seller2,{two},1000000",
                 f"{5.0 * t},hub->buyer1,{1000 * t},1000000"]  # opened by the buyer: empty on the hub's side
    (tmp_path / "liquidity.csv").write_text("\n".join(rows) + "\n")
    summary = load.build(tmp_path, duration_s=20)
    assert summary["liquidity"]["hub->seller2"] == {
        "capacity_sats": 1_000_000, "start_sats": 800_000, "min_sats": 20_000, "min_at_s": 10.0, "end_sats": 60_000,
        "min_share": 0.02, "low": True}
    assert not summary["liquidity"]["hub->seller1"]["low"] and not summary["liquidity"]["hub->buyer1"]["low"]
    assert summary["totals"]["liquidity_low"] == ["hub->seller2"]
    text = load.markdown(summary)
    assert "**warning: hub->seller2 ran low**: the hub's side fell to 20000 of 1000000 sats (2%) at 10 s" in text
    assert "hub->seller1 ran low" not in text
    assert "| hub->seller1 | 1000000 | 900000 | 850000 (85%) | 5 | 860000 |" in text
    load.write(tmp_path, summary)
    assert (tmp_path / "load.png").stat().st_size > 0


def test_a_buyer_whose_side_the_run_drains_is_named_and_warned_about(tmp_path):
    # A soak at 11 escrows/s paid 15,800 holds of 1,000 sats out of two buyers' 8M-sat sides:
    # their payments failed INSUFFICIENT_BALANCE, and only the hub's sides were watched.
    _write_run(tmp_path)
    rows = ["t_s,channel,local_sats,capacity_sats,remote_sats"]
    for t, (hub, buyer) in enumerate([(200_000, 790_000), (600_000, 390_000), (960_000, 30_000), (970_000, 20_000)]):
        rows += [f"{5.0 * t},hub->buyer1,{hub},1000000,{buyer}",
                 f"{5.0 * t},hub->seller1,{900_000 - 1000 * t},1000000,{99_000 + 1000 * t}"]
    (tmp_path / "liquidity.csv").write_text("\n".join(rows) + "\n")
    summary = load.build(tmp_path, duration_s=20)
    buyer = summary["liquidity"]["hub->buyer1"]
    assert buyer["peer"] == {"start_sats": 790_000, "min_sats": 20_000, "min_at_s": 15.0, "end_sats": 20_000,
                             "min_share": 0.02, "low": True}
    assert not buyer["low"] and not summary["liquidity"]["hub->seller1"]["peer"]["low"]
    assert (summary["totals"]["liquidity_low"], summary["totals"]["liquidity_low_peer"]) == ([], ["hub->buyer1"])
    text = load.markdown(summary)
    assert "**warning: buyer1's side of hub->buyer1 ran low**: it fell to 20000 of 1000000 sats (2%) at 15 s" in text
    load.write(tmp_path, summary)
    assert (tmp_path / "load.png").stat().st_size > 0


def test_a_run_without_liquidity_samples_warns_of_nothing(tmp_path):
    _write_run(tmp_path)
    summary = load.build(tmp_path, duration_s=10)
    assert (summary["liquidity"], summary["totals"]["liquidity_low"]) == ({}, [])
    assert "ran low" not in load.markdown(summary)


def _write_cpu_run(run_dir: Path) -> None:
    """10 minutes, one escrow settled a second. The app costs 10 ms an escrow all along; the hub's
    cost an escrow doubles from the first third (20 ms) to the last (40 ms)."""
    history = [HISTORY_HEADER]
    rows = ["t_s,process,rss_mib,cpu_s"]
    app = hub = 0.0
    for t in range(0, 601, 10):
        history += [_history_row(1000 + t, 5, "", "Aggregated", 10, 10 * t), _history_row(1000 + t, 5, "ESCROW", "settled", 1, t)]
        rows += [f"{t},app,150,{app:.2f}", f"{t},hub,90,{hub:.2f}"]
        app += 10 * 0.010
        hub += 10 * (0.020 if t < 260 else 0.040)  # 60 s warm-up, then 180 s thirds: 60-240 and 420-600
    (run_dir / "locust_stats_history.csv").write_text("\n".join(history) + "\n")
    (run_dir / "memory.csv").write_text("\n".join(rows) + "\n")


def test_cpu_per_escrow_by_process_and_its_growth(tmp_path):
    _write_run(tmp_path)
    _write_cpu_run(tmp_path)
    summary = load.build(tmp_path, duration_s=600)
    app, hub = summary["cpu"]["app"], summary["cpu"]["hub"]
    assert (app["cpu_s_per_escrow_first_third"], app["cpu_s_per_escrow_last_third"], app["growth"]) == (0.01, 0.01, 1.0)
    assert (hub["cpu_s_per_escrow_first_third"], hub["cpu_s_per_escrow_last_third"], hub["growth"]) == (0.02, 0.04, 2.0)
    assert app["cores"] == 0.01 and app["samples"] == 55  # samples from 60 s on
    t = summary["totals"]
    assert (t["cpu_s_per_escrow_first_third"], t["cpu_s_per_escrow_last_third"]) == (0.03, 0.05)
    load.write(tmp_path, summary)
    text = (tmp_path / "summary.md").read_text()
    assert "| hub | 0.033 | 32.6 | 20.0 | 40.0 | 2 |" in text  # (200 s at 20 ms + 340 s at 40 ms) over 540 escrows
    assert "| app | 0.01 | 10.0 | 10.0 | 10.0 | 1 |" in text
    assert "| app and nodes | 0.043 | 42.6 | 30.0 | 50.0 | |" in text
    assert (tmp_path / "cpu.png").stat().st_size > 0 and summary["files"]["cpu_plot"] == "cpu.png"


def test_memory_samples_without_cpu_give_no_cpu_figures(tmp_path):
    """Runs from before the sampler took CPU still read: memory figures, no CPU ones, no cpu.png."""
    _write_run(tmp_path)
    _write_memory(tmp_path)
    summary = load.build(tmp_path, duration_s=600)
    assert summary["cpu"] == {} and "cpu_s_per_escrow" not in summary["totals"] and "cpu_plot" not in summary["files"]
    load.write(tmp_path, summary)
    assert "CPU ms per escrow" not in (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "cpu.png").exists() and (tmp_path / "memory.png").is_file()


def test_the_load_generator_is_sampled_but_left_out_of_the_totals(tmp_path):
    """Locust's own processes show as ``locust``: their CPU and memory are reported, but they are
    not the system under load, so neither the CPU totals nor the memory-slope budget count them."""
    _write_run(tmp_path)
    _write_cpu_run(tmp_path)
    rows = (tmp_path / "memory.csv").read_text().splitlines()
    rows += [f"{t},locust,{60 + t},{0.5 * t:.2f}" for t in range(0, 601, 10)]  # half a core, +3,600 MiB/h
    (tmp_path / "memory.csv").write_text("\n".join(rows) + "\n")
    summary = load.build(tmp_path, duration_s=600)
    assert summary["cpu"]["locust"]["cores"] == 0.5 and summary["memory"]["locust"]["slope_mib_per_h"] == 3600
    t = summary["totals"]
    assert (t["cpu_s_per_escrow_first_third"], t["cpu_s_per_escrow_last_third"]) == (0.03, 0.05)
    assert t["memory_slope_mib_per_h"] == 0  # the app's and the hub's, flat
    load.write(tmp_path, summary)
    text = (tmp_path / "summary.md").read_text()
    assert "| locust | 0.5 | 500.0 |" in text and "| app and nodes | 0.043 | 42.6 | 30.0 | 50.0 | |" in text


def test_the_apps_own_work_per_escrow(tmp_path):
    work = {"db_queries": 5000, "lnd_calls": 300, "lnd_calls_by_method": {"AddHoldInvoice": 100, "GetInfo": 200,
                                                                       "TrackPaymentV2": 0}}
    figures = load.work_figures(work, escrows=100)
    assert figures["per_escrow"] == {"db_queries": 50, "lnd_calls": 3,
                                     "lnd_calls_by_method": {"AddHoldInvoice": 1, "GetInfo": 2}}
    assert load.work_figures({}, escrows=0) == {"total": {}, "per_escrow": {}}
    _write_run(tmp_path)
    summary = load.build(tmp_path, duration_s=10)
    summary["app_work"] = figures
    load.write(tmp_path, summary)
    text = (tmp_path / "summary.md").read_text()
    assert "the app's own work per escrow settled: db_queries 50, lnd_calls 3\n- lnd_calls_by_method: GetInfo 2, AddHoldInvoice 1" in text


def test_the_machine_speed_probe_in_thirds(tmp_path):
    """The probe's fixed work took 1.0 ms of CPU, then 1.5 ms from minute 5 on: a machine that
    slowed by half, which every process's CPU per escrow would show too."""
    _write_run(tmp_path)
    rows = ["t_s,probe_ms"] + [f"{t},{1.0 if t < 300 else 1.5}" for t in range(0, 601, 10)]
    (tmp_path / "probe.csv").write_text("\n".join(rows) + "\n")
    summary = load.build(tmp_path, duration_s=600)
    assert summary["machine"] == {"samples": 55, "probe_ms_first_third": 1.0, "probe_ms_last_third": 1.5, "growth": 1.5}
    load.write(tmp_path, summary)
    assert "machine speed probe (CPU ms of a fixed piece of work): 1 in the first third, 1.5 in the last, growth 1.5" \
        in (tmp_path / "summary.md").read_text()
    (tmp_path / "probe.csv").write_text("t_s,probe_ms\n0,1.0\n10,1.0\n")  # too few to say
    assert load.build(tmp_path, duration_s=600)["machine"] == {}


def test_the_probe_sampler_times_its_fixed_work(tmp_path):
    from loadtests.samplers import ProbeSampler

    (ms,) = ProbeSampler(tmp_path / "probe.csv").sample()
    assert 0 < float(ms) < 1000
