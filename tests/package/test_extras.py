"""The extras split: which command needs which extra, the one line it prints without it,
and the table in escrowlab/cli/extras.py kept in step with pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from escrowlab.cli import extras

ROOT = Path(__file__).resolve().parents[2]


def without(monkeypatch, *gone: str) -> None:
    monkeypatch.setattr(extras, "_importable", lambda module: module.split(".")[0] not in gone)


def test_require_for_load_without_locust_names_the_load_extra(monkeypatch):
    without(monkeypatch, "locust")
    with pytest.raises(extras.MissingExtra) as err:
        extras.require_for(["load", "--headless", "-u", "4"])
    assert str(err.value) == "escrowlab load needs the [load] extra: pip install 'escrowlab[load]'"


def test_require_for_load_without_the_app_still_names_load_which_brings_it(monkeypatch):
    without(monkeypatch, "fastapi")
    with pytest.raises(extras.MissingExtra, match=r"needs the \[load\] extra"):
        extras.require_for(["load"])


def test_require_for_app_subcommand_names_it(monkeypatch):
    without(monkeypatch, "sqlalchemy")
    with pytest.raises(extras.MissingExtra) as err:
        extras.require_for(["app", "serve", "--port", "8001"])
    assert str(err.value) == "escrowlab app serve needs the [app] extra: pip install 'escrowlab[app]'"


@pytest.mark.parametrize("argv", [[], ["--help"], ["--version"], ["cluster", "up", "--detach"], ["nodes", "doctor"]])
def test_require_for_core_commands_needs_nothing(monkeypatch, argv):
    without(monkeypatch, *{m.split(".")[0] for mods in extras.EXTRA_MODULES.values() for m in mods})
    extras.require_for(argv)


def test_missing_extra_lists_two_extras_in_one_pip_line():
    assert str(extras.MissingExtra("bench", ["app", "sim"])) == (
        "escrowlab bench needs the [app] and [sim] extras: pip install 'escrowlab[app,sim]'")


@pytest.mark.parametrize("module, command_extras, extra", [
    ("numpy", (), "sim"),
    ("numpy", ("load",), "load"),
    ("docker.types", (), "docker"),
    ("google.protobuf.json_format", (), "app"),
    ("grpc", ("load",), "app"),
    ("no_such_module", (), None),
    (None, (), None),
])
def test_extra_for_module_prefers_the_commands_own(module, command_extras, extra):
    assert extras.extra_for_module(module, command_extras) == extra


@pytest.mark.parametrize("argv, module, line", [
    (["cluster", "export", "k8s"], "cryptography",
     "escrowlab cluster export needs the [docker] extra: pip install 'escrowlab[docker]'"),
    (["simulate", "--mode", "live"], "fastapi", "escrowlab simulate needs the [app] extra: pip install 'escrowlab[app]'"),
    (["nodes", "install"], "no_such_module", None),
])
def test_missing_extra_for_a_failed_import_credits_the_right_extra(argv, module, line):
    missing = extras.missing_extra_for(argv, module)
    assert (str(missing) if missing else None) == line


def test_extra_modules_match_pyproject_extras():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def dists(extra: str) -> set[str]:
        names = set()
        for req in declared[extra]:
            name = req.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip()
            if name.startswith("escrowlab["):
                for inner in name[len("escrowlab["):-1].split(","):
                    names |= dists(inner)
            else:
                names.add(name.split("[")[0].lower().replace("_", "-"))
        return names

    owners = packages_distributions()
    for extra, modules in extras.EXTRA_MODULES.items():
        for module in modules:
            owner = {d.lower().replace("_", "-") for d in owners.get(module.split(".")[0], [])}
            assert owner & dists(extra), f"{module} (from {owner}) is not in pyproject's [{extra}] extra"
    assert set(extras.COMMAND_EXTRAS.values()) <= {(name,) for name in declared}


# The CLI as a core-only install sees it: every extra's modules refuse to import.
CORE_ONLY = '''
import importlib.abc, sys
from escrowlab.cli import extras
blocked = {m.split(".")[0] for mods in extras.EXTRA_MODULES.values() for m in mods}

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Refuse())
for name in list(sys.modules):
    if name.split(".")[0] in blocked:
        del sys.modules[name]
sys.argv = ["escrowlab", *sys.argv[1:]]
from escrowlab.cli import main
main()
'''


def core_only(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CORE_ONLY, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_core_only_cli_draws_its_help():
    proc = core_only("--help")
    assert proc.returncode == 0, proc.stderr
    assert "simulate" in proc.stdout and "cluster" in proc.stdout


@pytest.mark.parametrize("argv, line", [
    (["load"], "error: escrowlab load needs the [load] extra: pip install 'escrowlab[load]'"),
    (["simulate", "-c", "year-10k"], "error: escrowlab simulate needs the [sim] extra: pip install 'escrowlab[sim]'"),
    (["explore"], "error: escrowlab explore needs the [app] extra: pip install 'escrowlab[app]'"),
    # no static entry: the failed import itself is mapped to its extra
    (["bench", "sim"], "error: escrowlab bench sim needs the [sim] extra: pip install 'escrowlab[sim]'"),
    (["cluster", "up", "--backend", "docker"],
     "error: escrowlab cluster up needs the [docker] extra: pip install 'escrowlab[docker]'"),
])
def test_core_only_command_without_its_extra_prints_one_line(argv, line):
    proc = core_only(*argv)
    assert (proc.returncode, proc.stderr.strip()) == (2, line)
