"""indexes for the results table's orders

At 50,000 employees every page of the results table sorted the whole cycle by name
(about 300 ms on SQLite), and every results page sorted it by coefficient and by
change for the leaderboard and the decliners.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 21:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_cycle_employee_cycle_id_full_name",
        "cycle_employee",
        ["cycle_id", "full_name", "employee_id"],
    )
    op.create_index(
        "ix_employee_result_cycle_id_coefficient", "employee_result", ["cycle_id", "coefficient"]
    )
    op.create_index("ix_employee_result_cycle_id_delta", "employee_result", ["cycle_id", "delta"])


def downgrade() -> None:
    op.drop_index("ix_employee_result_cycle_id_delta", table_name="employee_result")
    op.drop_index("ix_employee_result_cycle_id_coefficient", table_name="employee_result")
    op.drop_index("ix_cycle_employee_cycle_id_full_name", table_name="cycle_employee")
