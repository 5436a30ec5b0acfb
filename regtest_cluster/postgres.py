"""A throwaway PostgreSQL server for tests: ``initdb`` in a temp folder, one
loopback port, never a system service. Each caller gets a fresh database
cloned from a template, which takes milliseconds instead of an ``initdb``.

PostgreSQL refuses to run as root, so as root the server runs as a dedicated
system user (created on first use) on a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg
from psycopg import sql

from . import waiting
from .daemon import LogTail
from .ports import PortAllocator
from .waiting import wait_for

SERVICE_USER = "escrowlab-pg"
SUPERUSER = "postgres"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
# Durability costs time and buys nothing for a database deleted after the run.
SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "200"}


class PostgresNotInstalled(RuntimeError):
    """Raised when initdb, pg_ctl or postgres cannot be found."""


class PostgresError(RuntimeError):
    """Raised when the server cannot start or stop; names its log and shows its tail."""


def _has_server(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in SERVER_BINARIES)


def find_bindir() -> Path:
    """The server binaries' folder: ``pg_config --bindir``, else the newest /usr/lib/postgresql/*/bin."""
    candidates = []
    if shutil.which("pg_config"):
        # pg_config may come from libpq-dev alone and point at a folder without a server.
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(out.stdout.strip())
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda d: [int(n) for n in re.findall(r"\d+", d)], reverse=True)
    for candidate in candidates:
        if _has_server(Path(candidate)):
            return Path(candidate)
    searched = ", ".join(candidates) or "/usr/lib/postgresql/*/bin"
    raise PostgresNotInstalled(f"PostgreSQL server binaries not found in {searched}: apt-get install postgresql")


