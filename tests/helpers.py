"""Shared test helpers (no fixtures here: those live in the pytest plugin)."""

from __future__ import annotations

import threading
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


def record_statements(db, monkeypatch, this_thread: bool = False) -> list[str]:
    """Every statement the app's database ``db`` (``reference_app.store.db.Database``) sends from
    now until the test ends, in order (only the calling thread's if ``this_thread``): those of
    SQLAlchemy's execution and those ``store.db.Prepared`` sends on its own cursors."""
    from reference_app.store.db import _watch_statements

    seen, me = [], threading.get_ident()

    def note(statement, _context=None):
        if not this_thread or threading.get_ident() == me:
            seen.append(statement)

    for dialect in {id(e.dialect): e.dialect for e in (db.engine, db.read_engine)}.values():
        for name in ("do_execute", "do_execute_no_params", "do_executemany"):
            monkeypatch.setattr(dialect, name, getattr(dialect, name))  # put back when the test ends
        _watch_statements(dialect, note)
    counted = db._before_statement
    monkeypatch.setattr(db, "_before_statement",
                        lambda statement, context: (note(statement), counted(statement, context)))
    return seen
