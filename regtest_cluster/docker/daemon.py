"""``ContainerDaemon``: the ``Daemon`` interface over one Docker container.

The daemon inside writes its own log file into the node folder (bind-mounted at
``/node``), so ``wait_for_log`` and the teardown log checks read the same file
as for a process. What a daemon prints before it opens that file (a rejected
flag, a missing library) is in the container's own logs, which ``log_tail``
prefers: a container that exits early reports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .. import waiting
from ..daemon import Daemon, DaemonError
from ..waiting import wait_for


class ContainerDaemon(Daemon):
    """Start (create on first use), stop, kill and watch one container.

    ``spec()`` returns the container's settings (image, name, ports, mounts,
    labels, network, healthcheck, user); it is read when the container is
    created, so ports re-picked after a clash take effect on the next start.
    ``stop`` keeps the container and its volume, so ``start`` resumes the same
    node; the backend's ``release`` removes them.
    """

    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path, *,
                 docker, spec: Callable[[], dict]) -> None:
        super().__init__(name, log_path)
        self.argv = argv
        self.cwd = cwd
        self.docker = docker
        self.spec = spec
        self._container = None

    @classmethod
    def adopt(cls, name: str, container_name: str, log_path: Path, cwd: Path, docker) -> "ContainerDaemon":
        """Wrap a container an earlier command started (a detached cluster)."""
        from docker.errors import NotFound

        d = cls(name, [], log_path, cwd, docker=docker, spec=dict)
        try:
            d._container = docker.containers.get(container_name)
        except NotFound:
            d._container = None
        return d

    @property
    def container_name(self) -> str | None:
        return self._container.name if self._container is not None else self.spec().get("name")

    @property
    def pid(self) -> int | None:
        if self._container is None:
            return None
        self._reload()
        return (self._container.attrs.get("State") or {}).get("Pid") or None

    def start(self) -> None:
        from docker.errors import APIError

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._container is None:
            self._create()
        try:
            self._container.start()
        except APIError as exc:
            reason = str(exc.explanation or exc)
            # Created with ports that turned out busy: drop it, so a retry recreates it with new ones.
            self._remove()
            raise DaemonError(self.name, f"container did not start: {reason}", self.log_path, reason) from None

    def _create(self) -> None:
        from docker.errors import APIError, ImageNotFound

        spec = dict(self.spec())
        ports = {f"{inside}/tcp": ("127.0.0.1", host) for inside, host in spec.pop("ports", {}).items()}
        try:
            self._container = self.docker.containers.create(
                entrypoint=[self.argv[0]], command=self.argv[1:], ports=ports, detach=True, **spec)
        except ImageNotFound as exc:
            raise DaemonError(self.name, f"image missing: {exc.explanation}", None, "") from None
        except APIError as exc:
            raise DaemonError(self.name, f"cannot create container: {exc.explanation or exc}", None, "") from None

    def _reload(self) -> bool:
        from docker.errors import NotFound

        try:
            self._container.reload()
            return True
        except NotFound:
            self._container = None
            return False

    def is_running(self) -> bool:
        return self._container is not None and self._reload() and self._container.status == "running"

    def died(self, reason: str) -> DaemonError:
        if self._container is not None and self._reload():
            state = self._container.attrs.get("State") or {}
            if state.get("Status") == "exited":
                reason = f"{reason} (container {self._container.name} exited with code {state.get('ExitCode')})"
        return super().died(reason)

    def log_tail(self, n: int = 30) -> str:
        if self._container is not None:
            try:
                out = self._container.logs(tail=n).decode(errors="replace").rstrip()
            except Exception:  # the container went away: the file is all there is
                out = ""
            if out:
                return out
        return super().log_tail(n)

    def stop(self, timeout: float = 30.0) -> None:
        if self.is_running():
            from docker.errors import APIError

            try:
                self._container.stop(timeout=max(1, int(timeout * waiting.TIMEOUT_FACTOR)))
            except APIError:
                pass  # it ended on its own meanwhile
        self._wait_stopped()

    def kill(self) -> None:
        if self.is_running():
            from docker.errors import APIError

            try:
                self._container.kill()
            except APIError:
                pass
        self._wait_stopped()

    def _wait_stopped(self) -> None:
        if self._container is not None:
            wait_for(lambda: not self.is_running(), timeout=30, what=f"container of {self.name} to stop")

    def _remove(self) -> None:
        if self._container is not None:
            try:
                self._container.remove(force=True, v=False)
            except Exception:  # already gone
                pass
            self._container = None
