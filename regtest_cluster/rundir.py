"""Numbered run folders: every run's node dirs, logs and reports live in one place."""

from __future__ import annotations

import re
from pathlib import Path


def new_run_dir(root: Path, label: str) -> Path:
    """Create ``root/NNNN-label`` with the next free number (safe against concurrent runs)."""
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"(\d+)-", p.name))]
    n = max(numbers, default=0) + 1
    while True:
        path = root / f"{n:04d}-{label}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
