"""the default competency set on a fresh database

A new install could not launch its first cycle ("There is no active competency to
rate") until HR typed in competencies: only the demo created any. This data migration
adds the documented default set (app/org/default_competencies.py) in the organisation's
language (DEFAULT_LANGUAGE, en or ru), once per database: Alembic runs it once, and it
adds nothing to a database that already has competencies, so HR's edits and deletions
are never undone. Its downgrade keeps the rows (they may be HR's by then).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 07:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from app.org.default_competencies import default_competencies

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The table as this revision knows it, whatever the models look like later.
competency = sa.table(
    "competency",
    sa.column("code", sa.String),
    sa.column("name", sa.String),
    sa.column("description", sa.Text),
    sa.column("indicators", sa.JSON),
    sa.column("weight", sa.Float),
    sa.column("display_order", sa.Integer),
    sa.column("active", sa.Boolean),
    sa.column("created_at", sa.DateTime),
    sa.column("updated_at", sa.DateTime),
)


def _language() -> str:
    # python -m app migrate passes the setting; a bare `alembic upgrade` reads it here.
    language = op.get_context().config.attributes.get("default_language")  # type: ignore[union-attr]
    if language is None:
        from app.config import get_settings

        language = get_settings().default_language
    return str(language)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.select(sa.func.count()).select_from(competency)).scalar():
        return  # a database in use: its competencies are HR's
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {**spec, "active": True, "created_at": now, "updated_at": now}
        for spec in default_competencies(_language())
    ]
    op.bulk_insert(competency, rows)


def downgrade() -> None:
    pass  # the rows stay: by now they may be HR's edited set
