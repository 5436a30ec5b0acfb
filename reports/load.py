"""Load run summary: per-endpoint figures from Locust's CSVs, escrows settled, locked sats, memory.

Reads ``locust_stats.csv`` and ``locust_stats_history.csv`` (Locust's own
output), ``locked_sats.csv`` (the hub's held HTLCs, sampled each second),
``liquidity.csv`` (what the hub can still send down each channel) and
``memory.csv`` (resident memory and CPU seconds so far of the app and each node), and writes
``summary.json``, ``summary.md``, ``load.png``, ``memory.png`` and ``cpu.png`` beside them.

Memory slope: a least-squares line through each process's samples after the
warm-up (the first tenth of the run, or up to a minute when that is more but
still under a quarter of the run), in MiB per hour. A
process that keeps its memory flat has a slope near 0; a leak shows as a
steady positive slope. A run whose samples span less than five minutes, or
that has fewer than ten samples after the warm-up, gets no slope: its
``slope_mib_per_h`` is null and ``slope_note`` says why (start-up growth
over 30 seconds, scaled to an hour, reads as a leak that is not there).

Users: ``users`` is ``--users`` (browsers and buyers); ``fixed_users`` are the
sellers, couriers and arbiters each Locust process runs on top. ``load.png``
plots the browsers and buyers, so its line ends at ``--users``.
Schema ``escrowlab.load-run/1``; fields are only ever added.

Liquidity: a channel whose hub side the run took below ``LOW_LIQUIDITY`` of its capacity is named in
``totals.liquidity_low`` and warned about in ``summary.md``: payouts down it fail (NO_ROUTE)
until it is rebalanced, and a run's escrows per second then measure the topology, not the app.
Its peer's side likewise (``liquidity[...]["peer"]``, ``totals.liquidity_low_peer``): a buyer
pays out of its own side, and its payments fail (INSUFFICIENT_BALANCE) once that runs dry.

CPU (``cpu``, from ``memory.csv``'s ``cpu_s``; runs from before it have none): per process, the
cores it kept busy and its CPU seconds per escrow settled, over the run after the warm-up and in
that span's first and last thirds. ``growth`` is the last third's CPU per escrow over the
first's: a process whose cost per escrow grows as the run goes on (a table scanned on every
request, a node's growing database) shows above 1, which a falling escrow rate alone cannot
tell apart from a machine that is simply full. The samples' clock starts a few seconds before
Locust's, which a third of a run hardly feels. ``totals.cpu_s_per_escrow`` sums the app's and
the nodes'. Locust's own processes are sampled too, as ``locust``: the load generator's share
of the machine, left out of the totals and of the memory-slope budget. ``machine`` is the speed
probe (``probe.csv``): the CPU a fixed piece of work takes, in the same thirds. On a VM whose host
takes cores away unannounced, that time is charged to whatever ran, and every process's cost per
escrow rises alike; the probe rises with them.

Request types: HTTP methods are app calls, ``LND`` are calls to a party's own
node, ``ESCROW settled`` is one whole escrow (order to settled payment).
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy

SCHEMA = "escrowlab.load-run/1"
NOT_APP = ("LND", "ESCROW")
WARMUP_FRACTION, WARMUP_MIN_S = 0.1, 60.0
SLOPE_MIN_SPAN_S, SLOPE_MIN_SAMPLES = 300.0, 10
LOW_LIQUIDITY = 0.05  # of a channel's capacity, on the hub's side
LOAD_GENERATOR = "locust"  # Locust's own processes (master and workers), sampled beside the app and nodes


def _num(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def endpoint_figures(row: dict) -> dict:
    requests, failures = int(_num(row["Request Count"])), int(_num(row["Failure Count"]))
    return {"type": row["Type"], "name": row["Name"], "requests": requests, "failures": failures,
            "failure_ratio": round(failures / requests, 4) if requests else 0.0,
            "rps": round(_num(row["Requests/s"]), 2), "p50_ms": _num(row["50%"]), "p95_ms": _num(row["95%"]),
            "p99_ms": _num(row["99%"]), "max_ms": _num(row["Max Response Time"])}


def build(run_dir: Path, duration_s: float, profile: str = "", users: int = 0, workers: int = 0,
          fixed_users: int = 0) -> dict:
    """The run's figures from the files Locust and the sampler left in ``run_dir``."""
    rows = _rows(run_dir / "locust_stats.csv")
    endpoints = {f"{r['Type']} {r['Name']}": endpoint_figures(r) for r in rows if r["Name"] != "Aggregated"}
    history = _rows(run_dir / "locust_stats_history.csv")
    stamps = [int(_num(h["Timestamp"])) for h in history]
    elapsed = (max(stamps) - min(stamps)) if len(stamps) > 1 else duration_s
    elapsed = max(elapsed, 1.0)
    app = [e for e in endpoints.values() if e["type"] not in NOT_APP]
    settled = endpoints.get("ESCROW settled", {})
    settled_ok = settled.get("requests", 0) - settled.get("failures", 0)
    aggregated = next((endpoint_figures(r) for r in rows if r["Name"] == "Aggregated"), None)
    requests = sum(e["requests"] for e in endpoints.values())
    failures = sum(e["failures"] for e in endpoints.values())
    locked = _rows(run_dir / "locked_sats.csv")
    totals = {
        "requests": requests, "failures": failures,
        "failure_ratio": round(failures / requests, 4) if requests else 0.0,
        "rps": round(sum(e["requests"] for e in app) / elapsed, 2),
        "p50_ms": aggregated["p50_ms"] if aggregated else 0, "p95_ms": aggregated["p95_ms"] if aggregated else 0,
        "p99_ms": aggregated["p99_ms"] if aggregated else 0,
        "escrows_settled": settled_ok,
        "escrows_settled_per_s": round(settled_ok / elapsed, 3),
        "escrow_p50_ms": settled.get("p50_ms", 0), "escrow_p99_ms": settled.get("p99_ms", 0),
        "locked_sats_max": max((int(_num(r["locked_sats"])) for r in locked), default=0),
        "held_htlcs_max": max((int(_num(r["held_htlcs"])) for r in locked), default=0),
    }
    liquidity = liquidity_figures(_rows(run_dir / "liquidity.csv"))
    totals["liquidity_low"] = sorted(name for name, fig in liquidity.items() if fig["low"])
    totals["liquidity_low_peer"] = sorted(name for name, fig in liquidity.items() if fig.get("peer", {}).get("low"))
    memory = memory_figures(_rows(run_dir / "memory.csv"))
    slopes = [m["slope_mib_per_h"] for name, m in memory.items()  # the generator's memory is not the system's
              if m["slope_mib_per_h"] is not None and name != LOAD_GENERATOR]
    if slopes:
        totals["memory_slope_mib_per_h"] = max(slopes)
    cpu = cpu_figures(_rows(run_dir / "memory.csv"), _settled_by_time(history))
    machine = machine_figures(_rows(run_dir / "probe.csv"))
    measured = {name: fig for name, fig in cpu.items() if name != LOAD_GENERATOR}
    if measured:
        totals["cpu_s_per_escrow"] = _sum_of(measured, "cpu_s_per_escrow")
        for third in ("first_third", "last_third"):
            totals[f"cpu_s_per_escrow_{third}"] = _sum_of(measured, f"cpu_s_per_escrow_{third}")
    return {"schema": SCHEMA, "generated_at": datetime.now(timezone.utc).isoformat(), "run_dir": str(run_dir),
            "profile": profile, "users": users, "fixed_users": fixed_users, "workers": workers,
            "duration_s": round(elapsed, 1),
            "totals": totals, "endpoints": endpoints, "memory": memory, "cpu": cpu, "machine": machine,
            "liquidity": liquidity,
            "files": {"locust_html": "locust.html", "locust_csv": "locust_stats.csv", "plots": "load.png",
                      "locked_sats_csv": "locked_sats.csv", "liquidity_csv": "liquidity.csv",
                      "memory_csv": "memory.csv", "memory_plot": "memory.png", "probe_csv": "probe.csv",
                      **({"cpu_plot": "cpu.png"} if cpu else {})}}


