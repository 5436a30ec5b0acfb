"""Shared test helpers (no fixtures here: those live in the pytest plugin)."""

from __future__ import annotations

from pathlib import Path


def processes_under(path: Path | str) -> list[int]:
    """Pids of live processes whose command line mentions ``path`` (a run folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if str(path) in cmdline and state != "Z":
            found.append(int(proc.name))
    return found
