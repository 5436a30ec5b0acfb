"""A topology as a docker-compose.yml or as Kubernetes manifests, to run without escrowlab.

The node command lines come from the docker backend's own node classes (no
second copy of the flags); the bring-up plan comes from ``setup_script``. In
Kubernetes, credentials are Secrets: bitcoind's RPC password, and a TLS key
pair per LND generated here (so the setup Job can verify each node). The setup
Job cannot read macaroons out of the nodes' volumes, so there LND runs with
``--no-macaroons``: a regtest network inside its own namespace.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import secrets
from pathlib import Path

import yaml

from ..cluster import ClusterError
from ..env import ClusterEnv
from ..nodes.bitcoind import BitcoinDPorts
from ..nodes.lnd import LndPorts
from ..topology import Topology
from ..versions import PUBLIC_BITCOIND_IMAGE, PUBLIC_LND_IMAGE
from . import images as image_mod
from .backend import BITCOIND_INSIDE, LND_INSIDE, MACAROON_DIR, DockerBitcoinD, DockerLndNode
from .daemon import ContainerDaemon
from .setup_script import WORK, steps

# Setup steps need a shell next to bitcoin-cli or lncli: the public images have one.
TOOL_IMAGES = {"bitcoin": PUBLIC_BITCOIND_IMAGE, "lnd": PUBLIC_LND_IMAGE}


class _Names:
    """What the docker node classes ask of a backend, answered for a file instead of an engine:
    services are named ``bitcoind`` and ``lnd-<name>``, and nothing is ever started."""

    def __init__(self, image_set: image_mod.ImageSet) -> None:
        self.images = image_set

    def container_name(self, node: str) -> str:
        return node

    def daemon_factory(self, spec):
        return lambda name, argv, log, cwd: ContainerDaemon(name, argv, log, cwd, docker=None, spec=spec)


def image_names(env: ClusterEnv, source: str | None) -> image_mod.ImageSet:
    """Export defaults to public images: a file meant to run elsewhere cannot count on local ones.
    Local ones (for this machine's engine) are built first if missing, the tools image included."""
    if source != "local":
        return image_mod.public_tags()
    from . import engine

    image_mod.local_tags(env)  # own binaries, or none provisioned: said before any engine is asked
    return image_mod.ensure(engine.client(env), env, "local", tools=True)


def _tool_image(image_set: image_mod.ImageSet, tool: str) -> str:
    return image_set.tools or TOOL_IMAGES[tool]


def _nodes(topology: Topology, image_set, rpc_password: str, no_macaroons: bool = False):
    ldk = [n.name for n in topology.nodes if n.impl != "lnd"]
    if ldk:  # not exported as LND nodes they are not
        raise ClusterError(f"topology {topology.name!r} has LDK nodes ({', '.join(ldk)}): exports hold "
                           "LND nodes only for now; run it with `escrowlab cluster up --backend docker`")
    names = _Names(image_set)
    bitcoind = DockerBitcoinD(names, Path("/node"), BITCOIND_INSIDE, rpc_password=rpc_password)
    lnds = []
    for spec in topology.nodes:
        node = DockerLndNode(names, spec.name, spec.role, Path("/node"), LND_INSIDE, bitcoind,
                             accept_keysend=topology.keysend(spec.name))
        if no_macaroons:
            node.extra_args = ("--no-macaroons",)
        lnds.append(node)
    return bitcoind, lnds


# --- docker compose

def compose(topology: Topology, image_set: image_mod.ImageSet) -> dict:
    pw = secrets.token_hex(16)
    bitcoind, lnds = _nodes(topology, image_set, pw)
    health = {"interval": "5s", "timeout": "5s", "retries": 3, "start_period": "30s"}
    # Host ports: the topology's base_port onwards, else the usual regtest defaults.
    base = topology.base_port
    host = BitcoinDPorts(*range(base, base + 4)) if base else BitcoinDPorts(18443, 18444, 28332, 28333)
    services: dict = {"bitcoind": {
        "image": image_set.bitcoind, "entrypoint": [bitcoind.argv()[0]], "command": bitcoind.argv()[1:],
        "volumes": ["bitcoind-data:/data", "bitcoind-node:/node"],
        "ports": [f"127.0.0.1:{h}:{i}" for h, i in zip(vars(host).values(), vars(BITCOIND_INSIDE).values())],
        "healthcheck": {"test": ["CMD", *bitcoind.health_cmd()], **health},
    }}
    volumes: dict = {"bitcoind-data": {}, "bitcoind-node": {}, "setup-work": {}}
    for i, node in enumerate(lnds):
        svc = f"lnd-{node.name}"
        ports = LndPorts(*range(base + 4 + 3 * i, base + 7 + 3 * i)) if base else \
            LndPorts(rpc=10009 + i, rest=8080 + i, p2p=9735 + i)
        services[svc] = {
            "image": image_set.lnd, "entrypoint": [node.argv()[0]], "command": node.argv()[1:],
            "volumes": [f"{svc}-data:/data", f"{svc}-node:/node"],
            "ports": [f"127.0.0.1:{h}:{i}" for h, i in zip(vars(ports).values(), vars(LND_INSIDE).values())
                      if h is not None and i is not None],  # a container's lnd listens where peers reach it
            "depends_on": {"bitcoind": {"condition": "service_healthy"}},
            "healthcheck": {"test": ["CMD", *node.health_cmd()], **health},
        }
        volumes[f"{svc}-data"], volumes[f"{svc}-node"] = {}, {}
    flags = {n.name: f"--tlscertpath=/lnd-{n.name}/tls.cert "
                     f"--macaroonpath=/lnd-{n.name}/{MACAROON_DIR.removeprefix('/node/')}/admin.macaroon"
             for n in topology.nodes}
    previous = None
    for k, step in enumerate(steps(topology, pw, flags), 1):
        name = f"setup-{k}-{step.name}"
        mounts = [f"setup-work:{WORK}"]
        if step.tool == "lnd":
            mounts += [f"lnd-{n.name}-node:/lnd-{n.name}:ro" for n in topology.nodes]
        after = {previous: {"condition": "service_completed_successfully"}} if previous else \
            {"bitcoind": {"condition": "service_healthy"}}
        if step.tool == "lnd":
            after.update({f"lnd-{n.name}": {"condition": "service_healthy"} for n in topology.nodes})
        services[name] = {"image": _tool_image(image_set, step.tool), "entrypoint": ["sh", "-c"],
                          "command": [step.script.replace("$", "$$")],  # compose would interpolate $
                          "volumes": mounts, "depends_on": after, "restart": "no"}
        previous = name
    return {"services": services, "volumes": volumes}


def compose_yaml(topology: Topology, image_set: image_mod.ImageSet) -> str:
    head = (f"# escrowlab topology {topology.name!r}: `docker compose -p escrowlab-{topology.name} up -d`,\n"
            "# then wait for the last setup service to exit 0 (`docker compose ps -a`).\n")
    return head + yaml.safe_dump(compose(topology, image_set), sort_keys=False, width=1000)


# --- Kubernetes

def _meta(name: str, namespace: str, app: str | None = None) -> dict:
    return {"name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "escrowlab", "app.kubernetes.io/name": app or name}}


def _tls_pair(service: str, namespace: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service)])
    dns = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
           f"{service}.{namespace}.svc.cluster.local", "localhost"]
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([*map(x509.DNSName, dns),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _statefulset(name: str, namespace: str, image: str, argv: list[str], probe: dict,
                 ports: dict[str, int], extra_mounts: list[dict], extra_volumes: list[dict]) -> dict:
    env = [{"name": "BITCOIND_RPC_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "bitcoind-rpc", "key": "rpcpassword"}}}]
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(name, namespace),
        "spec": {
            "serviceName": name, "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": name,
                                                 "app.kubernetes.io/part-of": "escrowlab"}},
                         "spec": {"containers": [{
                             "name": name, "image": image, "command": [argv[0]], "args": argv[1:], "env": env,
                             "ports": [{"name": k, "containerPort": v} for k, v in ports.items()],
                             "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                              {"name": "node", "mountPath": "/node"}, *extra_mounts],
                             "readinessProbe": {**probe, "periodSeconds": 5, "initialDelaySeconds": 3},
                         }], "volumes": [{"name": "node", "emptyDir": {}}, *extra_volumes]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}}],
        },
    }


