"""Bulk writes (app.db.bulk): rows reach the table through each column type's conversion."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db import defer_wal_checkpoint, make_engine, make_sessionmaker
from app.db.bulk import insert_rows, stream_values
from app.db.types import stored_score_lists
from app.ratings.models import Ballot, PendingSubmission
from app.ratings.service import BALLOT_COLUMNS
from tests.reports.factories import make_cycle

BALLOT = cast(Table, Ballot.__table__)
PENDING = cast(Table, PendingSubmission.__table__)


def test_insert_rows_converts_each_column_type(db: Session) -> None:
    cycle = make_cycle(db)
    rows = [
        (cycle.id, 11, 9, "fine work", [5, None, 3]),
        (cycle.id, 12, None, None, [None, None, None]),
        (cycle.id, 11, 0, "Отлично", None),
    ]
    assert insert_rows(db, BALLOT, iter(rows), columns=BALLOT_COLUMNS) == 3
    found = [
        (b.cycle_id, b.supplier_id, b.nps, b.comment, b.scores)
        for b in db.scalars(select(Ballot).where(Ballot.cycle_id == cycle.id))
    ]
    assert sorted(map(repr, found)) == sorted(map(repr, rows))
    # The keys come from the database: SQLite's rowid, PostgreSQL's sequence.
    assert len({b.id for b in db.scalars(select(Ballot))}) == 3


def test_insert_rows_refuses_rows_without_a_python_side_default(db: Session) -> None:
    # PendingSubmission.id has a default computed in Python; the driver would never see it.
    cycle = make_cycle(db)
    with pytest.raises(KeyError, match="id"):
        insert_rows(db, PENDING, [(cycle.id, b"sealed")], columns=("cycle_id", "sealed"))
    with pytest.raises(KeyError, match="no column"):
        insert_rows(db, BALLOT, [], columns=("id", "rater_id"))


def test_columns_made_in_their_stored_form_read_back_through_their_types(db: Session) -> None:
    # The close makes score lists a column at a time (app.db.types); read through the
    # ORM they must be what the column type's own conversion would have stored.
    cycle = make_cycle(db)
    dialect = db.get_bind().dialect
    matrix = np.array([[5, np.nan, 3], [np.nan, np.nan, np.nan], [0, 254, 1]])
    rows = [
        (cycle.id, 20 + i, None, None, scores)
        for i, scores in enumerate(stored_score_lists(matrix, dialect))
    ]
    insert_rows(db, BALLOT, rows, columns=BALLOT_COLUMNS, stored=("scores",))
    found = {
        b.supplier_id: b.scores
        for b in db.scalars(select(Ballot).where(Ballot.cycle_id == cycle.id))
    }
    assert found == {20: [5, None, 3], 21: [None, None, None], 22: [0, 254, 1]}
    with pytest.raises(ValueError, match="between 0 and 254"):
        stored_score_lists(np.array([[255.0]]), dialect)
    with pytest.raises(KeyError, match="no column"):
        insert_rows(db, BALLOT, [], columns=("cycle_id",), stored=("scores",))


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


@pytest.mark.parametrize(
    ("matrix", "expected"),
    [
        (np.array([[5, np.nan, 3], [10, 254, 0]]), ["{5,NULL,3}", "{10,254,0}"]),
        (np.array([[np.nan], [7]]), ["{NULL}", "{7}"]),
        (np.empty((2, 0)), ["{}", "{}"]),
        (np.empty((0, 3)), []),
    ],
)
def test_score_lists_for_postgresql_are_each_rows_array_text(
    matrix: np.ndarray, expected: list[str]
) -> None:
    assert list(stored_score_lists(matrix, postgresql.dialect())) == expected


@pytest.mark.parametrize(
    ("matrix", "expected"),
    [
        (np.array([[5, np.nan, 0], [0, 0, 0]]), [b"\x05\xff\x00", b"\x00\x00\x00"]),
        (np.empty((2, 0)), [b"", b""]),
        (np.empty((0, 3)), []),
    ],
)
def test_score_lists_for_sqlite_are_each_rows_bytes(
    matrix: np.ndarray, expected: list[bytes]
) -> None:
    assert list(stored_score_lists(matrix, sqlite.dialect())) == expected
