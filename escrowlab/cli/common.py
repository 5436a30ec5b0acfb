"""What every subcommand shares: the console, JSON output, progress, and errors."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console

from regtest_cluster.env import ClusterEnv

# Human output goes to stderr, so stdout carries only --json documents.
console = Console(stderr=True, highlight=False)


class UserError(Exception):
    """An error the user can act on: printed as one clear message, exit code 2."""


def env() -> ClusterEnv:
    return ClusterEnv.from_environ()


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def progress(title: str, quiet: bool = False) -> Iterator:
    """A spinner with the latest step, plus a log line per step; yields a callback."""
    if quiet:
        yield lambda _m: None
        return
    with console.status(title) as status:
        def step(message: str) -> None:
            console.log(message)
            status.update(f"{title}: {message}")
        yield step
