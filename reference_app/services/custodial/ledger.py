"""The double-entry core: accounts, idempotent balanced transfers, balances, checks.

Race safety (I6) rests on one statement per leg, a guarded update:

    UPDATE custody_accounts SET balance = balance + :delta
     WHERE id = :id AND (NOT floor_zero OR balance + :delta >= 0)

On SQLite every write session already holds the database's write lock
(BEGIN IMMEDIATE), so transfers are serial. On PostgreSQL (READ COMMITTED) the
UPDATE locks the row; a concurrent transfer on the same account waits, then
re-checks the WHERE against the committed balance, so two withdrawals of a
whole balance cannot both pass. Legs are applied in account-id order, so two
transfers touching the same accounts lock them in the same order and cannot
deadlock. A leg that matches no row raises InsufficientFunds and the caller's
session rolls the whole transfer back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...store.models_ledger import LedgerAccount, LedgerEntry, LedgerTransfer
from ..errors import Conflict, InsufficientFunds, ValidationFailed

USER_KINDS = ("available", "held", "inflight")
# Liabilities: what the marketplace owes (users' money, its own fee revenue); never negative.
FEES = "sys:fees"
# Assets: what the ledger believes the nodes hold for custody; negative balances, no floor
# (one pool may front the other's liquidity; reconcile compares each with node truth).
HOT_WALLET = "sys:hot_wallet"          # confirmed coins in the custody bitcoind wallet
ONCHAIN_OUTGOING = "sys:onchain_outgoing"  # broadcast batches not yet k-confirmed
HUB_LN = "sys:hub_ln"                  # the hub LND's balance owed to custody accounts
SYSTEM_LIABILITIES = (FEES,)
SYSTEM_ASSETS = (HOT_WALLET, ONCHAIN_OUTGOING, HUB_LN)


def user_account(user_id: int, kind: str) -> str:
    if kind not in USER_KINDS:
        raise ValueError(f"unknown user account kind {kind!r}; expected one of {USER_KINDS}")
    return f"user:{user_id}:{kind}"


@dataclass(frozen=True)
class Posted:
    """A transfer as recorded. ``replayed`` is True when the key had been posted before."""

    id: int
    key: str
    kind: str
    legs: tuple[tuple[str, int], ...]
    replayed: bool = False

    def amount_for(self, account: str) -> int:
        return sum(a for name, a in self.legs if name == account)


@dataclass(frozen=True)
class UserBalances:
    available: int
    held: int
    inflight: int

    @property
    def total(self) -> int:
        return self.available + self.held + self.inflight


@dataclass(frozen=True)
class Mismatch:
    """One disagreement: which account or record, what was expected, what was found."""

    account: str
    expected: int
    actual: int
    detail: str = ""


def _parse(name: str) -> tuple[int | None, str, bool]:
    """(user id, kind, floor_zero) of an account name."""
    parts = name.split(":")
    if len(parts) == 3 and parts[0] == "user" and parts[1].isdigit() and parts[2] in USER_KINDS:
        return int(parts[1]), parts[2], True
    if name in SYSTEM_LIABILITIES:
        return None, "liability", True
    if name in SYSTEM_ASSETS:
        return None, "asset", False
    raise ValueError(f"unknown account {name!r}")


def _insert_ignore(session: Session, rows: list[dict]) -> None:
    table = LedgerAccount.__table__
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(rows).on_conflict_do_nothing(index_elements=["name"])
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(rows).on_conflict_do_nothing(index_elements=["name"])
    else:
        raise RuntimeError(f"the custodial ledger supports sqlite and postgresql, not {dialect}")
    session.execute(stmt)


def accounts(session: Session, names: Iterable[str]) -> dict[str, int]:
    """Ids of the named accounts, creating missing ones (concurrent creators are fine)."""
    names = sorted(set(names))
    found = dict(session.execute(select(LedgerAccount.name, LedgerAccount.id)
                                 .where(LedgerAccount.name.in_(names))).all())
    missing = [n for n in names if n not in found]
    if missing:
        rows = []
        for name in missing:
            user_id, kind, floor = _parse(name)
            rows.append({"name": name, "user_id": user_id, "kind": kind, "floor_zero": floor, "balance": 0})
        _insert_ignore(session, rows)
        found.update(session.execute(select(LedgerAccount.name, LedgerAccount.id)
                                     .where(LedgerAccount.name.in_(missing))).all())
    return found


def _digest(kind: str, legs: Sequence[tuple[str, int]]) -> str:
    canonical = json.dumps({"kind": kind, "legs": sorted([n, a] for n, a in legs)}, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _validate(legs: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    merged: dict[str, int] = {}
    for name, amount in legs:
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise ValidationFailed(f"amount for {name} must be integer sats, got {amount!r}", field="amount")
        _parse(name)
        merged[name] = merged.get(name, 0) + amount
    merged = {n: a for n, a in merged.items() if a != 0}
    if sum(merged.values()) != 0:
        raise ValidationFailed(f"a transfer must sum to zero, these legs sum to {sum(merged.values())}",
                               field="amount")
    if len(merged) < 2:
        raise ValidationFailed("a transfer moves a non-zero amount between at least two accounts", field="amount")
    return sorted(merged.items())


def _existing(session: Session, key: str, digest: str) -> Posted | None:
    row = session.scalar(select(LedgerTransfer).where(LedgerTransfer.key == key))
    if row is None:
        return None
    if row.digest != digest:
        raise Conflict(f"transfer key {key!r} was already used for a different transfer ({row.kind})", key=key)
    return _load(session, row, replayed=True)


def _load(session: Session, row: LedgerTransfer, replayed: bool) -> Posted:
    legs = session.execute(select(LedgerAccount.name, LedgerEntry.amount)
                           .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
                           .where(LedgerEntry.transfer_id == row.id)
                           .order_by(LedgerAccount.name)).all()
    return Posted(row.id, row.key, row.kind, tuple(legs), replayed)


def find(session: Session, key: str) -> Posted | None:
    """The transfer posted under ``key``, if any."""
    row = session.scalar(select(LedgerTransfer).where(LedgerTransfer.key == key))
    return None if row is None else _load(session, row, replayed=True)


def transfer(session: Session, key: str, kind: str, legs: Sequence[tuple[str, int]], memo: str = "") -> Posted:
    """Post a balanced transfer inside the caller's write session, at most once per ``key``.

    The same key with the same kind and legs returns the first posting (``replayed``);
    with other content it raises Conflict. A leg that would take a floor-zero account
    below zero raises InsufficientFunds; the caller's session then rolls back everything.
    """
    clean = _validate(legs)
    digest = _digest(kind, clean)
    seen = _existing(session, key, digest)
    if seen is not None:
        return seen
    ids = accounts(session, (n for n, _ in clean))
    try:
        with session.begin_nested():
            row = LedgerTransfer(key=key, kind=kind, digest=digest, memo=memo)
            session.add(row)
            session.flush()
    except IntegrityError:
        # PostgreSQL: a concurrent transaction posted this key first and has committed.
        seen = _existing(session, key, digest)
        if seen is None:
            raise
        return seen
    for name, amount in sorted(clean, key=lambda leg: ids[leg[0]]):
        result = session.execute(
            update(LedgerAccount)
            .where(LedgerAccount.id == ids[name],
                   (LedgerAccount.floor_zero.is_(False)) | (LedgerAccount.balance + amount >= 0))
            .values(balance=LedgerAccount.balance + amount)
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            have = session.scalar(select(LedgerAccount.balance).where(LedgerAccount.id == ids[name]))
            raise InsufficientFunds(f"account {name} has {have} sats; {kind} needs {-amount}",
                                    account=name, balance_sats=have, needed_sats=-amount)
        session.add(LedgerEntry(transfer_id=row.id, account_id=ids[name], amount=amount))
    session.flush()
    return Posted(row.id, key, kind, tuple(clean), False)


def balance(session: Session, name: str) -> int:
    """The cached balance of one account (0 if it was never used)."""
    return session.scalar(select(LedgerAccount.balance).where(LedgerAccount.name == name)) or 0


def user_balances(session: Session, user_id: int) -> UserBalances:
    rows = dict(session.execute(select(LedgerAccount.kind, LedgerAccount.balance)
                                .where(LedgerAccount.user_id == user_id)).all())
    return UserBalances(*(int(rows.get(k, 0)) for k in USER_KINDS))


def all_balances(session: Session) -> dict[str, int]:
    return dict(session.execute(select(LedgerAccount.name, LedgerAccount.balance)).all())


def check(session: Session) -> list[Mismatch]:
    """Recompute from entries: every cached balance, every transfer's zero sum, every floor.

    ``expected`` is what the entries say, ``actual`` what the cached row or sum holds.
    """
    found: list[Mismatch] = []
    sums = dict(session.execute(select(LedgerEntry.account_id, func.coalesce(func.sum(LedgerEntry.amount), 0))
                                .group_by(LedgerEntry.account_id)).all())
    for acc in session.scalars(select(LedgerAccount).order_by(LedgerAccount.name)):
        recomputed = int(sums.get(acc.id, 0))
        if recomputed != acc.balance:
            found.append(Mismatch(acc.name, recomputed, int(acc.balance), "cached balance differs from its entries"))
        if acc.floor_zero and acc.balance < 0:
            found.append(Mismatch(acc.name, 0, int(acc.balance), "balance below zero"))
    unbalanced = session.execute(
        select(LedgerTransfer.key, func.sum(LedgerEntry.amount))
        .join(LedgerEntry, LedgerEntry.transfer_id == LedgerTransfer.id)
        .group_by(LedgerTransfer.id, LedgerTransfer.key)
        .having(func.sum(LedgerEntry.amount) != 0)).all()
    for key, total in unbalanced:
        found.append(Mismatch(f"transfer:{key}", 0, int(total), "entries do not sum to zero"))
    return found
