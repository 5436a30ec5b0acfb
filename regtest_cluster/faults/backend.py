"""What a cluster needs from a backend, faults included.

``ProcessBackend`` (``regtest_cluster.cluster``) and ``DockerBackend``
(``regtest_cluster.docker.backend``) implement it; ``Faults`` reaches
processes and containers only through these methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..daemon import Daemon
    from ..nodes.lnd import LndNode


@runtime_checkable
class Backend(Protocol):
    name: str

    # --- building and ending a cluster
    def bitcoind(self, binaries, datadir: Path, ports, *, rpc_password=None, daemon_factory=None): ...
    def lnd(self, name: str, role: str, binaries, lnddir: Path, ports, bitcoind, *, daemon_factory=None,
            accept_keysend: bool = False): ...
    def lnd_ports(self, take) -> dict:
        """The keyword arguments of one LND's ``LndPorts``, each port from ``take()``."""
    def prepare(self, cluster: "Cluster | None" = None) -> None: ...
    def nodes_ready(self, cluster: "Cluster") -> None:
        """Every LND of ``cluster`` runs on its final ports (before any two connect)."""
    def release(self) -> None: ...
    def record(self) -> dict: ...
    def leftovers(self) -> list[str]: ...
    def node_record(self, daemon) -> dict: ...
    def adopt(self, entry: dict, run_dir: Path): ...

    # --- faults
    def pause(self, daemon: "Daemon") -> None:
        """Freeze the daemon (SIGSTOP, ``docker pause``): it keeps its sockets and answers nothing."""
    def resume(self, daemon: "Daemon") -> None: ...
    def is_paused(self, daemon: "Daemon") -> bool: ...
    def partition(self, cluster: "Cluster", a: "LndNode", b: "LndNode") -> None:
        """Cut every connection between ``a`` and ``b`` and refuse new ones, in both directions."""
    def heal(self, cluster: "Cluster", a: "LndNode", b: "LndNode") -> None: ...
    def partitions(self, cluster: "Cluster") -> list[tuple[str, str]]:
        """The pairs partitioned now (whoever partitioned them)."""
    def heal_partitions(self, cluster: "Cluster") -> list[tuple[str, str]]:
        """Heal every partition; return the pairs healed."""
