"""Cluster bring-up: from the command's start to every declared channel active."""

from __future__ import annotations

import statistics
import time

from regtest_cluster import launcher
from regtest_cluster.env import ClusterEnv
from regtest_cluster.topology import load


def run(env: ClusterEnv, topology: str, repeat: int = 1, progress=lambda _m: None,
        backend: str | None = None) -> dict:
    backend = backend or env.backend
    if backend == "docker":
        # Build or pull missing images before the clock starts: once per version, not per bring-up.
        launcher.make_backend(env, "bench", backend, None, progress)
    runs = []
    for i in range(repeat):
        t0 = time.monotonic()
        topo = load(topology)
        cluster = launcher.launch(topo, env, progress, backend=backend)
        try:
            figures = launcher.timings_json(cluster, cluster.timings)
            # bringup_s counts from the command's start (loading the topology,
            # resolving binaries, making the run folder), not from the first fork.
            figures["bringup_s"] = round(cluster.timings.bringup_s + (cluster.timings.marks["start"] - t0), 3)
        finally:
            cluster.stop()
        cluster.remove_run_dir()
        runs.append(figures)
        progress(f"run {i + 1}/{repeat}: bringup {figures['bringup_s']} s")
    # Every figure is the median over the runs (phases and total alike).
    result = {"nodes": runs[0]["nodes"], "channels": runs[0]["channels"]}
    result.update({k: round(statistics.median(r[k] for r in runs), 3)
                   for k in runs[0] if k not in ("nodes", "channels")})
    result.update({"topology": topo.name, "backend": backend, "repeat": repeat})
    if repeat > 1:
        result["runs"] = runs
    return result
