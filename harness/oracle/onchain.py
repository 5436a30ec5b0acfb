"""Invariant checks for onchain_multisig escrows, on bitcoind's truth.

The app's claims (state, timeline, the escrow's address, keys and recorded spend) come
from its API as the admin sees them. What happened comes from bitcoind: every payment
to the escrow address (seen by the oracle's own watch-only wallet, ``oracle-watch``,
which watches each address the marketplace showed; each transaction read back from the
chain), who spent each of those coins (the active chain scanned from the first funding,
plus the mempool), and the recorded spend's inputs, outputs and fee. Nothing is read
from the marketplace's own wallets.

The oracle starts watching an escrow when it gathers evidence, rescanning from the
scenario's start: what the chain and the mempool hold then is what it judges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError, sats
from harness.evidence import Evidence
from harness.oracle.base import Context, Violation

MODE = "onchain_multisig"
PPM = 1_000_000
PAID_OUT = {"RELEASED", "REFUNDED", "SPLIT"}
FUNDED = {"FUNDED", "SHIPPED", "DELIVERED", "DISPUTED", "HELD_IN_CUSTODY",
          "RELEASE_PENDING", "REFUND_PENDING", "SPLIT_PENDING"}
# The oracle's own expectation: no output below this exists (P2PKH's dust limit at the
# default 3 sat/vB relay dust fee, the highest of the address types paid); a smaller share
# goes to the fee payer instead.
DUST_SATS = 546
ORACLE_WALLET = "oracle-watch"
# How far before the scenario's start the rescan of a newly watched address begins.
RESCAN_MARGIN_S = 600


@dataclass
class Coin:
    """One payment to an escrow address, as the chain shows it."""

    outpoint: str
    amount_sats: int
    height: int | None             # None: unconfirmed
    spender: str | None = None     # txid of the transaction spending it (chain or mempool)


@dataclass
class Escrow:
    order: dict
    events: list[dict]
    view: dict
    coins: list[Coin] = field(default_factory=list)
    spend_tx: dict | None = None   # the recorded spend, decoded by bitcoind (None if absent)

    @property
    def id(self) -> int:
        return self.order["id"]

    def coin(self, outpoint: str) -> Coin | None:
        return next((c for c in self.coins if c.outpoint == outpoint), None)


def _outpoint(vin: dict) -> str:
    return f"{vin['txid']}:{vin['vout']}"


def oracle_wallet(rpc: BitcoinRpc) -> BitcoinRpc:
    """The oracle's watch-only wallet (no private keys, blank), created or loaded."""
    if ORACLE_WALLET not in rpc.listwallets():
        try:
            rpc.createwallet(ORACLE_WALLET, disable_private_keys=True, blank=True)
        except RpcError as exc:
            if "already exists" not in exc.message:
                raise
            try:
                rpc.loadwallet(ORACLE_WALLET)
            except RpcError as again:
                if "already loaded" not in again.message:
                    raise
    return rpc.for_wallet(ORACLE_WALLET)


def watch(watch: BitcoinRpc, addresses: list[str], since: float) -> None:
    """Watch the addresses the marketplace showed (``addr(...)``: the address itself, not
    the marketplace's descriptor), rescanning from ``since`` (unix time; bitcoind starts
    two hours earlier still). Addresses watched already are not imported again."""
    new = sorted({a for a in addresses if not watch.getaddressinfo(a).get("ismine")})
    if not new:
        return
    results = watch.importdescriptors([{"desc": watch.getdescriptorinfo(f"addr({a})")["descriptor"],
                                        "timestamp": max(0, int(since))} for a in new])
    failed = [(a, r.get("error", {}).get("message", r)) for a, r in zip(new, results) if not r.get("success")]
    if failed:
        raise RuntimeError(f"the oracle's wallet could not watch {len(failed)} escrow address(es); first: "
                           f"{failed[0][0]}: {failed[0][1]}")


