"""The cluster's settings, read from the environment in exactly one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


BACKENDS = ("process", "docker")
IMAGE_SOURCES = ("local", "public")


class ConfigError(ValueError):
    """Raised when an environment variable holds a value we cannot use."""


@dataclass(frozen=True)
class ClusterEnv:
    cache_dir: Path
    runs_dir: Path
    timeout_factor: float
    bitcoind: Path | None
    bitcoin_cli: Path | None
    lnd: Path | None
    lncli: Path | None
    backend: str = "process"
    docker_host: str | None = None
    images: str = "local"

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> "ClusterEnv":
        e = os.environ if environ is None else environ
        xdg = e.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache = Path(e.get("ESCROWLAB_CACHE") or Path(xdg) / "escrowlab")
        runs = Path(e.get("ESCROWLAB_RUNS") or Path.cwd() / "runs")
        raw_factor = e.get("ESCROWLAB_TIMEOUT_FACTOR", "1")
        try:
            factor = float(raw_factor)
        except ValueError:
            raise ConfigError(f"ESCROWLAB_TIMEOUT_FACTOR must be a number, got {raw_factor!r}") from None
        if factor <= 0:
            raise ConfigError(f"ESCROWLAB_TIMEOUT_FACTOR must be positive, got {factor}")

        def binary(name: str) -> Path | None:
            value = e.get(name)
            if not value:
                return None
            path = Path(value).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise ConfigError(f"{name}={value} is not an executable file")
            return path

        backend = e.get("ESCROWLAB_BACKEND") or "process"
        if backend not in BACKENDS:
            raise ConfigError(f"ESCROWLAB_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
        images = e.get("ESCROWLAB_DOCKER_IMAGES") or "local"
        if images not in IMAGE_SOURCES:
            raise ConfigError(f"ESCROWLAB_DOCKER_IMAGES must be one of {', '.join(IMAGE_SOURCES)}, got {images!r}")
        # DOCKER_HOST wins; else the private engine `.ci/dockerd start` runs, if it does.
        private = cache / "dockerd" / "docker.sock"
        docker_host = e.get("DOCKER_HOST") or (f"unix://{private}" if private.is_socket() else None)

        return cls(
            cache_dir=cache,
            runs_dir=runs,
            timeout_factor=factor,
            bitcoind=binary("BITCOIND"),
            bitcoin_cli=binary("BITCOIN_CLI"),
            lnd=binary("LND"),
            lncli=binary("LNCLI"),
            backend=backend,
            docker_host=docker_host,
            images=images,
        )
