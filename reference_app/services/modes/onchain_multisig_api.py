"""onchain_multisig, what the API calls: binding a party's keys, the escrow as the chain
shows it, and the spend awaiting a party's signature (GET/POST /orders/{id}/psbt).
The mode itself, watching and spending, is in onchain_multisig.py.
"""

from __future__ import annotations

import json
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from regtest_cluster.nodes.bitcoind import RpcError

from ...context import AppContext
from ...store.models import User
from ...store.models_onchain import OnchainEscrow, OnchainKeys
from .. import onchain
from ..errors import NodeUnavailable, NotFound, ValidationFailed
from ..onchain.psbt import PsbtParseError, summarize
from ..records import OrderRecord
from .onchain_multisig import OnchainMode, _funding, escrow_row, pubkey, script_of

# What getaddressinfo's desc holds inside wpkh(...): the origin lets the wallet recognise its key.
ORIGIN_KEY = re.compile(r"\[[0-9a-f]{8}(?:/\d+[h']?)+\](?:02|03)[0-9a-f]{64}")


# The first step of a key's path says which of a descriptor wallet's descriptors it belongs to.
_PURPOSES = {"44": "a legacy pkh() key (BIP44)", "49": "a nested SegWit sh(wpkh()) key (BIP49)",
             "86": "a taproot tr() key (BIP86)"}


def check_payout_key(value: str) -> None:
    """Escrow spends pay the party to wpkh(key). A descriptor wallet shows that output only if
    the key is one of its wpkh() descriptor's (BIP84, path 84h/...): from a 44h pkh() key, say,
    the release would land in an address the wallet does not show until a wpkh() descriptor
    is imported. Refuse such keys, saying why."""
    steps = value[1:value.index("]")].split("/")[1:]
    purpose = steps[0].rstrip("h'") if steps else ""
    if purpose == "84" and steps[0] != purpose:
        return
    what = _PURPOSES.get(purpose, f"from path {'/'.join(steps) or 'm'}, not BIP84's 84h/...")
    raise ValidationFailed(
        f"key is {what}: escrow releases and refunds pay you to wpkh(key), a native SegWit (P2WPKH) "
        "address, which your wallet shows only for keys of its wpkh() descriptor (BIP84, path 84h/...). "
        "Hand in the key of a bech32 address: getnewaddress with address_type bech32, then the "
        "[fingerprint/84h/...]pubkey inside getaddressinfo's desc", field="key")


def mode_of(ctx: AppContext) -> OnchainMode:
    mode = ctx.modes.get(OnchainMode.name)
    if ctx.chain is None or mode is None:
        raise NodeUnavailable("this marketplace has no bitcoind: on-chain escrow is unavailable")
    return mode


def bind_keys(ctx: AppContext, session: Session, user: User, key: str, timeout_key: str | None) -> OnchainKeys:
    """Bind (or replace) the user's keys for future escrows; open escrows keep theirs."""
    mode = mode_of(ctx)
    for field, value in (("key", key), ("timeout_key", timeout_key)):
        if value is None:
            continue
        if not ORIGIN_KEY.fullmatch(value):
            raise ValidationFailed(f"{field} must be one key with its origin, [fingerprint/path]pubkey (compressed, "
                                   "hex), as getaddressinfo's desc shows it inside wpkh(...)", field=field)
        try:
            mode.chain.getdescriptorinfo(f"wpkh({value})")
        except RpcError as exc:
            if exc.code == -1:
                raise NodeUnavailable(f"bitcoind cannot be reached: {exc.message}") from exc
            raise ValidationFailed(f"{field} is not a valid key: bitcoind says {exc.message}", field=field) from exc
    check_payout_key(key)  # the timeout_key only signs: no output is paid to it
    if timeout_key is not None and pubkey(timeout_key) == pubkey(key):
        raise ValidationFailed("timeout_key must be a second key: a script cannot use one key twice",
                               field="timeout_key")
    keys = session.scalar(select(OnchainKeys).where(OnchainKeys.user_id == user.id))
    if keys is None:
        keys = OnchainKeys(user_id=user.id, key=key)
        session.add(keys)
    keys.key, keys.timeout_key = key, timeout_key
    session.flush()
    return keys


def _escrow_of(session: Session, order: OrderRecord) -> OnchainEscrow:
    row = escrow_row(session, order.id) if order.escrow_mode == OnchainMode.name else None
    if row is None:
        raise NotFound(f"order {order.id} has no on-chain escrow (its escrow mode is {order.escrow_mode})")
    return row


