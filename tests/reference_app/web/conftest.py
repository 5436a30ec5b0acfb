"""The app served over real HTTP on 127.0.0.1 (Chromium needs a socket), on the shared
cluster with custodial mode, its state file, and a runs folder holding a report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import httpx
import pytest

from reference_app.main import build_context, create_app
from reference_app.serve import ServedApp
from reference_app.services.modes.custodial import wallet_name
from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError
from regtest_cluster.state import write_state
from harness.actors import Party
from tests.reference_app.custodial_mode.conftest import CustodialMarket
from tests.reference_app.escrow.conftest import WINDOWS, hub_client
from tests.reference_app.conftest import make_settings


@dataclass
class ServedMarket(CustodialMarket):
    url: str = ""
    app: object = None

    @property
    def worker(self):
        return self.app.state.worker


@pytest.fixture
def served_market(cluster, tmp_path) -> Iterator[ServedMarket]:
    state_file = tmp_path / "cluster.json"
    write_state(state_file, cluster)
    settings = make_settings(tmp_path, cluster_state_file=state_file, **WINDOWS)
    ctx = build_context(settings, with_node=False)
    ctx.hub = hub_client(cluster.node("hub"))
    b = cluster.bitcoind
    ctx.chain = BitcoinRpc(b.rpc_url, b.rpc_user, b.rpc_password)
    app = create_app(ctx=ctx)
    try:
        with ServedApp(app) as served, httpx.Client(base_url=served.url, timeout=60) as http:
            admin = Party(http, "admin", ["admin"], email=settings.bootstrap_admin_email, password=settings.bootstrap_admin_password)
            admin.login()
            market = ServedMarket(http, ctx, cluster, admin, url=served.url, app=app)
            yield market
            try:
                ctx.chain.unloadwallet(wallet_name(settings))
            except RpcError:
                pass  # never made
    finally:
        ctx.hub.close()
        ctx.chain.close()
        ctx.db.dispose()
