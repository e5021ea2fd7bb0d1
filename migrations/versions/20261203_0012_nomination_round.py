"""The confirmation round: suppliers' customer lists and their proposed changes

A cycle can now be ``nominating`` (the state column is a plain VARCHAR(10) without a
CHECK constraint, so the new value needs no change there). ``nomination_list`` holds
each supplier's list in a cycle's round, with the SHA-256 of their private link;
``nomination_change`` the colleagues they propose to add or remove.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The matrix itself is untouched; a cycle left ``nominating`` becomes a draft again.
downgrade_drops = "the suppliers' lists and proposals of confirmation rounds"


def upgrade() -> None:
    op.create_table(
        "nomination_list",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("supplier_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["cycle.id"],
            name=op.f("fk_nomination_list_cycle_id_cycle"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["supplier_id"],
            ["employee.id"],
            name=op.f("fk_nomination_list_supplier_id_employee"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nomination_list")),
        sa.UniqueConstraint(
            "cycle_id", "supplier_id", name=op.f("uq_nomination_list_cycle_id_supplier_id")
        ),
        sa.UniqueConstraint("token_hash", name=op.f("uq_nomination_list_token_hash")),
    )
    op.create_index(
        op.f("ix_nomination_list_cycle_id"), "nomination_list", ["cycle_id"], unique=False
    )
    op.create_table(
        "nomination_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["employee.id"],
            name=op.f("fk_nomination_change_customer_id_employee"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["nomination_list.id"],
            name=op.f("fk_nomination_change_list_id_nomination_list"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nomination_change")),
        sa.UniqueConstraint(
            "list_id", "customer_id", name=op.f("uq_nomination_change_list_id_customer_id")
        ),
    )
    op.create_index(
        op.f("ix_nomination_change_list_id"), "nomination_change", ["list_id"], unique=False
    )


def downgrade() -> None:
    op.execute("UPDATE cycle SET state = 'draft' WHERE state = 'nominating'")
    op.drop_index(op.f("ix_nomination_change_list_id"), table_name="nomination_change")
    op.drop_table("nomination_change")
    op.drop_index(op.f("ix_nomination_list_cycle_id"), table_name="nomination_list")
    op.drop_table("nomination_list")
