"""One ``Daemon`` interface for every node, whatever runs it.

A daemon owns a log file in its node folder. ``wait_for_log`` reads that file
from where the previous match ended (as pyln-testing's ``TailableProc`` does),
and fails fast with the log's tail when the daemon has died.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path

import psutil

from . import waiting
from .waiting import WaitTimeout, wait_for


class DaemonError(RuntimeError):
    """Raised when a daemon cannot start or died; carries its log tail."""

    def __init__(self, name: str, reason: str, log_path: Path | None, tail: str) -> None:
        self.name = name
        self.reason = reason
        self.log_path = log_path
        self.tail = tail
        where = f" (log: {log_path})" if log_path else ""
        super().__init__(f"{name}: {reason}{where}\n--- last log lines ---\n{tail}")


# What a daemon's log says when a port it was given is taken (lnd, bitcoind, ldkd, the app).
PORT_CLASH = re.compile(r"already in use|unable to bind|bind.*failed", re.I)


def start_with_port_retry(start, repick, attempts: int = 3) -> None:
    """``start()``; when the daemon died because a port it was given was taken meanwhile (ports
    are picked free, but another process may bind one first), ``repick()`` and start again."""
    for attempt in range(attempts):
        try:
            start()
            return
        except DaemonError as exc:
            if attempt == attempts - 1 or not PORT_CLASH.search(exc.tail):
                raise
            repick()


class LogTail:
    """Incremental reader of a growing log file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._buffer = ""

    def new_lines(self) -> list[str]:
        try:
            with open(self.path, "r", encoding="utf-8", errors="replace") as f:
                f.seek(self._offset)
                chunk = f.read()
                self._offset = f.tell()
        except FileNotFoundError:
            return []
        text = self._buffer + chunk
        lines = text.split("\n")
        self._buffer = lines.pop()  # an unfinished last line waits for more
        return lines

    def tail(self, n: int = 30) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                data = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(data.splitlines()[-n:])


class Daemon(ABC):
    """Start, stop, kill and watch one node process or container."""

    name: str
    log_path: Path

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._tail = LogTail(log_path)

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def is_running(self) -> bool: ...

    @abstractmethod
    def stop(self, timeout: float = 30.0) -> None:
        """Ask the daemon to exit, and kill it if it does not in time."""

    @abstractmethod
    def kill(self) -> None:
        """End the daemon at once (SIGKILL), as a crash would."""

    @property
    @abstractmethod
    def pid(self) -> int | None: ...

    def log_tail(self, n: int = 30) -> str:
        return self._tail.tail(n)

    def died(self, reason: str) -> DaemonError:
        return DaemonError(self.name, reason, self.log_path, self.log_tail())

    def check_alive(self) -> None:
        if not self.is_running():
            raise self.died("exited unexpectedly")

    def wait_for_log(self, pattern: str, timeout: float = 60.0) -> str:
        """Return the first new log line matching ``pattern``; later calls search on from there."""
        regex = re.compile(pattern)

        def matched() -> str | None:
            for line in self._tail.new_lines():
                if regex.search(line):
                    return line
            self.check_alive()
            return None

        try:
            return wait_for(matched, timeout=timeout, what=f"{self.name} log /{pattern}/")
        except WaitTimeout as exc:
            raise self.died(str(exc)) from None

    def errors_in_log(self, patterns: tuple[str, ...]) -> list[str]:
        """Lines of the whole log matching any of ``patterns`` (for teardown checks)."""
        regex = re.compile("|".join(patterns))
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return [line.rstrip("\n") for line in f if regex.search(line)]
        except FileNotFoundError:
            return []


class ProcessDaemon(Daemon):
    """A daemon run as a child process in its own session.

    The process writes to its log file directly (not through a pipe), so a
    detached cluster keeps running, and logging, after the CLI exits.
    """

    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(name, log_path)
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @classmethod
    def adopt(cls, name: str, pid: int, log_path: Path, cwd: Path) -> "ProcessDaemon":
        """Wrap a process started by an earlier command (a detached cluster)."""
        d = cls(name, [], log_path, cwd)
        d._pid = pid
        return d

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else self._pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            try:
                self._proc = subprocess.Popen(
                    self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
            except OSError as exc:
                raise DaemonError(self.name, f"cannot execute {self.argv[0]}: {exc}", None, "") from exc

    def is_running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and _pid_alive(self._pid)

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def _signal(self, sig: int) -> None:
        pid = self.pid
        if pid is None:
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        if not self.is_running():
            self._reap()
            return
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout * waiting.TIMEOUT_FACTOR
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.is_running():
            self.kill()
        self._reap()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        else:
            deadline = time.monotonic() + 10
            while self.is_running() and time.monotonic() < deadline:
                time.sleep(0.02)

    def _reap(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited but not reaped by its parent) is not running.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def runs_from(pid: int | None, path: Path) -> bool:
    """Whether ``pid`` is a live process whose command line names ``path`` (its run folder)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(path) in cmdline


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process and its live children (an app's other
    processes, PostgreSQL's backends), with what each has reaped of its own children (a
    backend that ended during the run), from /proc (0 for what is gone)."""
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return total


def process_tree(pid: int | None) -> list[int]:
    """``pid`` and its live children, recursively (empty for None; only ``pid`` once it is gone)."""
    if pid is None:
        return []
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except (psutil.Error, TypeError, ValueError):
        return [pid]
