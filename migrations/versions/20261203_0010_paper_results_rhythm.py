"""paper channel, results that reach the rated person

* ``employee.paper_channel``: no email for this person; their invitation waits for HR
  to print a letter.
* ``invitation.by_paper`` / ``invitation.code_hash``: the invitation of such a person
  and the keyed hash of the code on their newest letter (never the code).
* ``cycle.send_personal_results`` / ``personal_results_sent_at``, ``results_link``:
  after close, each supplier who reached k gets a private link to their own results.
* ``focus_plan`` / ``focus_area``: the competencies a person and their manager agree
  to work on after a cycle.
* ``cycle_rhythm`` (one row) and ``cycle.auto_launch`` / ``reminder_days_after_open``:
  the quarterly rhythm the worker runs on its own.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Going down loses who is on the paper channel and the codes of printed letters.
downgrade_drops = (
    "the paper-channel flags, the codes of printed letters, the personal results links "
    "and the agreed focus areas, and the quarterly rhythm"
)


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
    with op.batch_alter_table("cycle") as batch:
        batch.add_column(
            sa.Column(
                "send_personal_results", sa.Boolean(), nullable=False, server_default=sa.true()
            )
        )
        batch.add_column(sa.Column("personal_results_sent_at", sa.DateTime(), nullable=True))
        batch.add_column(
            sa.Column("auto_launch", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("reminder_days_after_open", sa.JSON(), nullable=True))
    op.create_table(
        "cycle_rhythm",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("opens_days_before_quarter_end", sa.Integer(), nullable=False),
        sa.Column("open_days", sa.Integer(), nullable=False),
        sa.Column("reminder_days", sa.JSON(), nullable=False),
        sa.Column("prepare_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=320), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_cycle_rhythm_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycle_rhythm")),
    )
    # Cycles closed before this revision are not mailed now, months later.
    op.execute("UPDATE cycle SET personal_results_sent_at = closed_at WHERE state = 'closed'")
    op.create_table(
        "results_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("employee_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["cycle.id"],
            name=op.f("fk_results_link_cycle_id_cycle"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["employee_id"],
            ["employee.id"],
            name=op.f("fk_results_link_employee_id_employee"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results_link")),
        sa.UniqueConstraint(
            "cycle_id", "employee_id", name=op.f("uq_results_link_cycle_id_employee_id")
        ),
        sa.UniqueConstraint("token_hash", name=op.f("uq_results_link_token_hash")),
    )
    op.create_index(op.f("ix_results_link_cycle_id"), "results_link", ["cycle_id"])
    op.create_table(
        "focus_plan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("employee_id", sa.Integer(), nullable=False),
        sa.Column("chosen_by", sa.String(length=320), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("agreed_by", sa.String(length=320), nullable=True),
        sa.Column("agreed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["cycle.id"],
            name=op.f("fk_focus_plan_cycle_id_cycle"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["employee_id"],
            ["employee.id"],
            name=op.f("fk_focus_plan_employee_id_employee"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_focus_plan")),
        sa.UniqueConstraint(
            "cycle_id", "employee_id", name=op.f("uq_focus_plan_cycle_id_employee_id")
        ),
    )
    op.create_index(op.f("ix_focus_plan_cycle_id"), "focus_plan", ["cycle_id"])
    op.create_index(op.f("ix_focus_plan_employee_id"), "focus_plan", ["employee_id"])
    op.create_table(
        "focus_area",
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["focus_plan.id"],
            name=op.f("fk_focus_area_plan_id_focus_plan"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("plan_id", "code", name=op.f("pk_focus_area")),
    )


def downgrade() -> None:
    op.drop_table("cycle_rhythm")
    op.drop_table("focus_area")
    op.drop_index(op.f("ix_focus_plan_employee_id"), table_name="focus_plan")
    op.drop_index(op.f("ix_focus_plan_cycle_id"), table_name="focus_plan")
    op.drop_table("focus_plan")
    op.drop_index(op.f("ix_results_link_cycle_id"), table_name="results_link")
    op.drop_table("results_link")
    with op.batch_alter_table("cycle") as batch:
        batch.drop_column("reminder_days_after_open")
        batch.drop_column("auto_launch")
        batch.drop_column("personal_results_sent_at")
        batch.drop_column("send_personal_results")
    with op.batch_alter_table("invitation") as batch:
        batch.drop_constraint(op.f("uq_invitation_code_hash"), type_="unique")
        batch.drop_column("code_hash")
        batch.drop_column("by_paper")
    with op.batch_alter_table("employee") as batch:
        batch.drop_column("paper_channel")
