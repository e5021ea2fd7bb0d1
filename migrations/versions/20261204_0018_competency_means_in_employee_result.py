"""competency means in the employee result row

An employee's competency means had a table of their own, one row per shown mean (about
350,000 rows at 50,000 employees). Its only reader is the employee table, which read a
page of 500 employees and then 4,000 rows more; on SQLite each row is a step of the
driver, and two such pages at once slowed each other down threefold. The means now sit
in the employee's row as JSON, in display order, and the close writes 45,000 rows
instead of 400,000. Existing results move over; the downgrade moves them back.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 18:10:00
"""

import json
from collections.abc import Sequence
from itertools import groupby

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000


def upgrade() -> None:
    with op.batch_alter_table("employee_result") as batch_op:
        batch_op.add_column(sa.Column("competency_means", sa.Text(), nullable=True))
    connection = op.get_bind()
    means = connection.execute(
        sa.text(
            "SELECT ecr.cycle_id, ecr.employee_id, ecr.cycle_competency_id, ecr.mean, "
            "ecr.answers FROM employee_competency_result AS ecr "
            "JOIN cycle_competency AS cc ON cc.id = ecr.cycle_competency_id "
            "ORDER BY ecr.cycle_id, ecr.employee_id, cc.display_order, cc.id"
        )
    ).all()
    update = sa.text(
        "UPDATE employee_result SET competency_means = :means "
        "WHERE cycle_id = :cycle_id AND employee_id = :employee_id"
    )
    batch: list[dict[str, object]] = []
    for (cycle_id, employee_id), rows in groupby(means, key=lambda row: (row[0], row[1])):
        triples = [[cid, mean, answers] for _, _, cid, mean, answers in rows]
        batch.append(
            {
                "cycle_id": cycle_id,
                "employee_id": employee_id,
                "means": json.dumps(triples, separators=(",", ":")),
            }
        )
        if len(batch) >= BATCH:
            connection.execute(update, batch)
            batch = []
    if batch:
        connection.execute(update, batch)
    # As the close writes it: an employee who meets k but has no mean shown gets [].
    op.execute(
        "UPDATE employee_result SET competency_means = '[]' "
        "WHERE meets_k AND competency_means IS NULL"
    )
    op.drop_table("employee_competency_result")


def downgrade() -> None:
    op.create_table(
        "employee_competency_result",
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("employee_id", sa.Integer(), nullable=False),
        sa.Column("cycle_competency_id", sa.Integer(), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "cycle_id",
            "employee_id",
            "cycle_competency_id",
            name=op.f("pk_employee_competency_result"),
        ),
    )
    connection = op.get_bind()
    stored = connection.execute(
        sa.text(
            "SELECT cycle_id, employee_id, competency_means FROM employee_result "
            "WHERE competency_means IS NOT NULL"
        )
    )
    insert = sa.text(
        "INSERT INTO employee_competency_result "
        "(cycle_id, employee_id, cycle_competency_id, answers, mean) "
        "VALUES (:cycle_id, :employee_id, :cid, :answers, :mean)"
    )
    batch: list[dict[str, object]] = []
    for cycle_id, employee_id, means in stored.all():
        for cid, mean, answers in json.loads(means):
            batch.append(
                {
                    "cycle_id": cycle_id,
                    "employee_id": employee_id,
                    "cid": cid,
                    "answers": answers,
                    "mean": mean,
                }
            )
        if len(batch) >= BATCH:
            connection.execute(insert, batch)
            batch = []
    if batch:
        connection.execute(insert, batch)
    with op.batch_alter_table("employee_result") as batch_op:
        batch_op.drop_column("competency_means")
