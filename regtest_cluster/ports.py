"""Port reservation: ports are tried by binding, never guessed."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def ephemeral_low(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> int:
    """The lowest port the kernel gives an outgoing connection (Linux's 32768 where unknown)."""
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Below the kernel's ephemeral range: a port there is never some client's source port. Picked by
# the kernel inside that range, a port handed to a node could be taken by an outgoing connection
# before the node bound it, or while it restarted: CI once saw "[ERR] LTND: gRPC proxy unable to
# listen on 127.0.0.1:33689". (Where that range starts too low to leave room, the kernel picks.)
_LOW = ephemeral_low()
UNCLAIMED = range(max(1024, _LOW - 12_000), _LOW)
_PICK = random.SystemRandom()  # not the global generator: seeded runs in parallel lanes would pick alike
# The random ports handed out in this process, by any allocator (PortAllocator)
_RANDOM_TAKEN: set[int] = set()
_RANDOM_LOCK = threading.Lock()


class PortAllocator:
    """Hands out distinct free loopback ports.

    With a ``base`` it scans upward from it, skipping busy ports (so a user can
    keep a cluster in a known range); without one it tries random ports below the
    kernel's ephemeral range (``UNCLAIMED``), so that no outgoing connection can take a
    node's port while the node restarts. Ports handed out are remembered so one cluster
    never gets a port twice; random ones by every allocator of the process, since a port is
    free until its owner binds it: two scenario lanes (threads of one process) once picked
    the same port for their apps, and the second lane's health check was answered by the
    first lane's app.
    """

    def __init__(self, base: int | None = None) -> None:
        self._next = base
        self._taken: set[int] = set() if base is not None else _RANDOM_TAKEN
        self._lock = threading.Lock() if base is not None else _RANDOM_LOCK

    def take(self) -> int:
        with self._lock:
            if self._taken is _RANDOM_TAKEN and len(_RANDOM_TAKEN) > len(UNCLAIMED) // 2:
                _RANDOM_TAKEN.clear()  # a long-lived process: the oldest are bound by their owners, or gone
            for _ in range(2000):
                port = self._candidate()
                if port not in self._taken and port_is_free(port):
                    self._taken.add(port)
                    return port
            raise RuntimeError("no free loopback port found after 2000 tries")

    def _candidate(self) -> int:
        if self._next is None:
            if len(UNCLAIMED) >= 1000:
                return _PICK.choice(UNCLAIMED)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]
        port = self._next
        self._next += 1
        if port > 65535:
            raise RuntimeError("port range exhausted above base port")
        return port
