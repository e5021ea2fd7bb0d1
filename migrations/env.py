"""Alembic environment: the URL comes from the caller or from Settings."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from app.config import get_settings
from app.db import make_engine
from app.migrate import refuse_data_loss
from app.models import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # Batch mode lets ALTER work on SQLite by copying the table.
        render_as_batch=True,
        compare_type=True,
    )
    if not _forced():
        refuse_data_loss(
            context.script,
            context.get_context().get_current_heads(),
            context.get_revision_argument(),
        )
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _sqlite_foreign_keys(connection, on=False)
    try:
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                _check_sqlite_foreign_keys(connection)
    finally:
        if sqlite:
            _sqlite_foreign_keys(connection, on=True)


def _sqlite_foreign_keys(conn: Connection, *, on: bool) -> None:
    """Batch mode copies a table, drops the old one and renames the copy. With foreign
    keys on, that DROP fails for a table others refer to (employee, cycle), or worse,
    fires their ON DELETE CASCADE. SQLite's own procedure for such changes: keys off
    (outside any transaction), change, check, keys on."""
    if conn.in_transaction():
        conn.commit()
    conn.connection.driver_connection.execute(  # type: ignore[union-attr]
        f"PRAGMA foreign_keys={'ON' if on else 'OFF'}"
    )


def _check_sqlite_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"migration left rows with broken foreign keys: {broken[:5]}")


def _forced() -> bool:
    """``python -m app migrate --force`` or ``alembic -x force=1 downgrade ...``."""
    x_force = context.get_x_argument(as_dictionary=True).get("force", "")
    return bool(config.attributes.get("force")) or x_force.lower() in ("1", "true", "yes")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
