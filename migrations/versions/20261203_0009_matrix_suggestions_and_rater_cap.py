"""the department service map (matrix suggestions) and the rater-load governor

* ``department_service``: HR's department-level service map ("IT Support serves
  Sales"), one of the sources the matrix suggestions expand to people.
* ``cycle.max_suppliers_per_customer`` (12 for every cycle, old ones too: they are
  launched already, so it changes nothing for them) and ``cycle.rater_sample_seed``
  (NULL: the governor falls back to the cycle id).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
downgrade_drops = "the department service map and every cycle's rater cap and sample seed"


def upgrade() -> None:
    op.create_table(
        "department_service",
        sa.Column("supplier_department_id", sa.Integer(), nullable=False),
        sa.Column("customer_department_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "supplier_department_id <> customer_department_id",
            name=op.f("ck_department_service_not_its_own_customer"),
        ),
        sa.ForeignKeyConstraint(
            ["supplier_department_id"],
            ["department.id"],
            name=op.f("fk_department_service_supplier_department_id_department"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_department_id"],
            ["department.id"],
            name=op.f("fk_department_service_customer_department_id_department"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "supplier_department_id", "customer_department_id", name=op.f("pk_department_service")
        ),
    )
    op.create_index(
        op.f("ix_department_service_customer_department_id"),
        "department_service",
        ["customer_department_id"],
        unique=False,
    )
    with op.batch_alter_table("cycle") as batch:
        batch.add_column(
            sa.Column(
                "max_suppliers_per_customer", sa.Integer(), nullable=False, server_default="12"
            )
        )
        batch.add_column(sa.Column("rater_sample_seed", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cycle") as batch:
        batch.drop_column("rater_sample_seed")
        batch.drop_column("max_suppliers_per_customer")
    op.drop_index(
        op.f("ix_department_service_customer_department_id"), table_name="department_service"
    )
    op.drop_table("department_service")