def liquidity_figures(rows: list[dict]) -> dict[str, dict]:
    """Per hub channel: its hub side at the start, lowest (and when) and at the end, in sats
    and as a share of capacity; ``low`` when the run took it under ``LOW_LIQUIDITY`` from above.
    A buyer's channel starts with nearly all of it on the buyer's side, and fills up on the hub's
    as buyers pay: low from the start is how it was opened, not something the run did. The
    peer's side, where sampled, the same way under ``peer``: a buyer's side is what runs dry."""
    out: dict[str, dict] = {}
    for r in rows:
        t, capacity = _num(r["t_s"]), int(_num(r["capacity_sats"]))
        fig = out.setdefault(r["channel"], {"capacity_sats": capacity})
        _side(fig, t, int(_num(r["local_sats"])))
        if r.get("remote_sats") not in (None, ""):  # (samples of older runs have the hub's side only)
            _side(fig.setdefault("peer", {}), t, int(_num(r["remote_sats"])))
    for fig in out.values():
        for side in (fig, fig.get("peer")):
            if side is not None:
                side["min_share"] = round(side["min_sats"] / fig["capacity_sats"], 4) if fig["capacity_sats"] else 0.0
                started = side["start_sats"] / fig["capacity_sats"] if fig["capacity_sats"] else 0.0
                side["low"] = side["min_share"] < LOW_LIQUIDITY <= started
    return out


