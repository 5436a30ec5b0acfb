"""Alembic environment: run by reference_app.store.migrate with a connection
in ``config.attributes``, or by the alembic CLI with ``-x url=...``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from reference_app.store.migrate import include_name
from reference_app.store.schema import Base

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = context.get_x_argument(as_dictionary=True).get("url")
        if not url:
            raise SystemExit("pass the database: alembic -x url=sqlite:///path/app.db upgrade head")
        with create_engine(url).connect() as conn:
            _migrate(conn)
            conn.commit()
    else:
        _migrate(connection)


def _migrate(connection) -> None:
    # Batch mode lets SQLite alter tables (it recreates them), as later revisions will need.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                      compare_type=True, include_name=include_name)
    with context.begin_transaction():
        context.run_migrations()


run()
