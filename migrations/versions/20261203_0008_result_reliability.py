"""standard error, reliability and leaderboard bands of each result, ICC of each cycle

The results were honest about the mean only: the leaderboard ranked by exact
coefficient although a 3-rater mean is far from certain. Close now stores, per
employee, the standard error of the coefficient, the reliability of their mean
(the cycle's ICC(1), Spearman-Brown for their rater count) and their band (employees
whose 95% intervals overlap share one), and the cycle's ICC(1) on the company row.
Cycles closed before stay without these figures (null) until they are recomputed.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# No downgrade_drops: the columns hold derived figures, which recomputing a cycle's
# results (from its sealed ballots) brings back; nothing entered by anyone is lost.


def upgrade() -> None:
    with op.batch_alter_table("employee_result") as batch:
        batch.add_column(sa.Column("se", sa.Float(), nullable=True))
        batch.add_column(sa.Column("reliability", sa.Float(), nullable=True))
        batch.add_column(sa.Column("company_band", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("department_band", sa.Integer(), nullable=True))
    with op.batch_alter_table("company_result") as batch:
        batch.add_column(sa.Column("icc", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("company_result") as batch:
        batch.drop_column("icc")
    with op.batch_alter_table("employee_result") as batch:
        batch.drop_column("department_band")
        batch.drop_column("company_band")
        batch.drop_column("reliability")
        batch.drop_column("se")
