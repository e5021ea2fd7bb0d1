"""ballots in one box per supplier and cycle

The close wrote every ballot as a row of its own: about 400,000 rows at 50,000
employees, each with a rowid (SQLite), a key and a ``ctid`` (PostgreSQL) of its own,
given out in the order the close wrote them. The ballots about one supplier in one cycle
now sit in one ``ballot_box`` row, in an order drawn at random, as little-endian int16
arrays (an NPS per ballot; the scores row-major, one column per competency of the cycle
in the order of their ids; -32768 where there is no answer), with the comments as a list
of their own in another random order: no per-ballot rowid, key or ``ctid`` exists any
more, and the close writes about 45,000 rows.

Existing ballots move into boxes, a cycle at a time, shuffled here. The downgrade
unpacks every box into ballot rows again, in a fresh random order; the tie between a
comment and the scores it came with is not kept in a box, so each comment goes back to
a ballot of its box drawn at random.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 10:00:00
"""

import secrets
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# No downgrade_drops: the downgrade gives every ballot back (only the comments' ties to
# their ballots, already gone in the boxes, are drawn anew).

BATCH = 5000
# Ballots read at a time: a 50,000-employee cycle has about 400,000.
READ_BATCH = 50_000

# The box format (app.ratings.ballots), frozen as of this revision.
NO_ANSWER = -32768
INT16 = np.dtype("<i2")
# The old ``ballot.scores`` (app.db.types.ScoreList as of 0019): PostgreSQL
# ``smallint[]``; SQLite one byte per score, 0xFF for "can't judge".
NO_SCORE_BYTE = 0xFF
MAX_SCORE_BYTE = NO_SCORE_BYTE - 1
OLD_SCORES = sa.LargeBinary().with_variant(postgresql.ARRAY(sa.SmallInteger()), "postgresql")

# The tables as this revision knows them.
ballot = sa.table(
    "ballot",
    sa.column("id", sa.Integer),
    sa.column("cycle_id", sa.Integer),
    sa.column("supplier_id", sa.Integer),
    sa.column("nps", sa.Integer),
    sa.column("comment", sa.Text),
    # Read raw (bytes on SQLite, a list on PostgreSQL): decoded a batch at a time.
    sa.column("scores", OLD_SCORES),
)
ballot_box = sa.table(
    "ballot_box",
    sa.column("cycle_id", sa.Integer),
    sa.column("supplier_id", sa.Integer),
    sa.column("ballots", sa.Integer),
    sa.column("nps", sa.LargeBinary),
    sa.column("scores", sa.LargeBinary),
    # None is SQL NULL here, not the JSON value null.
    sa.column("comments", sa.JSON(none_as_null=True)),
)


def _rng() -> np.random.Generator:
    # 128 bits from the OS: nobody can draw the same permutation again to undo it.
    return np.random.default_rng(secrets.randbits(128))


def _competencies(bind: sa.engine.Connection, cycle_id: int) -> list[int]:
    return list(
        bind.execute(
            sa.text("SELECT id FROM cycle_competency WHERE cycle_id = :cycle ORDER BY id"),
            {"cycle": cycle_id},
        ).scalars()
    )


def _stored(values: npt.NDArray[np.float64], what: str) -> npt.NDArray[np.int16]:
    """Answers (NaN: none) as the box stores them."""
    given = values[~np.isnan(values)]
    if given.size and (given.min() <= NO_ANSWER or given.max() > np.iinfo(np.int16).max):
        raise ValueError(f"a ballot's {what} does not fit the box format (int16)")
    return np.where(np.isnan(values), NO_ANSWER, values).astype(INT16)


