"""Fixtures for the custodial ledger: ``ledger_ctx`` is a database only (SQLite file in
tmp_path, or a fresh PostgreSQL database under ESCROWLAB_TEST_DB=postgres);
``custody`` adds the shared cluster's hub and a custody wallet of the test's own."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest
from cryptography.fernet import Fernet

from reference_app.context import AppContext
from reference_app.services.crypto import Box
from reference_app.services.custodial import custody_wallet, ledger
from reference_app.store.db import Database
from reference_app.store.models import Base, User
from regtest_cluster.cluster import Cluster
from regtest_cluster.nodes.bitcoind import BitcoinRpc
from regtest_cluster.nodes.lnd import LndNode, LndRest
from tests.reference_app.conftest import make_settings


def make_ctx(tmp_path, hub: LndRest | None = None) -> AppContext:
    settings = make_settings(tmp_path)
    db = Database(settings.database_url)
    Base.metadata.create_all(db.engine)
    return AppContext(settings=settings, db=db, box=Box([Fernet.generate_key().decode()]), hub=hub)


def reopen(ctx: AppContext) -> AppContext:
    """The same database through a new engine, as a restarted process would see it."""
    return AppContext(settings=ctx.settings, db=Database(ctx.settings.database_url), box=ctx.box, hub=ctx.hub)


def add_users(ctx: AppContext, n: int) -> list[int]:
    with ctx.db.session() as s:
        users = [User(email=f"u{uuid.uuid4().hex[:10]}@example.com", display_name=f"user {i}",
                      password_hash="x", roles="buyer,seller") for i in range(n)]
        s.add_all(users)
        s.flush()
        return [u.id for u in users]


def seed(ctx: AppContext, user_id: int, amount: int, key: str | None = None) -> None:
    """Give a user ledger money backed by the hot wallet (pure tests: no node involved)."""
    with ctx.db.session() as s:
        ledger.transfer(s, key or f"seed:{uuid.uuid4().hex}", "test_seed",
                        [(ledger.user_account(user_id, "available"), amount), (ledger.HOT_WALLET, -amount)])


def balances(ctx: AppContext, user_id: int) -> ledger.UserBalances:
    with ctx.db.session(write=False) as s:
        return ledger.user_balances(s, user_id)


@pytest.fixture
def ledger_ctx(tmp_path) -> Iterator[AppContext]:
    ctx = make_ctx(tmp_path)
    yield ctx
    ctx.db.dispose()


def rest_client(node: LndNode) -> LndRest:
    return LndRest(node.name, node.rest_url, node.macaroon_path.read_bytes().hex(), node.tls_cert)


@dataclass
class Custody:
    ctx: AppContext
    wallet: BitcoinRpc
    cluster: Cluster

    @property
    def miner(self) -> BitcoinRpc:
        return self.cluster.bitcoind.miner()

    def node(self, name: str) -> LndRest:
        return self.cluster.node(name).rest

    def mine(self, n: int) -> int:
        return self.cluster.mine(n)


@pytest.fixture
def custody(cluster: Cluster, tmp_path) -> Iterator[Custody]:
    """The ledger on the shared hub cluster, with a custody wallet no other test uses."""
    hub = rest_client(cluster.node("hub"))
    ctx = make_ctx(tmp_path, hub)
    name = f"custody_{uuid.uuid4().hex[:12]}"
    wallet = custody_wallet(cluster.bitcoind.rpc, name)
    yield Custody(ctx, wallet, cluster)
    hub.close()
    ctx.db.dispose()
    cluster.bitcoind.rpc.unloadwallet(name)
    wallet.close()
