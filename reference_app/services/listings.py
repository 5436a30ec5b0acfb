"""Listings: the rules for what a seller may offer, and search over what is on offer.

A deleted listing stays in the table (orders point at it) with ``active=False``;
from then on it is gone for everyone: ``get`` says 404 and search skips it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Literal, get_args

from sqlalchemy import (ColumnElement, Select, bindparam, column, func, insert, literal_column, select,
                        table)
from sqlalchemy.orm import Session

from ..config import Settings
from ..store import search_ddl
from ..store.db import Prepared
from ..store.models import Listing, User, utcnow
from .accounts import Principal
from .errors import NotFound, PermissionDenied, ValidationFailed

CATEGORIES = ("electronics", "books", "clothing", "home", "collectibles", "other")
ESCROW_MODES = ("ln_hold", "onchain_multisig", "custodial")
# Every mode can be listed; whether this app can lock funds in it (it has the
# nodes) is decided when an order is placed, with a clear error there.
IMPLEMENTED_ESCROW_MODES = ESCROW_MODES
TITLE_MIN_CHARS, TITLE_MAX_CHARS = 3, 200
DESCRIPTION_MAX_CHARS = 5_000
QUERY_MAX_CHARS = 200
PAGE_MAX = 100
# Column limits (INTEGER ids and stock, BIGINT sats): beyond them PostgreSQL
# raises instead of answering, so such input is refused or cannot match.
ID_MAX = STOCK_MAX = 2**31 - 1
SATS_MAX = 2**63 - 1
Sort = Literal["relevance", "newest", "price_asc", "price_desc"]
SORTS: tuple[str, ...] = get_args(Sort)
EDITABLE = frozenset({"title", "description", "category", "price_sats", "stock", "escrow_mode"})

# Who may do what to a listing, checked in ``authorize`` and nowhere else.
LISTING_ACTIONS: dict[str, frozenset[str]] = {
    "update": frozenset({"owner"}),
    "delete": frozenset({"owner", "admin"}),
}

# What a reader is shown of a listing. Reads select these columns as Core statements on the
# session's connection, not ``Listing`` objects: the ORM's objects and its execution layer
# cost more than SQLite's own work on a page.
PUBLIC_COLUMNS = tuple(c for c in Listing.__table__.c if c.name != "active")
NAMES = tuple(c.name for c in PUBLIC_COLUMNS)
_READ = Prepared(select(*PUBLIC_COLUMNS).where(Listing.id == bindparam("id"), Listing.active.is_(True)))
_CREATE = Prepared(insert(Listing).returning(*PUBLIC_COLUMNS))

# Letters and digits only: what survives can be quoted as an FTS5 string and
# never read as an operator, a column filter or a bracket.
_WORD = re.compile(r"[^\W_]+")


async def create(session: Session, settings: Settings, seller: User | Principal, *, title: str, price_sats: int,
                 stock: int, category: str, description: str = "", escrow_mode: str = "ln_hold") -> dict:
    """Put a new listing on offer; its public columns as stored. The caller has checked that
    ``seller`` has the seller role. One INSERT ... RETURNING (``store.db.Prepared.arows``),
    committed by itself, the session's only write: on PostgreSQL awaited on the event loop; on
    SQLite run on it if this process's write turn is free, else in a transaction begun in a thread.

    On PostgreSQL the ORM's unit of work (an object, its state, a flush) was a fifth of a listing
    write's CPU, SQLAlchemy's execution of the Core statement a seventh, and the rest of a
    transaction in a worker thread (the pool's connection, BEGIN, COMMIT, the thread hand-over)
    half of what was left: 1.09 ms of the server's CPU a write, 0.51 ms now."""
    fields = _validated(settings, {"title": title, "description": description, "category": category,
                                   "price_sats": price_sats, "stock": stock, "escrow_mode": escrow_mode})
    # active, created_at and updated_at take their column defaults, as the ORM gave them
    return dict(zip(NAMES, (await _CREATE.arows(session, {"seller_id": seller.id, **fields}))[0]))


def get(session: Session, listing_id: int) -> Listing:
    """The listing if it is on offer; a deleted one is as absent as one that never existed."""
    listing = session.get(Listing, listing_id) if 1 <= listing_id <= ID_MAX else None
    if listing is None or not listing.active:
        raise NotFound(f"listing {listing_id} does not exist")
    return listing


async def read(session: Session, listing_id: int) -> dict:
    """``get`` for a reader: the listing's public columns by name, with the same 404. Awaited on
    PostgreSQL (``store.db.Prepared.arows``): blocking, the round trip held the event loop."""
    row = await _READ.afirst(session, {"id": listing_id}) if 1 <= listing_id <= ID_MAX else None
    if row is None:
        raise NotFound(f"listing {listing_id} does not exist")
    return dict(zip(NAMES, row))


def relations(user: User, listing: Listing) -> set[str]:
    rel = set()
    if listing.seller_id == user.id:
        rel.add("owner")
    if user.has_role("admin"):
        rel.add("admin")
    return rel


def authorize(user: User, listing: Listing, action: str) -> None:
    """Raise ``PermissionDenied`` unless ``user`` may do ``action`` to ``listing``."""
    allowed = LISTING_ACTIONS[action]
    if not relations(user, listing) & allowed:
        raise PermissionDenied(f"{action} on listing {listing.id} needs to be its {' or '.join(sorted(allowed))}")


def update(session: Session, settings: Settings, listing: Listing, changes: Mapping[str, object]) -> Listing:
    """Apply a partial update; fields left out keep their value. Authorize first."""
    unknown = set(changes) - EDITABLE
    if unknown:
        field = sorted(unknown)[0]
        raise ValidationFailed(f"{field} cannot be changed", field=field)
    # Every change is checked before any is applied, so a bad field changes nothing.
    # Fields left out are not rechecked: a price set under older limits may stay.
    for name, value in _validated(settings, changes).items():
        setattr(listing, name, value)
    listing.updated_at = utcnow()
    session.flush()
    return listing


def delete(session: Session, listing: Listing) -> None:
    """Take a listing off offer for good. Authorize first."""
    listing.active = False
    listing.updated_at = utcnow()
    session.flush()


def search(session: Session, q: str | None = None, category: str | None = None, min_price: int | None = None,
           max_price: int | None = None, seller_id: int | None = None, limit: int = 20, offset: int = 0,
           sort: Sort = "relevance", min_seller_rating: float | None = None) -> tuple[list[dict], int]:
    """One page of active listings matching every given filter (their ``PUBLIC_COLUMNS``),
    and how many match in all.

    ``q`` matches listings containing all of its words (stemmed, in title or
    description); punctuation and operators in it are ignored. A ``q`` with no
    words at all matches nothing. ``relevance`` without ``q`` sorts as ``newest``.
    """
    query = _search_query(session, q, category, min_price, max_price, seller_id, limit, offset, sort,
                          min_seller_rating)
    if query is None:
        return [], 0
    page, count, params = query
    rows = page.rows(session, {**params, "limit": limit, "offset": offset})
    if rows or not offset:
        return _found(rows)
    return [], count.first(session, params)[0] or 0  # past the end: how many do


async def search_async(session: Session, q: str | None = None, category: str | None = None,
                       min_price: int | None = None, max_price: int | None = None, seller_id: int | None = None,
                       limit: int = 20, offset: int = 0, sort: Sort = "relevance",
                       min_seller_rating: float | None = None) -> tuple[list[dict], int]:
    """``search`` for the event loop: on PostgreSQL the loop serves other requests while the
    server ranks the matches (``Prepared.arows``): two fifths of a search's time, served, that
    the loop had spent waiting (0.41 of 1.0 ms)."""
    query = _search_query(session, q, category, min_price, max_price, seller_id, limit, offset, sort,
                          min_seller_rating)
    if query is None:
        return [], 0
    page, count, params = query
    rows = await page.arows(session, {**params, "limit": limit, "offset": offset})
    if rows or not offset:
        return _found(rows)
    return [], (await count.afirst(session, params))[0] or 0


def _search_query(session: Session, q: str | None, category: str | None, min_price: int | None,
                  max_price: int | None, seller_id: int | None, limit: int, offset: int, sort: Sort,
                  min_seller_rating: float | None) -> tuple[Prepared, Prepared, dict] | None:
    """A search's page and count statements and the filters' parameters (the page's also take
    ``limit`` and ``offset``), once the filters are checked; None if ``q`` has no words (it
    matches nothing)."""
    _check_search(q, category, min_price, max_price, seller_id, limit, offset, sort)
    words = _WORD.findall(q or "")
    if q and q.strip() and not words:
        return None
    filters = {"category": category, "min_price": min_price, "max_price": max_price, "seller_id": seller_id,
               "min_rating": min_seller_rating}
    params = {name: value for name, value in filters.items() if value is not None}
    dialect = session.get_bind().dialect.name  # no connection taken: the page may run on its own (store.db.Prepared)
    if words:
        # For FTS5 each word becomes a string, so AND, NEAR, quotes or brackets in it are just text.
        params["match"] = " ".join(f'"{word}"' if dialect == "sqlite" else word for word in words)
    page, count = _statements(dialect, frozenset(params), sort)
    return page, count, params


def _found(rows: list[tuple]) -> tuple[list[dict], int]:
    """A page's listings, and the count of every match that the page carries (see _statements)."""
    return [dict(zip(NAMES, row)) for row in rows], rows[0][-1] if rows else 0


@functools.lru_cache(maxsize=512)
def _statements(dialect: str, given: frozenset[str], sort: Sort) -> tuple[Prepared, Prepared]:
    """A search's page and count statements, built once per dialect, set of filters given and
    sort; the values come as bound parameters. Building a statement cost more than running it,
    and SQLAlchemy's execution more than SQLite's work (store.db.Prepared)."""
    conditions: list[ColumnElement[bool]] = [Listing.active.is_(True)]
    if "category" in given:
        conditions.append(Listing.category == bindparam("category"))
    if "min_price" in given:
        conditions.append(Listing.price_sats >= bindparam("min_price"))
    if "max_price" in given:
        conditions.append(Listing.price_sats <= bindparam("max_price"))
    if "seller_id" in given:
        conditions.append(Listing.seller_id == bindparam("seller_id"))
    if "min_rating" in given:
        from .ratings import min_seller_rating as rated_at_least

        conditions.append(rated_at_least(bindparam("min_rating")))
    count: Select = select(func.count()).select_from(Listing)
    page: Select = select(*PUBLIC_COLUMNS)
    rank: ColumnElement | None = None
    if "match" in given:
        count, page, rank = _text_match(dialect, count, page)
    count = count.where(*conditions)
    # The page carries the count of every match, so a page is one statement: the count
    # statement as a scalar subquery, which the database runs once. (A second statement was a
    # second round trip on PostgreSQL with the event loop waiting, and a second trip through
    # SQLAlchemy on SQLite.) Not a window count: the window builds every matching row, each
    # with all its columns, before the LIMIT, and the newest-first page could not stop after
    # twenty rows of its index (PostgreSQL: 0.22 ms against 0.08 in the server for the first
    # page of 300 listings; SQLite: three times the page and a count statement together).
    # A page past the end still asks the count.
    total = count.correlate(None).scalar_subquery()
    page = (page.add_columns(total.label("total")).where(*conditions).order_by(*_ordering(sort, rank))
            .limit(bindparam("limit")).offset(bindparam("offset")))
    return Prepared(page), Prepared(count)


def _text_match(dialect: str, count: Select, page: Select) -> tuple[Select, Select, ColumnElement]:
    """Both statements narrowed to listings with all the words of the ``match`` parameter,
    and a rank where smaller sorts first."""
    if dialect == "sqlite":
        fts = table(search_ddl.FTS_TABLE, column("rowid"))
        fts_ref = literal_column(search_ddl.FTS_TABLE)
        match = fts_ref.match(bindparam("match"))
        matched = (select(fts.c.rowid.label("rowid"), func.bm25(fts_ref, *search_ddl.FTS_WEIGHTS).label("rank"))
                   .select_from(fts).where(match).subquery("matched"))
        # the count needs no rank
        hits = select(fts.c.rowid).select_from(fts).where(match)
        return count.where(Listing.id.in_(hits)), page.join(matched, matched.c.rowid == Listing.id), matched.c.rank
    document = literal_column(f"listings.{search_ddl.PG_COLUMN}")
    query = func.plainto_tsquery(literal_column(f"'{search_ddl.PG_CONFIG}'::regconfig"), bindparam("match"))
    match = document.op("@@")(query)
    return count.where(match), page.where(match), -func.ts_rank(document, query)


def _ordering(sort: Sort, rank: ColumnElement | None) -> list[ColumnElement]:
    # id breaks every tie, so pages never overlap or skip a row.
    if sort == "relevance" and rank is not None:
        return [rank.asc(), Listing.id.desc()]
    if sort == "price_asc":
        return [Listing.price_sats.asc(), Listing.id.asc()]
    if sort == "price_desc":
        return [Listing.price_sats.desc(), Listing.id.desc()]
    return [Listing.created_at.desc(), Listing.id.desc()]


def _check_search(q: str | None, category: str | None, min_price: int | None, max_price: int | None,
                  seller_id: int | None, limit: int, offset: int, sort: str) -> None:
    if q is not None and len(q) > QUERY_MAX_CHARS:
        raise ValidationFailed(f"q must be at most {QUERY_MAX_CHARS} characters", field="q")
    if category is not None and category not in CATEGORIES:
        raise ValidationFailed(f"category must be one of {', '.join(CATEGORIES)}", field="category")
    for name, price in (("min_price", min_price), ("max_price", max_price)):
        if price is not None and not 0 <= price <= SATS_MAX:
            raise ValidationFailed(f"{name} must be between 0 and {SATS_MAX}", field=name)
    if min_price is not None and max_price is not None and max_price < min_price:
        raise ValidationFailed("max_price must not be below min_price", field="max_price")
    if seller_id is not None and not 1 <= seller_id <= ID_MAX:
        raise ValidationFailed(f"seller_id must be between 1 and {ID_MAX}", field="seller_id")
    if not 1 <= limit <= PAGE_MAX:
        raise ValidationFailed(f"limit must be between 1 and {PAGE_MAX}", field="limit")
    if not 0 <= offset <= SATS_MAX:
        raise ValidationFailed(f"offset must be between 0 and {SATS_MAX}", field="offset")
    if sort not in SORTS:
        raise ValidationFailed(f"sort must be one of {', '.join(SORTS)}", field="sort")


def _validated(settings: Settings, fields: Mapping[str, object]) -> dict[str, object]:
    """The given listing fields, normalised, or ``ValidationFailed`` naming the first bad one."""
    out = dict(fields)
    if "title" in fields:
        title = fields["title"]
        if not isinstance(title, str) or not TITLE_MIN_CHARS <= len(title.strip()) <= TITLE_MAX_CHARS:
            raise ValidationFailed(f"title must be {TITLE_MIN_CHARS} to {TITLE_MAX_CHARS} characters",
                                   field="title")
        out["title"] = title.strip()
    if "description" in fields:
        description = fields["description"]
        if not isinstance(description, str) or len(description) > DESCRIPTION_MAX_CHARS:
            raise ValidationFailed(f"description must be text of at most {DESCRIPTION_MAX_CHARS} characters",
                                   field="description")
    if "category" in fields and fields["category"] not in CATEGORIES:
        raise ValidationFailed(f"category must be one of {', '.join(CATEGORIES)}", field="category")
    if "price_sats" in fields:
        price = fields["price_sats"]
        if not _is_int(price) or not settings.min_price_sats <= price <= settings.max_price_sats:
            raise ValidationFailed(f"price_sats must be between {settings.min_price_sats} and "
                                   f"{settings.max_price_sats}", field="price_sats")
    if "stock" in fields:
        stock = fields["stock"]
        if not _is_int(stock) or not 0 <= stock <= STOCK_MAX:
            raise ValidationFailed(f"stock must be between 0 and {STOCK_MAX}", field="stock")
    if "escrow_mode" in fields and fields["escrow_mode"] not in IMPLEMENTED_ESCROW_MODES:
        raise ValidationFailed(f"escrow_mode must be one of {', '.join(IMPLEMENTED_ESCROW_MODES)}",
                               field="escrow_mode")
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
