"""What every subcommand shares: the console, JSON output, progress, and errors."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.console import Console

from regtest_cluster.env import ClusterEnv

# Human output goes to stderr, so stdout carries only --json documents. Log lines carry no
# source path: it named the progress wrapper (common.py), never where a step happened.
console = Console(stderr=True, highlight=False, log_path=False)


class UserError(Exception):
    """An error the user can act on: printed as one clear message, exit code 2."""


def env() -> ClusterEnv:
    return ClusterEnv.from_environ()


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def name_flag(name: str) -> str:
    """The ``--name`` a hint must carry so that it acts on the cluster the user named."""
    return "" if name == "default" else f" --name {name}"


class Step:
    """The progress callback: ``step(message)`` logs a line and shows it beside the spinner;
    ``step.status(message)`` only updates the spinner (for counters that change often)."""

    def __init__(self, log: Callable[[str], None], show: Callable[[str], None]) -> None:
        self._log, self.status = log, show

    def __call__(self, message: str) -> None:
        self._log(message)
        self.status(message)


@contextmanager
def progress(title: str, quiet: bool = False) -> Iterator[Step]:
    """A spinner with the latest step, plus a log line per step; yields a ``Step``."""
    if quiet:
        yield Step(lambda _m: None, lambda _m: None)
        return
    with console.status(title) as status:
        yield Step(console.log, lambda m: status.update(f"{title}: {m}"))


def plain_flags() -> None:
    """Typer (0.2x) prints ``<bool>`` beside every flag in --help, as if it took a value, but
    ``--detach true`` is refused: a flag takes none. Show flags bare, as click does."""
    from typer.core import TyperOption

    if getattr(TyperOption, "_escrowlab_plain_flags", False) or not hasattr(TyperOption, "display_type_rich"):
        return
    shown = TyperOption.display_type_rich

    def display_type_rich(self, ctx):  # noqa: ANN001
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich
    TyperOption._escrowlab_plain_flags = True


def wait_for_stop() -> None:
    """Block until Ctrl-C (KeyboardInterrupt) or SIGTERM (SystemExit, see ``main``) ends it.

    Not ``signal.pause()``: a signal landing between the interpreter's last check and the
    pause() call is handled only when a second one comes, so a foreground ``cluster up``
    under load ignored a single Ctrl-C (the test that sends one timed out). Short sleeps let
    the handler run within half a second whenever the signal lands."""
    while True:
        time.sleep(0.5)
