"""employee result name order

The employee table pages through a cycle's results in name order (500 rows a page, at
any offset). Sorting every employee by name on each request cost 160-190 ms at 50,000
employees on PostgreSQL (collated string comparisons). The close now stores each row's
position in that order, so a page is a range of an index. Existing rows get theirs here.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("employee_result") as batch_op:
        batch_op.add_column(sa.Column("name_order", sa.Integer(), nullable=True))
    op.execute(
        """
        UPDATE employee_result
        SET name_order = ordered.position
        FROM (
            SELECT er.cycle_id, er.employee_id,
                   row_number() OVER (
                       PARTITION BY er.cycle_id
                       ORDER BY ce.full_name, er.employee_id
                   ) - 1 AS position
            FROM employee_result AS er
            LEFT JOIN cycle_employee AS ce
              ON ce.cycle_id = er.cycle_id AND ce.employee_id = er.employee_id
        ) AS ordered
        WHERE employee_result.cycle_id = ordered.cycle_id
          AND employee_result.employee_id = ordered.employee_id
        """
    )
    op.create_index(
        "ix_employee_result_cycle_id_name_order",
        "employee_result",
        ["cycle_id", "name_order"],
    )


def downgrade() -> None:
    op.drop_index("ix_employee_result_cycle_id_name_order", table_name="employee_result")
    with op.batch_alter_table("employee_result") as batch_op:
        batch_op.drop_column("name_order")
