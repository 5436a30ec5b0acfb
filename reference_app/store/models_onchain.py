"""On-chain multisig escrow tables: each party's bound keys, and each order's escrow.

An escrow row holds everything needed to spend it again after a restart: the four
keys and the descriptor (all public; the arbiter's private key is re-derived from
the app's seed by ``arbiter_index``), the last funding observation (the next
observation's ``previous``), and at most one spend: planned, arbiter-signed, waiting
for one party's signature, then broadcast and confirmed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UtcDateTime, utcnow


class OnchainKeys(Base):
    """A user's on-chain keys, ``[fingerprint/path]pubkey`` from their own wallet.

    ``timeout_key`` is a seller's second key, alone able to spend after N blocks
    (miniscript forbids one key twice in a script)."""

    __tablename__ = "onchain_party_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    key: Mapped[str] = mapped_column(String(200))
    timeout_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class OnchainEscrow(Base):
    """One order's 2-of-3 escrow address, its funding as last seen, and its one spend."""

    __tablename__ = "onchain_escrows"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    arbiter_index: Mapped[int] = mapped_column(Integer)
    buyer_key: Mapped[str] = mapped_column(String(200))
    seller_key: Mapped[str] = mapped_column(String(200))
    arbiter_key: Mapped[str] = mapped_column(String(200))
    timeout_key: Mapped[str] = mapped_column(String(200))
    descriptor: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(String(100), unique=True)
    timeout_blocks: Mapped[int] = mapped_column(Integer)
    amount_sats: Mapped[int] = mapped_column(BigInteger)           # what the buyer owes: the price
    # where spends pay: the parties' bound keys as wpkh addresses, and the marketplace's fee wallet
    buyer_address: Mapped[str] = mapped_column(String(100))
    seller_address: Mapped[str] = mapped_column(String(100))
    fee_address: Mapped[str] = mapped_column(String(100))
    # the last funding observation (watch.Funding as JSON), passed back as ``previous``
    funding_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    funding_status: Mapped[str] = mapped_column(String(12), default="none")
    # the spend: release | refund | split, signed by the arbiter, waiting for ``spend_signer``
    spend_kind: Mapped[str | None] = mapped_column(String(10), nullable=True)
    spend_signer: Mapped[str | None] = mapped_column(String(10), nullable=True)   # buyer | seller
    spend_plan: Mapped[str | None] = mapped_column(Text, nullable=True)          # outputs, fee payer, fee (JSON)
    psbt_unsigned: Mapped[str | None] = mapped_column(Text, nullable=True)
    psbt_arbiter: Mapped[str | None] = mapped_column(Text, nullable=True)
    psbt_party: Mapped[str | None] = mapped_column(Text, nullable=True)
    spend_txid: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    spend_hex: Mapped[str | None] = mapped_column(Text, nullable=True)
    spend_height: Mapped[int | None] = mapped_column(Integer, nullable=True)     # k-th confirmation seen at
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
