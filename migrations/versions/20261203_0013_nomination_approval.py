"""The confirmation round: line managers approve their team's lists

* ``cycle.nomination_links_to``: who got the round's links (``supplier`` or
  ``line_manager``), set when the round starts.
* ``nomination_list.approved_at`` / ``approved_by_id``: the line manager's approval
  (an employee id: this is who-rates-whom, never answers).
* ``nomination_change.proposed_by_id``: set when the manager proposed the change on
  their report's behalf.
* ``nomination_team``: each manager's one private link to their team's lists (the
  token's SHA-256 only, erased at launch).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
downgrade_drops = "the managers' links and approvals of confirmation rounds"


def upgrade() -> None:
    with op.batch_alter_table("cycle") as batch:
        batch.add_column(sa.Column("nomination_links_to", sa.String(length=20), nullable=True))
    op.execute("UPDATE cycle SET nomination_links_to = 'supplier' WHERE state = 'nominating'")
    with op.batch_alter_table("nomination_list") as batch:
        batch.add_column(sa.Column("approved_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("approved_by_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_nomination_list_approved_by_id_employee"),
            "employee",
            ["approved_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("nomination_change") as batch:
        batch.add_column(sa.Column("proposed_by_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_nomination_change_proposed_by_id_employee"),
            "employee",
            ["proposed_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_table(
        "nomination_team",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("manager_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["cycle.id"],
            name=op.f("fk_nomination_team_cycle_id_cycle"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["manager_id"],
            ["employee.id"],
            name=op.f("fk_nomination_team_manager_id_employee"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nomination_team")),
        sa.UniqueConstraint(
            "cycle_id", "manager_id", name=op.f("uq_nomination_team_cycle_id_manager_id")
        ),
        sa.UniqueConstraint("token_hash", name=op.f("uq_nomination_team_token_hash")),
    )
    op.create_index(
        op.f("ix_nomination_team_cycle_id"), "nomination_team", ["cycle_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_nomination_team_cycle_id"), table_name="nomination_team")
    op.drop_table("nomination_team")
    with op.batch_alter_table("nomination_change") as batch:
        batch.drop_constraint(
            op.f("fk_nomination_change_proposed_by_id_employee"), type_="foreignkey"
        )
        batch.drop_column("proposed_by_id")
    with op.batch_alter_table("nomination_list") as batch:
        batch.drop_constraint(
            op.f("fk_nomination_list_approved_by_id_employee"), type_="foreignkey"
        )
        batch.drop_column("approved_by_id")
        batch.drop_column("approved_at")
    with op.batch_alter_table("cycle") as batch:
        batch.drop_column("nomination_links_to")
