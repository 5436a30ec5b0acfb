"""The hardening suite's market: the app on the session's hub cluster, with one
party per role. Module-scoped: the fuzz and the matrix each run many requests
against one app, which is what a deployment sees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import pytest

from harness.actors import ApiError, Buyer, Party, Seller
from tests.reference_app.escrow.conftest import Market, open_market, release_holds

ROLES = ("buyer", "seller", "courier", "arbiter", "admin")


@dataclass
class Personas:
    """One logged-in party per role, plus a second buyer and seller to play the non-owner."""

    market: Market
    parties: dict[str, Party]

    @classmethod
    def enrol(cls, market: Market) -> "Personas":
        http, admin = market.http, market.admin
        parties: dict[str, Party] = {"admin": admin}
        for name, kind, roles in (("buyer", Buyer, ["buyer"]), ("seller", Seller, ["seller"]),
                                  ("courier", Party, ["courier"]), ("arbiter", Party, ["buyer"]),
                                  ("other_buyer", Buyer, ["buyer"]), ("other_seller", Seller, ["seller"])):
            parties[name] = kind.register(http, name, roles, address=f"{len(parties)} Main Street, Springfield")
        admin.call("POST", f"/admin/users/{parties['arbiter'].id}/roles", json={"role": "arbiter", "grant": True})
        parties["arbiter"].login()
        return cls(market, parties)

    def __getitem__(self, name: str) -> Party:
        return self.parties[name]

    def token(self, name: str) -> str:
        """A valid access token for ``name``, logging in again (or re-registering) when the
        last call revoked it (logout-all, block, erase)."""
        party = self.parties[name]
        if party.attempt("GET", "/me").status_code == 200:
            return party.token
        try:
            party.login()
        except ApiError:
            if name == "admin":
                raise
            roles = ["buyer"] if name == "arbiter" else party.roles
            fresh = type(party).register(self.market.http, name, roles, address="9 Elm Road, Shelbyville")
            if name == "arbiter":
                self.market.admin.call("POST", f"/admin/users/{fresh.id}/roles",
                                       json={"role": "arbiter", "grant": True})
                fresh.login()
            self.parties[name] = fresh
        return self.parties[name].token


@pytest.fixture(scope="module")
def hardened_market(cluster_pool, tmp_path_factory) -> Iterator[Market]:
    """The app in-process on the session's shared hub cluster, with the app's bitcoind (on-chain
    and custodial modes). The market loop is off:
    fuzzed webhook URLs must never be called (no traffic beyond loopback)."""
    with open_market(cluster_pool.get("hub"), tmp_path_factory.mktemp("hardened"), chain=True, run_market_loop=False) as market:
        yield market
        release_holds(market)


@pytest.fixture(scope="module")
def personas(hardened_market) -> Personas:
    return Personas.enrol(hardened_market)
