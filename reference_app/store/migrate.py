"""Bring a database's schema to the current version."""

from __future__ import annotations

from . import search_ddl
from .db import Database
from .models import Base


def upgrade(db: Database) -> None:
    Base.metadata.create_all(db.engine)
    search_ddl.install(db.engine)