def _old_scores(raw: Sequence[Any], width: int, dialect: str) -> npt.NDArray[np.float64]:
    """Old ``ballot.scores`` values as a (ballots x width) matrix, NaN for no score.

    NULL, "can't judge" and the end of a list shorter than ``width`` are no answer; a
    list longer than ``width`` (a competency since removed) is cut, as the close did.
    """
    if dialect == "postgresql":
        blank: list[int | None] = [None] * width
        rows = []
        for value in raw:
            scores = list(value or ())[:width]
            rows.append(scores + blank[len(scores) :])
        # numpy reads None as NaN in a float array.
        return np.array(rows, dtype=np.float64).reshape(len(raw), width)
    none = bytes([NO_SCORE_BYTE])
    packed = b"".join(
        none * width if value is None else bytes(value)[:width].ljust(width, none) for value in raw
    )
    stored = np.frombuffer(packed, dtype=np.uint8).reshape(len(raw), width)
    matrix = stored.astype(np.float64)
    matrix[stored == NO_SCORE_BYTE] = np.nan
    return matrix


def _old_ballots(
    bind: sa.engine.Connection, cycle_id: int, width: int
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int16], npt.NDArray[np.int16], list[tuple[int, str]]
]:
    """A cycle's ballots: suppliers, NPS, scores (int16, NO_ANSWER for none) and the
    comments (stripped, blanks dropped) with their supplier; read in batches."""
    dialect = bind.dialect.name
    suppliers, nps, scores = [], [], []
    comments: list[tuple[int, str]] = []
    result = bind.execute(
        sa.select(ballot.c.supplier_id, ballot.c.nps, ballot.c.comment, ballot.c.scores)
        .where(ballot.c.cycle_id == cycle_id)
        .execution_options(yield_per=READ_BATCH)
    )
    for rows in result.partitions():
        suppliers.append(np.array([r[0] for r in rows], dtype=np.int64))
        nps.append(_stored(np.array([r[1] for r in rows], dtype=np.float64), "NPS"))
        scores.append(_stored(_old_scores([r[3] for r in rows], width, dialect), "score"))
        comments.extend((r[0], text) for r in rows if r[2] and (text := r[2].strip()))
    if not suppliers:
        empty = np.zeros(0, INT16)
        return np.zeros(0, np.int64), empty, np.zeros((0, width), INT16), comments
    return np.concatenate(suppliers), np.concatenate(nps), np.concatenate(scores), comments


def _boxes(bind: sa.engine.Connection, cycle_id: int) -> Iterator[dict[str, Any]]:
    """The cycle's ballots as boxes, suppliers ascending, the ballots and the comments in
    each in an order drawn at random (not that of the old ids)."""
    width = len(_competencies(bind, cycle_id))
    suppliers, nps, scores, comments = _old_ballots(bind, cycle_id, width)
    rng = _rng()
    drawn = rng.permutation(len(suppliers))
    order = drawn[np.argsort(suppliers[drawn], kind="stable")]
    suppliers, nps, scores = suppliers[order], nps[order], scores[order]
    texts: dict[int, list[str]] = {}
    for supplier, text in comments:
        texts.setdefault(supplier, []).append(text)
    if not len(suppliers):
        return
    starts = np.flatnonzero(np.r_[True, suppliers[1:] != suppliers[:-1]]).tolist()
    ends = [*starts[1:], len(suppliers)]
    for start, end in zip(starts, ends, strict=True):
        supplier = int(suppliers[start])
        mine = texts.get(supplier)
        if mine:
            mine = [mine[i] for i in rng.permutation(len(mine)).tolist()]
        yield {
            "cycle_id": cycle_id,
            "supplier_id": supplier,
            "ballots": end - start,
            "nps": nps[start:end].tobytes(),
            "scores": scores[start:end].tobytes(),
            "comments": mine or None,
        }


