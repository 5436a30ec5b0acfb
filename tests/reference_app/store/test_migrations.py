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
        assert migrate.current(db) == "0005"
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
