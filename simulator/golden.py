"""Golden summaries: a seeded model run compared with a checked-in file, with a readable diff.

Regenerating the file is deliberate: ``escrowlab simulate --config FILE --update-golden PATH``.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path


def view(summary: dict) -> dict:
    """The comparable part of a summary: every figure, none of the bulky histograms."""
    return {k: v for k, v in summary.items() if not k.startswith("_")}


def dumps(summary: dict) -> str:
    return json.dumps(view(summary), indent=2, sort_keys=True) + "\n"


def write(path: str | Path, summary: dict) -> None:
    Path(path).write_text(dumps(summary))


def diff(path: str | Path, summary: dict) -> str:
    """A unified diff from the golden file to this run; empty when they agree."""
    expected = Path(path).read_text().splitlines(keepends=True)
    actual = dumps(summary).splitlines(keepends=True)
    return "".join(difflib.unified_diff(expected, actual, fromfile=f"{path} (golden)", tofile="this run"))
