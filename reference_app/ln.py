"""The hub's Lightning node, as the app sees it: found through the cluster's
state file (or explicit settings), reached over LND's gRPC API (one channel; invoice
watches and payments wait on its loop, not in threads). Users' own nodes, which they
bind by REST URL, are reached over REST."""

from __future__ import annotations

import json
from pathlib import Path

from regtest_cluster.nodes.lnd import LndError, LndRest
from regtest_cluster.nodes.lnd_grpc import LndGrpc

from .config import Settings

__all__ = ["LndError", "LndGrpc", "LndRest", "hub_client", "user_node_client", "NodeConfigError"]


class NodeConfigError(RuntimeError):
    """Raised at start-up when the hub node cannot be located; says how to fix it."""


def hub_client(settings: Settings) -> LndGrpc:
    if settings.cluster_state_file:
        path = Path(settings.cluster_state_file)
        if not path.is_file():
            raise NodeConfigError(f"no cluster state file at {path}: start one with "
                                  "`escrowlab cluster up --detach`")
        state = json.loads(path.read_text())
        node = state["nodes"].get(settings.hub_node)
        if node is None:
            raise NodeConfigError(f"the cluster in {path} has no node named {settings.hub_node!r} "
                                  f"(nodes: {', '.join(state['nodes'])})")
        macaroon = Path(node["macaroon"]).read_bytes().hex()
        return LndGrpc(settings.hub_node, node["grpc_host"], macaroon, Path(node["tls_cert"]))
    if settings.lnd_grpc_host or settings.lnd_rest_url or settings.lnd_macaroon_path:
        for var, file in (("ESCROWLAB_LND_MACAROON_PATH", settings.lnd_macaroon_path),
                          ("ESCROWLAB_LND_TLS_CERT_PATH", settings.lnd_tls_cert_path)):
            if not file or not Path(file).is_file():
                raise NodeConfigError(f"{var}: no file at {file}" if file else f"{var} is not set")
        if not settings.lnd_grpc_host:
            raise NodeConfigError("ESCROWLAB_LND_GRPC_HOST is not set: the app reaches the hub over gRPC "
                                  "(lnd's rpclisten, e.g. 127.0.0.1:10009), not REST")
        return LndGrpc("hub", settings.lnd_grpc_host, Path(settings.lnd_macaroon_path).read_bytes().hex(),
                       Path(settings.lnd_tls_cert_path))
    raise NodeConfigError("the hub node is not configured: set ESCROWLAB_CLUSTER_STATE_FILE, or "
                          "ESCROWLAB_LND_GRPC_HOST, ESCROWLAB_LND_MACAROON_PATH and ESCROWLAB_LND_TLS_CERT_PATH")


def user_node_client(name: str, rest_url: str, macaroon_hex: str, tls_cert_pem: str) -> LndRest:
    """A client for a user's own node, with the credentials they bound (an invoice macaroon). The
    worker's pool of drive threads shares it: a connection for each thread (``LndRest``'s
    ``per_thread``)."""
    return LndRest(name, rest_url, macaroon_hex, tls_cert_pem, timeout=20, per_thread=True)


def chain_client(settings: Settings):
    """The app's bitcoind RPC (no wallet selected), or None where the app has none."""
    from regtest_cluster.nodes.bitcoind import BitcoinRpc

    if settings.cluster_state_file and Path(settings.cluster_state_file).is_file():
        b = json.loads(Path(settings.cluster_state_file).read_text())["bitcoind"]
        return BitcoinRpc(b["rpc_url"], b["rpc_user"], b["rpc_password"])
    if settings.bitcoind_rpc_url:
        return BitcoinRpc(settings.bitcoind_rpc_url, settings.bitcoind_rpc_user, settings.bitcoind_rpc_password)
    return None
