"""Faults aimed at a running cluster: the one place scenarios and tests reach them.

- ``core``: ``Faults`` (``cluster.faults``): stop, kill, restart, pause and resume a node;
  partition and heal two LNDs; reorg blocks; a fee spike; starve a transaction; kill any
  daemon; ``heal_all``. ``FaultError`` names what went wrong.
- ``backend``: ``Backend``, what a cluster needs from the process and docker backends
  (``regtest_cluster.cluster.ProcessBackend``, ``regtest_cluster.docker.backend.DockerBackend``).
- ``relay``: the process backend's p2p relay, through which partitions cut both directions.

Importing the package is light (the relay process imports ``relay`` alone).
"""

from __future__ import annotations

from .backend import Backend

__all__ = ["Backend", "Faults", "FaultError", "FeeSpike"]


def __getattr__(name: str):
    if name in ("Faults", "FaultError", "FeeSpike"):
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
