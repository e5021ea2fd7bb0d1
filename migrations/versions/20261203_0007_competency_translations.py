"""competency texts per language, snapshotted per cycle

* ``competency.translations`` / ``cycle_competency.translations``: the name,
  description and indicators in languages other than the organisation's, as JSON
  (``{"ru": {"name": ..., "description": ..., "indicators": [...]}}``). A launch copies
  them into the cycle's snapshot, so a running cycle keeps the texts it started with.
* Default competencies still exactly as the first ``migrate`` wrote them get their
  texts in the other shipped languages, so a Russian-speaking rater reads them in
  Russian; competencies HR edited are left alone.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.org.default_competencies import DEFAULT_COMPETENCIES

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Going down loses the translated texts HR entered: refused unless forced.
downgrade_drops = "the competencies' texts in other languages"

# The table as this revision knows it, whatever the models look like later.
competency = sa.table(
    "competency",
    sa.column("id", sa.Integer),
    sa.column("code", sa.String),
    sa.column("name", sa.String),
    sa.column("description", sa.Text),
    sa.column("indicators", sa.JSON),
    sa.column("translations", sa.JSON),
)


def _untouched_defaults() -> list[dict[str, object]]:
    """Updates for default competencies whose texts are one language's, unchanged."""
    bind = op.get_bind()
    updates: list[dict[str, object]] = []
    for row in bind.execute(
        sa.select(
            competency.c.id,
            competency.c.code,
            competency.c.name,
            competency.c.description,
            competency.c.indicators,
        )
    ):
        languages = DEFAULT_COMPETENCIES.get(row.code, {})
        current = {
            "name": row.name,
            "description": row.description,
            "indicators": list(row.indicators or []),
        }
        written_in = [lang for lang, texts in languages.items() if texts == current]
        if written_in:
            others = {
                lang: dict(texts) for lang, texts in languages.items() if lang != written_in[0]
            }
            updates.append({"row_id": row.id, "translations": others})
    return updates


def upgrade() -> None:
    for table in ("competency", "cycle_competency"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("translations", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
            )
    updates = _untouched_defaults()
    if updates:
        op.get_bind().execute(
            competency.update()
            .where(competency.c.id == sa.bindparam("row_id"))
            .values(translations=sa.bindparam("translations")),
            updates,
        )


def downgrade() -> None:
    for table in ("cycle_competency", "competency"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("translations")
