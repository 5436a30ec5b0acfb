"""Port reservation: ports are tried by binding, never guessed."""

from __future__ import annotations

import socket
import threading


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out distinct free loopback ports.

    With a ``base`` it scans upward from it, skipping busy ports (so a user can
    keep a cluster in a known range); without one the kernel picks ephemeral
    ports. Ports handed out are remembered so one cluster never gets a port twice.
    """

    def __init__(self, base: int | None = None) -> None:
        self._next = base
        self._taken: set[int] = set()
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            for _ in range(2000):
                port = self._candidate()
                if port not in self._taken and port_is_free(port):
                    self._taken.add(port)
                    return port
            raise RuntimeError("no free loopback port found after 2000 tries")

    def _candidate(self) -> int:
        if self._next is None:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]
        port = self._next
        self._next += 1
        if port > 65535:
            raise RuntimeError("port range exhausted above base port")
        return port
