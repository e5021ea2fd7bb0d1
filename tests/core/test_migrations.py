"""The migrations build exactly the models' schema, and go down and up again cleanly.

Each run uses a database of its own (a temporary SQLite file, or a freshly created
PostgreSQL database), never the session's test database.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.db import make_engine
from app.migrate import downgrade, upgrade
from app.models import metadata
from tests.conftest import PG_ADMIN_URL


@pytest.fixture
def fresh_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    if db_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        conn = admin.connect()
    except OperationalError as exc:  # the session fixture fails/skips with the same cause
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc.orig}")
    name = f"peer360_migr_{secrets.token_hex(6)}"
    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
        admin.dispose()


def schema_diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_match_models_and_round_trip(fresh_url: str) -> None:
    upgrade(fresh_url)
    assert schema_diff(fresh_url) == []
    assert set(metadata.tables) <= table_names(fresh_url)

    downgrade(fresh_url, "base")
    assert table_names(fresh_url) <= {"alembic_version"}

    upgrade(fresh_url)
    assert schema_diff(fresh_url) == []


def test_ballot_scores_have_no_rowid_and_no_foreign_keys(fresh_url: str) -> None:
    # The seal rewrites every score at close: no foreign-key triggers to fire per row,
    # and on SQLite one B-tree (a ballot's scores together) instead of table + index.
    upgrade(fresh_url)
    engine = make_engine(fresh_url)
    try:
        assert inspect(engine).get_foreign_keys("ballot_score") == []
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                sql = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = 'ballot_score'"
                ).scalar_one()
            assert "WITHOUT ROWID" in sql
    finally:
        engine.dispose()
    # Going back to 0001 brings the keys back.
    downgrade(fresh_url, "0001")
    engine = make_engine(fresh_url)
    try:
        assert len(inspect(engine).get_foreign_keys("ballot_score")) == 2
    finally:
        engine.dispose()
