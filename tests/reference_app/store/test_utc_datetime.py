"""Every stored moment reads back aware, in UTC, on SQLite as on PostgreSQL (store.models.UtcDateTime).

SQLite keeps no zone: the readers used to put UTC on each time themselves, in Python, per
value. Now the column type does it as it reads, so a time compares with ``utcnow()`` and
reaches the wire with its offset whichever database is under it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, insert, select, text

from reference_app.store.models import UtcDateTime, utcnow

from ..test_listings import create, seller  # noqa: F401  (seller is a fixture)


@pytest.fixture()
def moments(scratch_table):
    return scratch_table("utc_moments", Column("id", Integer, primary_key=True), Column("at", UtcDateTime()))


def test_a_stored_moment_reads_back_aware_and_equal(moments):
    db, table = moments
    now = utcnow()
    elsewhere = now.astimezone(timezone(timedelta(hours=-5)))
    with db.session() as session:
        session.execute(insert(table), [{"id": 1, "at": now}, {"id": 2, "at": None}])
    with db.session(write=False) as session:
        rows = dict(session.execute(select(table.c.id, table.c.at)).all())
    assert rows[1].tzinfo is not None
    assert rows[1] == now and rows[1] == elsewhere  # the same moment, compared across zones
    assert rows[1] <= utcnow()  # comparing with an aware time raises nothing
    assert rows[2] is None


def test_sqlite_text_without_a_zone_is_utc_and_text_with_one_keeps_it(moments):
    db, table = moments
    if not db.single_writer:
        pytest.skip("SQLite stores moments as text; PostgreSQL's timestamptz has its own zone")
    with db.session() as session:
        session.execute(text("INSERT INTO utc_moments (id, at) VALUES (1, '2026-12-04 20:00:00'), "
                             "(2, '2026-12-04 20:00:00.250000'), (3, '2026-12-04T21:00:00+01:00')"))
    with db.session(write=False) as session:
        rows = dict(session.execute(select(table.c.id, table.c.at)).all())
    utc_eight = datetime(2026, 12, 4, 20, 0, tzinfo=timezone.utc)
    assert rows[1] == utc_eight and rows[1].tzinfo == timezone.utc
    assert rows[2] == utc_eight + timedelta(milliseconds=250)
    assert rows[3] == utc_eight and rows[3].utcoffset() == timedelta(hours=1)


def test_a_listing_s_times_reach_the_wire_with_their_offset(api, seller):  # noqa: F811
    _, headers = seller
    made = create(api, headers)
    for body in (made, api.get(f"/listings/{made['id']}").json()):
        for name in ("created_at", "updated_at"):
            moment = datetime.fromisoformat(body[name].replace("Z", "+00:00"))
            assert moment.utcoffset() == timedelta(0), body[name]