def escrows(ev: Evidence, since: float = 0) -> list[Escrow]:
    """Node truth for every on-chain order of the scenario, gathered once per evidence.
    ``since``: when the scenario began (unix time), where a rescan for its escrows may start."""
    cached = ev.__dict__.get("_onchain_escrows")
    if cached is not None:
        return cached
    found = [Escrow(oe.order, oe.events, ev.world.market.escrow(ev.world.admin, oid))
             for oid, oe in ev.orders.items() if oe.order["escrow_mode"] == MODE]
    if found:
        _read_chain(ev.world.cluster.bitcoind.rpc, found, since)
    ev.__dict__["_onchain_escrows"] = found
    return found


def _since(cx: Context) -> float:
    start = cx.settings.get("_start")
    return float(start) - RESCAN_MARGIN_S if start else 0


def _read_chain(rpc: BitcoinRpc, found: list[Escrow], since: float = 0) -> None:
    watch_rpc = oracle_wallet(rpc)
    watch(watch_rpc, [e.view["address"] for e in found], since)
    rpc.syncwithvalidationinterfacequeue()  # the wallet has seen every transaction the node has
    for e in found:
        address = e.view["address"]
        received = watch_rpc.call("listreceivedbyaddress", 0, True, True, address)
        for txid in (received[0]["txids"] if received else []):
            try:
                tx = rpc.getrawtransaction(txid, True)
            except RpcError:
                continue  # neither in the chain nor in the mempool any more
            height = rpc.call("getblockheader", tx["blockhash"])["height"] if tx.get("confirmations") else None
            e.coins += [Coin(f"{txid}:{o['n']}", sats(o["value"]), height) for o in tx["vout"]
                        if o["scriptPubKey"].get("address") == address]
        if e.view["spend"] and e.view["spend"]["txid"]:
            try:
                e.spend_tx = rpc.getrawtransaction(e.view["spend"]["txid"], True)
            except RpcError:
                e.spend_tx = None
    wanted = {c.outpoint: c for e in found for c in e.coins}
    heights = [c.height for c in wanted.values() if c.height is not None]
    if heights:  # who spent each coin: the active chain from the first funding on
        for height in range(min(heights), rpc.getblockcount() + 1):
            for tx in rpc.getblock(rpc.getblockhash(height), 2)["tx"]:
                for vin in tx["vin"]:
                    if "txid" in vin and _outpoint(vin) in wanted:
                        wanted[_outpoint(vin)].spender = tx["txid"]
    unspent_here = [c for c in wanted.values() if c.spender is None]
    if unspent_here:
        prevouts = [{"txid": c.outpoint.split(":")[0], "vout": int(c.outpoint.split(":")[1])} for c in unspent_here]
        for row in rpc.call("gettxspendingprevout", prevouts):
            if row.get("spendingtxid"):
                wanted[f"{row['txid']}:{row['vout']}"].spender = row["spendingtxid"]


def expected_outputs(order: dict, in_sats: int, tx_fee: int) -> tuple[dict[str, int], str]:
    """What the rules pay each role from ``in_sats`` escrowed, and who pays the miner fee.

    Release: the seller gets price − commission − fee, the marketplace the commission,
    the buyer any excess. Split: the seller's gross share carries the commission, the
    larger share pays the fee. Refund (and an expired order's refund): everything to the
    buyer, minus the fee. An output under the dust limit goes to the fee payer instead.
    """
    price, commission, state = order["price_sats"], order["fee_sats"], order["state"]
    if state == "RELEASED":
        seller_gross = price
    elif state == "SPLIT":
        seller_gross = price - price * (order["buyer_share_ppm"] or 0) // PPM
    else:
        seller_gross, commission = 0, 0
    payer = "seller" if seller_gross and seller_gross >= in_sats - seller_gross else "buyer"
    plan = {"seller": seller_gross - commission, "marketplace": commission, "buyer": in_sats - seller_gross}
    for role, amount in list(plan.items()):
        if role != payer and amount < DUST_SATS:
            plan[payer] += amount
            plan[role] = 0
    plan[payer] -= tx_fee
    return {r: a for r, a in plan.items() if a}, payer


