"""Capacity reports from the simulator: JSON (``escrowlab.capacity/1``) and HTML with plots.

Written to ``<run folder>/reports/capacity.{json,html}``. The plots are matplotlib PNGs
embedded in the HTML, so the file stands alone. Fields of the JSON are only ever added.
The assumptions of the model are part of every report.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = "escrowlab.capacity/1"

ASSUMPTIONS = [
    "Buyers arrive as a Poisson process: a Poisson count per day, spread over the day by the hourly profile "
    "(a non-homogeneous Poisson process with a daily cycle and no weekly one).",
    "A basket is 1 + Poisson(items_mean - 1) items of one log-normal price, clipped to the app's 1,000 to "
    "10,000,000 sat price range.",
    "Blocks are a Poisson process (exponential intervals, configured mean); block times are drawn before the run.",
    "Every window ends at whichever comes first of its seconds and its blocks, as in the app. A Lightning hold "
    "invoice's CLTV is the app's: ceil(trade windows x speedup) + guardian margin + hold expiry delta; the guardian "
    "acts that many blocks less the margin and delta after funding: it cancels an order not yet shipped and settles "
    "one shipped or disputed into custody, whose case goes on.",
    "A Lightning hold HTLC is ACCEPTED at the buyer's arrival (payment latency of seconds is ignored). It takes one "
    "HTLC slot and its amount on one of the hub's incoming channels until settled or cancelled. The buyer's route "
    "tries a random channel and then the next ones (route_attempts in all); a payment finds no room when every "
    "tried channel is at the slot limit or would exceed capacity less reserve.",
    "Settled sats are assumed to be rebalanced by the hub from incoming to outgoing channels: incoming channels are "
    "limited only by held HTLCs; outgoing liquidity is drawn down by payouts and topped up daily by at most "
    "rebalance_sats_per_day.",
    "Payout routing fee = base + ppm x amount; a payout whose fee exceeds the app's payout_fee_limit_sats is counted "
    "(the app would refuse that route).",
    "On-chain: our transactions queue first-in first-out for the block space other users leave (a uniform random "
    "share of each block); a transaction may straddle two blocks. The fee rate paid is base_fee x (1 + backlog in "
    "blocks). Funding (152.5 vB) is broadcast at arrival and funds after k confirmations; the sats count as locked "
    "from broadcast until the release transaction (146 to 177 vB) confirms.",
    "Custodial: the buyer deposits the price into the hot wallet just in time; on release a fixed fraction of the "
    "seller's proceeds is withdrawn on-chain (141 vB each); the operator sweeps the hot wallet above its maximum "
    "to cold storage daily and refills it from cold storage when it went negative.",
    "A buyer who disputes does so at a uniform time in the dispute window; a lost or late parcel opens a dispute at "
    "the end of the delivery window. Arbiters take disputes first come first served, with exponential handling "
    "times, around the clock; a dispute not ruled within the ruling window is released by default.",
    "Escrow duration is counted in blocks from funding to the final settle or cancel (on-chain: to the release "
    "transaction's block).",
    "The verdict scales each resource's peak use linearly with load (Little's law); the optional sweep re-runs the "
    "model at higher loads to check where failures actually start.",
]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(series: dict, channel_slots: list[list[int]], summary: dict, verdict: dict) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [t / 86_400 for t in series["t_s"]]
    out = {}
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for key, label in (("locked_ln_sats", "ln_hold (HTLC)"), ("locked_onchain_sats", "on-chain multisig"),
                       ("locked_custodial_sats", "custodial ledger"), ("custody_sats", "LN custody (guardian)")):
        ax.plot(days, [v / 1e8 for v in series[key]], label=label, lw=1)
    ax.set(xlabel="day", ylabel="BTC locked", title="Locked capital")
    ax.legend(fontsize=8)
    out["locked"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 3.2))
    if channel_slots:
        im = ax.imshow(list(map(list, zip(*channel_slots))), aspect="auto", interpolation="nearest",
                       extent=(days[0], days[-1], len(channel_slots[0]) - 0.5, -0.5), cmap="viridis",
                       vmin=0, vmax=summary["lightning"]["slot_limit"])
        fig.colorbar(im, ax=ax, label=f"HTLC slots in use (limit {summary['lightning']['slot_limit']})")
    ax.set(xlabel="day", ylabel="hub incoming channel", title="HTLC slots in use per channel")
    out["slots"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 3.2))
    for key in ("awaiting_ship", "in_transit", "awaiting_release", "in_dispute", "arbiter_queue"):
        ax.plot(days, series[key], label=key.replace("_", " "), lw=1)
    ax.set(xlabel="day", ylabel="orders", title="Queue depths")
    ax.legend(fontsize=8)
    out["queues"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 3.2))
    per_day = {}
    for t, a, r in zip(series["t_s"], series["arrivals"], series["resolved"]):
        per_day[int(t // 86_400)] = (a, r)
    d = sorted(per_day)
    arr = [per_day[k][0] - (per_day[k - 1][0] if k - 1 in per_day else 0) for k in d]
    res = [per_day[k][1] - (per_day[k - 1][1] if k - 1 in per_day else 0) for k in d]
    ax.plot(d, arr, label="orders placed", lw=1)
    ax.plot(d, res, label="escrows resolved", lw=1)
    ax2 = ax.twinx()
    ax2.plot(days, series["mempool_backlog_vb"], color="grey", lw=0.6, label="mempool backlog (vB)")
    ax2.set_ylabel("our mempool backlog, vB")
    ax.set(xlabel="day", ylabel="per day", title="Throughput")
    ax.legend(fontsize=8, loc="upper left")
    out["throughput"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 3.2))
    for mode, hist in summary.get("_histograms", {}).items():
        if sum(hist):
            last = max(i for i, n in enumerate(hist) if n)
            ax.step(range(last + 1), hist[:last + 1], where="mid", label=mode, lw=1)
    ax.set(xlabel="escrow duration, blocks", ylabel="orders", title="Escrow duration", yscale="log")
    if ax.get_legend_handles_labels()[0]:  # a run too short for any escrow to end has none
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no escrow ended in this run", transform=ax.transAxes, ha="center", color="grey")
    out["durations"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 3))
    res = verdict["resources"]
    names = list(res)
    ax.barh(names, [min(res[n]["utilisation"], 2.0) for n in names],
            color=["#b00" if res[n]["utilisation"] >= 1 else "#36c" for n in names])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set(xlabel="peak use / limit at the simulated load (capped at 2)", title="Capacity: utilisation per resource")
    out["verdict"] = _png(fig)
    plt.close(fig)

    sweep = verdict.get("sweep") or []
    if len(sweep) > 1:  # where each kind of failure begins, beside the verdict's linear estimate
        fig, ax = plt.subplots(figsize=(9, 3.2))
        loads = [r["multiplier"] for r in sweep]
        kinds = sorted({k for r in sweep for k, n in r["failed_funding"].items() if n})
        for kind in kinds:
            ax.plot(loads, [100 * r["failed_funding"].get(kind, 0) / max(1, r["orders"]) for r in sweep],
                    marker="o", label=kind)
        if verdict.get("at_multiplier") is not None:
            ax.axvline(verdict["at_multiplier"], color="k", ls="--", lw=0.8,
                       label=f"verdict: {verdict['binds_first']} binds at {verdict['at_multiplier']}×")
        if not kinds:
            ax.text(0.5, 0.5, "no order failed to fund at any of these loads", transform=ax.transAxes,
                    ha="center", color="grey")
        ax.set(xlabel="load multiplier", ylabel="orders that failed to fund, %",
               title="Load sweep: failed fundings by cause")
        ax.legend(fontsize=8, loc="upper left")
        out["sweep"] = _png(fig)
        plt.close(fig)
    return out


def _table(rows: list[tuple], head: tuple) -> str:
    e = html.escape
    return ("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


def _failed(row: dict) -> str:
    """A sweep point's failed fundings: how many, their share of its orders, and by cause."""
    total = sum(row["failed_funding"].values())
    if not total:
        return "0"
    causes = ", ".join(f"{k} {n:,}" for k, n in row["failed_funding"].items() if n)
    return f"{total:,} ({100 * total / max(1, row['orders']):.1f} %): {causes}"


