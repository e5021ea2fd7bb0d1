"""Bulk writes (app.db.bulk): rows reach the table through each column type's conversion."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.orm import Session

from app.db import defer_wal_checkpoint, make_engine, make_sessionmaker
from app.db.bulk import insert_rows, stream_values
from app.ratings.ballots import BOX_COLUMNS
from app.ratings.models import BallotBox, PendingSubmission
from app.reports.models import EmployeeComment
from tests.reports.factories import make_cycle

BOX = cast(Table, BallotBox.__table__)
COMMENT = cast(Table, EmployeeComment.__table__)
PENDING = cast(Table, PendingSubmission.__table__)


def test_insert_rows_converts_each_column_type(db: Session) -> None:
    cycle = make_cycle(db)
    rows = [
        (cycle.id, 11, 2, b"\x09\x00\x00\x80", b"\x05\x00", ["fine work", "Отлично"]),
        (cycle.id, 12, 1, None, None, None),
    ]
    assert insert_rows(db, BOX, iter(rows), columns=BOX_COLUMNS) == 2
    found = [
        (b.cycle_id, b.supplier_id, b.ballots, b.nps, b.scores, b.comments)
        for b in db.scalars(select(BallotBox).where(BallotBox.cycle_id == cycle.id))
    ]
    assert sorted(map(repr, found)) == sorted(map(repr, rows))
    # No comments is SQL NULL, not JSON null: the retention's "comments IS NULL" finds it.
    blank = select(BallotBox.supplier_id).where(BallotBox.comments.is_(None))
    assert db.scalars(blank.where(BallotBox.cycle_id == cycle.id)).all() == [12]
    # Keys left out come from the database: SQLite's rowid, PostgreSQL's sequence.
    comments = [(cycle.id, 11, 0.5, "one"), (cycle.id, 11, 0.25, "two")]
    insert_rows(db, COMMENT, comments, columns=("cycle_id", "employee_id", "sort_key", "text"))
    keys = db.scalars(select(EmployeeComment.id).where(EmployeeComment.cycle_id == cycle.id))
    assert len(set(keys)) == 2


def test_insert_rows_refuses_rows_without_a_python_side_default(db: Session) -> None:
    # PendingSubmission.id has a default computed in Python; the driver would never see it.
    cycle = make_cycle(db)
    with pytest.raises(KeyError, match="id"):
        insert_rows(db, PENDING, [(cycle.id, b"sealed")], columns=("cycle_id", "sealed"))
    with pytest.raises(KeyError, match="no column"):
        insert_rows(db, BOX, [], columns=("cycle_id", "rater_id"))


def test_columns_in_their_stored_form_reach_the_table_as_they_are(db: Session) -> None:
    # The close makes some columns in their stored form a column at a time; the JSON
    # text here would be quoted again by the column type's own conversion.
    cycle = make_cycle(db)
    rows = [(cycle.id, 30, 1, None, None, '["as is"]')]
    insert_rows(db, BOX, rows, columns=BOX_COLUMNS, stored=("comments",))
    assert db.get_one(BallotBox, (cycle.id, 30)).comments == ["as is"]
    with pytest.raises(KeyError, match="no column"):
        insert_rows(db, BOX, [], columns=("cycle_id",), stored=("comments",))


def test_stream_values_reads_every_value_in_batches(db: Session) -> None:
    # The close reads the sealed pool this way: bytes as they were written, none lost
    # at a batch boundary.
    cycle = make_cycle(db)
    blobs = [bytes([i % 256]) * (i + 1) for i in range(25)]
    db.add_all(PendingSubmission(id=uuid.uuid4(), cycle_id=cycle.id, sealed=b) for b in blobs)
    db.flush()
    values = stream_values(
        db,
        select(PendingSubmission.sealed).where(PendingSubmission.cycle_id == cycle.id),
        batch=4,
    )
    assert sorted(bytes(v) for v in values) == sorted(blobs)


def test_a_deferred_checkpoint_leaves_the_commit_in_the_log_until_later(
    fresh_database_url: str,
) -> None:
    # The close's commit must not copy its pages into the database file (the VACUUM
    # that follows copies them anyway); other transactions keep SQLite's default.
    engine = make_engine(fresh_database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE bulk_pages (data TEXT)")
        sqlite = engine.dialect.name == "sqlite"
        path = Path(engine.url.database or "")
        size_before = path.stat().st_size if sqlite else 0
        with make_sessionmaker(engine)() as session, session.begin():
            defer_wal_checkpoint(session)
            session.execute(
                text("INSERT INTO bulk_pages (data) VALUES (:data)"),
                [{"data": f"{i:04d}" * 1000} for i in range(2000)],  # ~2,000 pages
            )
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM bulk_pages").scalar() == 2000
            if not sqlite:
                return
            # Back in the pool, the connection checkpoints as usual again.
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        assert path.stat().st_size < size_before + 1_000_000
        assert path.with_name(path.name + "-wal").stat().st_size > 8_000_000
    finally:
        engine.dispose()
