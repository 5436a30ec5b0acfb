"""lnd and lncli, built from the Go module proxy at the pinned release.

The tiny module in ``lndbuild/`` requires lnd and copies its replace
directives; building lnd's commands from it is what ``go install`` cannot do.
Binaries are cached by version and build tags.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from ..versions import LND_BUILD_TAGS, LND_VERSION
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


def installed(cache: Path) -> dict[str, Path] | None:
    home = _home(cache)
    paths = {"lnd": home / "lnd", "lncli": home / "lncli"}
    return paths if all(p.is_file() for p in paths.values()) else None


def install(cache: Path, progress: Progress, *, force: bool = False) -> dict[str, Path]:
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
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "auto"}
    with tempfile.TemporaryDirectory(dir=home.parent, prefix="build-") as tmp:
        work = Path(tmp) / "mod"
        shutil.copytree(MODULE_DIR, work)
        out_dir = Path(tmp) / "out"
        out_dir.mkdir()
        cmd = [go, "build", "-trimpath", "-tags", " ".join(LND_BUILD_TAGS), "-o", str(out_dir) + "/",
               "github.com/lightningnetwork/lnd/cmd/lnd", "github.com/lightningnetwork/lnd/cmd/lncli"]
        progress(f"lnd: building {LND_VERSION} with tags {','.join(LND_BUILD_TAGS)} (minutes on first run)")
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("go: downloading"):
                progress("lnd: " + line.strip())
        if proc.wait() != 0:
            tail = "\n".join(lines[-15:])
            raise ProvisionError(f"building lnd {LND_VERSION} failed (go build exit {proc.returncode}):\n{tail}")
        shutil.rmtree(home, ignore_errors=True)
        out_dir.rename(home)
    progress(f"lnd: installed {LND_VERSION} in {home}")
    return installed(cache)  # type: ignore[return-value]
