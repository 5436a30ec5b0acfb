"""The main job's story. Three Lightning orders on the hub topology (released,
refunded, disputed and split), then one on-chain 2-of-3 multisig order and one
custodial order, each released. Every party's balance change is read from the
nodes (LND channel balances, bitcoind wallet balances) and printed next to the
amount the rules say it should be; the custodial ledger is reconciled with
bitcoind and the hub."""

from __future__ import annotations

import logging
from pathlib import Path

from harness import actors_custodial as cu
from harness import actors_onchain as oc
from harness.presets import ADDRESSES
from harness.world import World
from regtest_cluster.cluster import Cluster
from regtest_cluster.nodes.bitcoind import sats
from regtest_cluster.waiting import wait_for

log = logging.getLogger("escrowlab.demo")
NODES = ("buyer1", "buyer2", "hub", "seller1", "seller2")


def local_sats(cluster: Cluster, name: str) -> int:
    return int(cluster.node(name).rest.channelbalance()["local_balance"]["sat"])


def run(cluster: Cluster, data_dir: Path, step=lambda _m: None) -> dict:
    """The story on the reference marketplace, started the way every scenario starts it."""
    world = World(cluster, data_dir)
    world.start_app()
    try:
        return _story(world, step)
    finally:
        world.stop_app()


def _story(world: World, step) -> dict:
    cluster, market = world.cluster, world.market
    rules = market.rules()
    fee_ppm = rules["fee_ppm"]
    step(f"marketplace serving on {market.url}")
    arbiter = world.arbiter()
    sellers = {n: world.seller(n) for n in ("seller1", "seller2")}
    buyers = {n: world.buyer(n, bind=n == "buyer2") for n in ("buyer1", "buyer2")}
    courier = world.courier()
    before = {n: local_sats(cluster, n) for n in NODES}

    def place(buyer: str, seller: str, price: int, title: str) -> dict:
        listing = sellers[seller].list_item(title, price)
        order = buyers[buyer].buy(listing["id"])
        buyers[buyer].pay(order)
        return buyers[buyer].wait_state(order["id"], "FUNDED")

    step("three buyers' payments are held by the hub (hold invoices ACCEPTED)")
    released = place("buyer1", "seller1", 25_000, "mechanical keyboard")
    refunded = place("buyer2", "seller2", 40_000, "vintage camera")
    split = place("buyer2", "seller1", 30_000, "road bike helmet")

    step("seller1 ships two orders; the courier confirms one delivery; buyer2 disputes the other")
    sellers["seller1"].ship(released["id"], "fastship", "FS-DEMO-1")
    sellers["seller1"].ship(split["id"], "fastship", "FS-DEMO-2")
    courier.deliver("FS-DEMO-1", ADDRESSES["buyer1"])
    buyers["buyer2"].dispute(split["id"], "the helmet arrived cracked")

    step("6 blocks pass: the dispute window closes (release) and seller2's ship window closes (refund)")
    cluster.mine(6)
    buyers["buyer1"].wait_state(released["id"], "RELEASED")
    buyers["buyer2"].wait_state(refunded["id"], "REFUNDED")

    step("the arbiter splits the disputed order: 40 % back to the buyer")
    arbiter.rule(split["id"], "split", 40)
    buyers["buyer2"].wait_state(split["id"], "SPLIT")

    fee1 = 25_000 * fee_ppm // 1_000_000
    buyer_part = 30_000 * 40 // 100
    fee3 = (30_000 - buyer_part) * fee_ppm // 1_000_000
    expected = {"buyer1": -25_000, "buyer2": -30_000 + buyer_part, "hub": fee1 + fee3,
                "seller1": (25_000 - fee1) + (30_000 - buyer_part - fee3), "seller2": 0}
    step("reading every node's channel balance from LND")
    try:
        wait_for(lambda: all(local_sats(cluster, n) - before[n] == expected[n] for n in NODES),
                 timeout=20, what="balances to settle")
    except TimeoutError:
        pass  # reported below, node truth against the rules
    actual = {n: local_sats(cluster, n) - before[n] for n in NODES}
    orders = [{"id": o["id"], "mode": "ln_hold", "price_sats": o["price_sats"],
               "outcome": buyers["buyer1" if o is released else "buyer2"].order(o["id"])["state"]}
              for o in (released, refunded, split)]
    balances = [{"party": n, "mode": "ln_hold", "evidence": "LND channel balance",
                 "expected_delta_sats": expected[n], "node_delta_sats": actual[n]} for n in NODES]
    onchain_order, onchain_rows = onchain_escrow(cluster, buyers["buyer1"], sellers["seller1"], step)
    custodial_order, custodial_rows = custodial_escrow(cluster, buyers["buyer2"], sellers["seller2"], rules, step)
    orders += [onchain_order, custodial_order]
    balances += onchain_rows + custodial_rows
    step("reconciling the custodial ledger with bitcoind and the hub")
    reconcile = market.reconcile(world.admin)
    for row in balances:
        row["ok"] = row["expected_delta_sats"] == row["node_delta_sats"]
    mismatches = reconcile.get("mismatches", [])
    return {"orders": orders, "balances": balances, "reconcile_mismatches": mismatches,
            "ok": all(r["ok"] for r in balances) and not mismatches
                  and all(o["outcome"] == want for o, want in zip(orders, EXPECTED_OUTCOMES))}


