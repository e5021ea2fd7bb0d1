"""Database plumbing: declarative base, engine factory, the request's session.

Services only ``flush()``; the request (or the worker job) commits once at the end, so
a multi-step write is atomic.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast

import anyio
from fastapi import Depends, Request
from sqlalchemy import (
    Boolean,
    Column,
    ForeignKeyConstraint,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)
_DEFERRED = "deferred_writes"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    """Naive UTC now: both databases store ``DateTime`` without a zone here."""
    return datetime.now(UTC).replace(tzinfo=None)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Build an engine; SQLite gets WAL, foreign keys and secure deletion."""
    # A failed ballot insert would otherwise log its parameters (scores, comments and the
    # set of suppliers, which points at one customer) in the error's text.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        if path in ("", ":memory:"):
            kwargs.setdefault("poolclass", NullPool)
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    # A pooled connection the server dropped (a restart, a failover) is replaced on
    # checkout, so the app recovers on its own when the database comes back.
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # An unreachable host fails the request in seconds (a 503), not after the OS's
    # two-minute TCP timeout with a thread held all along.
    kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    return create_engine(url, **kwargs)


CONNECT_TIMEOUT_SECONDS = 5
# SQLite result codes that pass on their own: busy or locked by another writer, the file
# unreachable (a volume not mounted yet), I/O. Any other, such as SQLITE_ERROR for a
# syntax error or a missing table, is a bug and stays a 500 with its traceback.
_SQLITE_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR")


