"""outbox bodies stored once per mailing

Every outbox message carried its own copy of its text and HTML: at a launch 50,000
copies of the same two kilobytes but for the name, about 200 MB written at launch and
overwritten with zeros when the close deletes the cycle's mail (most of the close's
commit). A mailing's text is now stored once, with the name as a placeholder that the
sender fills in. Existing messages keep their own text (the body takes the message's
id); the downgrade copies each text back into its message, name filled in.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 18:50:00
"""

import html
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME_PLACEHOLDER = "[[recipient-name]]"
BATCH = 5000


def upgrade() -> None:
    op.create_table(
        "outbox_body",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_body")),
    )
    with op.batch_alter_table("outbox_message") as batch_op:
        batch_op.add_column(sa.Column("body_id", sa.Integer(), nullable=True))
    op.execute(
        "INSERT INTO outbox_body (id, body_text, body_html) "
        "SELECT id, body_text, body_html FROM outbox_message"
    )
    op.execute("UPDATE outbox_message SET body_id = id")
    if op.get_bind().dialect.name == "postgresql":
        # The bodies took the messages' ids: new ones continue after them.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('outbox_body', 'id'), "
            "COALESCE((SELECT max(id) FROM outbox_body), 0) + 1, false)"
        )
    with op.batch_alter_table("outbox_message") as batch_op:
        batch_op.alter_column("body_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("body_text")
        batch_op.drop_column("body_html")
        batch_op.create_index(batch_op.f("ix_outbox_message_body_id"), ["body_id"])


def downgrade() -> None:
    with op.batch_alter_table("outbox_message") as batch_op:
        batch_op.add_column(sa.Column("body_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("body_html", sa.Text(), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT m.id, m.to_name, b.body_text, b.body_html FROM outbox_message AS m "
            "JOIN outbox_body AS b ON b.id = m.body_id"
        )
    ).all()
    update = sa.text(
        "UPDATE outbox_message SET body_text = :text, body_html = :html WHERE id = :id"
    )
    for start in range(0, len(rows), BATCH):
        connection.execute(
            update,
            [
                {
                    "id": message_id,
                    "text": text.replace(NAME_PLACEHOLDER, name),
                    "html": None
                    if body is None
                    else body.replace(NAME_PLACEHOLDER, html.escape(name)),
                }
                for message_id, name, text, body in rows[start : start + BATCH]
            ],
        )
    with op.batch_alter_table("outbox_message") as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_message_body_id"))
        batch_op.alter_column("body_text", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("body_id")
    op.drop_table("outbox_body")
