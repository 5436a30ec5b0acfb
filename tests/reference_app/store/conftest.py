from __future__ import annotations

from typing import Callable, Iterator

import pytest
from sqlalchemy import Column, MetaData, Table

from reference_app.store.db import Database


@pytest.fixture()
def scratch_table(settings) -> Iterator[Callable[..., tuple[Database, Table]]]:
    """``make(name, *columns)``: a Database on the test's database and a table in it, dropped after."""
    made: list[tuple[Database, Table]] = []

    def make(name: str, *columns: Column) -> tuple[Database, Table]:
        db = Database(settings.database_url)
        table = Table(name, MetaData(), *columns)
        table.create(db.engine)
        made.append((db, table))
        return db, table

    yield make
    for db, table in made:
        table.drop(db.engine)
        db.dispose()
