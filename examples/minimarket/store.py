"""minimarket's storage: one SQLite file, one connection, one lock.

Every read and write runs inside ``Store.tx()``: a ``BEGIN IMMEDIATE`` transaction
under a process-wide lock, so a compare-and-swap (``UPDATE ... WHERE state = ?``)
and the timeline and notification rows written with it commit together or not at all.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from typing import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, roles TEXT NOT NULL, api_key TEXT UNIQUE NOT NULL,
  address_hash TEXT, node_url TEXT, node_macaroon TEXT, node_cert TEXT, node_pubkey TEXT);
CREATE TABLE IF NOT EXISTS listings (
  id INTEGER PRIMARY KEY, seller_id INTEGER NOT NULL, title TEXT NOT NULL, price_sats INTEGER NOT NULL,
  stock INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
  id INTEGER PRIMARY KEY, listing_id INTEGER NOT NULL, buyer_id INTEGER NOT NULL, seller_id INTEGER NOT NULL,
  state TEXT NOT NULL, price_sats INTEGER NOT NULL, fee_sats INTEGER NOT NULL, buyer_share_ppm INTEGER,
  address_hash TEXT, courier TEXT, tracking TEXT, delivered INTEGER DEFAULT 0, disputed INTEGER DEFAULT 0,
  deadline_height INTEGER,
  -- the hold invoice on the hub
  payment_hash TEXT, payment_request TEXT, preimage_sealed BLOB, cltv_expiry INTEGER,
  htlc_expiry_height INTEGER, lnd_state TEXT,
  UNIQUE (courier, tracking));
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, event TEXT NOT NULL, from_state TEXT NOT NULL,
  to_state TEXT NOT NULL, actor TEXT NOT NULL, height INTEGER, at TEXT NOT NULL, detail TEXT DEFAULT '');
CREATE TABLE IF NOT EXISTS notifications (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, order_id INTEGER, kind TEXT NOT NULL, message TEXT,
  at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payouts (
  id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, beneficiary TEXT NOT NULL, user_id INTEGER NOT NULL,
  amount_sats INTEGER NOT NULL, payment_request TEXT, payment_hash TEXT, status TEXT NOT NULL DEFAULT 'PENDING',
  attempts INTEGER NOT NULL DEFAULT 0, fee_sats INTEGER NOT NULL DEFAULT 0, last_error TEXT,
  retry_at REAL NOT NULL DEFAULT 0, UNIQUE (order_id, beneficiary));
CREATE TABLE IF NOT EXISTS courier_events (courier TEXT, event_id TEXT, PRIMARY KEY (courier, event_id));
CREATE TABLE IF NOT EXISTS messages (
  id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, user_id INTEGER NOT NULL, body TEXT NOT NULL,
  at TEXT NOT NULL);
"""


class Store:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        self.lock = threading.RLock()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            if self.db.in_transaction:  # nested: the outer transaction commits
                yield self.db
                return
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def one(self, sql: str, *args) -> dict | None:
        with self.tx() as db:
            row = db.execute(sql, args).fetchone()
            return dict(row) if row else None

    def all(self, sql: str, *args) -> list[dict]:
        with self.tx() as db:
            return [dict(r) for r in db.execute(sql, args)]
