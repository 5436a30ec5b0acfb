"""lnd and lncli, built from the Go module proxy at the pinned release.

The tiny module in ``lndbuild/`` requires lnd and copies its replace
directives; building lnd's commands from it is what ``go install`` cannot do.
Binaries are cached by version and build tags.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..versions import LND_BUILD_TAGS, LND_VERSION
from .buildlog import run_build
from .errors import ProvisionError

Progress = Callable[[str], None]
MODULE_DIR = Path(__file__).parent / "lndbuild"


def which(tool: str) -> str | None:
    return shutil.which(tool)


def cache_key() -> str:
    mod = (MODULE_DIR / "go.mod").read_bytes() + (MODULE_DIR / "go.sum").read_bytes()
    digest = hashlib.sha256(mod + ",".join(LND_BUILD_TAGS).encode()).hexdigest()[:10]
    return f"{LND_VERSION}-{digest}"


def _home(cache: Path) -> Path:
    return cache / "lnd" / cache_key()


def build_log(cache: Path) -> Path:
    """Where the last build's full output is kept (named in the error when a build fails)."""
    return cache / "lnd" / f"build-{cache_key()}.log"


_TOOLCHAIN = re.compile(r"^go: downloading (go\d[\w.]*) \(")
_MODULE = re.compile(r"^go: downloading \S+ \S+$")
_PACKAGE = re.compile(r"^[A-Za-z0-9_.~+-]+(/[A-Za-z0-9_.~+-]+)*$")  # `go build -v` names each package it compiles


@dataclass
class BuildProgress:
    """What ``go build -v`` is doing, read from its output one line at a time: fetching the Go
    toolchain, downloading modules (N so far), then compiling (N packages so far)."""

    phase: str = "starting"
    toolchain: str | None = None
    modules: int = 0
    packages: int = 0
    other: list[str] = field(default_factory=list)  # everything else: errors and go's notes

    def feed(self, line: str) -> bool:
        """Account for one line; True when it starts a new phase."""
        line = line.rstrip()
        before = self.phase
        if m := _TOOLCHAIN.match(line):
            self.phase, self.toolchain = "toolchain", m.group(1)
        elif _MODULE.match(line):
            self.phase, self.modules = "downloading", self.modules + 1
        elif _PACKAGE.match(line):
            self.phase, self.packages = "compiling", self.packages + 1
        elif line:
            self.other.append(line)
        return self.phase != before

    def describe(self) -> str:
        if self.phase == "toolchain":
            return f"downloading the Go toolchain {self.toolchain}"
        if self.phase == "downloading":
            return f"downloading modules: {self.modules}"
        if self.phase == "compiling":
            return f"compiling: {self.packages} packages"
        return "starting go build"


def installed(cache: Path) -> dict[str, Path] | None:
    home = _home(cache)
    paths = {"lnd": home / "lnd", "lncli": home / "lncli"}
    return paths if all(p.is_file() for p in paths.values()) else None


def install(cache: Path, progress: Progress, *, force: bool = False,
            status: Progress | None = None) -> dict[str, Path]:
    """Build lnd and lncli into the cache. ``progress`` gets one line per phase; ``status``, if
    given, the running counts (modules downloaded, packages compiled) for a live display. The
    full output goes to ``build_log(cache)``, which a failure names."""
    if not force and (done := installed(cache)):
        progress(f"lnd: cached in {_home(cache)}")
        return done
    go = which("go")
    if not go:
        raise ProvisionError(
            "go not found: lnd is built from the Go module proxy (Go >= 1.21 fetches the "
            "toolchain lnd needs). Install Go, or set LND and LNCLI to your own lnd build "
            "(with the invoicesrpc, routerrpc, walletrpc, signrpc, chainrpc and peersrpc tags)."
        )
    home = _home(cache)
    home.parent.mkdir(parents=True, exist_ok=True)
    log_path = build_log(cache)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "auto"}
    with tempfile.TemporaryDirectory(dir=home.parent, prefix="build-") as tmp:
        work = Path(tmp) / "mod"
        shutil.copytree(MODULE_DIR, work)
        out_dir = Path(tmp) / "out"
        out_dir.mkdir()
        cmd = [go, "build", "-v", "-trimpath", "-tags", " ".join(LND_BUILD_TAGS), "-o", str(out_dir) + "/",
               "github.com/lightningnetwork/lnd/cmd/lnd", "github.com/lightningnetwork/lnd/cmd/lncli"]
        progress(f"lnd: building {LND_VERSION} with tags {','.join(LND_BUILD_TAGS)} (minutes on first run; "
                 f"full log in {log_path})")
        state = BuildProgress()
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(" ".join(cmd) + "\n")
            code = run_build(cmd, work, env, log, state, "lnd", progress, status)
        if code != 0:
            tail = "\n".join(state.other[-15:])
            raise ProvisionError(f"building lnd {LND_VERSION} failed (go build exit {code}; full log: "
                                 f"{log_path}):\n{tail}")
        shutil.rmtree(home, ignore_errors=True)
        out_dir.rename(home)
    progress(f"lnd: installed {LND_VERSION} in {home} ({state.modules} modules downloaded, "
             f"{state.packages} packages compiled)")
    return installed(cache)  # type: ignore[return-value]
