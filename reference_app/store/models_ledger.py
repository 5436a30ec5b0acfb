"""Custodial ledger tables (the dBay model): double-entry accounts, transfers
and entries, plus the records that tie ledger transfers to node events
(deposit addresses and outputs, hub invoices, LN payments, on-chain batches).

Money is integer sats. Entry amounts are signed, credit-positive: user and
fee accounts (liabilities) carry positive balances, the asset accounts that
mirror node holdings (hot wallet, hub LN) carry negative ones. Every transfer's
entries sum to zero, so the sum of all balances is always zero.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UtcDateTime, utcnow


class LedgerAccount(Base):
    """One balance. ``floor_zero`` accounts (users' and fees) can never go below zero;
    ``balance`` is a cache of the sum of its entries, updated in the same transaction."""

    __tablename__ = "custody_accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)      # user:<id>:available, sys:fees, ...
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(20))                   # available|held|inflight|liability|asset
    floor_zero: Mapped[bool] = mapped_column(Boolean)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class LedgerTransfer(Base):
    """A balanced set of entries, posted at most once per ``key``; ``digest`` is
    the hash of its content, so a replay with other content is a conflict."""

    __tablename__ = "custody_transfers"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    memo: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class LedgerEntry(Base):
    __tablename__ = "custody_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("custody_transfers.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("custody_accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class DepositAddress(Base):
    """A user's on-chain deposit address in the custody wallet (labelled ``user:<id>`` there too)."""

    __tablename__ = "custody_deposit_addresses"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    address: Mapped[str] = mapped_column(String(100), unique=True)
    hd_path: Mapped[str] = mapped_column(String(60), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class OnchainDeposit(Base):
    """One output paying a deposit address: SEEN until k confirmations, then CREDITED once;
    GONE when a reorg or a conflict removed it before that."""

    __tablename__ = "custody_deposits"
    id: Mapped[int] = mapped_column(primary_key=True)
    txid: Mapped[str] = mapped_column(String(64))
    vout: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    address: Mapped[str] = mapped_column(String(100))
    amount_sats: Mapped[int] = mapped_column(BigInteger)
    confirmations: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(10), default="SEEN")
    # set when a credited deposit later left the chain (a reorg deeper than k)
    reorged_after_credit: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    credited_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    __table_args__ = (UniqueConstraint("txid", "vout", name="uq_custody_deposit_outpoint"),)


class ChainCursor(Base):
    """Where a chain scan resumes (``listsinceblock``'s lastblock)."""

    __tablename__ = "custody_cursors"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    block_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class LnDepositInvoice(Base):
    """A hub invoice that credits one custodial account: OPEN, CREDITED (settled on the
    node and credited once), PAID_INTERNAL (another account paid it inside the ledger),
    CANCELED."""

    __tablename__ = "custody_ln_invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
    payment_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_sats: Mapped[int] = mapped_column(BigInteger)
    payment_request: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(14), default="OPEN")
    credited_sats: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class LnWithdrawal(Base):
    """A payment out of a custodial account. One per payment hash across all accounts
    (F32-F35). RESERVED (funds in inflight, nothing sent yet) -> IN_FLIGHT -> SUCCEEDED |
    FAILED. Balances change only on a final status (I14)."""

    __tablename__ = "custody_ln_withdrawals"
    id: Mapped[int] = mapped_column(primary_key=True)
    payment_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    payment_request: Mapped[str] = mapped_column(Text)
    amount_sats: Mapped[int] = mapped_column(BigInteger)
    fee_limit_sats: Mapped[int] = mapped_column(BigInteger)
    fee_sats: Mapped[int] = mapped_column(BigInteger, default=0)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(10), default="RESERVED", index=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class WithdrawalBatch(Base):
    """One on-chain transaction paying many withdrawal requests: BROADCAST -> CONFIRMED
    (k confirmations, reservations settled) | FAILED (conflicted, reservations returned)."""

    __tablename__ = "custody_batches"
    id: Mapped[int] = mapped_column(primary_key=True)
    txid: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    status: Mapped[str] = mapped_column(String(10), default="BUILDING", index=True)
    total_sats: Mapped[int] = mapped_column(BigInteger, default=0)
    miner_fee_sats: Mapped[int] = mapped_column(BigInteger, default=0)
    confirmations: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class OnchainWithdrawal(Base):
    """A request to send ``amount_sats`` (the miner fee share comes out of it):
    PENDING (reserved) -> BROADCAST -> CONFIRMED | FAILED (reservation returned)."""

    __tablename__ = "custody_onchain_withdrawals"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_key: Mapped[str] = mapped_column(String(120), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    address: Mapped[str] = mapped_column(String(100))
    amount_sats: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="PENDING", index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("custody_batches.id"), nullable=True, index=True)
    vout: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