def _insert(bind: sa.engine.Connection, table: Any, rows: Iterator[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            bind.execute(sa.insert(table), batch)
            batch = []
    if batch:
        bind.execute(sa.insert(table), batch)


def upgrade() -> None:
    op.create_table(
        "ballot_box",
        sa.Column("cycle_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("supplier_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ballots", sa.Integer(), nullable=False),
        sa.Column("nps", sa.LargeBinary(), nullable=True),
        sa.Column("scores", sa.LargeBinary(), nullable=True),
        sa.Column("comments", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("cycle_id", "supplier_id", name=op.f("pk_ballot_box")),
    )
    bind = op.get_bind()
    cycles = bind.execute(sa.text("SELECT DISTINCT cycle_id FROM ballot ORDER BY cycle_id"))
    # A cycle at a time: one of 50,000 employees has about 400,000 ballots.
    for cycle_id in cycles.scalars().all():
        _insert(bind, ballot_box, _boxes(bind, cycle_id))
    op.drop_index("ix_ballot_cycle_id_supplier_id", table_name="ballot")
    # PostgreSQL: ballot_id_seq goes with the table (OWNED BY ballot.id, 0017).
    op.drop_table("ballot")


def _unpacked(
    bind: sa.engine.Connection, cycle_id: int, ids: Iterator[int]
) -> Iterator[dict[str, Any]]:
    """The cycle's boxes as ballot rows, a box at a time, its ballots in a fresh random
    order, numbered from ``ids`` in that order."""
    competencies = _competencies(bind, cycle_id)
    width = len(competencies)
    sqlite = bind.dialect.name != "postgresql"
    rng = _rng()
    boxes = bind.execute(
        sa.select(
            ballot_box.c.supplier_id,
            ballot_box.c.ballots,
            ballot_box.c.nps,
            ballot_box.c.scores,
            ballot_box.c.comments,
        )
        .where(ballot_box.c.cycle_id == cycle_id)
        .order_by(ballot_box.c.supplier_id)
    ).all()
    for supplier, count, nps_data, score_data, comments in boxes:
        count = count or 0
        nps = (
            np.frombuffer(bytes(nps_data), INT16)
            if nps_data is not None
            else np.full(count, NO_ANSWER, INT16)
        )
        scores = (
            np.frombuffer(bytes(score_data), INT16)
            if score_data is not None
            else np.full(count * width, NO_ANSWER, INT16)
        )
        texts = list(comments or [])
        if len(nps) != count or len(scores) != count * width or len(texts) > count:
            raise ValueError(f"ballot box of supplier {supplier} in cycle {cycle_id} is malformed")
        order = rng.permutation(count)
        nps_values = [None if v == NO_ANSWER else v for v in nps[order].tolist()]
        matrix = scores.reshape(count, width)[order]
        if sqlite:
            given = matrix[matrix != NO_ANSWER]
            if given.size and (given.min() < 0 or given.max() > MAX_SCORE_BYTE):
                raise ValueError("a score does not fit the old SQLite format (0 to 254)")
            score_values: list[Any] = [
                bytes(row)
                for row in np.where(matrix == NO_ANSWER, NO_SCORE_BYTE, matrix)
                .astype(np.uint8)
                .tolist()
            ]
        else:
            score_values = [[None if v == NO_ANSWER else v for v in row] for row in matrix.tolist()]
        # A box does not say which ballot a comment came with: each goes to one of the
        # first ballots of this fresh random order, one comment a ballot.
        texts += [None] * (count - len(texts))
        for i in range(count):
            yield {
                "id": next(ids),
                "cycle_id": cycle_id,
                "supplier_id": supplier,
                "nps": nps_values[i],
                "comment": texts[i],
                "scores": score_values[i],
            }


def downgrade() -> None:
    # ballot as 0019 left it, columns in the same order (0017 rebuilt the key last).
    op.create_table(
        "ballot",
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("supplier_id", sa.Integer(), nullable=False),
        sa.Column("nps", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("scores", OLD_SCORES, nullable=True),
        # No SERIAL on PostgreSQL: the sequence is made below, as 0017 made it.
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ballot")),
    )
    bind = op.get_bind()
    ids = iter(range(1, 2**31))
    cycles = bind.execute(sa.text("SELECT DISTINCT cycle_id FROM ballot_box ORDER BY cycle_id"))
    for cycle_id in cycles.scalars().all():
        _insert(bind, ballot, _unpacked(bind, cycle_id, ids))
    op.create_index(
        "ix_ballot_cycle_id_supplier_id", "ballot", ["cycle_id", "supplier_id"], unique=False
    )
    if bind.dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE ballot_id_seq OWNED BY ballot.id")
        op.execute("ALTER TABLE ballot ALTER COLUMN id SET DEFAULT nextval('ballot_id_seq')")
        op.execute(
            "SELECT setval('ballot_id_seq', (SELECT coalesce(max(id), 0) + 1 FROM ballot), false)"
        )
    op.drop_table("ballot_box")
