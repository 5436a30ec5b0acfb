"""ldkd, our LDK node (``ldkd/``: a small Rust daemon on the ``ldk-node`` crate), built with cargo.

Opt-in: ``escrowlab nodes install --ldk``. The binary is cached under
``<cache>/ldk/<ldk-node version>-<hash of Cargo.toml, Cargo.lock and src/>/ldkd``; cargo's
target folder lives beside it (``<cache>/ldk/target``), so a rebuild after a source change
recompiles only ldkd itself, not the ~270 crates under it. ``LDKD=/path/to/ldkd`` brings
one's own build instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .buildlog import run_build
from .errors import ProvisionError

Progress = Callable[[str], None]
CRATE_DIR = Path(__file__).parent / "ldkd"
INSTALL_HINT = "`escrowlab nodes install --ldk` builds it (cargo, crates.io; about 4 minutes cold on 2 idle cores)"


class LdkdMissing(ProvisionError):
    """Raised when a cluster with LDK nodes is asked for but ldkd is not built."""


def ldk_node_version() -> str:
    """The exact ldk-node version ldkd pins (``ldk-node = "=X.Y.Z"`` in its Cargo.toml)."""
    m = re.search(r'^ldk-node\s*=\s*"=([^"]+)"', (CRATE_DIR / "Cargo.toml").read_text(), re.M)
    if not m:
        raise ProvisionError(f"{CRATE_DIR / 'Cargo.toml'}: ldk-node is not pinned to one exact version")
    return m.group(1)


def _sources() -> list[Path]:
    return [CRATE_DIR / "Cargo.toml", CRATE_DIR / "Cargo.lock",
            *sorted(p for p in (CRATE_DIR / "src").rglob("*") if p.is_file())]


def cache_key() -> str:
    h = hashlib.sha256()
    for path in _sources():
        h.update(str(path.relative_to(CRATE_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{ldk_node_version()}-{h.hexdigest()[:10]}"


def _home(cache: Path) -> Path:
    return cache / "ldk" / cache_key()


def target_dir(cache: Path) -> Path:
    """cargo's target folder, shared by every build (incremental rebuilds)."""
    return cache / "ldk" / "target"


def build_log(cache: Path) -> Path:
    return cache / "ldk" / f"build-{cache_key()}.log"


def installed(cache: Path) -> Path | None:
    path = _home(cache) / "ldkd"
    return path if path.is_file() else None


def from_environ(environ: dict[str, str] | None = None) -> Path | None:
    """``LDKD`` from the environment: a user's own ldkd build."""
    value = (os.environ if environ is None else environ).get("LDKD")
    if not value:
        return None
    path = Path(value).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ProvisionError(f"LDKD={value} is not an executable file")
    return path


def find(cache: Path, environ: dict[str, str] | None = None) -> Path | None:
    return from_environ(environ) or installed(cache)


def resolve(cache: Path, environ: dict[str, str] | None = None) -> Path:
    path = find(cache, environ)
    if path is None:
        raise LdkdMissing(f"ldkd (the LDK node) is not installed: {INSTALL_HINT}, or set LDKD to an ldkd binary")
    return path


_COMPILING = re.compile(r"^\s*Compiling (\S+) v(\S+)")
_DOWNLOADED = re.compile(r"^\s*Downloaded (\S+) v")
_ERROR = re.compile(r"^error(\[\w+\])?: ")


@dataclass
class BuildProgress:
    """What ``cargo build`` is doing, from its output one line at a time."""

    total: int = 0  # packages in Cargo.lock: about what a cold build compiles
    phase: str = "starting"
    downloaded: int = 0
    compiled: int = 0
    current: str = ""
    errors: list[str] = field(default_factory=list)

    def feed(self, line: str) -> bool:
        """Account for one line; True when it starts a new phase."""
        line = line.rstrip()
        before = self.phase
        if m := _COMPILING.match(line):
            self.phase, self.compiled, self.current = "compiling", self.compiled + 1, m.group(1)
        elif _DOWNLOADED.match(line):
            self.phase, self.downloaded = "downloading", self.downloaded + 1
        elif _ERROR.match(line):
            self.errors.append(line)
        return self.phase != before

    def describe(self) -> str:
        if self.phase == "downloading":
            return f"downloading crates: {self.downloaded}"
        if self.phase == "compiling":
            of = f"/~{self.total}" if self.total else ""
            return f"compiling: {self.compiled}{of} crates ({self.current})"
        return "starting cargo build"


def _lock_packages() -> int:
    return (CRATE_DIR / "Cargo.lock").read_text().count("[[package]]")


def install(cache: Path, progress: Progress, *, force: bool = False, status: Progress | None = None) -> Path:
    """Build ldkd into the cache (``cargo build --release --locked``). ``progress`` gets one line per
    phase; ``status``, if given, the running crate count. The full output goes to ``build_log``,
    which every failure names in its one line."""
    if not force and (done := installed(cache)):
        progress(f"ldkd: cached in {done.parent}")
        return done
    log_path = build_log(cache)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cargo = shutil.which("cargo")
    if not cargo:
        log_path.write_text("cargo not found on PATH\n")
        raise ProvisionError(f"cargo not found: ldkd (the LDK node) is built with Rust's cargo from crates.io; "
                             f"install Rust (rustup or apt-get install cargo), or set LDKD to an ldkd you built "
                             f"(log: {log_path})")
    home = _home(cache)
    target = target_dir(cache)
    env = {**os.environ, "CARGO_TARGET_DIR": str(target), "CARGO_TERM_COLOR": "never",
           "CARGO_TERM_PROGRESS_WHEN": "never"}
    cmd = [cargo, "build", "--release", "--locked", "--manifest-path", str(CRATE_DIR / "Cargo.toml")]
    state = BuildProgress(total=_lock_packages())
    progress(f"ldkd: building on ldk-node {ldk_node_version()} (cold: about 4 minutes on 2 idle cores; "
             f"full log in {log_path})")
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(" ".join(cmd) + f"\nCARGO_TARGET_DIR={target}\n")
        log.flush()
        try:
            code = run_build(cmd, CRATE_DIR, env, log, state, "ldkd", progress, status)
        except OSError as exc:
            raise ProvisionError(f"cannot run cargo ({cargo}): {exc} (log: {log_path})") from None
    built = target / "release" / "ldkd"
    if code != 0 or not built.is_file():
        first = state.errors[0] if state.errors else "no error line; see the end of the log"
        raise ProvisionError(f"building ldkd failed (cargo exit {code}, {state.compiled} crates compiled): "
                             f"{first} (full log: {log_path})")
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / "ldkd.tmp"
    shutil.copy2(built, tmp)
    tmp.replace(home / "ldkd")
    progress(f"ldkd: installed in {home} ({state.compiled} crates compiled)")
    return home / "ldkd"


def doctor(cache: Path) -> dict:
    """ldkd's line in ``nodes doctor``: optional, so missing is not a failure."""
    try:
        path = find(cache)
        source = "LDKD" if from_environ() else "cache"
    except ProvisionError as exc:
        return {"path": None, "source": None, "version": str(exc), "optional": True}
    version = None
    if path is not None:
        try:
            out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=20)
            version = (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else None
        except (OSError, subprocess.TimeoutExpired) as exc:
            version = f"unrunnable: {exc}"
    return {"path": str(path) if path else None, "source": source if path else None, "version": version,
            "optional": True, "hint": None if path else f"optional, for topologies with LDK nodes: {INSTALL_HINT}"}