def _service(name: str, namespace: str, ports: dict[str, int]) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace),
            "spec": {"selector": {"app.kubernetes.io/name": name},
                     "ports": [{"name": k, "port": v, "targetPort": v} for k, v in ports.items()]}}


def k8s(topology: Topology, image_set: image_mod.ImageSet, namespace: str = "escrowlab") -> list[dict]:
    pw = secrets.token_hex(16)
    # The pods read the password from the Secret: kubelet expands $(VAR) in args, sh expands $VAR.
    bitcoind, lnds = _nodes(topology, image_set, "$(BITCOIND_RPC_PASSWORD)", no_macaroons=True)
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    docs: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": _meta("bitcoind-rpc", namespace), "type": "Opaque",
         "stringData": {"rpcuser": bitcoind.rpc_user, "rpcpassword": pw}},
    ]
    bports = {"rpc": BITCOIND_INSIDE.rpc, "p2p": BITCOIND_INSIDE.p2p,
              "zmq-block": BITCOIND_INSIDE.zmq_block, "zmq-tx": BITCOIND_INSIDE.zmq_tx}
    docs += [_service("bitcoind", namespace, bports),
             # kubelet expands $(VAR) in args but not in probes: probe the RPC port instead.
             _statefulset("bitcoind", namespace, image_set.bitcoind, bitcoind.argv(),
                          {"tcpSocket": {"port": BITCOIND_INSIDE.rpc}}, bports, [], [])]
    lports = {"grpc": LND_INSIDE.rpc, "rest": LND_INSIDE.rest, "p2p": LND_INSIDE.p2p}
    for node in lnds:
        svc = f"lnd-{node.name}"
        cert, key = _tls_pair(svc, namespace)
        docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": _meta(f"{svc}-tls", namespace, svc),
                     "type": "kubernetes.io/tls", "data": {"tls.crt": b64(cert), "tls.key": b64(key)}})
        probe = {"exec": {"command": [image_set.lncli_bin, "--network=regtest", "--lnddir=/node", "--no-macaroons",
                                      f"--rpcserver=localhost:{LND_INSIDE.rpc}", "getinfo"]}}
        mounts = [{"name": "tls", "mountPath": "/node/tls.cert", "subPath": "tls.crt", "readOnly": True},
                  {"name": "tls", "mountPath": "/node/tls.key", "subPath": "tls.key", "readOnly": True}]
        docs += [_service(svc, namespace, lports),
                 _statefulset(svc, namespace, image_set.lnd, node.argv(), probe, lports, mounts,
                              [{"name": "tls", "secret": {"secretName": f"{svc}-tls"}}])]
    docs += _setup_job(topology, namespace, image_set)
    return docs