def _side(fig: dict, t: float, sats: int) -> None:
    """One sample of one side of a channel into its start, lowest (and when) and end."""
    if "start_sats" not in fig:
        fig.update(start_sats=sats, min_sats=sats, min_at_s=t)
    if sats < fig["min_sats"]:
        fig.update(min_sats=sats, min_at_s=t)
    fig["end_sats"] = sats


def _by_process(rows: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows:
        t, mib = series.setdefault(r["process"], ([], []))
        t.append(_num(r["t_s"]))
        mib.append(_num(r["rss_mib"]))
    return series


def _after_warmup(t: list[float], mib: list[float]) -> list[tuple[float, float]]:
    span = t[-1] - t[0]
    warm = max(WARMUP_FRACTION * span, min(WARMUP_MIN_S, span / 4)) + t[0]
    return [(x, y) for x, y in zip(t, mib) if x >= warm]


def slope_withheld(t: list[float], mib: list[float]) -> str | None:
    """Why these samples are too few or too short for a slope in MiB per hour (None: they are enough)."""
    span = t[-1] - t[0] if t else 0.0
    if span < SLOPE_MIN_SPAN_S:
        return f"too short to estimate: {span:.0f} s of samples, a slope needs {SLOPE_MIN_SPAN_S:.0f} s"
    points = _after_warmup(t, mib)
    if len(points) < SLOPE_MIN_SAMPLES or len({x for x, _ in points}) < 2:
        return f"too few samples to estimate: {len(points)} after the warm-up, a slope needs {SLOPE_MIN_SAMPLES}"
    return None


def memory_slope(t: list[float], mib: list[float]) -> float | None:
    """MiB per hour, least squares, after the warm-up; None when ``slope_withheld`` says why not."""
    if slope_withheld(t, mib):
        return None
    xs, ys = zip(*_after_warmup(t, mib))
    return float(numpy.polyfit(xs, ys, 1)[0]) * 3600


def memory_figures(rows: list[dict]) -> dict:
    """Per process: samples, start, end and peak MiB, and the slope (null, with a note, when withheld)."""
    out = {}
    for name, (t, mib) in _by_process(rows).items():
        if not mib:
            continue
        fig = {"samples": len(mib), "start_mib": mib[0], "end_mib": mib[-1], "max_mib": max(mib),
               "slope_mib_per_h": None, "slope_pct_per_h": None}
        slope, mean = memory_slope(t, mib), sum(mib) / len(mib)
        if slope is None:
            fig["slope_note"] = slope_withheld(t, mib)
        else:
            fig.update(slope_mib_per_h=round(slope, 2), slope_pct_per_h=round(100 * slope / mean, 2))
        out[name] = fig
    return out


def work_figures(work: dict, escrows: int) -> dict:
    """The marketplace's own work during the run (``Marketplace.work_counters``, one process's
    with several): totals, and per escrow settled."""
    per = max(1, escrows)
    figures: dict = {"total": work, "per_escrow": {}}
    for key, value in work.items():
        if isinstance(value, dict):
            figures["per_escrow"][key] = {k: round(v / per, 2) for k, v in sorted(value.items()) if v}
        else:
            figures["per_escrow"][key] = round(value / per, 2)
    return figures


def _settled_by_time(history: list[dict]) -> list[tuple[float, float]]:
    """Escrows settled so far, by seconds since Locust's first sample."""
    t0 = min((int(_num(h["Timestamp"])) for h in history), default=0)
    return [(int(_num(h["Timestamp"])) - t0, _num(h["Total Request Count"]) - _num(h["Total Failure Count"]))
            for h in history if h["Type"] == "ESCROW" and h["Name"] == "settled"]


def _settled_at(settled: list[tuple[float, float]], t: float) -> float:
    """Escrows settled by ``t`` (the last sample at or before it)."""
    done = 0.0
    for at, count in settled:
        if at > t:
            break
        done = count
    return done


def _cpu_series(rows: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Per process: sample times and CPU seconds so far (rows without ``cpu_s`` left out)."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows:
        if r.get("cpu_s") not in (None, ""):
            t, cpu = series.setdefault(r["process"], ([], []))
            t.append(_num(r["t_s"]))
            cpu.append(_num(r["cpu_s"]))
    return series


def cpu_figures(rows: list[dict], settled: list[tuple[float, float]]) -> dict:
    """Per process, after the warm-up: cores kept busy, CPU seconds per escrow settled, the same
    in the first and last thirds of that span, and ``growth`` (last third over first). Per-escrow
    figures are null where no escrow settled in the span."""
    out = {}
    for name, (t, cpu) in _cpu_series(rows).items():
        points = _after_warmup(t, cpu) if len(t) > 1 else []
        if len(points) < 4:
            continue
        (a, ca), (b, cb) = points[0], points[-1]
        third = (b - a) / 3
        fig = {"samples": len(points), "cpu_s": round(cb - ca, 2), "cores": round((cb - ca) / (b - a), 3) if b > a else 0.0,
               "cpu_s_per_escrow": _per_escrow(points, settled, a, b)}
        fig["cpu_s_per_escrow_first_third"] = _per_escrow(points, settled, a, a + third)
        fig["cpu_s_per_escrow_last_third"] = _per_escrow(points, settled, b - third, b)
        first, last = fig["cpu_s_per_escrow_first_third"], fig["cpu_s_per_escrow_last_third"]
        fig["growth"] = round(last / first, 2) if first and last is not None else None
        out[name] = fig
    return out


def machine_figures(rows: list[dict]) -> dict:
    """The speed probe after the warm-up: the median CPU milliseconds of its fixed work in the
    first and last thirds, and ``growth`` (last over first); {} without enough samples."""
    t = [_num(r["t_s"]) for r in rows]
    points = _after_warmup(t, [_num(r["probe_ms"]) for r in rows]) if len(t) > 1 else []
    if len(points) < 6:
        return {}
    a, b = points[0][0], points[-1][0]
    first = [ms for x, ms in points if x <= a + (b - a) / 3]
    last = [ms for x, ms in points if x >= b - (b - a) / 3]
    fig = {"samples": len(points), "probe_ms_first_third": round(float(numpy.median(first)), 3),
           "probe_ms_last_third": round(float(numpy.median(last)), 3)}
    fig["growth"] = round(fig["probe_ms_last_third"] / fig["probe_ms_first_third"], 2) if fig["probe_ms_first_third"] else None
    return fig


def _per_escrow(points: list[tuple[float, float]], settled: list[tuple[float, float]], a: float, b: float) -> float | None:
    """CPU seconds per escrow settled between the samples nearest ``a`` and ``b``."""
    (ta, ca) = min(points, key=lambda p: abs(p[0] - a))
    (tb, cb) = min(points, key=lambda p: abs(p[0] - b))
    escrows = _settled_at(settled, tb) - _settled_at(settled, ta)
    return round((cb - ca) / escrows, 5) if escrows > 0 and tb > ta else None


def _sum_of(cpu: dict, key: str) -> float | None:
    values = [fig[key] for fig in cpu.values()]
    return None if any(v is None for v in values) else round(sum(values), 5)


P95_LINES = 5  # the busiest app endpoints drawn in the latency panel


def _series(history: list[dict], fixed_users: int = 0) -> dict:
    """Per second: browsers and buyers (Locust's user count less the fixed users), app rps,
    the p95 of each of the busiest app endpoints, escrows settled in that second.

    Latency is per endpoint: Locust's aggregated p95 takes in the LND payments and the
    escrows' own order-to-payout times (seconds, not milliseconds), which are not app calls,
    and percentiles of different endpoints cannot be merged into one."""
    out: dict = defaultdict(list)
    t0 = min((int(_num(h["Timestamp"])) for h in history), default=0)
    app_rps: dict[int, float] = defaultdict(float)
    settled_total: dict[int, float] = {}
    p95: dict[str, dict[int, float]] = defaultdict(dict)
    requests: dict[str, float] = defaultdict(float)
    for h in history:
        t = int(_num(h["Timestamp"])) - t0
        if h["Name"] == "Aggregated":
            out["t"].append(t)
            out["users"].append(max(0.0, _num(h["User Count"]) - fixed_users))
        elif h["Type"] not in NOT_APP:
            app_rps[t] += _num(h["Requests/s"])
            name = f"{h['Type']} {h['Name']}"
            requests[name] = max(requests[name], _num(h["Total Request Count"]))
            if h["95%"] not in ("", "N/A") and _num(h["Requests/s"]) > 0:
                p95[name][t] = _num(h["95%"])
        elif h["Type"] == "ESCROW" and h["Name"] == "settled":
            settled_total[t] = _num(h["Total Request Count"]) - _num(h["Total Failure Count"])
    out["rps"] = [app_rps.get(t, 0.0) for t in out["t"]]
    busiest = sorted(requests, key=lambda n: (-requests[n], n))[:P95_LINES]
    out["p95_by_endpoint"] = {n: [p95[n].get(t) for t in out["t"]] for n in busiest}
    last, settled = 0.0, []
    for t in out["t"]:
        now = settled_total.get(t, last)
        settled.append(max(0.0, now - last))
        last = now
    out["settled"] = settled
    return out


def plot(run_dir: Path, fixed_users: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = _series(_rows(run_dir / "locust_stats_history.csv"), fixed_users)
    locked = _rows(run_dir / "locked_sats.csv")
    liquidity = _rows(run_dir / "liquidity.csv")
    fig, ax = plt.subplots(5 if liquidity else 4, 1, figsize=(9, 13.5 if liquidity else 11), sharex=True)
    ax[0].plot(s["t"], s["rps"], label="app requests/s")
    ax[0].plot(s["t"], s["users"], label="users (browsers and buyers, as --users)", linestyle="--")
    ax[0].legend(loc="upper left")
    ax[0].set_title("throughput" + (f" ({fixed_users} sellers, couriers and arbiters run besides)"
                                    if fixed_users else ""))
    for name, values in s["p95_by_endpoint"].items():
        ax[1].plot(s["t"], [float("nan") if v is None else v for v in values], label=name)
    if s["p95_by_endpoint"]:
        ax[1].legend(loc="upper left", fontsize="small")
    ax[1].set_ylabel("p95 ms, busiest app endpoints")
    ax[2].bar(s["t"], s["settled"], width=1.0, color="tab:green")
    ax[2].set_ylabel("escrows settled / s")
    ax[3].plot([_num(r["t_s"]) for r in locked], [_num(r["locked_sats"]) for r in locked], color="tab:purple")
    ax[3].set_ylabel("sats locked in holds")
    if liquidity:
        channels: dict[str, tuple[list[float], list[float]]] = {}
        for r in liquidity:
            t, share = channels.setdefault(r["channel"], ([], []))
            t.append(_num(r["t_s"]))
            share.append(100 * _num(r["local_sats"]) / max(1.0, _num(r["capacity_sats"])))
        for name, (t, share) in sorted(channels.items()):
            ax[4].plot(t, share, label=name)
        for name, fig_ in sorted(liquidity_figures(liquidity).items()):  # a peer's side the run drained
            if fig_.get("peer", {}).get("low"):
                rows = [r for r in liquidity if r["channel"] == name]
                ax[4].plot([_num(r["t_s"]) for r in rows],
                           [100 * _num(r["remote_sats"]) / max(1.0, _num(r["capacity_sats"])) for r in rows],
                           linestyle="--", label=f"{name.split('->', 1)[-1]}'s side of {name}")
        ax[4].axhline(100 * LOW_LIQUIDITY, color="tab:red", linestyle=":", linewidth=1)
        ax[4].set_ylim(0, 105)
        ax[4].set_ylabel("hub side of channel, % of capacity")
        ax[4].legend(loc="upper left", fontsize="small", ncol=2)
    ax[-1].set_xlabel("seconds since start")
    fig.tight_layout()
    path = run_dir / "load.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    series = _by_process(_rows(run_dir / "memory.csv"))
    if series:
        fig, ax = plt.subplots(figsize=(9, 5))
        withheld = None
        for name, (t, mib) in sorted(series.items()):
            slope = memory_slope(t, mib)
            withheld = withheld or slope_withheld(t, mib)
            ax.plot(t, mib, label=f"{name} ({slope:+.1f} MiB/h)" if slope is not None else name)
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("resident memory, MiB")
        ax.set_title("memory of the app and the nodes (slope after warm-up)" if withheld is None else
                     f"memory of the app and the nodes (no slope: {withheld})", fontsize="medium")
        ax.legend(loc="upper left", fontsize="small", ncol=2)
        fig.tight_layout()
        fig.savefig(run_dir / "memory.png", dpi=90)
        plt.close(fig)
    cpu = _cpu_series(_rows(run_dir / "memory.csv"))
    if cpu and any(len(t) > 1 for t, _ in cpu.values()):
        _plot_cpu(plt, run_dir, cpu, _settled_by_time(_rows(run_dir / "locust_stats_history.csv")))
    return path


CPU_WINDOWS = 20  # windows of the per-escrow panel (each at least CPU_WINDOW_MIN_S)
CPU_WINDOW_MIN_S = 30.0
CPU_SMOOTH_S = 10.0  # the cores panel's step, at least


def _plot_cpu(plt, run_dir: Path, cpu: dict, settled: list[tuple[float, float]]) -> None:
    """``cpu.png``: the cores each process kept busy, stacked, with escrows settled per second;
    below, each process's CPU milliseconds per escrow settled, window by window."""
    fig, ax = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    names = sorted(cpu, key=lambda n: -(cpu[n][1][-1] - cpu[n][1][0]))  # the busiest at the bottom
    t_all = sorted({x for t, _ in cpu.values() for x in t})
    step = max(CPU_SMOOTH_S, (t_all[-1] - t_all[0]) / 200) if len(t_all) > 1 else CPU_SMOOTH_S
    grid = list(numpy.arange(t_all[0], t_all[-1] + step / 2, step)) if t_all else []
    stacks = []
    for name in names:  # cores over each step of the grid (samples every few seconds are noisy)
        t, c = cpu[name]
        used = numpy.interp(grid, t, c, left=numpy.nan, right=numpy.nan)
        stacks.append(numpy.nan_to_num(numpy.diff(used) / step).tolist())
    ax[0].stackplot(grid[1:], stacks, labels=names, step="pre", alpha=0.85)
    machine = os.cpu_count() or 1
    ax[0].axhline(machine, color="black", linestyle=":", linewidth=1)
    peak = max((sum(col) for col in zip(*stacks)), default=0.0)
    ax[0].set_ylim(0, max(machine, peak) * 1.3)  # room above for the legends
    ax[0].set_ylabel("cores busy (dotted: the machine's)")
    ax[0].legend(loc="upper left", fontsize="small", ncol=4)
    ax[0].set_title("CPU of the app and the nodes, and escrows settled", fontsize="medium")
    span = (t_all[-1] - t_all[0]) if t_all else 0.0
    width = max(CPU_WINDOW_MIN_S, span / CPU_WINDOWS)
    edges = [t_all[0] + i * width for i in range(int(span // width) + 1)] if t_all else []
    if settled and len(edges) > 1:
        mids = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
        done = [_settled_at(settled, b) - _settled_at(settled, a) for a, b in zip(edges, edges[1:])]
        twin = ax[0].twinx()
        twin.plot(mids, [d / width for d in done], color="black", marker=".", label="escrows settled / s")
        twin.set_ylabel("escrows settled / s")
        twin.set_ylim(bottom=0)
        twin.legend(loc="upper right", fontsize="small")
        total = [0.0] * len(mids)
        for name in names:
            t, c = cpu[name]
            used = [numpy.interp(b, t, c) - numpy.interp(a, t, c) for a, b in zip(edges, edges[1:])]
            if name != LOAD_GENERATOR:
                total = [x + u for x, u in zip(total, used)]
            ax[1].plot(mids, [1000 * u / d if d else float("nan") for u, d in zip(used, done)], marker=".", label=name)
        ax[1].plot(mids, [1000 * u / d if d else float("nan") for u, d in zip(total, done)], color="black",
                   linestyle="--", label="app and nodes")
        ax[1].set_ylim(0, ax[1].get_ylim()[1] * 1.3)  # room above for the legend
        ax[1].legend(loc="upper left", fontsize="small", ncol=4)
    ax[1].set_ylabel(f"CPU ms per escrow settled ({width:.0f} s windows)")
    ax[1].set_xlabel("seconds since start")
    fig.tight_layout()
    fig.savefig(run_dir / "cpu.png", dpi=90)
    plt.close(fig)


def markdown(summary: dict) -> str:
    t = summary["totals"]
    fixed = summary.get("fixed_users")
    lines = [f"# load run: {summary['profile']}, {summary['users']} users"
             + (f" (+{fixed} sellers, couriers and arbiters)" if fixed else "") + f", {summary['duration_s']} s"
             + (" on PostgreSQL" if summary.get("database") == "postgres" else "")
             + (f", {summary['app_processes']} app processes" if summary.get("app_processes", 1) > 1 else ""), "",
             f"- app requests/s: {t['rps']}; failures: {t['failures']} of {t['requests']}",
             f"- escrows settled: {t['escrows_settled']} ({t['escrows_settled_per_s']}/s), "
             f"p50 {t['escrow_p50_ms']} ms, p99 {t['escrow_p99_ms']} ms",
             f"- sats locked at most: {t['locked_sats_max']} in {t['held_htlcs_max']} held HTLCs", "",
             *_liquidity_warnings(summary),
             "| endpoint | requests | failures | rps | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
    for key, e in sorted(summary["endpoints"].items()):
        lines.append(f"| {key} | {e['requests']} | {e['failures']} | {e['rps']} | {e['p50_ms']:g} | "
                     f"{e['p95_ms']:g} | {e['p99_ms']:g} |")
    if summary.get("memory"):
        lines += ["", "| process | start MiB | end MiB | max MiB | slope MiB/h | slope %/h |", "|---|---|---|---|---|---|"]
        notes = set()
        for name, m in sorted(summary["memory"].items()):
            if m["slope_mib_per_h"] is None:
                notes.add(m.get("slope_note") or "no slope")
                slope = pct = "n/a"
            else:
                slope, pct = f"{m['slope_mib_per_h']:+g}", f"{m['slope_pct_per_h']:+g}"
            lines.append(f"| {name} | {m['start_mib']:g} | {m['end_mib']:g} | {m['max_mib']:g} | {slope} | {pct} |")
        lines += [f"\nmemory slopes withheld: {note}" for note in sorted(notes)]
    if summary.get("cpu"):
        lines += ["", "| process | cores | CPU ms per escrow | first third | last third | growth |",
                  "|---|---|---|---|---|---|"]
        for name, c in sorted(summary["cpu"].items(), key=lambda kv: -kv[1]["cpu_s"]):
            lines.append(f"| {name} | {c['cores']:g} | {_ms(c['cpu_s_per_escrow'])} | "
                         f"{_ms(c['cpu_s_per_escrow_first_third'])} | {_ms(c['cpu_s_per_escrow_last_third'])} | "
                         f"{'n/a' if c['growth'] is None else format(c['growth'], 'g')} |")
        t = summary["totals"]
        cores = sum(c["cores"] for name, c in summary["cpu"].items() if name != LOAD_GENERATOR)
        lines.append(f"| app and nodes | {cores:.3g} | {_ms(t.get('cpu_s_per_escrow'))} | "
                     f"{_ms(t.get('cpu_s_per_escrow_first_third'))} | {_ms(t.get('cpu_s_per_escrow_last_third'))} | |")
    m = summary.get("machine")
    if m:
        lines += ["", f"machine speed probe (CPU ms of a fixed piece of work): {m['probe_ms_first_third']:g} in the "
                      f"first third, {m['probe_ms_last_third']:g} in the last, growth {m['growth']:g}. A growth every "
                      f"process shows about this much is the machine's, not theirs."]
    work = (summary.get("app_work") or {}).get("per_escrow")
    if work:
        flat = [f"{k} {v:g}" for k, v in work.items() if not isinstance(v, dict)]
        lines += ["", "the app's own work per escrow settled: " + ", ".join(flat)]
        for key, by in work.items():
            if isinstance(by, dict) and by:
                lines.append(f"- {key}: " + ", ".join(f"{k} {v:g}" for k, v in sorted(by.items(), key=lambda kv: -kv[1])))
    if summary.get("liquidity"):
        lines += ["", "| hub channel | capacity | hub side at start | lowest | lowest at s | at end |",
                  "|---|---|---|---|---|---|"]
        for name, f in sorted(summary["liquidity"].items()):
            lines.append(f"| {name} | {f['capacity_sats']} | {f['start_sats']} | {f['min_sats']} "
                         f"({f['min_share']:.0%}) | {f['min_at_s']:g} | {f['end_sats']} |")
    check = summary.get("oracle")
    if check and "skipped" in check:
        lines += ["", f"oracle: skipped ({check['skipped']})"]
    elif check and check.get("error"):
        lines += ["", f"oracle: NOT JUDGED: {check['error'].split('; still in flight')[0]}; in flight:" if
                  check.get("in_flight") else f"oracle: NOT JUDGED: {check['error']}",
                  f"drain mined {check.get('blocks_mined', 0)} blocks, ruled {check.get('disputes_ruled', 0)} "
                  f"disputes; {check.get('still_open', 0)} orders still open",
                  "", "| node | dir | sats | payment hash | channel | expiry height | order |", "|---|---|---|---|---|---|---|",
                  *[f"| {h['node']} | {'in' if h['incoming'] else 'out'} | {h['amount_sats']} | {h['payment_hash']} | "
                    f"{h['channel_point']} | {h['expiration_height']} | "
                    f"{h['order_id'] if h.get('order_id') is not None else 'not this run'} |"
                    for h in check.get("in_flight", [])[:100]],
                  *[f"- order {o['id']} still {o['state']}" for o in check.get("open_orders", [])[:50]]]
    elif check:
        lines += ["", f"oracle: {'passed' if check['passed'] else 'FAILED'} on {check['orders_checked']} orders "
                      f"({', '.join(f'{k} {v}' for k, v in sorted(check['final_states'].items()))}); "
                      f"drain mined {check['blocks_mined']} blocks, ruled {check['disputes_ruled']} disputes"
                      + (f"; {check['notifications_streamed']} notifications judged against "
                         f"{check['streams_judged']} traders' streams" if check.get("streams_judged") else ""),
                  *[f"- {v['invariant']} order {v['order_id']}: {v['message']}" for v in check["violations"][:50]]]
    budgets = summary.get("budgets")
    if budgets:
        lines += ["", "budgets: " + ("kept" if budgets["passed"] else "BROKEN"),
                  *[f"- {b}" for b in budgets["breaches"]], *[f"- {n}" for n in budgets.get("not_checked", [])]]
    return "\n".join(lines) + "\n"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{1000 * seconds:.1f}"


def _liquidity_warnings(summary: dict) -> list[str]:
    lines = []
    for name in summary["totals"].get("liquidity_low", []):
        f = summary["liquidity"][name]
        lines.append(f"**warning: {name} ran low**: the hub's side fell to {f['min_sats']} of "
                     f"{f['capacity_sats']} sats ({f['min_share']:.0%}) at {f['min_at_s']:g} s. Payouts down it "
                     f"fail (NO_ROUTE) until it is rebalanced, and escrows per second then measure the "
                     f"topology, not the app: give it more capacity, or spread sellers over more channels.")
    for name in summary["totals"].get("liquidity_low_peer", []):
        f, peer = summary["liquidity"][name], name.split("->", 1)[-1]
        lines.append(f"**warning: {peer}'s side of {name} ran low**: it fell to {f['peer']['min_sats']} of "
                     f"{f['capacity_sats']} sats ({f['peer']['min_share']:.0%}) at {f['peer']['min_at_s']:g} s. "
                     f"Its payments through the hub fail (INSUFFICIENT_BALANCE) once it cannot pay, and "
                     f"escrows per second then measure the topology, not the app: give its channel more "
                     f"capacity, or the run more buyer nodes.")
    return [*lines, ""] if lines else []


def write(run_dir: Path, summary: dict) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (run_dir / "summary.md").write_text(markdown(summary))
    plot(run_dir, summary.get("fixed_users") or 0)
