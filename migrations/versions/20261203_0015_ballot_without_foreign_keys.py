"""ballot without foreign keys

The close writes every ballot of a cycle in one COPY (380,000 rows at 50,000
employees); the two foreign-key triggers per row (cycle, supplier) were about half of
the database's side of it. The keys hold by construction: the close writes only
suppliers of the cycle's matrix, and the two places that delete what a ballot points
at delete the ballots first (``privacy.service.delete_cycle_data`` table by table,
children first; erasure deletes the ballots about the person). Migration 0002 did the
same for the old per-score table.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 13:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ballot") as batch_op:
        batch_op.drop_constraint("fk_ballot_cycle_id_cycle", type_="foreignkey")
        batch_op.drop_constraint("fk_ballot_supplier_id_employee", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("ballot") as batch_op:
        batch_op.create_foreign_key(
            "fk_ballot_cycle_id_cycle", "cycle", ["cycle_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_foreign_key(
            "fk_ballot_supplier_id_employee",
            "employee",
            ["supplier_id"],
            ["id"],
            ondelete="RESTRICT",
        )
