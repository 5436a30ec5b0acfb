"""escrowlab as its users get it: the wheel, built and installed into fresh venvs outside
the checkout, then used there (nothing of the checkout is on their sys.path).

- the core install (no extras): the CLI, the version, the pytest plugin's fixtures on real
  nodes from a project of its own, and a command whose extra is missing saying which;
- ``[all]``: shipped load profiles and simulator configs resolve, ``cluster up``/``down``
  from outside the checkout, and the dashboard renders from the packaged templates.

Installs are offline, from the wheelhouse ``./dev test`` collects from constraints.txt
(ESCROWLAB_WHEELHOUSE). The core install's size and time are printed in the summary.
Select with ``-m package``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest

from regtest_cluster.waiting import wait_for

from ..conftest import summarize

pytestmark = [pytest.mark.package, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
# The install figures at the end of pytest's report: reported, never asserted.
INSTALLED = "escrowlab as installed from its wheel"
# What a build never needs; the rest of the working tree is copied, so the wheel holds
# exactly what a fresh clone's would (and no stale build/ folder leaks into it).
NOT_BUILT = shutil.ignore_patterns(".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                   ".hypothesis", ".nox", ".venv", "tests", "docs", ".escrowlab")


def wheelhouse() -> Path:
    house = os.environ.get("ESCROWLAB_WHEELHOUSE")
    if not house:
        pytest.skip("no wheelhouse to install from offline: `./dev test` collects one from constraints.txt "
                    "and sets ESCROWLAB_WHEELHOUSE")
    path = Path(house)
    assert (path / ".complete").is_file(), f"ESCROWLAB_WHEELHOUSE={path} is not a complete wheelhouse"
    return path


def run(argv: list, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3.*/site-packages"))


def size_mb(path: Path) -> float:
    total = sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() or f.is_symlink())
    return total / 1e6


def install(venv: Path, requirement: str, house: Path) -> float:
    """A fresh venv with ``requirement`` installed offline; returns the seconds it took."""
    t0 = time.monotonic()
    # No pip inside: the venv holds escrowlab and its dependencies only (measured as such).
    ok(run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent))
    ok(run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
            "--no-index", "--find-links", house, "-c", ROOT / "constraints.txt", requirement], cwd=venv.parent))
    return time.monotonic() - t0


def user_env(venv: Path, home: Path) -> dict:
    """The environment of a user in their own project: the venv first on PATH, no PYTHONPATH,
    run folders in their tmp dir; the node binaries come from the shared cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", ESCROWLAB_RUNS=str(home / "runs"),
               NO_COLOR="1", COLUMNS="200")
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The wheel, built offline from a copy of the working tree; the wheelhouse; the copy."""
    house = wheelhouse()
    top = tmp_path_factory.mktemp("wheel")
    src = top / "src"
    shutil.copytree(ROOT, src, ignore=NOT_BUILT)
    out = top / "dist"
    proc = ok(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--find-links", house,
                   "-w", out, src], cwd=top))
    assert "Deprecat" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    (wheel,) = out.glob("escrowlab-*.whl")
    return wheel, house, src


@pytest.fixture(scope="module")
def core(built, tmp_path_factory) -> tuple[Path, Path]:
    """A venv with the core install (no extras), and the user's project folder next to it."""
    wheel, house, _ = built
    home = tmp_path_factory.mktemp("core")
    venv = home / "venv"
    seconds = install(venv, str(wheel), house)
    summarize(INSTALLED, f"core install (pip install escrowlab, offline from the wheelhouse): "
                         f"{size_mb(site_packages(venv)):.1f} MB of site-packages in {seconds:.1f} s")
    return venv, home


@pytest.fixture(scope="module")
def full(built, tmp_path_factory) -> tuple[Path, Path]:
    wheel, house, _ = built
    home = tmp_path_factory.mktemp("all")
    venv = home / "venv"
    seconds = install(venv, f"escrowlab[all] @ {wheel.as_uri()}", house)
    summarize(INSTALLED, f"[all] install: {size_mb(site_packages(venv)):.1f} MB of site-packages in {seconds:.1f} s")
    return venv, home


