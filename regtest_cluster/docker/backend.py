"""The docker backend: the same nodes and the same ``Cluster``, run as containers.

Per cluster: one bridge network; per node: a container on it with a named
volume for its chain and wallet data, a health check, and its folder in the run
folder bind-mounted at ``/node`` (log, TLS certificate, macaroons: the same
paths the process backend uses, so the state file, the app and lncli work
unchanged). Inside the network, daemons listen on fixed ports and find each
other by container name; every endpoint is published on 127.0.0.1 at the host
ports the cluster reserved.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Callable

from docker.types import Healthcheck, Mount

from ..cluster import ProcessBackend
from ..env import ClusterEnv
from ..nodes.bitcoind import BitcoinD, BitcoinDPorts
from ..nodes.ldk import LdkNode, LdkPorts
from ..nodes.lnd import LndNode, LndPorts
from ..provision import Binaries
from . import engine, images
from .daemon import ContainerDaemon

Progress = Callable[[str], None]
# Fixed ports inside each container's own network namespace.
BITCOIND_INSIDE = BitcoinDPorts(rpc=18443, p2p=18444, zmq_block=28332, zmq_tx=28333)
LND_INSIDE = LndPorts(rpc=10009, rest=8080, p2p=9735)
LDK_INSIDE = LdkPorts(api=3000, p2p=9735)
MACAROON_DIR = "/node/data/chain/bitcoin/regtest"  # where the process backend's lnd keeps them
SECOND_NS = 1_000_000_000


def _health(test: list[str]) -> Healthcheck:
    return Healthcheck(test=["CMD", *test], interval=5 * SECOND_NS, timeout=5 * SECOND_NS,
                       retries=3, start_period=30 * SECOND_NS)


class DockerBitcoinD(BitcoinD):
    bind_host = "0.0.0.0"
    rpc_allow = "0.0.0.0/0"  # the cluster's own network, and the host through the published port

    def __init__(self, backend: "DockerBackend", datadir: Path, ports: BitcoinDPorts, *,
                 rpc_password: str | None = None, daemon_factory=None) -> None:
        self.backend = backend
        self.container = backend.container_name("bitcoind")
        factory = daemon_factory or backend.daemon_factory(self.container_spec)
        super().__init__(Path(backend.images.bitcoind_bin), datadir, ports, daemon_factory=factory,
                         rpc_password=rpc_password)

    def listen_ports(self) -> BitcoinDPorts:
        return BITCOIND_INSIDE

    def dir_args(self) -> list[str]:
        return ["-datadir=/data", "-debuglogfile=/node/bitcoind.log"]

    def peer_endpoints(self) -> tuple[str, str, str]:
        p = BITCOIND_INSIDE
        return (f"{self.container}:{p.rpc}", f"tcp://{self.container}:{p.zmq_block}",
                f"tcp://{self.container}:{p.zmq_tx}")

    def health_cmd(self) -> list[str]:
        return [self.backend.images.bitcoin_cli_bin, "-regtest", f"-rpcport={BITCOIND_INSIDE.rpc}",
                f"-rpcuser={self.rpc_user}", f"-rpcpassword={self.rpc_password}", "getblockchaininfo"]

    def container_spec(self) -> dict:
        inside, host = BITCOIND_INSIDE, self.ports
        return self.backend.spec(self.container, "bitcoind", self.datadir, self.health_cmd(), {
            inside.rpc: host.rpc, inside.p2p: host.p2p, inside.zmq_block: host.zmq_block, inside.zmq_tx: host.zmq_tx})


class DockerLndNode(LndNode):
    bind_host = "0.0.0.0"

    def __init__(self, backend: "DockerBackend", name: str, role: str, lnddir: Path, ports: LndPorts,
                 bitcoind: BitcoinD, *, daemon_factory=None, accept_keysend: bool = False) -> None:
        self.backend = backend
        self.container = backend.container_name(f"lnd-{name}")
        factory = daemon_factory or backend.daemon_factory(self.container_spec)
        super().__init__(name, role, Path(backend.images.lnd_bin), lnddir, ports, bitcoind,
                         daemon_factory=factory, accept_keysend=accept_keysend)

    @property
    def log_file(self) -> Path:
        return self.lnddir / "logs/bitcoin/regtest/lnd.log"  # lnd's own log, under --lnddir=/node

    def listen_ports(self) -> LndPorts:
        return LND_INSIDE

    def dir_args(self) -> list[str]:
        # Wallet, channel and graph databases in the volume; certificate, macaroons and
        # logs in the node folder, where the process backend has them too.
        return ["--lnddir=/node", "--datadir=/data",
                f"--adminmacaroonpath={MACAROON_DIR}/admin.macaroon",
                f"--readonlymacaroonpath={MACAROON_DIR}/readonly.macaroon",
                f"--invoicemacaroonpath={MACAROON_DIR}/invoice.macaroon"]

    def address_args(self) -> list[str]:
        return [f"--tlsextradomain={self.container}", "--tlsextraip=127.0.0.1"]

    @property
    def p2p_host(self) -> str:
        return f"{self.container}:{LND_INSIDE.p2p}"  # peers are on the cluster's network

    def start(self, timeout: float = 90.0) -> None:
        (self.lnddir / "data/chain/bitcoin/regtest").mkdir(parents=True, exist_ok=True)
        super().start(timeout)

    def health_cmd(self) -> list[str]:
        return [self.backend.images.lncli_bin, "--network=regtest", "--lnddir=/node",
                f"--macaroonpath={MACAROON_DIR}/readonly.macaroon", f"--rpcserver=localhost:{LND_INSIDE.rpc}",
                "getinfo"]

    def container_spec(self) -> dict:
        inside, host = LND_INSIDE, self.ports
        (self.lnddir / "data/chain/bitcoin/regtest").mkdir(parents=True, exist_ok=True)
        return self.backend.spec(self.container, f"lnd-{self.name}", self.lnddir, self.health_cmd(),
                                 {inside.rpc: host.rpc, inside.rest: host.rest, inside.p2p: host.p2p})


class DockerLdkNode(LdkNode):
    """ldkd in a container: its folder is ``/node`` (data and log), peers reach it by container
    name, and its API listens on the container's own interfaces, published on the host's loopback."""

    bind_host = "0.0.0.0"

    def __init__(self, backend: "DockerBackend", name: str, role: str, datadir: Path, ports: LdkPorts,
                 bitcoind: BitcoinD, *, daemon_factory=None) -> None:
        self.backend = backend
        self.container = backend.container_name(f"ldk-{name}")
        factory = daemon_factory or backend.daemon_factory(self.container_spec)
        super().__init__(name, role, Path(backend.images.ldkd_bin), datadir, ports, bitcoind, daemon_factory=factory)

    def dir_args(self) -> list[str]:
        return ["--datadir=/node"]

    def address_args(self) -> list[str]:
        p = LDK_INSIDE
        return [f"--listen={self.bind_host}:{p.p2p}", f"--announce={self.container}:{p.p2p}",
                f"--api-host={self.bind_host}", f"--api-port={p.api}"]

    @property
    def p2p_host(self) -> str:
        return f"{self.container}:{LDK_INSIDE.p2p}"  # peers are on the cluster's network

    def container_spec(self) -> dict:
        # No health check: ldkd has no CLI to ask, and wait_ready asks its API through the published port.
        return self.backend.spec(self.container, f"ldk-{self.name}", self.datadir, None,
                                 {LDK_INSIDE.api: self.ports.api, LDK_INSIDE.p2p: self.ports.p2p},
                                 image=self.backend.images.ldk)


class DockerBackend(ProcessBackend):
    """Builds a cluster's nodes as containers; ``release`` removes everything labelled with its id.

    Faults: ``docker pause``/``unpause`` freeze a node, ``docker stop``/``kill`` end it (through
    ``ContainerDaemon``). A partition of two nodes is refused (see ``partition``).
    """

    name = "docker"
    relays_p2p = False  # peers reach each other by container name on the cluster's network

    def __init__(self, docker, image_set: images.ImageSet, cluster_id: str, docker_host: str | None) -> None:
        self.docker = docker
        self.images = image_set
        self.cluster_id = cluster_id
        self.docker_host = docker_host
        self.network = f"escrowlab-{cluster_id}"
        self.user = images.host_user() if image_set.source == "local" else None

    @classmethod
    def create(cls, env: ClusterEnv, label: str, image_source: str | None = None,
               progress: Progress = lambda _m: None) -> "DockerBackend":
        """A backend for one new cluster: the engine must answer and the images exist (or get built)."""
        client = engine.client(env)
        image_set = images.ensure(client, env, image_source or env.images, progress)
        return cls(client, image_set, f"{label}-{secrets.token_hex(3)}", env.docker_host)

    def sibling(self, label: str) -> "DockerBackend":
        """A backend for another cluster, on the same engine and images."""
        return DockerBackend(self.docker, self.images, f"{label}-{secrets.token_hex(3)}", self.docker_host)

    @classmethod
    def from_record(cls, record: dict) -> "DockerBackend":
        env = ClusterEnv.from_environ()
        if record.get("docker_host"):
            env = ClusterEnv(**{**vars(env), "docker_host": record["docker_host"]})
        img = record.get("images") or {}
        return cls(engine.client(env), images.ImageSet(**img), record["cluster_id"], env.docker_host)

    # --- the ProcessBackend interface
    def bitcoind(self, binaries: Binaries, datadir: Path, ports: BitcoinDPorts, *,
                 rpc_password: str | None = None, daemon_factory=None) -> BitcoinD:
        return DockerBitcoinD(self, datadir, ports, rpc_password=rpc_password, daemon_factory=daemon_factory)

    def lnd(self, name: str, role: str, binaries: Binaries, lnddir: Path, ports: LndPorts,
            bitcoind: BitcoinD, *, daemon_factory=None, accept_keysend: bool = False) -> LndNode:
        return DockerLndNode(self, name, role, lnddir, ports, bitcoind, daemon_factory=daemon_factory,
                             accept_keysend=accept_keysend)

    def ldk(self, name: str, role: str, ldkd: Path, datadir: Path, ports: LdkPorts, bitcoind: BitcoinD, *,
            daemon_factory=None) -> LdkNode:
        if daemon_factory is None:  # a new node (an adopted one's container exists): its image first
            images.ensure_ldk(self.docker, ClusterEnv.from_environ(), self.images)
        return DockerLdkNode(self, name, role, datadir, ports, bitcoind, daemon_factory=daemon_factory)

    def prepare(self, cluster=None) -> None:
        self.docker.networks.create(self.network, driver="bridge", labels=self.labels())

    def release(self) -> None:
        engine.remove_all(self.docker, self.cluster_id)

    def leftovers(self) -> list[str]:
        return [name for names in engine.leftovers(self.docker, self.cluster_id).values() for name in names]

    def record(self) -> dict:
        return {"cluster_id": self.cluster_id, "docker_host": self.docker_host, "network": self.network,
                "images": vars(self.images)}

    def node_record(self, daemon) -> dict:
        return {"container": daemon.container_name}

    def adopt(self, entry: dict, run_dir: Path):
        def factory(name, argv, log, cwd):
            return ContainerDaemon.adopt(name, entry["container"], log, cwd, self.docker)
        return factory

    # --- faults (the ``regtest_cluster.faults.Backend`` protocol)
    def _container(self, daemon):
        container = getattr(daemon, "_container", None)
        if container is None:
            from ..cluster import ClusterError

            raise ClusterError(f"{daemon.name} has no container")
        return container

    def pause(self, daemon) -> None:
        self._container(daemon).pause()

    def resume(self, daemon) -> None:
        self._container(daemon).unpause()

    def is_paused(self, daemon) -> bool:
        container = getattr(daemon, "_container", None)
        if container is None:
            return False
        from docker.errors import NotFound

        try:
            container.reload()
        except NotFound:
            return False
        return container.status == "paused"

    def partition(self, cluster, a, b) -> None:
        """Not on this backend. Every node shares the cluster's bridge network with bitcoind and the
        host's published ports, and the engine runs without iptables (``--iptables=false``), so
        nothing can drop the traffic of one pair: ``docker network disconnect`` would cut a node
        from bitcoind, its REST port and every peer, and separate networks still route through the
        host. The process backend partitions pairs (through its relay)."""
        from ..cluster import ClusterError

        raise ClusterError("the docker backend has no pair partitions: its nodes share one bridge network and "
                           "the engine runs without iptables, so one pair's traffic cannot be cut "
                           "(use the process backend for partitions)")

    def heal(self, cluster, a, b) -> None:
        from ..cluster import ClusterError

        raise ClusterError(f"{a.name} and {b.name} are not partitioned (the docker backend has no partitions)")

    def partitions(self, cluster) -> list[tuple[str, str]]:
        return []

    def heal_partitions(self, cluster) -> list[tuple[str, str]]:
        return []

    # --- containers
    def labels(self, node: str | None = None) -> dict[str, str]:
        out = {engine.LABEL: self.cluster_id}
        if node:
            out[engine.ROLE_LABEL] = node
        return out

    def container_name(self, node: str) -> str:
        return f"escrowlab-{self.cluster_id}-{node}"

    def daemon_factory(self, spec: Callable[[], dict]):
        def factory(name, argv, log, cwd):
            return ContainerDaemon(name, argv, log, cwd, docker=self.docker, spec=spec)
        return factory

    def spec(self, container: str, node: str, node_dir: Path, health: list[str] | None, ports: dict[int, int],
             image: str | None = None) -> dict:
        volume = f"{container}-data"
        labels = self.labels(node)
        self.docker.volumes.create(volume, labels=labels)  # labelled, so release finds it
        node_dir.mkdir(parents=True, exist_ok=True)
        return {
            "image": image or (self.images.bitcoind if node == "bitcoind" else self.images.lnd),
            "name": container, "hostname": node, "labels": labels, "network": self.network,
            "user": self.user, "ports": ports, **({"healthcheck": _health(health)} if health else {}),
            "mounts": [Mount("/data", volume, type="volume"),
                       Mount("/node", str(node_dir.resolve()), type="bind")],
        }
