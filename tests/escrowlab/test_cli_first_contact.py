"""First contact with the `escrowlab` command: --version, flags that look like flags, hints
that carry the --name the user gave, a busy port, log lines without a wrapper's path."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid

import click
import pytest
import typer
from typer.testing import CliRunner

from escrowlab import __version__
from escrowlab.cli import app, version

ESCROWLAB = [sys.executable, "-m", "escrowlab"]


def run(*args: str, cache=None, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ESCROWLAB_")}
    if cache is not None:
        clean["ESCROWLAB_CACHE"] = str(cache)
    clean.update(env)
    return subprocess.run([*ESCROWLAB, *args], capture_output=True, text=True, timeout=120, env=clean)


def test_version_prints_the_installed_version_and_exits_0():
    proc = run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"escrowlab {version()}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version()) and re.fullmatch(r"\d+\.\d+\.\d+\S*", __version__)


def every_command(group: click.Group, path=()):
    for name, cmd in group.commands.items():
        yield (*path, name)
        if isinstance(cmd, click.Group):
            yield from every_command(cmd, (*path, name))


@pytest.mark.parametrize("path", [(), *every_command(typer.main.get_command(app))], ids=" ".join)
def test_help_shows_flags_without_a_value_placeholder(path):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    if path in ((), ("cluster", "up")):
        assert re.search(r"--(version|detach) +-[Vd] +(Print|Leave)", result.output), result.output


def test_flag_given_a_value_is_refused_as_an_extra_argument():
    result = CliRunner().invoke(app, ["cluster", "up", "--detach", "true"])
    assert result.exit_code == 2 and "unexpected extra argument" in result.output


@pytest.mark.parametrize("args", [("cluster", "status"), ("cluster", "down"), ("cluster", "mine", "1"),
                                  ("app", "serve", "--port", "1")])
def test_missing_named_cluster_hint_carries_the_name(tmp_path, args):
    proc = run(*args, "--name", "eco", cache=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "no detached cluster named 'eco'" in proc.stderr
    assert "`escrowlab cluster up --detach --name eco`" in proc.stderr and "Traceback" not in proc.stderr


def test_default_cluster_hint_has_no_name(tmp_path):
    proc = run("cluster", "status", cache=tmp_path)
    assert proc.returncode == 2 and "`escrowlab cluster up --detach`" in proc.stderr


def test_log_lines_name_no_source_file():
    # the progress display every command uses, in a process of its own (as a command runs it)
    code = ("from escrowlab.cli.common import progress\n"
            "with progress('installing') as step:\n    step('bitcoind: cached')\n    step('lnd: cached')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "160"})
    assert proc.returncode == 0, proc.stderr
    logged = [line for line in proc.stderr.splitlines() if "cached" in line]
    assert len(logged) == 2, proc.stderr
    assert not any(re.search(r"\w+\.py:\d+", line) for line in logged), proc.stderr


def test_serve_on_a_busy_port_exits_2_naming_the_port_and_holder_before_printing_a_url(tmp_path):
    cert = tmp_path / "tls.cert"
    cert.write_text("not used")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = run("app", "serve", "--port", str(port), cache=tmp_path / "cache",
                   ESCROWLAB_DATA_DIR=str(tmp_path / "app"), ESCROWLAB_LND_REST_URL="https://127.0.0.1:1",
                   ESCROWLAB_LND_MACAROON_PATH=str(tmp_path / "missing.macaroon"),
                   ESCROWLAB_LND_TLS_CERT_PATH=str(cert))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()} (" in lines[0]
    assert "choose another with --port" in lines[0]


@pytest.mark.cluster
def test_cluster_up_detached_with_a_name_says_how_to_stop_that_cluster():
    name = f"eco{uuid.uuid4().hex[:6]}"
    up = run("cluster", "up", "-t", "line", "--detach", "--name", name, "--json")
    try:
        assert up.returncode == 0, up.stderr
        assert f"`escrowlab cluster down --name {name}` stops it" in up.stderr
    finally:
        down = run("cluster", "down", "--name", name)
    assert down.returncode == 0, down.stderr
