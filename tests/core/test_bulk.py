"""Bulk writes (app.db.bulk): rows reach the table through each column type's conversion."""

from __future__ import annotations

import uuid
from typing import cast

import pytest
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from app.db.bulk import insert_rows
from app.ratings.models import Ballot
from tests.reports.factories import make_cycle

BALLOT = cast(Table, Ballot.__table__)


def test_insert_rows_converts_each_column_type(db: Session) -> None:
    cycle = make_cycle(db)
    ids = [uuid.uuid4() for _ in range(3)]
    rows = [
        (ids[0], cycle.id, 11, 9, "fine work", [5, None, 3]),
        (ids[1], cycle.id, 12, None, None, [None, None, None]),
        (ids[2], cycle.id, 11, 0, "Отлично", None),
    ]
    assert (
        insert_rows(
            db,
            BALLOT,
            iter(rows),
            columns=("id", "cycle_id", "supplier_id", "nps", "comment", "scores"),
        )
        == 3
    )
    found = {
        b.id: (b.supplier_id, b.nps, b.comment, b.scores)
        for b in db.scalars(select(Ballot).where(Ballot.cycle_id == cycle.id))
    }
    assert found == {row[0]: row[2:] for row in rows}


def test_insert_rows_refuses_rows_without_a_python_side_default(db: Session) -> None:
    # Ballot.id has a default computed in Python; the driver would never see it.
    cycle = make_cycle(db)
    with pytest.raises(KeyError, match="id"):
        insert_rows(
            db,
            BALLOT,
            [(cycle.id, 1, None, None, [1])],
            columns=("cycle_id", "supplier_id", "nps", "comment", "scores"),
        )
    with pytest.raises(KeyError, match="no column"):
        insert_rows(db, BALLOT, [], columns=("id", "rater_id"))
