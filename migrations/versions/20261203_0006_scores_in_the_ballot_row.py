"""scores in the ballot row; close jobs

* ``ballot.scores``: a ballot's scores in its own row (PostgreSQL ``smallint[]``, SQLite
  one byte per score), in the order of the cycle's competency ids; ``ballot_score`` (a row
  per score) goes. The close then reads a cycle's scores in one scan of one table.
* Legacy ballots (written at submit time, before the mixing pool) are rewritten here once,
  in random order: their row order, rowids and xids no longer follow submission order,
  so the close no longer needs to seal them (``VACUUM`` after the next close purges the
  old versions, as before).
* ``close_job``: a cycle's close, run by the worker, with its progress.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:00:00
"""

import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from app.db.types import ScoreList

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000

# The tables as this revision knows them.
ballot = sa.table(
    "ballot",
    sa.column("id", sa.Uuid),
    sa.column("cycle_id", sa.Integer),
    sa.column("supplier_id", sa.Integer),
    sa.column("nps", sa.Integer),
    sa.column("comment", sa.Text),
)
ballot_with_scores = sa.table(
    "ballot",
    sa.column("id", sa.Uuid),
    sa.column("cycle_id", sa.Integer),
    sa.column("supplier_id", sa.Integer),
    sa.column("nps", sa.Integer),
    sa.column("comment", sa.Text),
    sa.column("scores", ScoreList),
)
ballot_score = sa.table(
    "ballot_score",
    sa.column("ballot_id", sa.Uuid),
    sa.column("cycle_competency_id", sa.Integer),
    sa.column("score", sa.Integer),
)
cycle_competency = sa.table(
    "cycle_competency", sa.column("id", sa.Integer), sa.column("cycle_id", sa.Integer)
)


def _competency_order(bind: sa.engine.Connection) -> dict[int, list[int]]:
    order: dict[int, list[int]] = {}
    for cycle_id, competency_id in bind.execute(
        sa.select(cycle_competency.c.cycle_id, cycle_competency.c.id).order_by(
            cycle_competency.c.cycle_id, cycle_competency.c.id
        )
    ):
        order.setdefault(cycle_id, []).append(competency_id)
    return order


def upgrade() -> None:
    bind = op.get_bind()
    order = _competency_order(bind)
    scores: dict[uuid.UUID, dict[int, int | None]] = {}
    for ballot_id, competency_id, score in bind.execute(sa.select(ballot_score)):
        scores.setdefault(ballot_id, {})[competency_id] = score
    rows: list[dict[str, Any]] = []
    for row in bind.execute(sa.select(ballot)).mappings():
        by_competency = scores.get(row["id"], {})
        rows.append(
            {
                **row,
                "id": uuid.uuid4(),  # a new key, unrelated to the old one's order
                "scores": [by_competency.get(cid) for cid in order.get(row["cycle_id"], [])],
            }
        )
    scores.clear()
    op.drop_table("ballot_score")
    op.execute("DELETE FROM ballot")
    with op.batch_alter_table("ballot") as batch:
        batch.add_column(sa.Column("scores", ScoreList(), nullable=True))
    # Written again in random order: the seal of legacy ballots, once.
    secrets.SystemRandom().shuffle(rows)
    for start in range(0, len(rows), BATCH):
        bind.execute(sa.insert(ballot_with_scores), rows[start : start + BATCH])

    op.create_table(
        "close_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("step", sa.String(length=40), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["cycle.id"],
            name=op.f("fk_close_job_cycle_id_cycle"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_close_job")),
    )
    op.create_index(op.f("ix_close_job_cycle_id"), "close_job", ["cycle_id"], unique=False)
    op.create_index(op.f("ix_close_job_state"), "close_job", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_close_job_state"), table_name="close_job")
    op.drop_index(op.f("ix_close_job_cycle_id"), table_name="close_job")
    op.drop_table("close_job")

    bind = op.get_bind()
    order = _competency_order(bind)
    op.create_table(
        "ballot_score",
        sa.Column("ballot_id", sa.Uuid(), nullable=False),
        sa.Column("cycle_competency_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("ballot_id", "cycle_competency_id", name=op.f("pk_ballot_score")),
        sqlite_with_rowid=False,
    )
    batch: list[dict[str, Any]] = []
    for ballot_id, cycle_id, values in bind.execute(
        sa.select(
            ballot_with_scores.c.id, ballot_with_scores.c.cycle_id, ballot_with_scores.c.scores
        )
    ):
        batch.extend(
            {"ballot_id": ballot_id, "cycle_competency_id": cid, "score": score}
            for cid, score in zip(order.get(cycle_id, []), values or [], strict=False)
        )
        if len(batch) >= BATCH:
            bind.execute(sa.insert(ballot_score), batch)
            batch = []
    if batch:
        bind.execute(sa.insert(ballot_score), batch)
    with op.batch_alter_table("ballot") as alter:
        alter.drop_column("scores")
