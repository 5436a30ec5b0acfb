"""Migrations are the only way the schema is made, and they match the models."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from reference_app.store import migrate
from reference_app.store.db import Database
from reference_app.store.schema import Base
from tests.reference_app.conftest import make_settings


def test_upgrade_head_leaves_no_difference_from_the_models(tmp_path):
    db = Database(make_settings(tmp_path).database_url)
    try:
        migrate.upgrade(db)
        assert migrate.current(db) == "0006"
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"include_name": migrate.include_name})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == [], diff
    finally:
        db.dispose()


def test_upgrade_is_idempotent_and_installs_search(tmp_path):
    db = Database(make_settings(tmp_path).database_url)
    try:
        migrate.upgrade(db)
        migrate.upgrade(db)
        names = set(inspect(db.engine).get_table_names())
        assert {"orders", "hold_invoices", "payouts", "alembic_version"} <= names
        if db.engine.dialect.name == "sqlite":
            assert "listings_fts" in names
    finally:
        db.dispose()


def test_a_listing_made_before_0006_is_found_after_it_and_after_a_round_trip_down(tmp_path):
    """0006 moves PostgreSQL's search document into a stored column: rows that were there before
    get it, and a downgrade gives back the expression index that 0005 searched with."""
    from reference_app.services import listings
    from reference_app.store import search_ddl
    from reference_app.store.models import Listing, User

    db = Database(make_settings(tmp_path).database_url)
    try:
        migrate.upgrade(db, "0005")
        with db.session() as s:  # the models at head have the columns 0005 has
            seller = User(email="s@example.com", display_name="s", password_hash="x", roles="seller")
            s.add(seller)
            s.flush()
            s.add(Listing(seller_id=seller.id, title="brass lamps", description="old", category="home",
                          price_sats=1000, stock=1))
        for step in ("head", "0005", "head"):
            if step == "head":
                migrate.upgrade(db)
                with db.session(write=False) as s:
                    assert [item["title"] for item in listings.search(s, q="lamp")[0]] == ["brass lamps"]
            else:
                _downgrade(db, step)
        indexes = {ix["name"] for ix in inspect(db.engine).get_indexes("listings")}
        assert "ix_listings_newest" in indexes
        if db.engine.dialect.name == "postgresql":
            columns = {c["name"] for c in inspect(db.engine).get_columns("listings")}
            assert search_ddl.PG_COLUMN in columns
            assert search_ddl.PG_INDEX in indexes and search_ddl.PG_EXPRESSION_INDEX not in indexes
    finally:
        db.dispose()


def _downgrade(db: Database, revision: str) -> None:
    from alembic import command

    with db.engine.begin() as conn:
        command.downgrade(migrate.config(conn), revision)
    if db.engine.dialect.name == "postgresql":
        indexes = {ix["name"] for ix in inspect(db.engine).get_indexes("listings")}
        assert "ix_listings_search" in indexes and "ix_listings_document" not in indexes
