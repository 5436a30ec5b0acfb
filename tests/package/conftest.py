"""The wheel test's figures (install size and time) in the terminal summary, where a
reader of `./dev test` or CI's log sees them; they are reported, never asserted."""

from __future__ import annotations

import pytest

FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("escrowlab as installed from its wheel")
        for line in FIGURES:
            terminalreporter.write_line(line)
