"""Bring a database's schema to the current version with Alembic.

Regenerate after changing models (a deliberate step):
``python -m reference_app.store.migrate revision "what changed"``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

from . import search_ddl
from .db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def include_name(name, type_, _parent_names) -> bool:
    """Autogenerate ignores the full-text search's own tables, column and indexes: search_ddl owns them."""
    if type_ == "table" and name and name.startswith(search_ddl.FTS_TABLE):
        return False
    if type_ == "column" and name == search_ddl.PG_COLUMN:
        return False
    return not (type_ == "index" and name in (search_ddl.PG_INDEX, search_ddl.PG_EXPRESSION_INDEX))


def config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    with db.engine.begin() as conn:
        command.upgrade(config(conn), revision)


def current(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def revision(message: str) -> None:
    """Autogenerate a revision by diffing the models against a database at head."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/diff.db")
        upgrade(db)
        with db.engine.begin() as conn:
            command.revision(config(conn), message=message, autogenerate=True)
        db.dispose()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "revision":
    revision(sys.argv[2])
