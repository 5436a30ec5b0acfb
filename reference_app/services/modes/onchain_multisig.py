"""onchain_multisig: the buyer pays a P2WSH 2-of-3 of buyer, seller and the marketplace's
arbiter key, with the seller's timeout branch (services/onchain has the script and why).

Funding is k confirmations for the full price: exact, overpaid, or in several UTXOs. A
reorg that takes them away rolls a FUNDED order back to AWAITING_FUNDS (I17); an
underpayment waits, and at the funding deadline whatever arrived is refunded.

Every outcome is ONE spend of every confirmed escrow UTXO. The marketplace cannot move
the coins alone, so each spend needs the arbiter (signed here, with the escrow's key
derived from the app's seed) and one party: the seller for a release, the buyer for a
refund, the larger share for a split. The worker plans the spend and signs it; the
party fetches the PSBT (GET /orders/{id}/psbt), signs it in their own wallet and posts
it back (onchain_multisig_api.py has what the API calls); the worker combines, finalizes,
broadcasts (rebroadcasting should a reorg drop it) and records the outcome after k
confirmations. Nothing here expires on a node, so
there is no guardian; a dispute that outlasts its ruling window moves to custody by
the shared deadline rule, and the coins simply stay in the multisig until a ruling.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from decimal import Decimal

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from regtest_cluster.nodes.bitcoind import BitcoinRpc, RpcError

from ...context import AppContext
from ...store.models import Order, User
from ...store.models_onchain import OnchainEscrow, OnchainKeys
from .. import faults, onchain, outbox, records, transitions
from ..errors import DomainError, NotFound, ValidationFailed
from ..lifecycle import FUNDED_STATES, PENDING, E, S
from ..onchain.flows import _fold_dust, _require_price, refund_outputs, release_outputs
from ..orders import PPM
from ..accounts import Principal
from ..records import OrderRecord
from .ln_hold import _load, finish

log = logging.getLogger("escrowlab.onchain_multisig")
MARKETPLACE_WALLET = "marketplace"
SPEND_FOR = {S.RELEASE_PENDING: "release", S.REFUND_PENDING: "refund", S.SPLIT_PENDING: "split"}
DONE = {"release": E.RELEASED, "refund": E.REFUNDED, "split": E.SPLIT_DONE}
OPEN_STATES = [s.value for s in (S.AWAITING_FUNDS, *FUNDED_STATES, *PENDING)]


# --- persistence helpers ------------------------------------------------------------------

def _funding_json(f: onchain.Funding) -> str:
    return json.dumps({"address": f.address, "expected_sats": f.expected_sats, "min_conf": f.min_conf,
                       "status": f.status.value, "lost": list(f.lost), "spent": list(f.spent),
                       "utxos": [[u.txid, u.vout, u.amount_sats, u.confirmations] for u in f.utxos]})


def _funding(text: str | None) -> onchain.Funding | None:
    if not text:
        return None
    d = json.loads(text)
    return onchain.Funding(address=d["address"], expected_sats=d["expected_sats"], min_conf=d["min_conf"],
                           status=onchain.FundingStatus(d["status"]), lost=tuple(d["lost"]),
                           spent=tuple(d["spent"]), utxos=tuple(onchain.Utxo(*u) for u in d["utxos"]))


def script_of(row: OnchainEscrow) -> onchain.EscrowScript:
    return onchain.EscrowScript(descriptor=row.descriptor, address=row.address, timeout_blocks=row.timeout_blocks,
                                buyer_key=row.buyer_key, seller_key=row.seller_key, arbiter_key=row.arbiter_key,
                                timeout_key=row.timeout_key)


def pubkey(key: str) -> str:
    return key.rsplit("]", 1)[-1]


def escrow_row(session: Session, order_id: int) -> OnchainEscrow | None:
    return session.scalar(select(OnchainEscrow).where(OnchainEscrow.order_id == order_id))


def split_outputs(terms: onchain.Terms, funding: onchain.Funding, order: OrderRecord):
    """A split pays the seller their gross share minus the order's commission (set by the
    ruling), the buyer the rest and any overpayment; the larger share pays the miner fee."""
    _require_price(funding, "split")
    seller_gross = order.price_sats - order.price_sats * (order.buyer_share_ppm or 0) // PPM
    buyer_sats = funding.confirmed_sats - seller_gross
    fee_from = "seller" if seller_gross >= buyer_sats else "buyer"
    outputs = [onchain.Output("seller", terms.seller_address, seller_gross - order.fee_sats),
               onchain.Output("marketplace", terms.marketplace_address, order.fee_sats),
               onchain.Output("buyer", terms.buyer_address, buyer_sats)]
    return _fold_dust(outputs, fee_from), fee_from


# Whether any on-chain order exists: its escrow row is written with it (``open``). One row of a
# table only on-chain orders fill, where a look for the mode among all orders scanned them all
# (no index on the mode): 6 ms a worker tick with 13,800 Lightning orders in a soak.
_ANY_ORDER = select(OnchainEscrow.id).limit(1)


class OnchainMode:
    name = "onchain_multisig"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.chain: BitcoinRpc = ctx.chain
        self.k = ctx.settings.onchain_confirmations
        self.fee_rate = Decimal(str(ctx.settings.onchain_fee_rate_sat_vb))
        self._lock = threading.Lock()
        self._watch_rpc: BitcoinRpc | None = None
        self._marketplace: BitcoinRpc | None = None
        self._keychain: onchain.ArbiterKeychain | None = None
        self.wake = lambda: None  # the worker replaces it, to react at once
        # Whether an on-chain order exists (once one does, one always will), and when that was last
        # looked up: while none does, a tick looks again only after an order was created here
        # (on_created) or once a worker interval. Woken many times a second by other modes' commits,
        # the look on every tick was 2 % of the app's CPU in a Lightning-only bench escrow.
        self._any = False
        self._news = True
        self._looked_at = float("-inf")

    # --- the node side, made on first use (nothing at import or construction)
    @property
    def watch_rpc(self) -> BitcoinRpc:
        with self._lock:
            if self._watch_rpc is None:
                self._watch_rpc = onchain.open_watch_wallet(self.chain)
            return self._watch_rpc

    @property
    def marketplace(self) -> BitcoinRpc:
        """The marketplace's own wallet, which receives the commissions."""
        with self._lock:
            if self._marketplace is None:
                self._marketplace = self.chain.open_wallet(MARKETPLACE_WALLET)
            return self._marketplace

    @property
    def keychain(self) -> onchain.ArbiterKeychain:
        with self._lock:
            if self._keychain is None:
                network = self.chain.getblockchaininfo()["chain"]
                self._keychain = onchain.ArbiterKeychain(bytes.fromhex(self.ctx.settings.arbiter_seed), network)
            return self._keychain

    def address_of(self, key: str) -> str:
        """Where a party is paid: the wpkh address of the key it bound (its own wallet's)."""
        return self.chain.deriveaddresses(self.chain.getdescriptorinfo(f"wpkh({key})")["descriptor"])[0]

    # --- opening: a fresh escrow address, watched before the buyer sees it
    def open(self, session: Session, order: OrderRecord, buyer: User | Principal, funding: dict | None) -> None:
        s = self.ctx.settings
        keys = {uid: session.scalar(select(OnchainKeys).where(OnchainKeys.user_id == uid))
                for uid in (order.buyer_id, order.seller_id)}
        b, sk = keys[order.buyer_id], keys[order.seller_id]
        missing = ([] if b else ["the buyer's key (PUT /me/onchain-keys)"]) + \
                  ([] if sk else ["the seller's keys (PUT /me/onchain-keys)"]) + \
                  ([] if not sk or sk.timeout_key else ["the seller's timeout_key (PUT /me/onchain-keys)"])
        if missing:
            raise ValidationFailed(f"on-chain escrow needs {' and '.join(missing)}", field="onchain_keys")
        arbiter = self.keychain.key(order.id)
        escrow = onchain.build_escrow(self.chain, b.key, sk.key, arbiter.public, sk.timeout_key,
                                      s.onchain_timeout_blocks)
        onchain.watch(self.watch_rpc, escrow)
        session.add(OnchainEscrow(
            order_id=order.id, arbiter_index=arbiter.index, buyer_key=b.key, seller_key=sk.key,
            arbiter_key=arbiter.public, timeout_key=sk.timeout_key, descriptor=escrow.descriptor,
            address=escrow.address, timeout_blocks=escrow.timeout_blocks, amount_sats=order.price_sats,
            buyer_address=self.address_of(b.key), seller_address=self.address_of(sk.key),
            fee_address=self.marketplace.getnewaddress(f"order {order.id} commission")))
        session.flush()
        transitions.apply(session, s, order, E.ESCROW_OPENED, f"user:{buyer.id}", self.ctx.tip(),
                          detail=f"pay {order.price_sats} sats to {escrow.address}")

    def start(self) -> None:
        s = self.ctx.settings
        trade = (s.ship_window_blocks + s.delivery_window_blocks + s.dispute_window_blocks) * s.speedup_factor
        if s.onchain_timeout_blocks <= trade:
            log.warning("onchain_timeout_blocks %s is within the trade windows (%.0f blocks): the seller's "
                        "timeout branch may open before an order is decided", s.onchain_timeout_blocks, trade)

    def stop(self) -> None:
        pass

    def on_created(self, order_id: int) -> None:
        self._news = True
        self.wake()

    def guardian_due(self, session: Session, height: int) -> list:
        return []  # the multisig never expires on a node: nothing to guard

    # --- watching: one listunspent for every open escrow, each compared with its last sighting
    def watch(self, height: int) -> None:
        if not self._any:
            now = time.monotonic()
            if not self._news and now - self._looked_at < self.ctx.settings.worker_interval_s:
                return
            self._news, self._looked_at = False, now  # before the look: news during it looks again
            with self.ctx.db.session(write=False) as session:
                if session.connection().execute(_ANY_ORDER).first() is None:
                    return  # no on-chain order yet: no node call, nothing to read
            self._any = True
        with self.ctx.db.session(write=False) as session:
            rows = session.execute(
                select(OnchainEscrow, Order.state).join(Order, Order.id == OnchainEscrow.order_id)
                .where(or_(Order.state.in_(OPEN_STATES),
                           and_(Order.state == S.EXPIRED.value, OnchainEscrow.spend_height.is_(None))))).all()
        rows = [(row, state) for row, state in rows if self.ctx.shares.mine(row.order_id)]  # shares.py
        if not rows:
            return
        previous = {row.address: _funding(row.funding_json) for row, _ in rows}
        seen = onchain.fundings(self.watch_rpc, [(script_of(row), row.amount_sats) for row, _ in rows], self.k,
                                previous)
        for row, state in rows:
            f = seen[row.address]
            try:
                self._observe(row, S(state), f, height)
                if state == S.EXPIRED.value and (f.spendable or row.psbt_unsigned):
                    self._advance(row.order_id, "refund")  # what arrived for an expired order goes back
            except DomainError as exc:
                log.info("order %s: %s", row.order_id, exc)

    def _observe(self, row: OnchainEscrow, state: S, f: onchain.Funding, height: int) -> None:
        """Record a changed observation and react: funded, or rolled back by a reorg (I17)."""
        text = _funding_json(f)
        lost = not f.funded and f.status != onchain.FundingStatus.SPENT
        if text == row.funding_json and not ((state == S.AWAITING_FUNDS and f.funded) or (state == S.FUNDED and lost)):
            return  # nothing new: no write
        with self.ctx.db.session() as session:
            fresh = escrow_row(session, row.order_id)
            fresh.funding_json, fresh.funding_status = text, f.status.value
            order = records.read(session, row.order_id)
            state = S(order.state)
            if state == S.AWAITING_FUNDS and f.funded:
                transitions.apply(session, self.ctx.settings, order, E.FUNDED, "worker", height,
                                  detail=f"{f.confirmed_sats} sats in {len(f.spendable)} UTXO(s) with {self.k}+ "
                                         f"confirmation(s) ({f.status.value})")
            elif state == S.FUNDED and lost:
                transitions.apply(session, self.ctx.settings, order, E.FUNDING_REORGED, "worker", height,
                                  detail=f"funding now {f.status.value}: {', '.join(f.lost) or 'unconfirmed'}")
            elif f.status == onchain.FundingStatus.REORGED:
                log.warning("order %s (%s): funding reorged after it was acted on; the spend waits for it to "
                            "confirm again", order.id, state.value)

    def expire(self, order_id: int) -> None:
        """After the funding deadline: refund whatever confirmed (the buyer signs it). What is
        still unconfirmed is refunded by ``watch`` once it confirms."""
        try:
            self._advance(order_id, "refund")
        except DomainError as exc:
            log.info("order %s: nothing to refund yet: %s", order_id, exc)

    # --- outcomes: plan + arbiter-sign, wait for the party, broadcast, confirm
    def drive(self, order_id: int, height: int | None) -> str:
        kind = SPEND_FOR.get(S(_load(self.ctx, order_id).state))
        if kind and self._advance(order_id, kind):
            with self.ctx.db.session(write=False) as session:
                row = escrow_row(session, order_id)
                plan = json.loads(row.spend_plan)
            paid = ", ".join(f"{role} {amount}" for role, _a, amount in plan["paid"])
            finish(self.ctx, order_id, DONE[kind], height, f"{row.spend_txid} confirmed: {paid} sats")
        return _load(self.ctx, order_id).state

    def _row(self, order_id: int) -> OnchainEscrow:
        with self.ctx.db.session(write=False) as session:
            row = escrow_row(session, order_id)
        if row is None:
            raise NotFound(f"order {order_id} has no on-chain escrow")
        return row

    def _advance(self, order_id: int, kind: str) -> bool:
        """One step towards the order's spend; True once it has k confirmations."""
        row = self._row(order_id)
        if row.spend_kind and row.spend_kind != kind:
            log.error("order %s: a %s is planned, not a %s", order_id, row.spend_kind, kind)
            return False
        if row.psbt_unsigned is None:
            self._prepare(order_id, kind)
            return False
        if row.spend_txid is None:
            if row.psbt_party is None:
                return False  # waiting for the party's signature
            self._broadcast(row)
            row = self._row(order_id)
        confirmations = self._confirmations(row)
        if confirmations < self.k:
            return False
        if row.spend_height is None:
            with self.ctx.db.session() as session:
                escrow_row(session, order_id).spend_height = self.chain.getblockcount() - confirmations + 1
        return True

    def _prepare(self, order_id: int, kind: str) -> None:
        with self.ctx.db.session(write=False) as session:
            order, row = records.read(session, order_id), escrow_row(session, order_id)
        escrow = script_of(row)
        funding = onchain.funding(self.watch_rpc, escrow, row.amount_sats, self.k, _funding(row.funding_json))
        terms = onchain.Terms(price_sats=order.price_sats, commission_sats=order.fee_sats,
                              buyer_address=row.buyer_address, seller_address=row.seller_address,
                              marketplace_address=row.fee_address)
        if kind == "release":
            outputs, fee_from = release_outputs(terms, funding)
        elif kind == "split":
            outputs, fee_from = split_outputs(terms, funding, order)
        else:
            outputs, fee_from = refund_outputs(terms, funding)
        spend = onchain.create_spend(self.watch_rpc, escrow, funding.spendable, outputs, fee_rate_sat_vb=self.fee_rate,
                                     fee_from=fee_from)
        signed = onchain.ArbiterSigner(self.chain, self.keychain.key(row.arbiter_index)).sign(spend.psbt, escrow)
        signer = {"release": "seller", "refund": "buyer"}.get(kind, fee_from)
        plan = {"fee_from": fee_from, "fee_sats": spend.fee_sats,
                "inputs": [u.outpoint for u in spend.inputs],
                "paid": [[o.role, o.address, spend.paid_sats(o.role)] for o in spend.outputs]}
        with self.ctx.db.session() as session:
            fresh = escrow_row(session, order_id)
            if fresh.psbt_unsigned is not None:
                return
            fresh.spend_kind, fresh.spend_signer, fresh.spend_plan = kind, signer, json.dumps(plan)
            fresh.psbt_unsigned, fresh.psbt_arbiter = spend.psbt, signed
            signer_id = order.seller_id if signer == "seller" else order.buyer_id
            outbox.notify(session, (signer_id,), "escrow.sign_psbt", f"Order #{order_id}: sign the {kind} of the "
                          f"escrow (GET /orders/{order_id}/psbt) so it can be broadcast.", order_id)
        log.info("order %s: %s planned and signed by the arbiter; waiting for the %s", order_id, kind, signer)

    def _broadcast(self, row: OnchainEscrow) -> None:
        tx_hex = onchain.finalize(self.chain, script_of(row), [row.psbt_arbiter, row.psbt_party])
        txid = self.chain.call("decoderawtransaction", tx_hex)["txid"]
        with self.ctx.db.session() as session:  # recorded before it is sent: a crash resends the same tx
            fresh = escrow_row(session, row.order_id)
            fresh.spend_txid, fresh.spend_hex = txid, tx_hex
        faults.point("after_spend_recorded", self.ctx.settings.fault_points)  # resume rebroadcasts it
        self._send(row.order_id, tx_hex)
        faults.point("after_spend_broadcast", self.ctx.settings.fault_points)  # resume waits for k, records

    def _send(self, order_id: int, tx_hex: str) -> None:
        try:
            onchain.broadcast(self.chain, tx_hex)
        except onchain.SpendRejected as exc:
            if "already" not in exc.message:  # already in the chain: nothing to do
                raise
        log.info("order %s: escrow spend broadcast", order_id)

    def _confirmations(self, row: OnchainEscrow) -> int:
        """The spend's confirmations; rebroadcast if a reorg (or eviction) lost it."""
        try:
            confirmations = int(self.watch_rpc.gettransaction(row.spend_txid)["confirmations"])
        except RpcError:
            confirmations = 0
        if confirmations < 0:
            log.warning("order %s: spend %s conflicts with a confirmed transaction", row.order_id, row.spend_txid)
        if confirmations == 0:
            try:
                self.chain.getmempoolentry(row.spend_txid)
            except RpcError:
                log.warning("order %s: spend %s left the chain and the mempool; sending it again",
                            row.order_id, row.spend_txid)
                self._send(row.order_id, row.spend_hex)
        return confirmations
