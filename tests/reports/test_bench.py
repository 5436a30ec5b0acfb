"""The picture of a `bench escrow` run, drawn from its JSON (no nodes: pure drawing)."""

from __future__ import annotations

import sys

from reports import bench

RESULT = {
    "escrows": 10, "escrows_per_s": 16.0, "concurrency": 16, "database": "sqlite_wal", "app_processes": 1,
    "oracle": {"passed": True, "orders_checked": 10},
    "baseline": {"payments_per_s": 37.0},
    "cpu_s_per_raw_payment": {"lnd-hub": 0.015, "lnd-buyer1": 0.007, "lnd-seller1": 0.005, "bitcoind": 0.0005},
    "floor": {"escrows_per_s": 28.0, "hold_s": 0.2, "cpu_s_per_escrow": {"lnd-hub": 0.022, "lnd-buyer1": 0.007}},
    "cpu_s_per_escrow": {"app": 0.036, "bench-client": 0.010, "lnd-hub": 0.026, "lnd-buyer1": 0.009},
}


def test_columns_are_raw_floor_and_app_with_the_benchmark_client_left_out():
    columns = bench._columns(RESULT)
    assert [rate for _label, rate, _cpu in columns] == [37.0, 28.0, 16.0]
    assert "held 0.2 s" in columns[1][0]
    assert "bench-client" not in columns[2][2] and columns[2][2]["app"] == 0.036


def test_a_skipped_floor_leaves_two_columns():
    skipped = {**RESULT, "floor": {"what": "…", "skipped": "--floor 0"}}
    assert [rate for _label, rate, _cpu in bench._columns(skipped)] == [37.0, 16.0]


def test_nodes_are_grouped_by_role():
    assert [bench._group(p) for p in ("app", "lnd-hub", "lnd-buyer2", "lnd-seller1", "bitcoind", "postgres")] == \
        ["the app", "hub LND", "buyers' LND", "sellers' LND", "bitcoind", "PostgreSQL"]


def test_the_plot_is_a_png(tmp_path):
    got = bench.plot_or_note(RESULT, tmp_path / "bench-escrow.png")
    assert got == {"plot": str(tmp_path / "bench-escrow.png")}
    assert (tmp_path / "bench-escrow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_a_note_says_which_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    got = bench.plot_or_note(RESULT, tmp_path / "bench-escrow.png")
    assert got["plot"] is None and "escrowlab[load]" in got["plot_note"]
    assert not (tmp_path / "bench-escrow.png").exists()


def test_a_drawing_failure_keeps_the_figures_and_names_the_error(tmp_path):
    got = bench.plot_or_note({**RESULT, "baseline": {}}, tmp_path / "bench-escrow.png")
    assert got["plot"] is None and "KeyError" in got["plot_note"]


def test_with_the_apps_threads_the_plot_has_a_third_panel(tmp_path):
    import matplotlib.image

    threads = {"MainThread": {"threads": 1, "cpu_s_per_escrow": 0.007,
                              "switches_per_escrow": {"voluntary": 17.0, "involuntary": 30.0}},
               "escrow-drive": {"threads": 8, "cpu_s_per_escrow": 0.005,
                                "switches_per_escrow": {"voluntary": 29.0, "involuntary": 21.0}},
               "lifeguard": {"threads": 1, "cpu_s_per_escrow": 0.0,
                             "switches_per_escrow": {"voluntary": 0.0, "involuntary": 0.0}}}
    two = matplotlib.image.imread(bench.escrow_plot(RESULT, tmp_path / "two.png"))
    three = matplotlib.image.imread(bench.escrow_plot({**RESULT, "app_threads": threads}, tmp_path / "three.png"))
    assert three.shape[1] > two.shape[1] * 1.3  # wider by the panel of threads
