"""Reaching the Docker engine, and finding everything one cluster made.

Every container, network and volume of a cluster carries the label
``escrowlab.cluster=<id>``, so tear-down (and a test) can find all of it
whatever went wrong on the way.
"""

from __future__ import annotations

from ..cluster import ClusterError
from ..env import ClusterEnv

LABEL = "escrowlab.cluster"
ROLE_LABEL = "escrowlab.node"


class DockerUnavailable(ClusterError):
    """Raised when the docker backend is chosen but no Docker engine answers."""


_HOW_TO_START = (
    "start one (e.g. `sudo systemctl start docker`, or `eval \"$(.ci/dockerd start)\"` for a private "
    "engine with vfs storage), point DOCKER_HOST at it, or use `--backend process`"
)


def client(env: ClusterEnv):
    """A Docker SDK client for the engine at ``env.docker_host`` (DOCKER_HOST or the default socket)."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # the SDK comes with the [docker] extra, not the core
        raise DockerUnavailable("the docker backend needs the [docker] extra: pip install 'escrowlab[docker]'") from None
    where = env.docker_host or "the default socket (/var/run/docker.sock)"
    try:
        c = docker.DockerClient(base_url=env.docker_host) if env.docker_host else docker.from_env()
        c.ping()
    except DockerException as exc:
        raise DockerUnavailable(f"no Docker engine answers at {where} ({_short(exc)}): {_HOW_TO_START}") from None
    return c


def engine_reachable(env: ClusterEnv) -> str | None:
    """None when an engine answers, else the reason it does not (for skips and doctor)."""
    try:
        client(env).close()
    except DockerUnavailable as exc:
        return str(exc)
    return None


def leftovers(c, cluster_id: str) -> dict[str, list[str]]:
    """Names of containers, networks and volumes still labelled with ``cluster_id``."""
    flt = {"label": f"{LABEL}={cluster_id}"}
    return {
        "containers": [x.name for x in c.containers.list(all=True, filters=flt)],
        "networks": [x.name for x in c.networks.list(filters=flt)],
        "volumes": [x.name for x in c.volumes.list(filters=flt)],
    }


def remove_all(c, cluster_id: str) -> None:
    """Remove every container, then network, then volume of one cluster (containers first:
    a network or volume in use cannot go)."""
    from docker.errors import NotFound

    flt = {"label": f"{LABEL}={cluster_id}"}
    for container in c.containers.list(all=True, filters=flt):
        try:
            container.remove(force=True, v=True)
        except NotFound:
            pass
    for network in c.networks.list(filters=flt):
        try:
            network.remove()
        except NotFound:
            pass
    for volume in c.volumes.list(filters=flt):
        try:
            volume.remove(force=True)
        except NotFound:
            pass


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
