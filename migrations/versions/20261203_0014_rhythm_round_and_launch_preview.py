"""the rhythm starts the confirmation round; the launch preview is stored

* ``cycle_rhythm.nomination_days``: 0, no round (HR is emailed to review the matrix, as
  before); N, the rhythm starts the cycle's confirmation round N days before it opens.
* ``cycle.nomination_starts_at``: when the rhythm starts that round for a draft.
* ``launch_preview``: what an automatic draft's launch would give (customers, suppliers
  below k + 2), computed by the rhythm job so the dashboard does not on every load.

Revision ID: 0014
Revises: 0013 (the lead rechains it onto 0013)
Create Date: 2026-12-03 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The preview is recomputed by the job; the setting and the planned rounds are HR's.
downgrade_drops = "the rhythm's confirmation-round setting and the rounds it planned"


def upgrade() -> None:
    with op.batch_alter_table("cycle_rhythm") as batch:
        batch.add_column(
            sa.Column("nomination_days", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("cycle") as batch:
        batch.add_column(sa.Column("nomination_starts_at", sa.DateTime(), nullable=True))
    op.create_table(
        "launch_preview",
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("suppliers_short", sa.Integer(), nullable=False),
        sa.Column("short_of", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["cycle.id"],
            name=op.f("fk_launch_preview_cycle_id_cycle"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cycle_id", name=op.f("pk_launch_preview")),
    )


def downgrade() -> None:
    op.drop_table("launch_preview")
    with op.batch_alter_table("cycle") as batch:
        batch.drop_column("nomination_starts_at")
    with op.batch_alter_table("cycle_rhythm") as batch:
        batch.drop_column("nomination_days")