def _setup_job(topology: Topology, namespace: str, image_set: image_mod.ImageSet) -> list[dict]:
    flags = {n.name: f"--tlscertpath=/tls/lnd-{n.name}/tls.crt --no-macaroons" for n in topology.nodes}
    plan = steps(topology, "$BITCOIND_RPC_PASSWORD", flags)
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("escrowlab-setup", namespace),
              "data": {f"{k}-{s.name}.sh": s.script for k, s in enumerate(plan, 1)}}
    env = [{"name": "BITCOIND_RPC_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "bitcoind-rpc", "key": "rpcpassword"}}}]
    mounts = [{"name": "work", "mountPath": WORK}, {"name": "scripts", "mountPath": "/scripts"},
              *({"name": f"tls-{n.name}", "mountPath": f"/tls/lnd-{n.name}", "readOnly": True}
                for n in topology.nodes)]
    containers = [{"name": f"{k}-{s.name}", "image": _tool_image(image_set, s.tool), "command": ["sh", f"/scripts/{k}-{s.name}.sh"],
                   "env": env, "volumeMounts": mounts} for k, s in enumerate(plan, 1)]
    volumes = [{"name": "work", "emptyDir": {}}, {"name": "scripts", "configMap": {"name": "escrowlab-setup"}},
               *({"name": f"tls-{n.name}", "secret": {"secretName": f"lnd-{n.name}-tls"}} for n in topology.nodes)]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta("escrowlab-setup", namespace),
           "spec": {"backoffLimit": 4, "template": {
               "metadata": {"labels": {"app.kubernetes.io/name": "escrowlab-setup"}},
               "spec": {"restartPolicy": "OnFailure", "initContainers": containers[:-1],
                        "containers": containers[-1:], "volumes": volumes}}}}
    return [config, job]


def k8s_yaml(topology: Topology, image_set: image_mod.ImageSet, namespace: str = "escrowlab") -> str:
    head = (f"# escrowlab topology {topology.name!r}: `kubectl apply -f` this file, then\n"
            f"# `kubectl -n {namespace} wait --for=condition=complete job/escrowlab-setup --timeout=15m`.\n")
    return head + yaml.safe_dump_all(k8s(topology, image_set, namespace), sort_keys=False, width=1000)
