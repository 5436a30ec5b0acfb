"""The custodial wallet of the signed-in user, and the admin's reconciliation.

Deposits and withdrawals open their own write sessions (a withdrawal commits
its reservation before anything is sent, I5), so these routes check the user
on a read session instead of holding the request's writer meanwhile.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Request, Response, status

from regtest_cluster.nodes.bitcoind import RpcError

from ...context import AppContext
from ...services.custodial import deposit_address, ledger, ln_deposit_invoice, ln_withdraw, request_onchain_withdrawal
from ...services.errors import NodeUnavailable
from ...services.modes.custodial import CustodialMode, ledger_view, wallet_name, withdrawals_of
from ...services.accounts import Principal
from ...store.models import User
from ..routing import Route
from ..deps import bearer_token, get_ctx, require_role, signs_in, user_from_token
from ..schemas.wallet import (LnDepositIn, LnDepositOut, LnWithdrawalIn, LnWithdrawalOut, MismatchOut,
                              OnchainWithdrawalIn, OnchainWithdrawalOut, ReconcileOut, WalletOut, WithdrawalsOut)

router = APIRouter(route_class=Route, tags=["wallet"])
LN_WITHDRAW_WAIT_S = 5.0   # then answer 202 IN_FLIGHT; the worker follows the payment to its end
IDEMPOTENCY_KEY = Header(None, alias="Idempotency-Key", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$",
                         description="Repeating a request with the same key returns the first result.")


@signs_in
async def account_holder(request: Request) -> User:
    """The signed-in user, checked by the one ``user_from_token`` on a short read session."""
    ctx: AppContext = request.app.state.ctx
    with ctx.db.session(write=False) as session:
        return user_from_token(bearer_token(request), ctx, session, request)


async def custodial(ctx: AppContext = Depends(get_ctx)) -> CustodialMode:
    mode = ctx.modes.get(CustodialMode.name)
    if mode is None:
        raise NodeUnavailable("custodial accounts need the marketplace's bitcoind, and this app has none")
    return mode


def hub_of(ctx: AppContext) -> None:
    if ctx.hub is None:
        raise NodeUnavailable("Lightning deposits and withdrawals need the hub node, and this app has none")


@router.get("/wallet", response_model=WalletOut)
def wallet(user: User = Depends(account_holder), mode: CustodialMode = Depends(custodial),
           ctx: AppContext = Depends(get_ctx)) -> WalletOut:
    """Your balances and your on-chain deposit address (the same one every time)."""
    try:
        address = deposit_address(ctx, mode.wallet, user.id)
    except RpcError as exc:
        raise NodeUnavailable(f"bitcoind: {exc.message}") from exc
    with ctx.db.session(write=False) as session:
        b = ledger.user_balances(session, user.id)
    return WalletOut(user_id=user.id, available_sats=b.available, held_sats=b.held, inflight_sats=b.inflight,
                     total_sats=b.total, deposit_address=address, confirmations=ctx.settings.custodial_confirmations)


@router.post("/wallet/deposits/ln", status_code=status.HTTP_201_CREATED, response_model=LnDepositOut)
def deposit_ln(body: LnDepositIn, user: User = Depends(account_holder), _mode: CustodialMode = Depends(custodial),
               ctx: AppContext = Depends(get_ctx)) -> LnDepositOut:
    """A hub invoice; paying it credits your available balance once the hub settles it."""
    hub_of(ctx)
    invoice = ln_deposit_invoice(ctx, user.id, body.amount_sats)
    return LnDepositOut(payment_request=invoice.payment_request, payment_hash=invoice.payment_hash,
                        amount_sats=invoice.amount_sats, state=invoice.state)


@router.post("/wallet/withdrawals/ln", response_model=LnWithdrawalOut,
             responses={202: {"description": "sent, not final yet: the amount and fee reserve stay reserved"}})
def withdraw_ln(body: LnWithdrawalIn, response: Response, user: User = Depends(account_holder),
                _mode: CustodialMode = Depends(custodial), ctx: AppContext = Depends(get_ctx),
                idempotency_key: str | None = IDEMPOTENCY_KEY) -> LnWithdrawalOut:
    """Pay an invoice from your available balance (amount plus a fee reserve, the unused part returned).

    The invoice's payment hash is the idempotency key: the same invoice again returns
    the same withdrawal, never a second payment.
    """
    hub_of(ctx)
    s = ctx.settings
    view = ln_withdraw(ctx, user.id, body.payment_request, fee_reserve_ppm=s.custodial_fee_reserve_ppm,
                       fee_reserve_min_sats=s.custodial_fee_reserve_min_sats, wait_s=LN_WITHDRAW_WAIT_S)
    if view.status not in ("SUCCEEDED", "FAILED"):
        response.status_code = status.HTTP_202_ACCEPTED
    return LnWithdrawalOut(payment_hash=view.payment_hash, status=view.status, amount_sats=view.amount_sats,
                           fee_limit_sats=view.fee_limit_sats, fee_sats=view.fee_sats, internal=view.internal,
                           last_error=view.last_error)


@router.post("/wallet/withdrawals/onchain", status_code=status.HTTP_202_ACCEPTED, response_model=OnchainWithdrawalOut)
def withdraw_onchain(body: OnchainWithdrawalIn, user: User = Depends(account_holder),
                     mode: CustodialMode = Depends(custodial), ctx: AppContext = Depends(get_ctx),
                     idempotency_key: str | None = IDEMPOTENCY_KEY) -> OnchainWithdrawalOut:
    """Reserve the amount now; the next batch pays it in one transaction with others."""
    try:
        view = request_onchain_withdrawal(ctx, user.id, body.address, body.amount_sats, key=idempotency_key,
                                          wallet=mode.wallet,
                                          min_amount_sats=ctx.settings.custodial_min_onchain_withdrawal_sats)
    except RpcError as exc:
        raise NodeUnavailable(f"bitcoind: {exc.message}") from exc
    return OnchainWithdrawalOut(id=view.id, address=view.address, amount_sats=view.amount_sats, status=view.status)


@router.get("/wallet/withdrawals", response_model=WithdrawalsOut)
def withdrawals(user: User = Depends(account_holder), _mode: CustodialMode = Depends(custodial),
                ctx: AppContext = Depends(get_ctx)) -> WithdrawalsOut:
    ln, onchain = withdrawals_of(ctx, user.id)
    return WithdrawalsOut(lightning=[LnWithdrawalOut(**{k: w[k] for k in LnWithdrawalOut.model_fields}) for w in ln],
                          onchain=[OnchainWithdrawalOut(**r) for r in onchain])


@router.get("/admin/reconcile", response_model=ReconcileOut)
def admin_reconcile(_admin: Principal = Depends(require_role("admin")), mode: CustodialMode = Depends(custodial),
                    ctx: AppContext = Depends(get_ctx)) -> ReconcileOut:
    """The ledger against itself, the custody wallet and the hub; ``ok`` only with no mismatch."""
    try:
        report = mode.reconcile()
    except RpcError as exc:
        raise NodeUnavailable(f"bitcoind: {exc.message}") from exc
    return ReconcileOut(ok=report.ok, wallet=wallet_name(ctx.settings), totals=report.totals,
                        mismatches=[MismatchOut(account=m.account, expected=m.expected, actual=m.actual,
                                                detail=m.detail) for m in report.mismatches])


@router.get("/admin/ledger")
def admin_ledger(_admin: Principal = Depends(require_role("admin")), _mode: CustodialMode = Depends(custodial),
                 ctx: AppContext = Depends(get_ctx)) -> dict:
    """What the ledger claims: balances, each custodial order's postings, deposits and withdrawals."""
    return ledger_view(ctx)
