"""How a story funds an order and sees its outcome through, per escrow mode.

A scenario written once in protocol words (place, ship, dispute, rule, outcome) runs in
every mode it lists: this module is where the modes differ for the parties. Adding an
escrow mode is adding one class here (and its oracle module, see docs/architecture.md).
"""

from __future__ import annotations

from harness import actors_onchain as oc
from harness.actors_custodial import Account

SETTLING = {"RELEASE_PENDING", "REFUND_PENDING", "SPLIT_PENDING"}


class LnHold:
    """The buyer's own node pays the hub's hold invoice; the hub pays the payee's node."""

    mode = "ln_hold"
    prices = (10_000, 60_000)

    def place(self, sc, buyer, seller, price: int) -> dict:
        order = sc.order_unpaid(buyer, seller, price)
        sc.log.info("%s pays the %s sat hold invoice of order %s", buyer.node.name, order["price_sats"], order["id"])
        sc.payments[order["id"]] = buyer.pay(order)
        return sc.settle_on(buyer, order, "FUNDED")

    def outcome(self, sc, party, order: dict, states: tuple[str, ...], timeout: float) -> dict:
        return sc.settle_on(party, order, *states, timeout=timeout)


class OnchainMultisig:
    """The buyer pays a 2-of-3 address from its own wallet; the payee co-signs the spend in its own."""

    mode = "onchain_multisig"
    prices = (100_000, 500_000)

    def wallet(self, sc, party) -> oc.ChainWallet:
        wallets = sc.__dict__.setdefault("_chain_wallets", {})
        if party.id not in wallets:
            role = "seller" if "seller" in party.roles else "buyer"
            wallets[party.id] = oc.ChainWallet.create(sc.world.cluster, role, 3_000_000 if role == "buyer" else 0)
            oc.bind_keys(party, wallets[party.id], seller=role == "seller")
            sc.on_teardown(wallets[party.id].unload)
        return wallets[party.id]

    def place(self, sc, buyer, seller, price: int) -> dict:
        wallet = self.wallet(sc, buyer)
        self.wallet(sc, seller)
        listing = seller.list_item(f"item-{sc.rng.randrange(10**6)}", price, mode=self.mode)
        order = buyer.buy(listing["id"])
        sc.orders.append(order["id"])
        sc.log.info("%s pays %s sats to the 2-of-3 escrow of order %s", buyer.name, price, order["id"])
        oc.pay_escrow(buyer, wallet, order["id"], price)
        sc.world.mine(1)
        return sc.settle_on(buyer, order, "FUNDED")

    def outcome(self, sc, party, order: dict, states: tuple[str, ...], timeout: float) -> dict:
        now = sc.settle_on(party, order, *states, *SETTLING, timeout=timeout)
        if now["state"] in SETTLING:
            view = oc.wait_escrow_spend(party, order["id"])
            signer = next(p for p in sc.parties if p.id == now[f"{view['spend']['signer']}_id"])
            sc.log.info("the %s signs the %s PSBT in its own wallet", view["spend"]["signer"], view["spend"]["kind"])
            oc.sign_pending(signer, self.wallet(sc, signer), order["id"])
            oc.wait_broadcast(signer, order["id"])
            sc.world.mine(1)
        return sc.settle_on(party, order, *states, timeout=timeout)


class Custodial:
    """The buyer pays from a balance it deposited over Lightning; outcomes are ledger transfers."""

    mode = "custodial"
    prices = (10_000, 60_000)

    def place(self, sc, buyer, seller, price: int) -> dict:
        sc.log.info("%s deposits %s sats over Lightning into its marketplace account", buyer.name, price)
        Account(buyer, sc.world.cluster).deposit_ln(price)
        listing = seller.list_item(f"item-{sc.rng.randrange(10**6)}", price, mode=self.mode)
        order = buyer.buy(listing["id"])
        sc.orders.append(order["id"])
        return sc.settle_on(buyer, order, "FUNDED")

    def outcome(self, sc, party, order: dict, states: tuple[str, ...], timeout: float) -> dict:
        return sc.settle_on(party, order, *states, timeout=timeout)


FUNDING = {f.mode: f for f in (LnHold(), OnchainMultisig(), Custodial())}
