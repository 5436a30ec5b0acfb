"""The picture of a `bench escrow` run: rates and CPU of raw payments, floor escrows and the app's.

``escrow_plot(result, path)`` draws panels from the benchmark's JSON: how many a second
of each (with the issue's goal of 0.7 × raw marked), the CPU seconds each costs, stacked
by process (with 1.5 × a raw payment's marked), and, where the run measured it, the app's
CPU an escrow thread by thread with how often each was switched out. It needs matplotlib (the ``[load]`` or
``[sim]`` extra); ``plot_or_note`` says so instead when it is missing, or why drawing failed.
"""

from __future__ import annotations

from pathlib import Path

RATE_GOAL = 0.7  # escrows a second, as a share of raw payments a second (the speed issue's goal)
CPU_GOAL = 1.5  # CPU an escrow, as a multiple of a raw payment's


def _columns(result: dict) -> list[tuple[str, float | None, dict[str, float]]]:
    """(label, per second, CPU seconds by process) for raw, floor (if run) and the app."""
    floor = result.get("floor", {})
    columns = [("raw payment\n(invoice + pay)", result["baseline"]["payments_per_s"], result["cpu_s_per_raw_payment"])]
    if "escrows_per_s" in floor:
        hold = f", held {floor['hold_s']:g} s" if floor.get("hold_s") else ""
        columns.append((f"floor escrow\n(nodes alone{hold})", floor["escrows_per_s"], floor["cpu_s_per_escrow"]))
    app = {k: v for k, v in result["cpu_s_per_escrow"].items() if k != "bench-client"}
    processes = result.get("app_processes", 1)
    columns.append((f"escrow through the app\n({processes} process{'es' if processes > 1 else ''})",
                    result["escrows_per_s"], app))
    return columns


COLOURS = {"the app": "tab:orange", "hub LND": "tab:red", "buyers' LND": "tab:green",
           "sellers' LND": "tab:purple", "bitcoind": "tab:brown", "PostgreSQL": "tab:cyan"}


def _group(process: str) -> str:
    """One colour per kind of process: the app, the hub, buyers, sellers, bitcoind, PostgreSQL."""
    for prefix, group in (("lnd-hub", "hub LND"), ("lnd-buyer", "buyers' LND"), ("lnd-seller", "sellers' LND")):
        if process.startswith(prefix):
            return group
    return {"app": "the app", "bitcoind": "bitcoind", "postgres": "PostgreSQL"}.get(process, process)


def escrow_plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = _columns(result)
    labels = [c[0] for c in columns]
    raw_rate, raw_cpu = columns[0][1], sum(columns[0][2].values())
    app_threads = {name: t for name, t in (result.get("app_threads") or {}).items() if t["cpu_s_per_escrow"] > 0}
    if app_threads:
        fig, (rate_ax, cpu_ax, threads_ax) = plt.subplots(1, 3, figsize=(16, 4.2),
                                                          gridspec_kw={"width_ratios": [1, 1, 1.1]})
        _threads_panel(threads_ax, app_threads)
    else:
        fig, (rate_ax, cpu_ax) = plt.subplots(1, 2, figsize=(11, 4.2))

    rates = [c[1] or 0 for c in columns]
    bars = rate_ax.bar(range(len(columns)), rates, color=["tab:grey", "tab:blue", "tab:orange"][:len(columns)])
    for bar, rate in zip(bars, rates):
        share = f"\n{rate / raw_rate:.2f} × raw" if raw_rate and bar is not bars[0] else ""
        rate_ax.annotate(f"{rate:.1f}/s{share}", (bar.get_x() + bar.get_width() / 2, rate), ha="center",
                         va="bottom", fontsize=8)
    if raw_rate:
        rate_ax.axhline(RATE_GOAL * raw_rate, color="black", linestyle=":", linewidth=1,
                        label=f"goal: {RATE_GOAL} × raw")
        rate_ax.legend(fontsize=8, loc="upper right")
    rate_ax.set_xticks(range(len(columns)), labels, fontsize=8)
    rate_ax.set_ylabel("a second")
    rate_ax.set_ylim(0, max(rates) * 1.25 if rates else 1)
    rate_ax.set_title(f"{result['concurrency']} at a time", fontsize=10)

    groups: dict[str, list[float]] = {}
    for i, (_label, _rate, cpu) in enumerate(columns):
        for process, seconds in cpu.items():
            groups.setdefault(_group(process), [0.0] * len(columns))[i] += seconds * 1000
    bottom = [0.0] * len(columns)
    for group, ms in sorted(groups.items(), key=lambda g: g[0] != "the app"):
        cpu_ax.bar(range(len(columns)), ms, bottom=bottom, label=group, color=COLOURS.get(group))
        bottom = [b + m for b, m in zip(bottom, ms)]
    for i, total in enumerate(bottom):
        share = f"\n{total / (raw_cpu * 1000):.2f} × raw" if raw_cpu and i else ""
        cpu_ax.annotate(f"{total:.1f} ms{share}", (i, total), ha="center", va="bottom", fontsize=8)
    if raw_cpu:
        cpu_ax.axhline(CPU_GOAL * raw_cpu * 1000, color="black", linestyle=":", linewidth=1,
                       label=f"goal: {CPU_GOAL} × raw")
    cpu_ax.set_xticks(range(len(columns)), labels, fontsize=8)
    cpu_ax.set_ylabel("CPU ms each, by process")
    cpu_ax.set_ylim(0, max(bottom) * 1.3 if bottom else 1)
    cpu_ax.legend(fontsize=8, loc="upper left")
    cpu_ax.set_title("CPU (the benchmark's own client left out)", fontsize=10)
    oracle = result.get("oracle", {})
    fig.suptitle(f"bench escrow: {result['escrows']} escrows on {result.get('database', '?')}, "
                 f"oracle {'passed' if oracle.get('passed') else 'FAILED'} on {oracle.get('orders_checked', 0)}",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _threads_panel(ax, app_threads: dict[str, dict]) -> None:
    """The app's CPU ms an escrow by thread (largest on top), each bar labelled with its threads
    and how often they were switched out an escrow."""
    names = list(app_threads)[::-1]
    ms = [app_threads[n]["cpu_s_per_escrow"] * 1000 for n in names]
    ax.barh(range(len(names)), ms, color="tab:orange")
    for i, name in enumerate(names):
        t = app_threads[name]
        switched = t["switches_per_escrow"]["voluntary"] + t["switches_per_escrow"]["involuntary"]
        ax.annotate(f" {ms[i]:.2f} ms, {t['threads']} thread{'s' if t['threads'] > 1 else ''}, "
                    f"{switched:.0f} switch{'' if round(switched) == 1 else 'es'}", (ms[i], i), va="center", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlim(0, max(ms) * 1.9)
    ax.set_xlabel("CPU ms an escrow")
    ax.set_title("the app's CPU by thread (switches out an escrow)", fontsize=10)


def plot_or_note(result: dict, path: Path) -> dict:
    """``{"plot": path}``, or ``{"plot": None, "plot_note": why}`` without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return {"plot": None, "plot_note": "no picture: it needs matplotlib (pip install 'escrowlab[load]')"}
    try:
        return {"plot": str(escrow_plot(result, path))}
    except Exception as exc:  # noqa: BLE001 (the figures of a long run are not lost for a picture)
        return {"plot": None, "plot_note": f"no picture: {type(exc).__name__}: {exc}"}