def database_unavailable(exc: BaseException) -> bool:
    """Whether a database error means "unreachable or busy: try again later"."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if isinstance(exc.orig, sqlite3.Error):
        name = getattr(exc.orig, "sqlite_errorname", "") or ""
        return name.startswith(_SQLITE_TRANSIENT)
    # psycopg's OperationalError: connection refused or lost, server shutting down,
    # statement cancelled or lock timeout. Its errors for bad SQL are other classes.
    return True


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT and BEGIN IMMEDIATE; take
    # it over as the SQLAlchemy docs recommend.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Deleted ballots are overwritten on disk, not just unlinked (anonymity).
        cursor.execute("PRAGMA secure_delete=ON")
        # ANALYZE samples this many rows per index instead of reading whole tables.
        cursor.execute("PRAGMA analysis_limit=1000")
        cursor.close()

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        # A bulk job deferred the WAL checkpoint (see defer_wal_checkpoint): back to
        # SQLite's default before anyone else uses the connection.
        if record is not None and record.info.pop(_CHECKPOINT_DEFERRED, False):
            dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={_WAL_AUTOCHECKPOINT:d}")
        if record is not None and record.info.pop(_SECURE_DELETE_LOWERED, False):
            dbapi_connection.execute("PRAGMA secure_delete=ON")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the lock up front so two deferred transactions never deadlock
        # on the read->write upgrade (SQLITE_BUSY without waiting).
        if connection.get_execution_options().get("sqlite_immediate"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def is_sqlite(session_or_engine: Session | Engine) -> bool:
    if isinstance(session_or_engine, Session):
        return session_or_engine.get_bind().dialect.name == "sqlite"
    bind = session_or_engine
    return bind.dialect.name == "sqlite"


def concurrent_writers(engine: Engine) -> bool:
    """Whether a second connection can write while a transaction holds a write lock
    (PostgreSQL); SQLite has one write lock for the whole database."""
    return engine.dialect.name != "sqlite"


def analyze(session: Session, *models: type[Base]) -> None:
    """Refresh the planner's statistics of tables just filled in this transaction.

    PostgreSQL: without them the next queries are planned for the empty tables of
    before (nested loops over hundreds of thousands of rows). SQLite: without any, its
    planner guesses, and at 50,000 employees one guess (a department rollup walking the
    coefficient index once per department) took 46 s instead of 0.2 s. SQLite samples
    (``analysis_limit``, set per connection), so this costs milliseconds on both.
    """
    dialect = session.get_bind().dialect
    for model in models:
        table = cast(Table, model.__table__)
        target = dialect.identifier_preparer.format_table(table)
        # SQLite keeps statistics per index only and takes no column list.
        columns = planned_columns(table) if dialect.name == "postgresql" else None
        if columns:
            names = ", ".join(dialect.identifier_preparer.quote(c) for c in columns)
            session.execute(text(f"ANALYZE {target} ({names})"))
        else:
            session.execute(text(f"ANALYZE {target}"))


# ``mapped_column(info=FILTERED)``: a column that queries filter on without an index,
# whose statistics :func:`analyze` must therefore refresh.
FILTERED = {"filtered": True}


def planned_columns(table: Table) -> list[str] | None:
    """The columns whose statistics the planner uses: keys, indexed and unique columns,
    flags and those marked ``FILTERED`` (None: all, for a table with an expression
    index, whose statistics PostgreSQL gathers only in a whole-table ANALYZE).

    The figures only ever read back (floats, ranks, JSON) are left out: sorting their
    samples was two thirds of the ANALYZE of the employee results at close.
    """
    keyed: set[str] = set()
    for index in table.indexes:
        if any(not isinstance(expr, Column) for expr in index.expressions):
            return None
        keyed.update(column.name for column in index.columns)
    for constraint in table.constraints:
        if isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint | ForeignKeyConstraint):
            keyed.update(column.name for column in constraint.columns)
    return [
        column.name
        for column in table.columns
        if column.name in keyed or isinstance(column.type, Boolean) or column.info.get("filtered")
    ]


@contextmanager
def large_sqlite_cache(session: Session, *, mib: int = 256) -> Iterator[None]:
    """Give this session's SQLite connection a page cache of ``mib`` for one bulk job.

    SQLite's default cache is 2 MiB; the seal and the results of a 50,000-employee cycle
    walk a few hundred MiB of B-trees in random order and re-read them from the OS on
    every probe (close: 52 s -> 38 s). The default is restored, and the memory freed,
    afterwards. Does nothing on PostgreSQL.
    """
    if not is_sqlite(session):
        yield
        return
    connection = session.connection()
    before = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
    connection.exec_driver_sql(f"PRAGMA cache_size={-1024 * mib:d}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size={int(before):d}")


@contextmanager
def ciphertext_delete(session: Session) -> Iterator[None]:
    """SQLite: deletes in this block free whole pages without zeroing them first.

    ``secure_delete`` (on for every connection) overwrites a deleted row's pages, and in
    WAL mode each overwritten page is written once more to the log: deleting the sealed
    pool of a 50,000-employee cycle wrote 480 MiB of zeros and took 2.5 s.
    Only for rows that are ciphertext under ``SECRET_KEY`` (the pool). Until the
    ``VACUUM`` after the close has succeeded (``cycle.vacuumed_at``) the freed pages keep
    their bytes: unreadable without the key, though their number says how large each
    sealed submission was. Then they are gone from the file (an attack test checks).
    ``FAST`` still clears what sits on pages that are written anyway. Does nothing on
    PostgreSQL.
    """
    if not is_sqlite(session):
        yield
        return
    connection = session.connection()
    # Should the reset below fail, the pool puts it back before anyone else gets the
    # connection (see _on_checkin).
    connection.connection.info[_SECURE_DELETE_LOWERED] = True
    connection.exec_driver_sql("PRAGMA secure_delete=FAST")
    try:
        yield
    finally:
        connection.exec_driver_sql("PRAGMA secure_delete=ON")
        connection.connection.info.pop(_SECURE_DELETE_LOWERED, None)


_CHECKPOINT_DEFERRED = "peer360_checkpoint_deferred"
_SECURE_DELETE_LOWERED = "peer360_secure_delete_lowered"
_WAL_AUTOCHECKPOINT = 1000  # SQLite's default, in pages


def defer_wal_checkpoint(session: Session) -> None:
    """SQLite: this transaction's commit leaves its pages in the WAL, not in the file.

    A commit that grows the WAL past 1,000 pages copies them into the database file on
    the spot (a third of a 5,000-employee close's commit). The close's pages are copied
    anyway by the ``VACUUM`` and checkpoint that follow it, or by the next commit of any
    other connection; until then readers see them in the WAL. The connection is back to
    the default when it returns to the pool. Does nothing on PostgreSQL.
    """
    if not is_sqlite(session):
        return
    connection = session.connection()
    connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
    connection.connection.info[_CHECKPOINT_DEFERRED] = True


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def writer_session(factory: sessionmaker[Session]) -> Session:
    """A session whose transactions take SQLite's write lock at BEGIN."""
    bind = factory.kw["bind"]
    if bind.dialect.name == "sqlite":
        return factory(bind=bind.execution_options(sqlite_immediate=True))
    return factory()


def read_before_writing(session: Session) -> None:
    """Begin the session's transaction without SQLite's write lock, though the session
    was made for writing; :func:`start_writing` takes it when the writes come.

    For a request that reads and checks for a while and then writes a little (the
    rating submit): SQLite has one write lock for the whole database, and every other
    writer waits while it is held. Call it before the session's first statement.
    """
    if not session.in_transaction():
        session.connection(execution_options={"sqlite_immediate": False})


def core_connection(session: Session) -> Connection:
    """The session's connection, for Core statements that load no objects: half the
    overhead of ``Session.execute`` (25 µs a statement instead of 50 on SQLite), which
    counts on a path as hot as the rating submit. Flushes first, as ``Session.execute``
    does before an ORM statement."""
    if session.autoflush:
        session.flush()
    return session.connection()


def start_writing(session: Session) -> None:
    """Commit what was read and begin a transaction that takes SQLite's write lock at
    once (on PostgreSQL, simply a new transaction).

    What was read may have changed in between: the writes must check again what they
    rely on, e.g. claim a row with ``UPDATE ... WHERE used = false``.
    """
    session.commit()
    session.connection(execution_options={"sqlite_immediate": True})


# The result, if any, is ignored.
DeferredWrite = Callable[[Session], object]


def defer_write(session: Session, write: DeferredWrite) -> None:
    """Queue a bookkeeping write (last seen, last used, a failure counter) to run after
    the request's own transaction, in a short writer transaction of its own.

    Why: on SQLite a reading request that suddenly writes must upgrade its read lock,
    which fails at once ("database is locked") when another writer committed meanwhile.
    Bookkeeping must never fail the page it rides on; it is kept even when that fails.
    """
    session.info.setdefault(_DEFERRED, []).append(write)


def run_deferred_writes(session: Session, target: Session | sessionmaker[Session]) -> None:
    """Run the writes queued on ``session``: in ``target`` itself, or in a new writer
    session from a factory (best effort: bookkeeping is logged and dropped on failure)."""
    writes: list[DeferredWrite] = session.info.pop(_DEFERRED, [])
    if not writes:
        return
    if isinstance(target, Session):
        for write in writes:
            write(target)
        return
    try:
        with writer_session(target) as other, other.begin():
            for write in writes:
                write(other)
    except SQLAlchemyError:
        log.warning("bookkeeping write skipped", exc_info=True)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session: commits once when the route returns, else rolls back.

    Async, though the session is not: creating one does no I/O (it connects on first
    use, in the route's worker thread), so only the end, commit or rollback with the
    close and the deferred writes, takes a trip to the thread pool, and one only (a
    plain generator took two, a quarter of a millisecond of CPU each). A route that
    committed itself and left nothing to do needs none: closing is then plain Python.
    """
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    reading = request.method in ("GET", "HEAD", "OPTIONS")
    session = factory() if reading else writer_session(factory)
    try:
        yield session
    except BaseException:
        # Shielded: a client that hung up must not leave the transaction open.
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(_end_session, session, factory, commit=False)
        raise
    if _ended_by_route(session):
        session.close()
        return
    with anyio.CancelScope(shield=True):
        await run_in_threadpool(_end_session, session, factory, commit=True)


def _ended_by_route(session: Session) -> bool:
    """No transaction open, nothing to flush, no bookkeeping queued."""
    return not (
        session.in_transaction()
        or session.new
        or session.dirty
        or session.deleted
        or session.info.get(_DEFERRED)
    )


def _end_session(session: Session, factory: sessionmaker[Session], *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
        run_deferred_writes(session, factory)


# scope="function": commit before the response is sent, so a failed commit is an
# error answer rather than a success the database never kept.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
