"""Serve the app from a background thread (for scenarios, demos and load tests)."""

from __future__ import annotations

import socket
import threading

import uvicorn
from fastapi import FastAPI

from .polling import poll_until


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel has just handed out as free on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Server(uvicorn.Server):
    """uvicorn's server that ends the app's notification streams when it shuts down: uvicorn
    waits for every open response to finish, and a stream never does by itself, so a stop with a
    party's stream open waited until its supervisor killed the app (20 s in the harness)."""

    async def shutdown(self, sockets=None) -> None:
        ctx = getattr(getattr(self.config.app, "state", None), "ctx", None)
        if ctx is not None:
            ctx.bell.close()
        await super().shutdown(sockets=sockets)


class ServedApp:
    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.app = app
        self.host = host
        self.port = port or free_port(host)
        self.server = Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self.server.run, name="served-app", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "ServedApp":
        self._thread.start()
        poll_until(lambda: self.server.started or not self._thread.is_alive(), timeout_s=30)
        if not self.server.started:
            raise RuntimeError(f"the app server failed to start on {self.url}")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
