"""ballot_score without foreign keys, and WITHOUT ROWID on SQLite

The seal rewrites every score of a cycle at close; on PostgreSQL the two foreign-key
triggers made up about 70% of that rewrite (2.6 of 3.6 s for 308,000 scores). Scores
are written only together with their ballot (submit) or copied from it (seal), so
the keys held by construction; nothing in the application deletes ballots or cycle
competencies apart from the seal, which deletes the scores itself.

On SQLite the table becomes WITHOUT ROWID: a ballot's scores then sit together in the
primary-key B-tree, found with one seek instead of an index probe plus a rowid lookup
per score. At 50,000 employees this took the rater-moments query at close from 70 s
to about 7 s.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 21:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On SQLite the batch recreates the table (and copies the rows) with the new options.
    with op.batch_alter_table(
        "ballot_score", table_kwargs={"sqlite_with_rowid": False}
    ) as batch_op:
        batch_op.drop_constraint("fk_ballot_score_ballot_id_ballot", type_="foreignkey")
        batch_op.drop_constraint(
            "fk_ballot_score_cycle_competency_id_cycle_competency", type_="foreignkey"
        )


def downgrade() -> None:
    with op.batch_alter_table("ballot_score", table_kwargs={"sqlite_with_rowid": True}) as batch_op:
        batch_op.create_foreign_key(
            "fk_ballot_score_ballot_id_ballot",
            "ballot",
            ["ballot_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            "fk_ballot_score_cycle_competency_id_cycle_competency",
            "cycle_competency",
            ["cycle_competency_id"],
            ["id"],
            ondelete="CASCADE",
        )
