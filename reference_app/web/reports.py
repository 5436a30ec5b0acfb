"""The runs folder's reports, newest run first, for "Latest reports".

Where each command writes them (the runs folder is ``ESCROWLAB_RUNS``, else ./runs):

| run folder | reports |
|---|---|
| ``NNNN-scenarios`` (``escrowlab scenario run``, ``demo``) | ``reports/`` |
| ``NNNN-sim-*`` (``escrowlab simulate``) | ``reports/`` |
| ``NNNN-load-*`` (``escrowlab load``) | the folder itself: ``summary.json``, ``summary.md``, ``load.png``, ``memory.png``, ``locust.html``, the Locust CSVs (or ``reports/``) |
| ``NNNN-explore`` (``escrowlab explore``) | ``explore/`` |

The app's own data dir is searched the same way. Files are served only from inside
these roots (``report_file``), and only with a report's suffix.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ..context import AppContext

REPORT_SUFFIXES = {".html", ".json", ".png", ".svg", ".xml", ".csv", ".txt", ".md"}
IMAGES = {".png", ".svg"}
# report folders inside a run folder, and the files that make a run folder a report itself
REPORT_DIRS = ("reports", "explore")
SUMMARY = "summary.json"
NOT_REPORTS = {"cluster.json", "plan.json"}     # a run's inputs, not its results
MAX_RUNS = 12
MAX_FILES = 16


def report_roots(ctx: AppContext) -> list[Path]:
    roots = [Path(ctx.settings.runs_dir or Path.cwd() / "runs"), Path(ctx.settings.data_dir)]
    seen, out = set(), []
    for root in roots:
        resolved = root.resolve()
        if resolved not in seen and resolved.is_dir():
            seen.add(resolved)
            out.append(resolved)
    return out


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir()
            if p.is_file() and p.suffix in REPORT_SUFFIXES and p.name not in NOT_REPORTS]


def _run_files(run: Path) -> list[Path]:
    found: list[Path] = []
    for sub in REPORT_DIRS:
        if (run / sub).is_dir():
            found += _files(run / sub)
            for nested in (run / sub).iterdir():   # scenarios keep per-run folders one level down
                if nested.is_dir() and nested.name in REPORT_DIRS:
                    found += _files(nested)
    if (run / SUMMARY).is_file():
        found += _files(run)
    return found


def _kind(run: str) -> str:
    label = run.split("-", 1)[1] if "-" in run and run.split("-", 1)[0].isdigit() else run
    return label.split("-", 1)[0]


def reports(ctx: AppContext) -> list[dict]:
    """Run folders that hold reports, newest first, each with its files (images marked)."""
    runs = []
    for index, root in enumerate(report_roots(ctx)):
        candidates = [root] if (root / "reports").is_dir() else []
        candidates += [p for p in root.iterdir() if p.is_dir()]
        for run in candidates:
            files = list(dict.fromkeys(_run_files(run) if run != root else _files(root / "reports")))
            if not files:
                continue
            files.sort(key=lambda p: (p.suffix not in IMAGES, p.name))
            newest = max(p.stat().st_mtime for p in files)
            name = run.name if run != root else "reports"
            runs.append((newest, {
                "root": index, "run": name, "kind": _kind(name), "modified": _when(newest),
                "files": [{"path": str(p.relative_to(root)), "name": str(p.relative_to(run)),
                           "image": p.suffix in IMAGES} for p in files[:MAX_FILES]],
                "more": max(0, len(files) - MAX_FILES)}))
    runs.sort(key=lambda r: r[0], reverse=True)
    return [r for _, r in runs[:MAX_RUNS]]


def _when(mtime: float) -> str:
    return datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def report_file(ctx: AppContext, root: int, relative: str) -> Path | None:
    """The report file, only if it is one that ``reports`` lists: inside a report root (no
    path traversal) and in a report place (never, say, the data dir's app-secrets.json)."""
    roots = report_roots(ctx)
    if not 0 <= root < len(roots):
        return None
    base = roots[root]
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or not path.is_file() or path.suffix not in REPORT_SUFFIXES:
        return None
    parts = path.relative_to(base).parts
    if parts[0] == "reports":
        listed = _files(base / "reports")
    else:
        listed = _run_files(base / parts[0]) if len(parts) > 1 else []
    return path if path in {p.resolve() for p in listed} else None
