"""ballot keyed by an integer

A ballot's key was a random UUID, from the time ballots were written one submit at a
time and a counter would have kept their order. Since the mixing pool (0004), the close
writes a cycle's ballots at once, in an order drawn at random, so a counter given out in
that order says nothing about raters. The random key cost a second B-tree on SQLite
(the table's rowid plus a unique index on the text) and random inserts into a 400,000-row
index at every close, both databases; an integer key is SQLite's rowid itself.

Existing ballots are numbered in a new random order, not in the order they are stored.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _make_key(column: str) -> None:
    """``column`` becomes ``id``, the primary key, in place of the old one."""
    # Two batches: SQLite's copy of the table cannot rename a column and make it the
    # key in one.
    with op.batch_alter_table("ballot", recreate="always") as batch_op:
        batch_op.drop_constraint("pk_ballot", type_="primary")
        batch_op.drop_column("id")
        batch_op.alter_column(column, new_column_name="id", nullable=False)
    with op.batch_alter_table("ballot", recreate="always") as batch_op:
        batch_op.create_primary_key("pk_ballot", ["id"])


def upgrade() -> None:
    op.add_column("ballot", sa.Column("number", sa.Integer(), nullable=True))
    # Numbered in the order of the old random keys: a permutation drawn from the OS's
    # random source when they were written, unrelated to where the rows are stored.
    op.execute(
        "UPDATE ballot SET number = r.n FROM "
        "(SELECT id AS key, row_number() OVER (ORDER BY id) AS n FROM ballot) AS r "
        "WHERE r.key = ballot.id"
    )
    _make_key("number")
    if op.get_bind().dialect.name == "postgresql":
        # What SERIAL would have made: a sequence owned by the column, past every key.
        op.execute("CREATE SEQUENCE ballot_id_seq OWNED BY ballot.id")
        op.execute("ALTER TABLE ballot ALTER COLUMN id SET DEFAULT nextval('ballot_id_seq')")
        op.execute(
            "SELECT setval('ballot_id_seq', (SELECT coalesce(max(id), 0) + 1 FROM ballot), false)"
        )


def downgrade() -> None:
    op.add_column("ballot", sa.Column("old_id", sa.Uuid(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE ballot SET old_id = gen_random_uuid()")
    else:
        # How sa.Uuid stores a UUID on SQLite: 32 hex digits.
        op.execute("UPDATE ballot SET old_id = lower(hex(randomblob(16)))")
    _make_key("old_id")
