"""ballot mixing pool, response counts instead of invitation marks, raters who count

* ``pending_submission``: a rater's encrypted submission waits here until close, so no
  submit transaction writes a ballot (the WAL kept both side by side).
* ``cycle.pool_salt`` / ``cycle.pool_key_check``: the pool key's salt and fingerprint.
* ``cycle_response``: invited/responded per department, kept at close; the invitations
  of closed cycles are deleted (here too, for cycles closed before this revision).
* ``cycle_employee.counts_toward_k`` / ``not_counting_reason`` and
  ``employee.email_changed_at``, kept by a trigger on both databases so that every
  write path (API, import, forms, SQL) records an address change.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 07:00:00
"""

import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Going down deletes the sealed answers of open cycles and the response counts of
# closed ones (whose invitations are already gone): refused unless forced.
downgrade_drops = "the pending answers of open cycles and the response counts of closed cycles"

SQLITE_TRIGGER = """
CREATE TRIGGER trg_employee_email_changed AFTER UPDATE OF email ON employee
FOR EACH ROW WHEN OLD.email IS NOT NEW.email
BEGIN
  UPDATE employee SET email_changed_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
  WHERE id = NEW.id;
END
"""
PG_FUNCTION = """
CREATE FUNCTION employee_email_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.email IS DISTINCT FROM OLD.email THEN
    NEW.email_changed_at := clock_timestamp() AT TIME ZONE 'UTC';
  END IF;
  RETURN NEW;
END $$
"""
PG_TRIGGER = """
CREATE TRIGGER trg_employee_email_changed BEFORE UPDATE OF email ON employee
FOR EACH ROW EXECUTE FUNCTION employee_email_changed()
"""


def upgrade() -> None:
    op.create_table(
        "pending_submission",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["cycle.id"],
            name=op.f("fk_pending_submission_cycle_id_cycle"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_submission")),
    )
    op.create_index(
        op.f("ix_pending_submission_cycle_id"), "pending_submission", ["cycle_id"], unique=False
    )
    op.create_table(
        "cycle_response",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("invited", sa.Integer(), nullable=False),
        sa.Column("responded", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["cycle.id"],
            name=op.f("fk_cycle_response_cycle_id_cycle"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycle_response")),
    )
    op.create_index(
        op.f("ix_cycle_response_cycle_id"), "cycle_response", ["cycle_id"], unique=False
    )
    with op.batch_alter_table("cycle") as batch:
        batch.add_column(sa.Column("pool_salt", sa.LargeBinary(length=16), nullable=True))
        batch.add_column(sa.Column("pool_key_check", sa.LargeBinary(length=16), nullable=True))
    with op.batch_alter_table("cycle_employee") as batch:
        batch.add_column(
            sa.Column("counts_toward_k", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("not_counting_reason", sa.String(length=20), nullable=True))
    with op.batch_alter_table("employee") as batch:
        batch.add_column(sa.Column("email_changed_at", sa.DateTime(), nullable=True))

    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute(SQLITE_TRIGGER)
    else:
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)

    # Cycles launched before the pool existed get a salt now (their key check stays NULL:
    # nothing was sealed under a key before).
    cycle = sa.table("cycle", sa.column("id", sa.Integer), sa.column("pool_salt", sa.LargeBinary))
    for (cycle_id,) in bind.execute(sa.select(cycle.c.id)).all():
        bind.execute(cycle.update().where(cycle.c.id == cycle_id).values(pool_salt=os.urandom(16)))

    # Closed cycles keep counts, not who answered.
    op.execute(
        """
        INSERT INTO cycle_response (cycle_id, department_id, invited, responded)
        SELECT i.cycle_id, ce.department_id, count(*),
               sum(CASE WHEN i.used THEN 1 ELSE 0 END)
        FROM invitation i
        JOIN cycle c ON c.id = i.cycle_id AND c.state = 'closed'
        LEFT JOIN cycle_employee ce
          ON ce.cycle_id = i.cycle_id AND ce.employee_id = i.customer_id
        GROUP BY i.cycle_id, ce.department_id
        """
    )
    op.execute(
        "DELETE FROM invitation WHERE cycle_id IN (SELECT id FROM cycle WHERE state = 'closed')"
    )


def downgrade() -> None:
    # The invitations of closed cycles are gone for good (that is the point); going down
    # leaves those cycles without response figures.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS trg_employee_email_changed")
    else:
        op.execute("DROP TRIGGER IF EXISTS trg_employee_email_changed ON employee")
        op.execute("DROP FUNCTION IF EXISTS employee_email_changed()")
    with op.batch_alter_table("employee") as batch:
        batch.drop_column("email_changed_at")
    with op.batch_alter_table("cycle_employee") as batch:
        batch.drop_column("not_counting_reason")
        batch.drop_column("counts_toward_k")
    with op.batch_alter_table("cycle") as batch:
        batch.drop_column("pool_key_check")
        batch.drop_column("pool_salt")
    op.drop_index(op.f("ix_cycle_response_cycle_id"), table_name="cycle_response")
    op.drop_table("cycle_response")
    op.drop_index(op.f("ix_pending_submission_cycle_id"), table_name="pending_submission")
    op.drop_table("pending_submission")
