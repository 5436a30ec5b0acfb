"""Typed parameters and fields shared by the routes and schemas.

An id is a positive 64-bit integer, as the databases store it: a larger one
names no object, and SQLite cannot even bind it (it raised OverflowError, a
500, before this type bounded every id at the edge).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator

MAX_ID = 2**63 - 1

Id = Annotated[int, Path(ge=1, le=MAX_ID, description="a positive 64-bit id")]


def as_utc(moment: datetime | None) -> datetime | None:
    # SQLite hands datetimes back without their zone; every stored time is UTC, so say so on
    # the wire (RFC 3339 date-time needs the offset, and clients parse naive times as local).
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]
