"""Start and end whole clusters: what the CLI, the fixtures and the benchmarks share."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from . import waiting
from .cluster import Cluster, ClusterError, ProcessBackend, Timings
from .env import BACKENDS, ClusterEnv
from .provision import resolve
from .rundir import new_run_dir
from .state import attach, read_state, state_path, write_state
from .topology import Topology

Progress = Callable[[str], None]


def make_backend(env: ClusterEnv, label: str, backend: str | None = None, images: str | None = None,
                 progress: Progress = lambda _m: None) -> ProcessBackend:
    """The backend for one new cluster: ``backend`` or the environment's (ESCROWLAB_BACKEND)."""
    name = backend or env.backend
    if name not in BACKENDS:
        raise ClusterError(f"no backend {name!r} (backends: {', '.join(BACKENDS)})")
    if name == "docker":
        from .docker.backend import DockerBackend

        return DockerBackend.create(env, label, images, progress)
    return ProcessBackend()


def backend_maker(env: ClusterEnv, backend: str | None = None,
                  progress: Progress = lambda _m: None) -> Callable[[str], ProcessBackend]:
    """Makes a backend per cluster (``maker(label)``), checking the engine and images only once:
    what the pytest fixtures use."""
    first = make_backend(env, "probe", backend, None, progress)
    if first.name == "process":
        return lambda _label: ProcessBackend()
    return first.sibling


def launch(topology: Topology, env: ClusterEnv, progress: Progress = lambda _m: None,
           run_dir: Path | None = None, backend: str | None = None, images: str | None = None) -> Cluster:
    """Start ``topology`` in a new numbered run folder; on failure nothing is left running."""
    waiting.set_timeout_factor(env.timeout_factor)
    binaries = resolve(env)
    chosen = make_backend(env, topology.name, backend, images, progress)
    run_dir = run_dir or new_run_dir(env.runs_dir, topology.name)
    progress(f"run folder {run_dir}" + (f" ({chosen.name} backend)" if chosen.name != "process" else ""))
    cluster = Cluster(topology, binaries, run_dir, backend=chosen)
    cluster.start(progress)
    return cluster


def state_dir(env: ClusterEnv) -> Path:
    return env.cache_dir / "clusters"


def check_name_free(env: ClusterEnv, name: str = "default") -> None:
    """Refuse, before starting anything, a detached cluster whose name is taken."""
    path = state_path(state_dir(env), name)
    if path.exists():
        existing = read_state(path)
        raise ClusterError(f"a detached cluster named {name!r} is already recorded in {path} "
                           f"(run folder {existing['run_dir']}); run `escrowlab cluster down"
                           f"{'' if name == 'default' else ' --name ' + name}` first")


def detach(cluster: Cluster, env: ClusterEnv, name: str = "default") -> Path:
    """Leave ``cluster`` running and record it for later commands."""
    check_name_free(env, name)
    path = state_path(state_dir(env), name)
    write_state(path, cluster)
    return path


def _named_state(env: ClusterEnv, name: str) -> tuple[Path, dict]:
    path = state_path(state_dir(env), name)
    if not path.is_file():  # the hint carries the --name the user gave, or it acts on another cluster
        raise ClusterError(f"no detached cluster named {name!r} ({path} does not exist); start one with "
                           f"`escrowlab cluster up --detach{'' if name == 'default' else ' --name ' + name}`")
    return path, read_state(path)


def attached(env: ClusterEnv, name: str = "default") -> Cluster:
    waiting.set_timeout_factor(env.timeout_factor)
    return attach(_named_state(env, name)[1])


def down(env: ClusterEnv, name: str = "default", keep: bool = False) -> dict:
    """Stop a detached cluster, forget it, and remove its run folder unless ``keep``."""
    path, state = _named_state(env, name)
    cluster = attach(state)
    t0 = time.monotonic()
    cluster.stop()
    left = [d.name for d in [cluster.bitcoind.daemon, *(n.daemon for n in cluster.nodes.values())]
            if d.is_running()]
    left += cluster.backend.leftovers()
    if left:
        raise ClusterError(f"still running after stop: {', '.join(left)}", cluster.run_dir)
    path.unlink()
    if not keep:
        cluster.remove_run_dir()
    return {"stopped": True, "backend": cluster.backend.name, "run_dir": str(cluster.run_dir), "kept": keep,
            "stop_s": round(time.monotonic() - t0, 3)}


def timings_json(cluster: Cluster, timings: Timings) -> dict:
    return {
        "nodes": len(cluster.nodes),
        "channels": len(cluster.topology.channels),
        "bitcoind_start_s": round(timings.bitcoind_start_s, 3),
        "lnd_start_s": round(timings.lnd_start_s, 3),
        "funding_s": round(timings.funding_s, 3),
        "channels_s": round(timings.channels_s, 3),
        "bringup_s": round(timings.bringup_s, 3),
        "graph_sync_s": round(timings.graph_sync_s, 3),
    }
