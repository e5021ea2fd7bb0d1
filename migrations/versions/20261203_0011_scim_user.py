"""SCIM provisioning: an identity provider's names for an employee

``scim_user`` holds what Okta, Entra ID and other SCIM clients know a person by
(``userName``, their own ``externalId``, given and family names), one row per employee
an identity provider has provisioned. The employee record itself stays the HRIS's.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Going down forgets the providers' names for provisioned employees, which is not
# refused: the employees stay, their userName falls back to their email, and the
# provider sends the rest again on its next synchronisation.


def upgrade() -> None:
    op.create_table(
        "scim_user",
        sa.Column("employee_id", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(length=320), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("given_name", sa.String(length=200), nullable=True),
        sa.Column("family_name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["employee_id"],
            ["employee.id"],
            name=op.f("fk_scim_user_employee_id_employee"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("employee_id", name=op.f("pk_scim_user")),
        sa.UniqueConstraint("user_name", name=op.f("uq_scim_user_user_name")),
    )
    op.create_index(op.f("ix_scim_user_external_id"), "scim_user", ["external_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_scim_user_external_id"), table_name="scim_user")
    op.drop_table("scim_user")
