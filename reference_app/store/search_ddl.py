"""Full-text search over listings: SQLite FTS5 or PostgreSQL tsvector.

``install(engine)`` is idempotent, so every start may call it. The constants
here are shared with the search query in ``services/listings.py``: SQLite's
query names the FTS5 table and its bm25 weights, PostgreSQL's the stored
document column its GIN index is on.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

FTS_TABLE = "listings_fts"
# bm25 weights per FTS column (title, description): a word in the title counts
# ten times as much, matching the A/B weights of the PostgreSQL document below.
FTS_WEIGHTS = (10.0, 1.0)

PG_CONFIG = "english"
PG_DOCUMENT = (f"(setweight(to_tsvector('{PG_CONFIG}'::regconfig, title), 'A') || "
               f"setweight(to_tsvector('{PG_CONFIG}'::regconfig, description), 'B'))")
# The document is stored in a generated column, and the index is on the column: the rank reads
# it, where with an index on the expression PostgreSQL parsed both texts again for every match
# (a one-word search over 300 listings: 0.33 ms in the server, 0.16 ms with the column). It is
# PostgreSQL's own advice for a ranked search. The models leave it out (SQLite has no such
# column): search_ddl owns it, as it owns SQLite's FTS5 table.
PG_COLUMN = "search_document"
PG_INDEX = "ix_listings_document"
PG_EXPRESSION_INDEX = "ix_listings_search"  # on the expression itself, until revision 0006

# The porter stemmer makes "books" find "book", as PostgreSQL's english config does.
_SQLITE_TABLE = (f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(title, description, "
                 "content='listings', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')")
# External content: FTS5 stores only the index, so the triggers must hand it the
# old values to remove and the new values to add on every change.
_SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_ai AFTER INSERT ON listings BEGIN
          INSERT INTO {FTS_TABLE}(rowid, title, description) VALUES (new.id, new.title, new.description);
        END""",
    f"""CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_ad AFTER DELETE ON listings BEGIN
          INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, title, description)
            VALUES ('delete', old.id, old.title, old.description);
        END""",
    f"""CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_au AFTER UPDATE OF title, description ON listings BEGIN
          INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, title, description)
            VALUES ('delete', old.id, old.title, old.description);
          INSERT INTO {FTS_TABLE}(rowid, title, description) VALUES (new.id, new.title, new.description);
        END""",
)


def install(engine: Engine) -> None:
    """Create the search index and what keeps it current, unless it exists already."""
    with engine.begin() as conn:
        install_on(conn)


def install_on(conn: Connection, stored_document: bool = True) -> None:
    """The same, on an open connection (as a migration has). ``stored_document=False``: on
    PostgreSQL the layout before revision 0006, a GIN index on the expression."""
    if conn.dialect.name == "sqlite":
        _install_sqlite(conn)
    elif conn.dialect.name == "postgresql":
        if stored_document:
            conn.execute(text(f"ALTER TABLE listings ADD COLUMN IF NOT EXISTS {PG_COLUMN} tsvector "
                              f"GENERATED ALWAYS AS {PG_DOCUMENT} STORED"))
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {PG_INDEX} ON listings USING GIN ({PG_COLUMN})"))
            conn.execute(text(f"DROP INDEX IF EXISTS {PG_EXPRESSION_INDEX}"))
        else:
            conn.execute(text(f"ALTER TABLE listings DROP COLUMN IF EXISTS {PG_COLUMN}"))  # and its index
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {PG_EXPRESSION_INDEX} ON listings "
                              f"USING GIN ({PG_DOCUMENT})"))
    else:
        raise RuntimeError(f"no full-text search for the {conn.dialect.name} dialect")


def _install_sqlite(conn: Connection) -> None:
    exists = conn.execute(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"),
                          {"name": FTS_TABLE}).first()
    if not exists:
        conn.execute(text(_SQLITE_TABLE))
        # Listings written before the index existed would otherwise never be found.
        conn.execute(text(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')"))
    for ddl in _SQLITE_TRIGGERS:
        conn.execute(text(ddl))
