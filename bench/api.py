"""API throughput: reads/s and writes/s of the marketplace on SQLite (WAL) and on
PostgreSQL, beside a bare FastAPI ping app, each served the same way (one uvicorn
process) and driven by the same closed-loop client in the same run.

- reads: the browse mix: ``GET /listings`` (a page), ``GET /listings?q=word``
  (full-text search) and ``GET /listings/{id}``, in turn;
- writes: ``POST /listings`` by a logged-in seller (a row, its search index,
  one transaction). Order writes need the hub's LND for the hold invoice, so
  they are measured with it, by ``bench escrow`` and ``escrowlab load``;
- baseline: ``GET /ping`` on ``bench/ping_app.py``.

The app runs without nodes (accounts and listings only). The client is http.client
threads in this process; its own CPU is reported, since on a 2-core machine the
client competes with the server.

    python -m bench.api --seconds 10 --concurrency 32
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

from regtest_cluster.env import ClusterEnv
from regtest_cluster.ports import PortAllocator
from regtest_cluster.postgres import PostgresNotInstalled, PostgresServer
from regtest_cluster.rundir import new_run_dir
from regtest_cluster.waiting import wait_for
from harness.http import settings_env

from .escrow import percentiles

WORDS = ("lamp", "radio", "camera", "bicycle", "guitar", "kettle", "watch", "drone")
SEED_LISTINGS = 300
# The bench measures the API, not its per-address rate limiter (one client address sends everything).
NO_LIMITS = {"rate_limits_enabled": False}


def app_factory():
    """What uvicorn serves (``--factory``): the marketplace without nodes, settings from the environment."""
    from reference_app.config import Settings
    from reference_app.main import create_app

    return create_app(Settings(), with_node=False)


class Served:
    """One uvicorn process, logging to the run folder."""

    def __init__(self, target: str, run_dir: Path, label: str, env: dict[str, str], factory: bool = False) -> None:
        self.port = PortAllocator().take()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "uvicorn", target, "--port", str(self.port), "--log-level", "warning",
                "--no-access-log", *(["--factory"] if factory else [])]
        self.log = (run_dir / f"{label}.log").open("w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **env})

    def wait_ready(self, path: str) -> "Served":
        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}; see {self.log.name}")
            return httpx.get(self.url + path, timeout=2).status_code == 200

        wait_for(up, timeout=60, what=f"{self.url}{path}", ignore=(httpx.HTTPError,))
        return self

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _drive(url: str, seconds: float, concurrency: int, request: Callable[[int], tuple]) -> dict:
    """Closed loop: ``concurrency`` threads, each on its own keep-alive connection, sending its next
    request when the last one answers. ``request(i)`` gives (method, path, JSON body or None, headers).

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

    cpu0, t0 = _own_cpu_s(), time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(loop, range(concurrency)))
    wall = time.monotonic() - t0
    latencies = [x for lat, _f in results for x in lat]
    failures = [x for _l, fails in results for x in fails]
    ms = percentiles(latencies)
    return {"requests_per_s": round(len(latencies) / wall, 1), "requests": len(latencies), "failed": len(failures),
            "p50_ms": round(ms["p50_s"] * 1000, 1) if latencies else None,
            "p99_ms": round(ms["p99_s"] * 1000, 1) if latencies else None,
            "client_cpu_share": round((_own_cpu_s() - cpu0) / wall, 2), "errors": failures[:3]}


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


def _measure_app(label: str, run_dir: Path, env: dict[str, str], seconds: float, concurrency: int,
                 seed: int, progress: Callable[[str], None]) -> dict:
    server = Served("bench.api:app_factory", run_dir, label, env, factory=True).wait_ready("/health")
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
        reads = _drive(server.url, seconds, concurrency, read)
        progress(f"{label}: writes for {seconds:.0f}s")
        writes = _drive(server.url, seconds, concurrency, write)
    finally:
        server.stop()
    return {"reads": reads, "writes": writes}


def run(env: ClusterEnv, seconds: float = 10, concurrency: int = 32, postgres: bool = True,
        seed: int = SEED_LISTINGS, progress: Callable[[str], None] = lambda _m: None) -> dict:
    run_dir = new_run_dir(env.runs_dir, "bench-api")
    result: dict = {"seconds_per_phase": seconds, "concurrency": concurrency, "seed_listings": seed,
                    "run_dir": str(run_dir)}
    ping = Served("bench.ping_app:app", run_dir, "ping", {}).wait_ready("/ping")
    try:
        progress(f"baseline: GET /ping for {seconds:.0f}s")
        result["baseline_ping"] = _drive(ping.url, seconds, concurrency, lambda _i: ("GET", "/ping", None, {}))
    finally:
        ping.stop()
    sqlite_dir = run_dir / "sqlite"
    result["sqlite_wal"] = _measure_app("sqlite", run_dir, settings_env({"data_dir": str(sqlite_dir), **NO_LIMITS}),
                                        seconds, concurrency, seed, progress)
    if postgres:
        try:
            server = PostgresServer().start()
        except PostgresNotInstalled as exc:
            result["postgres"] = {"skipped": str(exc)}
        else:
            try:
                url = server.create_database("bench_api")
                result["postgres"] = _measure_app("postgres", run_dir, {**settings_env({"data_dir": str(
                    run_dir / "pg"), **NO_LIMITS}), "DATABASE_URL": url}, seconds, concurrency, seed, progress)
            finally:
                server.stop()
    base = result["baseline_ping"]["requests_per_s"]
    for db in ("sqlite_wal", "postgres"):
        figures = result.get(db, {})
        if "reads" in figures and base:
            figures["reads_ratio_to_ping"] = round(figures["reads"]["requests_per_s"] / base, 3)
            figures["writes_ratio_to_ping"] = round(figures["writes"]["requests_per_s"] / base, 3)
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    result["cpus"] = os.cpu_count()
    shutil.rmtree(sqlite_dir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    result = run(ClusterEnv.from_environ(), args.seconds, args.concurrency, not args.no_postgres,
                 progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
