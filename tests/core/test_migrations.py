"""The migrations build exactly the models' schema, and go down and up again cleanly.

Each run uses a database of its own (a temporary SQLite file, or a freshly created
PostgreSQL database), never the session's test database.
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.db import make_engine
from app.migrate import DataLossRefused, downgrade, upgrade
from app.models import metadata


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


def test_migrations_match_models_and_round_trip(fresh_database_url: str) -> None:
    upgrade(fresh_database_url)
    assert schema_diff(fresh_database_url) == []
    assert set(metadata.tables) <= table_names(fresh_database_url)

    downgrade(fresh_database_url, "base", force=True)
    assert table_names(fresh_database_url) <= {"alembic_version"}

    upgrade(fresh_database_url)
    assert schema_diff(fresh_database_url) == []


def test_ballot_scores_have_no_rowid_and_no_foreign_keys(fresh_database_url: str) -> None:
    # The seal rewrites every score at close: no foreign-key triggers to fire per row,
    # and on SQLite one B-tree (a ballot's scores together) instead of table + index.
    upgrade(fresh_database_url)
    engine = make_engine(fresh_database_url)
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
    # Going back to 0001 brings the keys back (0004's step drops the pool: forced).
    downgrade(fresh_database_url, "0001", force=True)
    engine = make_engine(fresh_database_url)
    try:
        assert len(inspect(engine).get_foreign_keys("ballot_score")) == 2
    finally:
        engine.dispose()


def test_downgrade_that_drops_data_is_refused_unless_forced(fresh_database_url: str) -> None:
    upgrade(fresh_database_url)
    with pytest.raises(DataLossRefused, match="0001 drops every table"):
        downgrade(fresh_database_url, "base")
    # Refused before any step ran: still at head, every table there.
    assert set(metadata.tables) <= table_names(fresh_database_url)
    assert schema_diff(fresh_database_url) == []
    # 0007's would lose the competencies' translated texts: refused unless forced.
    with pytest.raises(DataLossRefused, match="0007 drops the competencies' texts"):
        downgrade(fresh_database_url, "0005")
    downgrade(fresh_database_url, "0005", force=True)
    # Downgrades that keep the data need no force (0005 leaves the competencies).
    downgrade(fresh_database_url, "0004")
    # 0004's would delete the sealed answers of open cycles: refused too.
    with pytest.raises(DataLossRefused, match="0004 drops the pending answers"):
        downgrade(fresh_database_url, "0003")
    assert "pending_submission" in table_names(fresh_database_url)
    downgrade(fresh_database_url, "0003", force=True)
    downgrade(fresh_database_url, "0001")
    downgrade(fresh_database_url, "base", force=True)
    assert table_names(fresh_database_url) <= {"alembic_version"}
