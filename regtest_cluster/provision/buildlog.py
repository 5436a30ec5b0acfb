"""One long build (lnd's `go build`, ldkd's `cargo build`) run with its output kept and read."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO, Callable, Protocol


class Reader(Protocol):
    def feed(self, line: str) -> bool: ...  # True when the build reached a new phase
    def describe(self) -> str: ...          # "phase: detail", one line


def run_build(cmd: list[str], cwd: Path, env: dict[str, str], log: IO[str], state: Reader, label: str,
              progress: Callable[[str], None], status: Callable[[str], None] | None) -> int:
    """Run ``cmd``, every output line to ``log`` and to ``state``; each new phase goes to
    ``progress``, the live one-line description to ``status``. Returns the exit code.
    Starting it may raise OSError (the tool cannot run)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        if state.feed(line):
            progress(f"{label}: {state.describe().split(':')[0]}")
        if status is not None:
            status(f"{label}: {state.describe()}")
    return proc.wait()
