"""Where node binaries come from: user overrides first, then the cache."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..env import ClusterEnv
from . import bitcoind as bitcoind_provision
from . import lnd as lnd_provision
from .errors import ProvisionError

Progress = Callable[[str], None]

_HINT = (
    "Run `escrowlab nodes install`, or point BITCOIND/BITCOIN_CLI and LND/LNCLI "
    "at binaries of your own (Bitcoin Core >= 25, lnd built with invoicesrpc)."
)


class MissingBinaries(ProvisionError):
    """Raised when a cluster is asked for but some node binary is not installed."""


@dataclass(frozen=True)
class Binaries:
    bitcoind: Path
    bitcoin_cli: Path
    lnd: Path
    lncli: Path


def _cached(env: ClusterEnv) -> dict[str, Path | None]:
    btc = bitcoind_provision.installed(env.cache_dir)
    ln = lnd_provision.installed(env.cache_dir)
    return {
        "bitcoind": env.bitcoind or (btc and btc["bitcoind"]),
        "bitcoin_cli": env.bitcoin_cli or (btc and btc["bitcoin_cli"]),
        "lnd": env.lnd or (ln and ln["lnd"]),
        "lncli": env.lncli or (ln and ln["lncli"]),
    }


def resolve(env: ClusterEnv) -> Binaries:
    found = _cached(env)
    missing = [k for k, v in found.items() if v is None]
    if missing:
        raise MissingBinaries(f"node binaries not installed: {', '.join(missing)}. {_HINT}")
    return Binaries(**found)  # type: ignore[arg-type]


def install(env: ClusterEnv, progress: Progress = lambda _m: None, *, force: bool = False) -> Binaries:
    """Provision whatever the user has not brought; idempotent and cached."""
    if env.bitcoind is None or env.bitcoin_cli is None:
        bitcoind_provision.install(env.cache_dir, progress, force=force)
    else:
        progress("bitcoind: using BITCOIND/BITCOIN_CLI from the environment")
    if env.lnd is None or env.lncli is None:
        # a CLI progress display has .status: live counts (modules, packages) without a line each
        lnd_provision.install(env.cache_dir, progress, force=force, status=getattr(progress, "status", None))
    else:
        progress("lnd: using LND/LNCLI from the environment")
    return resolve(env)


def _version(path: Path | None, *args: str) -> str | None:
    if path is None:
        return None
    try:
        out = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unrunnable: {exc}"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else f"exit {out.returncode}"


def doctor(env: ClusterEnv) -> dict:
    """What is installed, where, and which version it reports."""
    found = _cached(env)
    sources = {
        "bitcoind": "BITCOIND" if env.bitcoind else "cache",
        "bitcoin_cli": "BITCOIN_CLI" if env.bitcoin_cli else "cache",
        "lnd": "LND" if env.lnd else "cache",
        "lncli": "LNCLI" if env.lncli else "cache",
    }
    version_args = {"bitcoind": ("--version",), "bitcoin_cli": ("--version",),
                    "lnd": ("--version",), "lncli": ("--version",)}
    return {
        "cache_dir": str(env.cache_dir),
        "tools": {t: bitcoind_provision.which(t) or lnd_provision.which(t)
                  for t in ("apt-get", "dpkg", "go")},
        "binaries": {
            name: {
                "path": str(path) if path else None,
                "source": sources[name] if path else None,
                "version": _version(path, *version_args[name]),
            }
            for name, path in found.items()
        },
        "ok": all(found.values()),
        "hint": None if all(found.values()) else _HINT,
    }