def test_wheel_holds_every_file_of_its_packages(built):
    wheel, _, src = built
    include = tomllib.loads((src / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = [d for d in src.iterdir() if (d / "__init__.py").is_file() and any(fnmatch(d.name, p) for p in include)]
    assert len(tops) >= 10, tops
    files = {f.relative_to(src).as_posix() for top in tops for f in top.rglob("*")
             if f.is_file() and "__pycache__" not in f.parts}
    shipped = set(zipfile.ZipFile(wheel).namelist())
    # Data files too (templates, static files and their licences, profiles, configs, traces).
    assert sorted(files - shipped) == []


def test_core_cli_helps_and_says_its_version_from_the_venv(core):
    venv, home = core
    env = user_env(venv, home)
    helped = ok(run([venv / "bin" / "escrowlab", "--help"], cwd=home, env=env))
    assert "cluster" in helped.stdout and "scenario" in helped.stdout
    version = ok(run([venv / "bin" / "escrowlab", "--version"], cwd=home, env=env))
    assert version.stdout.strip() == f"escrowlab {built_version(venv, home, env)}"
    where = ok(run([venv / "bin" / "python", "-c", "import escrowlab, regtest_cluster; "
                    "print(escrowlab.__file__); print(regtest_cluster.__file__)"], cwd=home, env=env))
    assert all(line.startswith(str(site_packages(venv))) for line in where.stdout.splitlines()), where.stdout


def built_version(venv: Path, home: Path, env: dict) -> str:
    proc = ok(run([venv / "bin" / "python", "-c", "from importlib.metadata import version; "
                   "print(version('escrowlab'))"], cwd=home, env=env))
    return proc.stdout.strip()


@pytest.mark.parametrize("argv, extra", [
    (["load", "--headless"], "load"),
    (["simulate", "-c", "year-10k"], "sim"),
    (["app", "serve"], "app"),
    (["scenario", "run", "--all"], "app"),
])
def test_core_command_without_its_extra_says_which_in_one_line(core, argv, extra):
    venv, home = core
    proc = run([venv / "bin" / "escrowlab", *argv], cwd=home, env=user_env(venv, home))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    command = " ".join(argv[:2]) if argv[0] in ("app", "scenario") else argv[0]
    assert proc.stderr.strip() == (f"error: escrowlab {command} needs the [{extra}] extra: "
                                   f"pip install 'escrowlab[{extra}]'")


TINY_PROJECT_TEST = '''
import sys

import pytest
import regtest_cluster


def test_plugin_comes_from_the_installed_package():
    assert regtest_cluster.__file__.startswith(sys.prefix)


@pytest.mark.topology("line")
def test_line_routes_alice_to_carol_through_bob(cluster):
    payment = cluster.pay("alice", "carol", 1_000)
    assert payment["status"] == "SUCCEEDED"
    assert [h["pub_key"] for h in payment["htlcs"][-1]["route"]["hops"]] == [
        cluster.node("bob").pubkey, cluster.node("carol").pubkey]
'''


def test_core_pytest_plugin_fixtures_run_real_nodes_in_another_project(core, built):
    venv, home = core
    _, house, _ = built
    # The user's project has pytest of its own; escrowlab's plugin loads through its entry point.
    ok(run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-index",
            "--find-links", house, "-c", ROOT / "constraints.txt", "pytest"], cwd=home))
    project = home / "project"
    project.mkdir()
    (project / "test_tiny.py").write_text(TINY_PROJECT_TEST)
    proc = run([venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_tiny.py"],
               cwd=project, env=user_env(venv, home))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout


def test_all_load_and_simulate_find_their_shipped_files(full):
    venv, home = full
    env = user_env(venv, home)
    unknown = run([venv / "bin" / "escrowlab", "load", "--profile", "nosuch", "--headless"], cwd=home, env=env)
    assert unknown.returncode == 2, unknown.stderr
    shipped = {name.strip() for name in unknown.stderr.split("shipped:")[1].split(",")}
    assert {"steady", "ramp", "spike", "soak"} <= shipped, unknown.stderr
    steady = ok(run([venv / "bin" / "python", "-c", "from loadtests.profiles import load_profile; "
                     "print(load_profile('steady').name)"], cwd=home, env=env))
    assert steady.stdout.strip() == "steady"
    # with a sweep: its points run in worker processes, which import the installed package
    sim = ok(run([venv / "bin" / "escrowlab", "simulate", "-c", "year-10k", "--days", "1", "--sweep", "1,2",
                  "--sweep-days", "0.5", "--json"], cwd=home, env=env))
    doc = json.loads(sim.stdout)
    assert doc["mode"] == "model" and doc["config"]["name"] == "year-10k"
    assert [row["multiplier"] for row in doc["verdict"]["sweep"]] == [1.0, 2.0]
    assert doc["performance"]["sweep"]["sweep_points"] == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_all_cluster_up_app_serve_dashboard_and_down_outside_the_checkout(full):
    venv, home = full
    env = user_env(venv, home)
    # The app's hub is bob, the middle of the smallest topology (fewer nodes to start).
    env.update(ESCROWLAB_HUB_NODE="bob")
    escrowlab = venv / "bin" / "escrowlab"
    name = f"wheel-{os.getpid()}"
    ok(run([escrowlab, "cluster", "up", "-t", "line", "--detach", "--name", name], cwd=home, env=env))
    try:
        status = json.loads(ok(run([escrowlab, "cluster", "status", "--name", name, "--json"],
                                   cwd=home, env=env)).stdout)
        assert {"alice", "bob", "carol"} <= set(json.dumps(status).replace('"', " ").split())
        port = free_port()
        app = subprocess.Popen([str(escrowlab), "app", "serve", "--port", str(port), "--name", name],
                               cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            def dashboard() -> httpx.Response | None:
                assert app.poll() is None, f"app serve exited {app.returncode}: {app.stdout.read()[-3000:]}"
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/dashboard", follow_redirects=True, timeout=10)
                except httpx.TransportError:
                    return None

            page = wait_for(dashboard, timeout=90, what="the app to answer GET /dashboard")
            # Signed out: the login page, rendered from the packaged templates (was a 500).
            assert page.status_code in (200, 401), page.text[-2000:]
            assert "TemplateNotFound" not in page.text and "<form" in page.text.lower()
            sheets = re.findall(r'href="(/[^"]+\.css)"', page.text)
            assert sheets, "the page links no stylesheet"
            for sheet in sheets:  # packaged static files are served too
                assert httpx.get(f"http://127.0.0.1:{port}{sheet}", timeout=10).status_code == 200, sheet
        finally:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(timeout=30)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()
    finally:
        down = run([escrowlab, "cluster", "down", "--name", name], cwd=home, env=env)
    assert down.returncode == 0, down.stderr
    assert "cluster stopped" in down.stderr