EXPECTED_OUTCOMES = ("RELEASED", "REFUNDED", "SPLIT", "RELEASED", "RELEASED")


def _wallet_sats(rpc) -> int:
    return sats(rpc.getbalance())


def onchain_escrow(cluster: Cluster, buyer, seller, step) -> tuple[dict, list[dict]]:
    """One 2-of-3 multisig order: the buyer pays the escrow address, the seller co-signs the release."""
    price = 150_000
    bw = oc.ChainWallet.create(cluster, "buyer", 1_000_000)
    sw = oc.ChainWallet.create(cluster, "seller")
    oc.bind_keys(buyer, bw)
    oc.bind_keys(seller, sw, seller=True)
    market = cluster.bitcoind.wallet("marketplace") if "marketplace" in cluster.bitcoind.rpc.listwallets() else None
    before = {"buyer": _wallet_sats(bw.rpc), "seller": _wallet_sats(sw.rpc),
              "marketplace": _wallet_sats(market) if market else 0}
    listing = oc.list_item(seller, "oak bookshelf", price)
    order = buyer.buy(listing["id"])
    step(f"on-chain: buyer1 pays {price:,} sats to the 2-of-3 escrow address of order {order['id']}")
    [funding_txid] = oc.pay_escrow(buyer, bw, order["id"], price)
    cluster.mine(1)
    buyer.wait_state(order["id"], "FUNDED")
    seller.ship(order["id"], "fastship", "FS-DEMO-CHAIN")
    buyer.confirm(order["id"])
    step("on-chain: the marketplace signs the release; seller1 co-signs it in its own wallet")
    oc.sign_pending(seller, sw, order["id"])
    view = oc.wait_broadcast(seller, order["id"])
    cluster.mine(1)
    final = buyer.wait_state(order["id"], "RELEASED")
    market = cluster.bitcoind.wallet("marketplace")
    funding_fee = -sats(bw.rpc.gettransaction(funding_txid)["fee"])
    release_fee = int(view["spend"]["fee_sats"])
    commission = final["fee_sats"]
    after = {"buyer": _wallet_sats(bw.rpc), "seller": _wallet_sats(sw.rpc), "marketplace": _wallet_sats(market)}
    expected = {"buyer": -price - funding_fee, "seller": price - commission - release_fee, "marketplace": commission}
    rows = [{"party": f"{who} wallet", "mode": "onchain_multisig", "evidence": "bitcoind wallet balance",
             "expected_delta_sats": expected[who], "node_delta_sats": after[who] - before[who]}
            for who in ("buyer", "seller", "marketplace")]
    return {"id": order["id"], "mode": "onchain_multisig", "price_sats": price, "outcome": final["state"],
            "release_txid": view["spend"]["txid"]}, rows


def custodial_escrow(cluster: Cluster, buyer, seller, rules: dict, step) -> tuple[dict, list[dict]]:
    """One custodial order: buyer2 deposits over Lightning, buys, and seller2 withdraws its proceeds."""
    price, deposit = 40_000, 50_000
    nodes = ("buyer2", "hub", "seller2")
    before = {n: local_sats(cluster, n) for n in nodes}
    buyer_account, seller_account = cu.Account(buyer, cluster), cu.Account(seller, cluster)
    step(f"custodial: buyer2 deposits {deposit:,} sats over Lightning into its marketplace account")
    buyer_account.deposit_ln(deposit)
    listing = cu.list_custodial(seller, "tea set", price)
    order = buyer.buy(listing["id"])
    buyer.wait_state(order["id"], "FUNDED")
    seller.ship(order["id"], "slowpost", "SP-DEMO-CUSTODY")
    buyer.confirm(order["id"])
    final = buyer.wait_state(order["id"], "RELEASED")
    proceeds = price - price * rules["fee_ppm"] // 1_000_000
    # A withdrawal reserves a routing-fee budget on top of its amount; what routing
    # does not use comes back, so withdraw what fits with its reserve.
    amount = proceeds * 1_000_000 // (1_000_000 + rules["custodial_fee_reserve_ppm"])
    step(f"custodial: seller2 withdraws {amount:,} of its {proceeds:,} sats over Lightning")
    answer = seller_account.withdraw_ln(amount)
    if answer.status_code >= 300:
        raise AssertionError(f"seller2's withdrawal failed: {answer.body}")
    seller_account.wait_balance(available_sats=proceeds - amount, inflight_sats=0)
    expected = {"buyer2": -deposit, "seller2": amount, "hub": deposit - amount}
    wait_for(lambda: all(local_sats(cluster, n) - before[n] == expected[n] for n in nodes), timeout=20,
             what="custodial Lightning flows to settle")
    rows = [{"party": n, "mode": "custodial", "evidence": "LND channel balance",
             "expected_delta_sats": expected[n], "node_delta_sats": local_sats(cluster, n) - before[n]} for n in nodes]
    return {"id": order["id"], "mode": "custodial", "price_sats": price, "outcome": final["state"]}, rows
