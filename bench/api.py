"""API throughput: reads/s and writes/s of the marketplace on SQLite (WAL) and on
PostgreSQL, beside a bare FastAPI ping app, each served the same way (one uvicorn
process) and driven by the same closed-loop client in the same run.

With ``--app-processes N`` (N > 1) it then measures PostgreSQL again with the app served by
N uvicorn workers on one port, beside the ping app served by N workers too, each on a fresh
database. SQLite is served by one process only (its writers queue inside a process).

- reads: the browse mix: ``GET /listings`` (a page), ``GET /listings?q=word``
  (full-text search) and ``GET /listings/{id}``, in turn;
- writes: ``POST /listings`` by a logged-in seller (a row, its search index,
  one transaction). Order writes need the hub's LND for the hold invoice, so
  they are measured with it, by ``bench escrow`` and ``escrowlab load``;
- baseline: ``GET /ping`` on ``bench/ping_app.py``.

The app runs without nodes (accounts and listings only). The client is http.client
threads in this process; its own CPU is reported, since on a 2-core machine the
client competes with the server, and so is the server's CPU per request (every process
of it, and each one's share of a core).

    python -m bench.api --seconds 10 --concurrency 32 --app-processes 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode, urlsplit

import httpx
import psutil

from regtest_cluster.daemon import PORT_CLASH, LogTail
from regtest_cluster.env import ClusterEnv
from regtest_cluster.ports import PortAllocator
from regtest_cluster.postgres import PostgresNotInstalled, PostgresServer
from regtest_cluster.rundir import new_run_dir
from regtest_cluster.waiting import wait_for
from harness.http import settings_env

from .escrow import percentiles
from .ping_app import PID_PATH, pid

WORDS = ("lamp", "radio", "camera", "bicycle", "guitar", "kettle", "watch", "drone")
SEED_LISTINGS = 300
READY_S = 60  # seconds for a server to answer (with several workers, for each of them to)
# The bench measures the API, not its per-address rate limiter (one client address sends everything).
NO_LIMITS = {"rate_limits_enabled": False}


def app_factory():
    """What uvicorn serves (``--factory``): the marketplace without nodes, settings from the environment."""
    from reference_app.config import Settings
    from reference_app.main import create_app, own_process

    settings = Settings()
    own_process(settings)  # as in `escrowlab app serve`'s processes
    app = create_app(settings, with_node=False)
    app.add_api_route(PID_PATH, pid, include_in_schema=False)  # last: matched after every app route
    return app


class Served:
    """One uvicorn server, logging to the run folder: one process, or ``processes`` workers
    (uvicorn's ``--workers``) under uvicorn's supervisor, sharing its listening socket."""

    PORT_TRIES = 3  # a port picked free may be bound by another process before uvicorn binds it

    def __init__(self, target: str, run_dir: Path, label: str, env: dict[str, str], factory: bool = False,
                 processes: int = 1) -> None:
        self.processes = processes
        self._argv = [sys.executable, "-m", "uvicorn", target, "--log-level", "warning", "--no-access-log",
                      *(["--factory"] if factory else []), *(["--workers", str(processes)] if processes > 1 else [])]
        self._env = {**os.environ, **env}
        self.log_path = run_dir / f"{label}.log"
        self.tries = 0
        self._start()

    def _start(self) -> None:
        self.tries += 1
        self.port = PortAllocator().take()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen([*self._argv, "--port", str(self.port)], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self._env)

    def _exited(self) -> bool:
        """False while the server runs. If it has exited: True after starting it again on a new
        port when its port was taken; else the error, naming what its log says."""
        if self.proc.poll() is None:
            return False
        self.log.close()
        tail = LogTail(self.log_path).tail(12).strip()
        if PORT_CLASH.search(tail) and self.tries < self.PORT_TRIES:
            self._start()
            return True
        raise RuntimeError(f"server exited {self.proc.returncode}: {tail or 'nothing in its log'} "
                           f"(log: {self.log_path})")

    def wait_ready(self, path: str) -> "Served":
        """Once ``path`` answers 200; with several workers, once each of them has answered
        ``PID_PATH`` (one still starting would leave the clients' connections to the others).
        A server that does not get there is stopped before the error is raised."""
        try:
            return self._wait_ready(path)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, path: str) -> "Served":
        def up() -> bool:
            if self._exited():
                return False  # started again on another port
            return httpx.get(self.url + path, timeout=2).status_code == 200

        wait_for(up, timeout=READY_S, what=f"{self.url}{path}", ignore=(httpx.HTTPError,))
        if self.processes > 1:
            seen: set[int] = set()

            def all_serving() -> bool:
                up()
                with httpx.Client(timeout=2) as fresh:  # a new connection: any worker may accept it
                    seen.add(fresh.get(self.url + PID_PATH).json()["pid"])
                return len(seen) == self.processes

            wait_for(all_serving, timeout=READY_S, what=f"{self.processes} workers answering on {self.url}",
                     ignore=(httpx.HTTPError,))
        return self

    def serving(self) -> list[psutil.Process]:
        """The processes serving requests: uvicorn's workers, not its supervisor, when there are
        several (those started so far)."""
        top = psutil.Process(self.proc.pid)
        if self.processes == 1:
            return [top]
        return [child for child in top.children() if "--multiprocessing-fork" in " ".join(_cmdline(child))]

    def cpu_seconds(self) -> dict[int, float]:
        """CPU seconds so far of each process serving requests."""
        seconds = {}
        for proc in self.serving():
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds[proc.pid] = times.user + times.system
        return seconds

    def stop(self) -> None:
        """Stop the server, and any worker its supervisor left behind (one killed, or
        interrupted while starting its workers, does not stop them)."""
        try:
            workers = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            workers = []
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        _gone, left = psutil.wait_procs(workers, timeout=15)
        for worker in left:
            try:
                worker.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=15)
        self.log.close()


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _drive(url: str, seconds: float, concurrency: int, request: Callable[[int], tuple],
           server: Served | None = None) -> dict:
    """Closed loop: ``concurrency`` threads, each on its own keep-alive connection, sending its next
    request when the last one answers. ``request(i)`` gives (method, path, JSON body or None, headers).
    Given the ``server``, also its CPU per request and each process's share of a core.

    Plain http.client threads, not an asyncio client: httpx's async pool cost ~3 ms of client CPU per
    request here and capped the ping baseline near 200/s; http.client costs ~0.2 ms."""
    parts = urlsplit(url)
    deadline = time.monotonic() + seconds

    def loop(k: int) -> tuple[list[float], list[str]]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        latencies, failures, i = [], [], k
        try:
            while time.monotonic() < deadline:
                method, path, body, headers = request(i)
                i += concurrency
                t0 = time.monotonic()
                conn.request(method, path, body=None if body is None else json.dumps(body),
                             headers={"Content-Type": "application/json", **headers})
                response = conn.getresponse()
                text = response.read()
                if response.status >= 400:
                    failures.append(f"HTTP {response.status}: {text[:120]!r}")
                else:
                    latencies.append(time.monotonic() - t0)
        finally:
            conn.close()
        return latencies, failures

    served0 = server.cpu_seconds() if server else {}
    cpu0, t0 = _own_cpu_s(), time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(loop, range(concurrency)))
    wall = time.monotonic() - t0
    latencies = [x for lat, _f in results for x in lat]
    failures = [x for _l, fails in results for x in fails]
    ms = percentiles(latencies)
    figures = {"requests_per_s": round(len(latencies) / wall, 1), "requests": len(latencies), "failed": len(failures),
               "p50_ms": round(ms["p50_s"] * 1000, 1) if latencies else None,
               "p99_ms": round(ms["p99_s"] * 1000, 1) if latencies else None,
               "client_cpu_share": round((_own_cpu_s() - cpu0) / wall, 2), "errors": failures[:3]}
    if server:
        used = {pid: cpu - served0.get(pid, 0.0) for pid, cpu in server.cpu_seconds().items()}
        figures["server_cpu_ms_per_request"] = round(sum(used.values()) / max(1, len(latencies)) * 1000, 3)
        figures["server_cpu_share_per_process"] = sorted((round(cpu / wall, 2) for cpu in used.values()), reverse=True)
    return figures


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _seed(url: str, count: int) -> tuple[str, list[int]]:
    """A seller with listings to read; returns the seller's token and the listing ids."""
    with httpx.Client(base_url=url, timeout=30) as http:
        email, password = f"seller-{random.randrange(10**9)}@bench.example", "bench-password-1"
        http.post("/auth/register", json={"email": email, "password": password, "display_name": "bench seller",
                                          "roles": ["seller"]}).raise_for_status()
        login = http.post("/auth/login", json={"email": email, "password": password})
        if login.status_code != 200:
            raise RuntimeError(f"the bench seller cannot log in: HTTP {login.status_code} {login.text[:200]}")
        token = login.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        ids = [http.post("/listings", headers=headers, json=_listing(i)).json()["id"] for i in range(count)]
    return token, ids


def _listing(i: int) -> dict:
    return {"title": f"{WORDS[i % len(WORDS)]} model {i}", "description": f"a used {WORDS[(i * 3) % len(WORDS)]}",
            "category": "electronics", "price_sats": 1_000 + i, "stock": 5}


def _measure_app(label: str, run_dir: Path, settings: dict, seconds: float, concurrency: int,
                 seed: int, progress: Callable[[str], None], processes: int = 1) -> dict:
    if processes > 1:  # as `escrowlab app serve --processes N` does, before the workers start
        from reference_app.config import Settings
        from reference_app.main import prepare_once

        prepare_once(Settings(**settings))
    server = Served("bench.api:app_factory", run_dir, label, settings_env(settings), factory=True,
                    processes=processes).wait_ready("/health")
    try:
        token, ids = _seed(server.url, seed)
        headers = {"Authorization": f"Bearer {token}"}

        def read(i: int) -> tuple:
            kind = i % 3
            if kind == 0:
                return "GET", "/listings?limit=20", None, {}
            if kind == 1:
                return "GET", f"/listings?{urlencode({'q': WORDS[i % len(WORDS)], 'limit': 20})}", None, {}
            return "GET", f"/listings/{ids[i % len(ids)]}", None, {}

        def write(i: int) -> tuple:
            return "POST", "/listings", _listing(i), headers

        progress(f"{label}: reads for {seconds:.0f}s")
        reads = _drive(server.url, seconds, concurrency, read, server)
        progress(f"{label}: writes for {seconds:.0f}s")
        writes = _drive(server.url, seconds, concurrency, write, server)
    finally:
        server.stop()
    return {"processes": processes, "reads": reads, "writes": writes}


def _ping(run_dir: Path, seconds: float, concurrency: int, progress: Callable[[str], None],
          processes: int = 1) -> dict:
    label = "ping" if processes == 1 else f"ping-{processes}-processes"
    server = Served("bench.ping_app:app", run_dir, label, {}, processes=processes).wait_ready("/ping")
    try:
        progress(f"baseline{'' if processes == 1 else f' ({processes} processes)'}: GET /ping for {seconds:.0f}s")
        return {"processes": processes, **_drive(server.url, seconds, concurrency,
                                                 lambda _i: ("GET", "/ping", None, {}), server)}
    finally:
        server.stop()


def _ratios(figures: dict, ping: dict, key: str = "") -> None:
    base = ping["requests_per_s"]
    if "reads" in figures and base:
        for kind in ("reads", "writes"):
            figures[f"{kind}_ratio_to{key}_ping"] = round(figures[kind]["requests_per_s"] / base, 3)


def run(env: ClusterEnv, seconds: float = 10, concurrency: int = 32, postgres: bool = True,
        seed: int = SEED_LISTINGS, progress: Callable[[str], None] = lambda _m: None,
        app_processes: int = 1) -> dict:
    """The figures of one run. With ``app_processes`` above 1 (and PostgreSQL), an
    ``app_processes`` section: PostgreSQL and the ping again, each served by that many
    processes, with ratios to that ping and to the one-process ping."""
    run_dir = new_run_dir(env.runs_dir, "bench-api")
    result: dict = {"seconds_per_phase": seconds, "concurrency": concurrency, "seed_listings": seed,
                    "run_dir": str(run_dir)}
    result["baseline_ping"] = _ping(run_dir, seconds, concurrency, progress)
    sqlite_dir = run_dir / "sqlite"
    result["sqlite_wal"] = _measure_app("sqlite", run_dir, {"data_dir": str(sqlite_dir), **NO_LIMITS},
                                        seconds, concurrency, seed, progress)
    if postgres:
        try:
            server = PostgresServer().start()
        except PostgresNotInstalled as exc:
            result["postgres"] = {"skipped": str(exc)}
            if app_processes > 1:
                result["app_processes"] = {"processes": app_processes, "skipped": str(exc)}
        else:
            try:
                url = server.create_database("bench_api")
                result["postgres"] = _measure_app("postgres", run_dir, {
                    "data_dir": str(run_dir / "pg"), "database_url": url, **NO_LIMITS},
                    seconds, concurrency, seed, progress)
                if app_processes > 1:
                    n = app_processes
                    many = result["app_processes"] = {"processes": n}
                    many["baseline_ping"] = _ping(run_dir, seconds, concurrency, progress, n)
                    url = server.create_database("bench_api_processes")  # as fresh as the first
                    many["postgres"] = _measure_app(f"postgres-{n}-processes", run_dir, {
                        "data_dir": str(run_dir / f"pg-{n}"), "database_url": url, **NO_LIMITS},
                        seconds, concurrency, seed, progress, n)
                    _ratios(many["postgres"], many["baseline_ping"])
                    _ratios(many["postgres"], result["baseline_ping"], "_one_process")
            finally:
                server.stop()
    elif app_processes > 1:
        result["app_processes"] = {"processes": app_processes, "skipped": "several app processes need PostgreSQL"}
    for db in ("sqlite_wal", "postgres"):
        _ratios(result.get(db, {}), result["baseline_ping"])
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    result["cpus"] = os.cpu_count()
    shutil.rmtree(sqlite_dir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--app-processes", type=int, default=1)
    args = parser.parse_args(argv)
    result = run(ClusterEnv.from_environ(), args.seconds, args.concurrency, not args.no_postgres,
                 progress=lambda m: print(m, file=sys.stderr, flush=True), app_processes=args.app_processes)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
