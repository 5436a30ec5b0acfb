"""Custodial wallet schemas: balances, deposits, withdrawals, and the admin's reconciliation."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .money import Sats

MAX_SATS = 2_100_000_000_000_000


class WalletOut(BaseModel):
    user_id: int
    available_sats: int
    held_sats: int = Field(description="escrowed for your open orders")
    inflight_sats: int = Field(description="reserved for withdrawals the node has not finished")
    total_sats: int
    deposit_address: str = Field(description="credited after `confirmations` blocks")
    confirmations: int


LND_MAX_INVOICE_SATS = 100_000 * 100_000_000
# bech32 characters only: the invoice goes into the hub's URL path (decodepayreq), where a
# control character made httpx raise InvalidURL (a 500)
BOLT11_PATTERN = r"^[A-Za-z0-9]+$"


class LnDepositIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # lnd refuses invoices above 100,000 BTC (a 500 from the hub before this bound)
    amount_sats: Sats = Field(gt=0, le=min(MAX_SATS, LND_MAX_INVOICE_SATS))


class LnDepositOut(BaseModel):
    payment_request: str
    payment_hash: str
    amount_sats: int
    state: str


class LnWithdrawalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_request: str = Field(min_length=20, max_length=2000, pattern=BOLT11_PATTERN)


class LnWithdrawalOut(BaseModel):
    payment_hash: str
    status: str = Field(description="RESERVED or IN_FLIGHT (funds reserved), SUCCEEDED or FAILED (final)")
    amount_sats: int
    fee_limit_sats: int
    fee_sats: int
    internal: bool
    last_error: str | None


class OnchainWithdrawalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str = Field(min_length=14, max_length=100, pattern=r"^[A-Za-z0-9]+$")
    amount_sats: Sats = Field(gt=0, le=MAX_SATS, description="whole satoshis; the miner fee share comes out of it")


class OnchainWithdrawalOut(BaseModel):
    id: int
    address: str
    amount_sats: int
    status: str = Field(description="PENDING, BATCHED, BROADCAST, CONFIRMED or FAILED")
    txid: str | None = None


class WithdrawalsOut(BaseModel):
    lightning: list[LnWithdrawalOut]
    onchain: list[OnchainWithdrawalOut]


class MismatchOut(BaseModel):
    account: str
    expected: int
    actual: int
    detail: str


class ReconcileOut(BaseModel):
    ok: bool
    wallet: str
    totals: dict[str, int]
    mismatches: list[MismatchOut]
