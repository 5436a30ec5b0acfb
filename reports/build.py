"""Scenario run reports: JSON (stable schema), JUnit XML, HTML, console summary.

Everything is written to ``<run folder>/reports/``. The JSON schema is
``escrowlab.scenario-run/1``; fields are only ever added, never renamed.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

from harness.oracle import NOT_YET
from harness.oracle import names as oracle_names

SCHEMA = "escrowlab.scenario-run/1"


def rule_order(rule: str) -> tuple:
    """Invariants (I1..I18) then model rules (M1 role, ...), each by number."""
    return (rule[0], int(rule[1:].split()[0]) if rule[1:].split() and rule[1:].split()[0].isdigit() else 0, rule)


def _scenario_json(r) -> dict:
    return {"name": r.name, "mode": r.mode, "seed": r.seed, "passed": r.passed, "duration_s": r.duration_s,
            "error": r.error, "planted_bug": r.planted_bug, "skipped": r.skipped,
            "invariants_checked": r.checked,
            "exercised": r.exercised,
            "violations": [asdict(v) for v in r.violations],
            "orders": r.orders, "balances": r.balances,
            "steps": [{"at": s.at, "message": s.message} for s in r.steps]}


def summary_json(result) -> dict:
    checked = sorted({i for r in result.scenarios for i in r.checked}, key=rule_order)
    exercised: dict[str, int] = {}
    for r in result.scenarios:
        for inv, n in r.exercised.items():
            exercised[inv] = exercised.get(inv, 0) + n
    planted = [{"bug": r.planted_bug, "scenario": r.name,
                "caught_by": sorted({v.invariant for v in r.violations}, key=rule_order),
                "caught": bool(r.violations)} for r in result.planted]
    return {
        "schema": SCHEMA,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "seed": result.seed,
        "run_dir": str(result.run_dir),
        "scenarios": len(result.scenarios),
        "passed": sum(r.passed and not r.skipped for r in result.scenarios),
        "skipped": sum(bool(r.skipped) for r in result.scenarios),
        "failed": sum(not r.passed for r in result.scenarios),
        "invariants": checked,
        # applicable checks per invariant over the run; 0 is "not exercised", never "0 violations"
        "exercised": exercised,
        "not_exercised": [i for i in checked if exercised.get(i, 0) == 0],
        "planted_bugs": len(planted),
        "caught": sum(p["caught"] for p in planted),
        "planted": planted,
        "results": [_scenario_json(r) for r in result.scenarios],
        "planted_results": [_scenario_json(r) for r in result.planted],
    }


def junit_xml(summary: dict) -> str:
    suite = ET.Element("testsuite", name="escrowlab-scenarios", tests=str(summary["scenarios"] + summary["planted_bugs"]),
                       failures=str(summary["failed"] + summary["planted_bugs"] - summary["caught"]))
    for r in summary["results"]:
        case = ET.SubElement(suite, "testcase", classname=f"scenarios.{r['mode']}", name=r["name"],
                             time=str(r["duration_s"]))
        if r.get("skipped"):
            ET.SubElement(case, "skipped", message=r["skipped"])
        elif not r["passed"]:
            text = "\n".join(f"{v['invariant']} order {v['order_id']}: {v['message']}" for v in r["violations"])
            ET.SubElement(case, "failure", message=r["error"] or f"{len(r['violations'])} invariant violations").text = \
                (r["error"] or "") + "\n" + text
    for p in summary["planted"]:
        case = ET.SubElement(suite, "testcase", classname="scenarios.planted_bugs", name=p["bug"])
        if not p["caught"]:
            ET.SubElement(case, "failure", message=f"planted bug {p['bug']} was not caught by {p['scenario']}")
    return ET.tostring(suite, encoding="unicode")


def html_report(summary: dict) -> str:
    e = html.escape
    parts = [f"<!doctype html><meta charset=utf-8><title>escrowlab scenarios</title>"
             "<style>body{font:14px system-ui;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.ok{color:#070}.bad{color:#b00}.na{color:#888}"
             "details{margin:.6em 0}</style>",
             f"<h1>escrowlab scenario run</h1><p>seed {summary['seed']} · {summary['passed']}/{summary['scenarios']}"
             f" scenarios passed · planted bugs caught {summary['caught']}/{summary['planted_bugs']}</p>",
             "<h2>Invariants</h2><table><tr><th>id</th><th>name</th><th>applicable checks</th>"
             "<th>violations</th></tr>"]
    names = {**NOT_YET, **oracle_names()}
    for inv in sorted(names, key=lambda i: int(i[1:])):
        n = sum(1 for r in summary["results"] for v in r["violations"] if v["invariant"] == inv)
        checked = inv in summary["invariants"]
        applicable = summary.get("exercised", {}).get(inv, 0)
        verdict = n if checked and (applicable or n) else "not exercised" if checked else "not checked in this run"
        css = "bad" if n else "ok" if isinstance(verdict, int) else "na"
        parts.append(f"<tr><td>{inv}</td><td>{e(names[inv])}</td><td>{applicable:,}</td>"
                     f"<td class={css}>{verdict}</td></tr>")
    rules = sorted((r for r in summary.get("exercised", {}) if r.startswith("M")), key=rule_order)
    if rules:
        parts.append("</table><h2>Model rules</h2><p>The adversaries: at every state a story reached, each "
                     "party tried what the model of the rules forbids it.</p><table><tr><th>rule</th>"
                     "<th>applicable checks</th><th>violations</th></tr>")
        for rule in rules:
            n = sum(1 for r in summary["results"] for v in r["violations"] if v["invariant"] == rule)
            parts.append(f"<tr><td>{e(rule)}</td><td>{summary['exercised'][rule]:,}</td>"
                         f"<td class={'bad' if n else 'ok'}>{n}</td></tr>")
    parts.append("</table><h2>Scenarios</h2>")
    for r in summary["results"] + summary["planted_results"]:
        label = f"{r['name']}" + (f" with planted bug <b>{e(r['planted_bug'])}</b>" if r["planted_bug"] else "")
        caught = sorted({v["invariant"] for v in r["violations"]}, key=rule_order)
        if r["planted_bug"]:
            good, verdict = bool(caught), f"caught by {', '.join(caught)}" if caught else "NOT CAUGHT"
        else:
            good, verdict = r["passed"], ("skipped: " + r["skipped"] if r.get("skipped") else
                                          "passed" if r["passed"] else "FAILED")
        parts.append(f"<details><summary class={'ok' if good else 'bad'}>{label}: {verdict} "
                     f"({r['duration_s']} s)</summary>")
        if r["error"]:
            parts.append(f"<p class=bad>{e(r['error'])}</p>")
        if r["violations"]:
            parts.append("<table><tr><th>invariant</th><th>order</th><th>what the nodes say</th><th>evidence</th></tr>")
            parts += [f"<tr><td>{v['invariant']}</td><td>{v['order_id']}</td><td>{e(v['message'])}</td>"
                      f"<td><code>{e(json.dumps(v['evidence'])[:300])}</code></td></tr>" for v in r["violations"]]
            parts.append("</table>")
        parts.append("<h4>Story</h4><ol>" + "".join(f"<li>{e(s['message'])}</li>" for s in r["steps"]) + "</ol>")
        for o in r["orders"]:
            parts.append(f"<h4>Order {o['id']}: {o['price_sats']} sats, {o['state']}, hold invoice {o['invoice']}</h4>"
                         "<table><tr><th>event</th><th>to</th><th>by</th><th>height</th></tr>"
                         + "".join(f"<tr><td>{ev}</td><td>{to}</td><td>{who}</td><td>{h}</td></tr>"
                                   for ev, to, who, h in o["timeline"]) + "</table>")
        if r["balances"]:
            b = r["balances"]
            parts.append("<h4>Channel balances (LND)</h4><table><tr><th>node</th><th>before</th><th>after</th>"
                         "<th>Δ</th></tr>" + "".join(
                             f"<tr><td>{n}</td><td>{b['before'][n]:,}</td><td>{b['after'][n]:,}</td>"
                             f"<td>{b['delta'][n]:+,}</td></tr>" for n in b["before"]) + "</table>")
        parts.append("</details>")
    return "\n".join(parts)


def write_all(result) -> dict:
    out = Path(result.run_dir) / "reports"
    out.mkdir(parents=True, exist_ok=True)
    summary = summary_json(result)
    (out / "scenarios.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "junit.xml").write_text(junit_xml(summary))
    (out / "scenarios.html").write_text(html_report(summary))
    summary["reports"] = {k: str(out / f) for k, f in
                          (("json", "scenarios.json"), ("junit", "junit.xml"), ("html", "scenarios.html"))}
    return summary


def console_summary(console, result, summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"scenarios (seed {summary['seed']})")
    for col in ("scenario", "result", "s", "violations"):
        table.add_column(col)
    for r in result.scenarios:
        table.add_row(r.name, "[yellow]skipped[/]" if r.skipped else "[green]passed[/]" if r.passed else "[red]FAILED[/]",
                      str(r.duration_s),
                      "; ".join(f"{v.invariant}: {v.message}" for v in r.violations)[:120]
                      or (r.skipped or r.error or "")[:120])
    console.print(table)
    for p in summary["planted"]:
        console.print(f"planted bug {p['bug']:<26} {'[green]caught by ' + ', '.join(p['caught_by']) + '[/]' if p['caught'] else '[red]NOT CAUGHT[/]'}")
    skipped = f" ({summary['skipped']} skipped)" if summary.get("skipped") else ""
    console.print(f"{summary['passed']}/{summary['scenarios']} passed{skipped} · invariants checked: "
                  f"{', '.join(summary['invariants'])} · planted bugs caught {summary['caught']}/{summary['planted_bugs']}")
    if summary.get("not_exercised"):
        console.print(f"not exercised by these stories (no applicable check): {', '.join(summary['not_exercised'])}")
    console.print(f"reports: {summary['reports']['html']}")