def i1_escrow_conservation(ev: Evidence, cx: Context) -> list[Violation]:
    out = []
    # The fee rate the marketplace reports (its rules); without one, only a positive fee is checked.
    reported = cx.settings.get("onchain_fee_rate_sat_vb")
    fee_rate = float(reported) if reported is not None else None
    for e in escrows(ev, _since(cx)):
        o, spend = e.order, e.view["spend"]
        if o["state"] not in PAID_OUT and not (o["state"] == "EXPIRED" and spend and spend["txid"]):
            continue
        if e.spend_tx is None:
            out.append(Violation("I1", e.id, f"{o['state']} but no escrow spend is on the chain",
                                 {"recorded": spend}))
            continue
        tx = e.spend_tx
        inputs = [_outpoint(v) for v in tx["vin"]]
        foreign = [i for i in inputs if e.coin(i) is None]
        if foreign:
            out.append(Violation("I1", e.id, "the spend takes coins that were never paid to the escrow",
                                 {"inputs": foreign}))
            continue
        in_sats = sum(e.coin(i).amount_sats for i in inputs)
        paid = {o_["scriptPubKey"].get("address"): sats(o_["value"]) for o_ in tx["vout"]}
        tx_fee = in_sats - sum(paid.values())
        left = [c for c in e.coins if c.spender is None and c.height is not None
                and tx.get("confirmations") and c.height <= rpc_height(ev) - tx["confirmations"] + 1]
        if left:
            out.append(Violation("I1", e.id, f"{sum(c.amount_sats for c in left)} sats left in the escrow after "
                                             f"{o['state']}", {"coins": [c.outpoint for c in left]}))
        want_roles, payer = expected_outputs(o, in_sats, tx_fee)
        addresses = {"seller": e.view["seller_address"], "buyer": e.view["buyer_address"],
                     "marketplace": e.view["marketplace_address"]}
        want = {addresses[r]: a for r, a in want_roles.items()}
        if paid != want:
            out.append(Violation("I1", e.id, f"{o['state']}: the rules pay {want_roles} (the {payer} pays the "
                                             f"{tx_fee}-sat fee); the chain shows {paid}",
                                 {"txid": tx["txid"], "expected": want, "actual": paid, "in_sats": in_sats}))
        if tx_fee <= 0 or (fee_rate is not None and tx_fee > 2 * fee_rate * tx["vsize"] + 10):
            out.append(Violation("I1", e.id, f"miner fee {tx_fee} sats for {tx['vsize']} vB at "
                                             f"{fee_rate} sat/vB", {"txid": tx["txid"]}))
    return out


def rpc_height(ev: Evidence) -> int:
    return ev.world.cluster.bitcoind.rpc.getblockcount()


def i2_escrow_outcome(ev: Evidence, cx: Context) -> list[Violation]:
    out = []
    k = int(cx.settings.get("onchain_confirmations", 1))
    for e in escrows(ev, _since(cx)):
        state = e.order["state"]
        confirmed = sum(c.amount_sats for c in e.coins if c.height is not None)
        if state in PAID_OUT and (e.spend_tx is None or e.spend_tx.get("confirmations", 0) < k):
            out.append(Violation("I2", e.id, f"{state} but its spend has "
                                             f"{(e.spend_tx or {}).get('confirmations', 0)} of {k} confirmations"))
        if state in FUNDED - {"RELEASE_PENDING", "REFUND_PENDING", "SPLIT_PENDING"} \
                and confirmed < e.order["price_sats"]:
            out.append(Violation("I2", e.id, f"{state} but the chain holds {confirmed} of the "
                                             f"{e.order['price_sats']} sats owed"))
        owed = [c for c in e.coins if c.height is not None and c.spender is None]
        if state == "EXPIRED" and owed:
            out.append(Violation("I2", e.id, f"EXPIRED with {sum(c.amount_sats for c in owed)} sats still in the "
                                             "escrow, not refunded", {"coins": [c.outpoint for c in owed]}))
    return out


def i3_one_spend(ev: Evidence, cx: Context) -> list[Violation]:
    """Each escrow coin is spent once, by the spend the app recorded; none is left unspent."""
    out = []
    watch_rpc = oracle_wallet(ev.world.cluster.bitcoind.rpc)
    for e in escrows(ev, _since(cx)):
        spend = e.view["spend"]
        if not spend or not spend["txid"]:
            continue
        for outpoint in spend["inputs"]:
            coin = e.coin(outpoint)
            if coin is None or coin.spender is None:
                if e.order["state"] in PAID_OUT:
                    out.append(Violation("I3", e.id, f"{e.order['state']} but escrow coin {outpoint} is unspent "
                                                     "(gettxout still shows it)"))
            elif coin.spender != spend["txid"]:
                out.append(Violation("I3", e.id, f"escrow coin {outpoint} was spent by {coin.spender}, not by the "
                                                 f"recorded spend {spend['txid']}"))
        try:
            conflicts = watch_rpc.gettransaction(spend["txid"]).get("walletconflicts", [])
        except RpcError:
            conflicts = []  # it spends no watched coin: the check above said so already
        if conflicts:
            out.append(Violation("I3", e.id, "two spends of one escrow competed", {"conflicts": conflicts}))
    return out


