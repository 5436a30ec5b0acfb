"""bitcoind from Debian's unstable archive, run through its own extracted loader.

The machine's own configured Debian source is used (its URIs, with suite sid),
through a private apt state, so the host's apt setup is never changed and no
mirror host is written here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from ..versions import BITCOIN_DEBIAN_PACKAGES, BITCOIN_DEBIAN_SUITE
from .errors import ProvisionError

Progress = Callable[[str], None]

_ARCH = {  # dpkg architecture -> (multiarch triplet, loader name)
    "amd64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
    "arm64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1"),
}
_SOURCE_FILES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def which(tool: str) -> str | None:
    return shutil.which(tool)


def _home(cache: Path) -> Path:
    return cache / "bitcoind"


def installed(cache: Path) -> dict[str, Path] | None:
    marker = _home(cache) / "installed.json"
    if not marker.is_file():
        return None
    bin_dir = _home(cache) / "bin"
    paths = {"bitcoind": bin_dir / "bitcoind", "bitcoin_cli": bin_dir / "bitcoin-cli"}
    return paths if all(p.is_file() for p in paths.values()) else None


def debian_source(files: tuple[Path, ...] = _SOURCE_FILES) -> tuple[str, str | None]:
    """The machine's configured Debian archive URI and its keyring (not the security archive)."""
    entries: list[tuple[str, str | None, str]] = []  # (uri, signed_by, suites)
    for f in files:
        paths = sorted(f.glob("*.sources")) + sorted(f.glob("*.list")) if f.is_dir() else [f]
        for path in paths:
            if not path.is_file():
                continue
            text = path.read_text(errors="replace")
            if path.suffix == ".sources":
                for stanza in re.split(r"\n\s*\n", text):
                    fields = dict(
                        (m.group(1).lower(), m.group(2).strip())
                        for m in re.finditer(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M)
                    )
                    if "deb" in fields.get("types", "").split() and "uris" in fields:
                        for uri in fields["uris"].split():
                            entries.append((uri, fields.get("signed-by"), fields.get("suites", "")))
            else:
                for line in text.splitlines():
                    m = re.match(r"^\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)", line)
                    if m:
                        opts = dict(o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o)
                        entries.append((m.group(2), opts.get("signed-by"), m.group(3)))
    for uri, signed_by, suites in entries:
        if "security" in uri or "security" in suites:
            continue
        if any(re.fullmatch(r"(bookworm|trixie|forky|sid|stable|testing|unstable)(-updates)?", s)
               for s in suites.split()):
            return uri.rstrip("/"), signed_by
    raise ProvisionError(
        "no Debian archive is configured in /etc/apt/sources.list(.d); "
        "set BITCOIND and BITCOIN_CLI to your own Bitcoin Core (>= 25) binaries instead"
    )


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        raise ProvisionError(f"{cmd[0]} not found: needed to {what}") from None
    if out.returncode != 0:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-8:])
        raise ProvisionError(f"{what} failed ({' '.join(cmd[:2])} exit {out.returncode}):\n{tail}")
    return out.stdout


def install(cache: Path, progress: Progress, *, force: bool = False) -> dict[str, Path]:
    if not force and (done := installed(cache)):
        progress(f"bitcoind: cached in {_home(cache)}")
        return done
    for tool in ("apt-get", "dpkg"):
        if not which(tool):
            raise ProvisionError(
                f"{tool} not found: bitcoind is provisioned from Debian's archive. "
                "Set BITCOIND and BITCOIN_CLI to your own Bitcoin Core (>= 25) binaries instead."
            )
    arch = _run(["dpkg", "--print-architecture"], "read the machine architecture").strip()
    if arch not in _ARCH:
        raise ProvisionError(f"architecture {arch} is not supported; set BITCOIND and BITCOIN_CLI")
    triplet, loader = _ARCH[arch]
    uri, signed_by = debian_source()
    home = _home(cache)
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home, prefix="apt-") as tmp:
        state = Path(tmp)
        for sub in ("lists/partial", "cache/archives/partial", "debs"):
            (state / sub).mkdir(parents=True)
        opt = f"[signed-by={signed_by}] " if signed_by else ""
        (state / "sources.list").write_text(f"deb {opt}{uri} {BITCOIN_DEBIAN_SUITE} main\n")
        apt = ["apt-get", "-q",
               "-o", f"Dir::Etc::SourceList={state / 'sources.list'}",
               "-o", "Dir::Etc::SourceParts=/dev/null",
               "-o", f"Dir::State::Lists={state / 'lists'}",
               "-o", f"Dir::Cache={state / 'cache'}",
               "-o", "Dir::State::status=/dev/null",
               "-o", f"APT::Architecture={arch}",
               "-o", "Debug::NoLocking=1",
               "-o", "APT::Sandbox::User=root"]
        progress(f"bitcoind: reading the {BITCOIN_DEBIAN_SUITE} package index from the configured Debian source")
        _run([*apt, "update"], f"apt-get update for suite {BITCOIN_DEBIAN_SUITE}")
        progress(f"bitcoind: downloading {len(BITCOIN_DEBIAN_PACKAGES)} packages")
        _run([*apt, "download", *BITCOIN_DEBIAN_PACKAGES], "apt-get download", cwd=state / "debs")
        root = home / "root.new"
        shutil.rmtree(root, ignore_errors=True)
        versions = {}
        for deb in sorted((state / "debs").glob("*.deb")):
            name, version = deb.name.split("_")[:2]
            versions[name] = version.replace("%3a", ":")
            _run(["dpkg", "-x", str(deb), str(root)], f"extract {deb.name}")
    final = home / "root"
    shutil.rmtree(final, ignore_errors=True)
    root.rename(final)
    bin_dir = home / "bin"
    bin_dir.mkdir(exist_ok=True)
    libdir = final / "usr/lib" / triplet
    paths = {}
    for key, exe in (("bitcoind", "bitcoind"), ("bitcoin_cli", "bitcoin-cli")):
        wrapper = bin_dir / exe
        wrapper.write_text(
            "#!/bin/sh\n# generated by escrowlab: run through the extracted loader and libraries\n"
            f'exec "{libdir / loader}" --library-path "{libdir}" "{final / "usr/bin" / exe}" "$@"\n'
        )
        wrapper.chmod(0o755)
        paths[key] = wrapper
    version_line = _run([str(paths["bitcoind"]), "--version"], "run the extracted bitcoind").splitlines()[0]
    (home / "installed.json").write_text(json.dumps(
        {"version": version_line, "suite": BITCOIN_DEBIAN_SUITE, "packages": versions}, indent=2))
    progress(f"bitcoind: installed {version_line}")
    return paths