def escrow_view(ctx: AppContext, session: Session, order: OrderRecord) -> dict:
    """The escrow as the chain shows it now (a fresh look, not the worker's last one)."""
    mode, row = mode_of(ctx), _escrow_of(session, order)
    f = onchain.funding(mode.watch_rpc, script_of(row), row.amount_sats, mode.k, _funding(row.funding_json))
    tip = mode.chain.getblockcount()
    confirmed = [u for u in f.utxos if u.confirmations >= 1]
    spend = None
    if row.spend_kind:
        plan = json.loads(row.spend_plan)
        confirmations = None
        if row.spend_txid:
            try:
                confirmations = int(mode.watch_rpc.gettransaction(row.spend_txid)["confirmations"])
            except RpcError:
                confirmations = 0
        spend = dict(kind=row.spend_kind, signer=row.spend_signer, awaiting_signature=row.psbt_party is None,
                     txid=row.spend_txid, confirmations=confirmations, height=row.spend_height,
                     fee_from=plan["fee_from"], fee_sats=plan["fee_sats"], inputs=plan["inputs"],
                     outputs=[dict(role=r, address=a, amount_sats=s) for r, a, s in plan["paid"]])
    return dict(
        order_id=order.id, address=row.address, descriptor=row.descriptor, amount_sats=row.amount_sats,
        required_confirmations=mode.k, timeout_blocks=row.timeout_blocks,
        timeout_height=max(tip - u.confirmations + 1 for u in confirmed) + row.timeout_blocks if confirmed else None,
        funding_status=f.status.value, confirmed_sats=f.confirmed_sats, total_sats=f.total_sats,
        confirmations=min((u.confirmations for u in f.utxos), default=0),
        utxos=[dict(txid=u.txid, vout=u.vout, amount_sats=u.amount_sats, confirmations=u.confirmations)
               for u in f.utxos],
        buyer_key=row.buyer_key, seller_key=row.seller_key, arbiter_key=row.arbiter_key, timeout_key=row.timeout_key,
        buyer_address=row.buyer_address, seller_address=row.seller_address, marketplace_address=row.fee_address,
        spend=spend)


def _awaiting(session: Session, order: OrderRecord, user: User) -> OnchainEscrow:
    row = _escrow_of(session, order)
    role = "buyer" if user.id == order.buyer_id else "seller" if user.id == order.seller_id else None
    if row.psbt_unsigned is None or row.psbt_party is not None or row.spend_signer != role:
        raise NotFound(f"no PSBT awaits your signature on order {order.id}"
                       + (f" (the {row.spend_kind} waits for the {row.spend_signer})"
                          if row.psbt_party is None and row.spend_signer and row.spend_signer != role else ""))
    return row


def awaiting_psbt(ctx: AppContext, session: Session, order: OrderRecord, user: User) -> dict:
    mode_of(ctx)
    row = _awaiting(session, order, user)
    plan = json.loads(row.spend_plan)
    return dict(order_id=order.id, kind=row.spend_kind, signer=row.spend_signer, psbt=row.psbt_unsigned,
                fee_sats=plan["fee_sats"], fee_from=plan["fee_from"],
                outputs=[dict(role=r, address=a, amount_sats=s) for r, a, s in plan["paid"]])


def submit_psbt(ctx: AppContext, session: Session, order: OrderRecord, user: User, psbt: str) -> dict:
    """The party's signed copy of the awaited spend: the same unsigned transaction, signed
    by their key on every input, completing the spend with the arbiter's signature."""
    mode = mode_of(ctx)
    row = _awaiting(session, order, user)
    try:
        theirs = mode.chain.decodepsbt(psbt)["tx"]["txid"]
        summary = summarize(psbt)
    except (RpcError, PsbtParseError) as exc:
        raise ValidationFailed(f"psbt is not a PSBT bitcoind can read: {getattr(exc, 'message', exc)}",
                               field="psbt") from exc
    if theirs != mode.chain.decodepsbt(row.psbt_unsigned)["tx"]["txid"]:
        raise ValidationFailed(f"this PSBT signs another transaction, not the {row.spend_kind} awaiting your "
                               f"signature (GET /orders/{order.id}/psbt)", field="psbt")
    key = pubkey(row.seller_key if row.spend_signer == "seller" else row.buyer_key)
    unsigned = [str(n) for n, i in enumerate(summary.inputs) if key not in i.signed_by and not i.finalized]
    if unsigned:
        raise ValidationFailed(f"input(s) {', '.join(unsigned)} carry no signature of your escrow key {key}",
                               field="psbt")
    try:
        onchain.finalize(mode.chain, script_of(row), [row.psbt_arbiter, psbt])
    except onchain.IncompleteSpend as exc:
        raise ValidationFailed(f"your signature does not complete the spend: {exc.message}", field="psbt") from exc
    row.psbt_party = psbt
    session.flush()
    mode.wake()
    return dict(order_id=order.id, kind=row.spend_kind, accepted=True)