def i16_recoverable(ev: Evidence, cx: Context) -> list[Violation]:
    """Coins never paid out by the app stay recoverable without it: the address really is
    the script with the seller's timeout branch, or the seller already took that branch."""
    out = []
    rpc = ev.world.cluster.bitcoind.rpc
    for e in escrows(ev, _since(cx)):
        v = e.view
        branch = f"and_v(v:pk({v['timeout_key']}),older({v['timeout_blocks']}))"
        for coin in e.coins:
            if coin.height is None or coin.spender == (v["spend"] or {}).get("txid"):
                continue
            if coin.spender is None:
                derived = rpc.deriveaddresses(v["descriptor"])[0]
                if derived != v["address"] or branch not in v["descriptor"]:
                    out.append(Violation("I16", e.id, f"{coin.amount_sats} sats sit at {v['address']}, whose "
                                                      "descriptor has no timeout branch for the seller",
                                         {"descriptor": v["descriptor"], "derived": derived}))
                continue
            tx = rpc.getrawtransaction(coin.spender, True)
            vin = next(i for i in tx["vin"] if _outpoint(i) == coin.outpoint)
            witness = vin.get("txinwitness", [])
            # or_d(multi(2,B,S,A), and_v(v:pk(T),older(N))): the timeout branch's witness is
            # <sig T> <> <> <> <script> (multi dissatisfied), in a tx whose nSequence ≥ N.
            if not (len(witness) == 5 and vin["sequence"] >= v["timeout_blocks"]):
                out.append(Violation("I16", e.id, f"escrow coin {coin.outpoint} left by {coin.spender}, neither the "
                                                  "app's recorded spend nor the seller's timeout branch"))
    return out


def i17_reorg_rollback(ev: Evidence, cx: Context) -> list[Violation]:
    """A reorged funding rolls the order back, and nothing ships until it is funded again."""
    out = []
    rpc = ev.world.cluster.bitcoind.rpc
    reorged = {txid for block in cx.reorged_blocks for txid in rpc.getblock(block, 1)["tx"]}
    k = int(cx.settings.get("onchain_confirmations", 1))
    for e in escrows(ev, _since(cx)):
        names = [x["event"] for x in e.events]
        lost = False
        for x in e.events:
            if x["event"] == "funding_reorged":
                lost = True
            elif x["event"] == "funded":
                lost = False
            elif lost and x["event"] in ("ship", "open_dispute"):
                out.append(Violation("I17", e.id, f"'{x['event']}' after the funding was reorged, before it was "
                                                  "funded again", {"events": names}))
        # The scenario names the blocks it reorged away; a funding in one of them must show.
        if {c.outpoint.split(":")[0] for c in e.coins} & reorged and "funded" in names \
                and "funding_reorged" not in names:
            out.append(Violation("I17", e.id, "its funding block was reorged away after it was funded, but the "
                                              "order never rolled back", {"events": names}))
        if e.order["state"] in FUNDED and not any(
                c.height is not None and rpc.getblockcount() - c.height + 1 >= k for c in e.coins):
            out.append(Violation("I17", e.id, f"{e.order['state']} but no escrow coin has {k} confirmations now"))
    return out


CHECKS = {
    "I1": ("Conservation per on-chain escrow", i1_escrow_conservation),
    "I2": ("One on-chain outcome, confirmed", i2_escrow_outcome),
    "I3": ("One spend per escrow UTXO", i3_one_spend),
    "I16": ("Operator gone: on-chain funds stay recoverable", i16_recoverable),
    "I17": ("Reorgs of funding roll state back safely", i17_reorg_rollback),
}
