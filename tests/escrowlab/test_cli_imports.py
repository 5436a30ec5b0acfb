"""What starting `escrowlab` imports: its help and version need typer, click and rich alone.

Users and the test suite start the command many times, and each start used to import the
cluster (with httpx, pydantic and yaml), the scenario runner and the harness just to draw
--help. A command now imports those when it runs, and ``main`` names its known errors
rather than importing them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Ours that are heavy, and the libraries they bring.
OURS = ("regtest_cluster.cluster", "regtest_cluster.topology", "scenarios.runner", "harness.scenario", "httpx", "yaml")
# Typer itself imports pydantic to draw a subcommand's help, so pydantic counts only where typer does not.
HEAVY = (*OURS, "pydantic")


def imported(tmp_path, code: str) -> set[str]:
    """The modules a fresh interpreter holds once ``code`` has run (and exited: --help ends in SystemExit)."""
    out = tmp_path / "modules.json"
    wrapper = ("import atexit, json, sys\n"
               f"atexit.register(lambda: open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n" + code)
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and out.is_file(), proc.stdout + proc.stderr
    return set(json.loads(out.read_text()))


def escrowlab(tmp_path, *argv: str) -> set[str]:
    """The modules `escrowlab ARGV` imported, as ``python -m escrowlab`` runs it."""
    return imported(tmp_path, f"import runpy\nsys.argv = ['escrowlab', *{list(argv)!r}]\n"
                              "runpy.run_module('escrowlab', run_name='__main__')\n")


def test_importing_the_cli_imports_nothing_heavy(tmp_path):
    modules = imported(tmp_path, "import escrowlab.cli\n")
    assert "escrowlab.cli" in modules
    assert [m for m in HEAVY if m in modules] == []


@pytest.mark.parametrize("argv", [("--help",), ("--version",)], ids=" ".join)
def test_help_and_version_import_nothing_heavy(tmp_path, argv):
    modules = escrowlab(tmp_path, *argv)
    assert "escrowlab.cli" in modules
    assert [m for m in HEAVY if m in modules] == []


@pytest.mark.parametrize("argv", [("cluster", "--help"), ("cluster", "up", "--help"), ("scenario", "run", "--help")],
                         ids=" ".join)
def test_a_subcommands_help_imports_nothing_heavy_of_ours(tmp_path, argv):
    modules = escrowlab(tmp_path, *argv)
    assert "escrowlab.cli" in modules
    assert [m for m in OURS if m in modules] == []
