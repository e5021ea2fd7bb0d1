"""paper channel: employees without email get a printed letter with a one-time code

* ``employee.paper_channel``: no email for this person; their invitation waits for HR
  to print a letter.
* ``invitation.by_paper`` / ``invitation.code_hash``: the invitation of such a person
  and the keyed hash of the code on their newest letter (never the code).

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Going down loses who is on the paper channel and the codes of printed letters.
downgrade_drops = "the paper-channel flags and the codes of printed letters"


def upgrade() -> None:
    with op.batch_alter_table("employee") as batch:
        batch.add_column(
            sa.Column("paper_channel", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("invitation") as batch:
        batch.add_column(
            sa.Column("by_paper", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("code_hash", sa.String(length=64), nullable=True))
        batch.create_unique_constraint(op.f("uq_invitation_code_hash"), ["code_hash"])


def downgrade() -> None:
    with op.batch_alter_table("invitation") as batch:
        batch.drop_constraint(op.f("uq_invitation_code_hash"), type_="unique")
        batch.drop_column("code_hash")
        batch.drop_column("by_paper")
    with op.batch_alter_table("employee") as batch:
        batch.drop_column("paper_channel")