def html_report(doc: dict, images: dict[str, str]) -> str:
    e = html.escape
    v, s = doc["verdict"], doc["summary"]
    parts = ["<!doctype html><meta charset=utf-8><title>escrowlab capacity</title>"
             "<style>body{font:14px system-ui;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}</style>",
             f"<h1>Capacity report: {e(doc['config']['name'])}</h1>",
             f"<p>mode {e(doc['mode'])} · seed {s['seed']} · {s['duration_days']} days · load ×{s['load_multiplier']}"
             f" · {s['orders']['arrivals']:,} orders · {doc['performance'].get('events', 0):,} simpy events in "
             f"{doc['performance'].get('wall_s', 0)} s</p>",
             f"<h2>Verdict</h2><p><b>{e(v['text'])}</b></p>",
             _table([(k, r["what"], r["use"], r["limit"], r["utilisation"], r["binds_at_multiplier"])
                     for k, r in v["resources"].items()],
                    ("resource", "measure", "peak use", "limit", "utilisation", "binds at load ×"))]
    if v["sweep"]:
        parts.append("<h3>Load sweep</h3>" + _table(
            [(r["multiplier"], r["days"], f"{r['orders']:,}",
              _failed(r), r["success_rate"],
              ", ".join(f"{k} day {d}" for k, d in r["first_failure_day"].items() if d is not None) or "none")
             for r in v["sweep"]], ("load ×", "days", "orders", "failed to fund", "success rate of the rest",
                                    "first failure")))
        if "sweep" in images:
            parts.append(f"<img alt='sweep' src='data:image/png;base64,{images['sweep']}'>")
    if doc.get("live"):
        live = doc["live"]
        parts.append("<h2>Model against the real cluster</h2>" + _table(
            [(k, live["model"].get(k), live["measured"].get(k)) for k in live["measured"]],
            ("figure", "model predicts", "measured on regtest")))
        parts.append(f"<p>oracle: {len(live['violations'])} violations of {', '.join(live['invariants_checked'])}</p>")
    for key, title in (("verdict", "Utilisation"), ("locked", "Locked capital"), ("slots", "HTLC slots"),
                       ("queues", "Queues"), ("throughput", "Throughput"), ("durations", "Escrow duration")):
        if key in images:
            parts.append(f"<h2>{title}</h2><img alt='{key}' src='data:image/png;base64,{images[key]}'>")
    parts.append("<h2>Figures</h2><pre>" + e(json.dumps({k: v for k, v in s.items() if not k.startswith("_")},
                                                        indent=1)) + "</pre>")
    parts.append("<h2>Assumptions</h2><ol>" + "".join(f"<li>{e(a)}</li>" for a in doc["assumptions"]) + "</ol>")
    parts.append("<h2>Configuration</h2><pre>" + e(json.dumps(doc["config"], indent=1)) + "</pre>")
    return "\n".join(parts)


def write(run_dir: Path, doc: dict, series: dict, channel_slots: list[list[int]]) -> dict[str, str]:
    """Write capacity.json (with the series) and capacity.html; returns their paths."""
    out = Path(run_dir) / "reports"
    out.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, "generated_at": datetime.now(timezone.utc).isoformat(), **doc,
           "assumptions": ASSUMPTIONS}
    images = plots(series, channel_slots, doc["summary"], doc["verdict"])
    summary = {k: v for k, v in doc["summary"].items() if not k.startswith("_")}
    (out / "capacity.json").write_text(json.dumps({**doc, "summary": summary, "series": series,
                                                   "histograms": doc["summary"].get("_histograms", {})},
                                                  default=str))
    (out / "capacity.html").write_text(html_report(doc, images))
    return {"json": str(out / "capacity.json"), "html": str(out / "capacity.html")}