def ensure_service_user(name: str = SERVICE_USER) -> str:
    """Create (once) the system user the server runs as when we are root."""
    try:
        pwd.getpwnam(name)
        return name
    except KeyError:
        pass
    # useradd lives in sbin, which a root shell's PATH does not always hold (sudo -E, a CI image)
    useradd = shutil.which("useradd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if useradd is None:
        raise PostgresError(f"PostgreSQL will not run as root, and the user {name!r} it would run as does not "
                            "exist; useradd, which would create it, is not on this machine (install passwd)")
    done = subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                           "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True)
    if done.returncode not in (0, 9):  # 9: a concurrent run created it first
        raise PostgresError(f"useradd {name} failed: {done.stderr.strip()}")
    return name


def _stat(pid: int | str) -> list[str]:
    """/proc/PID/stat fields after the command name: [state, ppid, ...]; [] once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _alive(pid: int) -> bool:
    return _stat(pid)[:1] not in ([], ["Z"])


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (the postmaster's backends and workers)."""
    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [p for p in pids if _stat(p)[1:2] == [str(pid)] and _alive(p)]


class PostgresServer:
    """One PostgreSQL server for a test session.

    ``start()`` creates the cluster, ``create_database()`` hands out empty
    databases, ``stop()`` leaves no process behind and removes the folder
    unless asked to keep it (a failed start always keeps it, for its log).
    As root, ``parent_dir`` (default: the temp folder) must be open to the service user.
    """

    def __init__(self, bindir: Path | str | None = None, port: int | None = None,
                 parent_dir: Path | str | None = None) -> None:
        self.bindir = Path(bindir) if bindir is not None else find_bindir()
        if not _has_server(self.bindir):
            raise PostgresNotInstalled(
                f"PostgreSQL server binaries not found in {self.bindir}: apt-get install postgresql")
        self.port = port
        self.parent_dir = parent_dir
        self.user: str | None = None
        self.root = self.data_dir = self.log_path = None  # set by start(); log_path is what to read on failure

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (TypeError, OSError, ValueError):
            return None

    def start(self) -> PostgresServer:
        self.user = ensure_service_user() if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="escrowlab-pg-", dir=self.parent_dir))
        self.data_dir, self.log_path = self.root / "data", self.root / "postgres.log"
        try:
            if self.user:
                shutil.chown(self.root, user=self.user)
            self.port = self.port or PortAllocator().take()
            self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                      "--encoding=UTF8", "--locale=C", "--no-sync")
            conf = {"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                    "unix_socket_directories": f"'{self.root}'", **SETTINGS}
            with open(self.data_dir / "postgresql.conf", "a") as f:
                f.writelines(f"{key} = {value}\n" for key, value in conf.items())
            self._run("pg_ctl", "start", "-w", "-t", str(int(60 * waiting.TIMEOUT_FACTOR)),
                      "-D", str(self.data_dir), "-l", str(self.log_path))
        except BaseException:
            self.stop(keep=True)
            raise
        return self

    def stop(self, keep: bool = False) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and remove its folder unless ``keep``."""
        if self.root is None:
            return
        pid = self.pid
        if pid is not None and _alive(pid):
            try:
                self._run("pg_ctl", "stop", "-m", "fast", "-w", "-t", str(int(30 * waiting.TIMEOUT_FACTOR)),
                          "-D", str(self.data_dir))
            except PostgresError:
                self._kill(pid)
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = self.data_dir = self.log_path = None

    def _kill(self, pid: int) -> None:
        # Backends are session leaders of their own, so killing the postmaster's group misses them.
        pids = [pid, *children(pid)]
        for each in pids:
            try:
                os.kill(each, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not any(_alive(p) for p in pids), timeout=10, what=f"postgres (pid {pid}) to die")

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of one database on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str, template: str = "template0") -> str:
        """Create an empty database (a copy of ``template``) and return its URL.

        template0 is the default because nobody can connect to it, so it is
        guaranteed to be as empty as initdb left it."""
        self._execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending the sessions still connected to it."""
        self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _execute(self, statement: sql.Composable) -> None:
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(statement)

    def _run(self, program: str, *args: str) -> None:
        argv, env = [str(self.bindir / program), *args], None
        if self.user:  # as root: the service user's ids, its groups alone, its own HOME
            account = pwd.getpwnam(self.user)
            # Through setpriv (util-linux), not subprocess's user=/group=: those make Python fork()
            # instead of vfork(), and a forked child runs gRPC's fork handlers before its exec. In a
            # test process whose LND channels were busy, they restarted gRPC's poller in the child,
            # which then crashed (initdb "exit -11", with gRPC's epoll EBADF on its stderr; grpc#43055).
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                raise PostgresError("PostgreSQL runs as its own user when we are root, through setpriv, which is "
                                    "not on this machine (install util-linux)")
            argv = [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", "--", *argv]
            env = {**os.environ, "HOME": account.pw_dir, "USER": self.user, "LOGNAME": self.user}
        # cwd: the service user may not be allowed into ours.
        done = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise PostgresError(f"{program} failed (exit {done.returncode}; log: {self.log_path}):\n"
                                f"{done.stdout}{done.stderr}\n--- last log lines ---\n{LogTail(self.log_path).tail()}")

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(keep=exc_type is not None)


DATABASES = ("sqlite", "postgres")


@contextmanager
def app_database(db: str, name: str) -> Iterator[int | None]:
    """The app's database for one run (a benchmark, a load run): its default SQLite (WAL), or a
    fresh database ``name`` on a throwaway PostgreSQL server that is stopped afterwards; yields
    the server's pid (its CPU and memory are the run's too), None for SQLite.

    The app reads ``DATABASE_URL`` when it starts, and its process inherits it from here."""
    if db not in DATABASES:
        raise ValueError(f"the app's database is one of {', '.join(DATABASES)}, not {db!r}")
    if db == "sqlite":
        yield None
        return
    server = PostgresServer().start()
    before = os.environ.get("DATABASE_URL")
    try:
        os.environ["DATABASE_URL"] = server.create_database(name)
        yield server.pid
    finally:
        if before is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = before
        server.stop()
