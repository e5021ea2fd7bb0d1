"""Purging dead row versions for good: the one place that knows how each database
keeps them (SQLite: free pages and the WAL; PostgreSQL: dead tuples that an open snapshot
may still see) and how to make them go.

The close deletes rows that must not outlive it (links, invitations; the vacuum after it
deletes the released pool first); deleting is not enough while the old versions sit on disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

Work = TypeVar("Work")

POLL_SECONDS = 0.2
CHECKPOINT_TRIES = 5

# Everything that can still see a row version the close deleted: another backend's
# snapshot or running transaction in this database (``backend_xmin``/``backend_xid``), a
# running transaction in *any* database (its xid bounds every database's horizon: with
# one idle-in-transaction session elsewhere in the cluster, VACUUM FULL here keeps every
# deleted pool row and link), a replication slot (``xmin``; ``catalog_xmin`` only holds
# back system catalogs) and a prepared transaction. Older than ``:xid`` means ``age()``
# is larger. Walsenders with hot_standby_feedback have no database but hold back every
# database's horizon. Without pg_read_all_stats, other roles' sessions in this database
# hide their xmin and count as older (grant it to the service's role).
_OLDER_SNAPSHOTS = """
SELECT
  (SELECT count(*) FROM pg_stat_activity
    WHERE pid <> pg_backend_pid()
      AND (age(backend_xid) > age(CAST(:xid AS xid))
           OR ((datname = current_database() OR backend_type = 'walsender')
               AND (age(backend_xmin) > age(CAST(:xid AS xid))
                    -- another role's session whose xmin we may not read: assume the worst
                    OR query = '<insufficient privilege>'))))
  + (SELECT count(*) FROM pg_replication_slots
      WHERE age(xmin) > age(CAST(:xid AS xid)))
  + (SELECT count(*) FROM pg_prepared_xacts
      WHERE age(transaction) > age(CAST(:xid AS xid)))
"""


def purge_dead_rows(
    engine: Engine,
    find_work: Callable[[Connection], Work],
    *,
    tables: Callable[[Work], Sequence[str]],
    wait_seconds: float,
) -> tuple[Work, bool]:
    """Run ``find_work`` (what the caller will mark done), then purge the dead row
    versions of ``tables(work)``: (the work, whether they are really gone).

    Everything deleted before ``find_work`` saw it is purged. False when a reader kept
    them within ``wait_seconds``; the caller retries later.
    """
    if engine.dialect.name == "sqlite":
        return _vacuum_sqlite(engine, find_work, wait_seconds)
    return _vacuum_postgresql(engine, find_work, tables, wait_seconds)


def empty_log(engine: Engine) -> None:
    """SQLite: checkpoint and truncate the WAL if no reader pins it (one try)."""
    if engine.dialect.name == "sqlite":
        _checkpoint(engine, tries=1)


def _checkpoint(engine: Engine, *, tries: int) -> bool:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA busy_timeout=1000")
        try:
            for attempt in range(tries):
                # (busy, WAL frames, frames checkpointed): busy=1 means a reader still
                # pins an older snapshot, so the WAL keeps the pre-seal pages.
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                row = cursor.fetchone()
                if row is not None and row[0] == 0:
                    return True
                if attempt + 1 < tries:
                    time.sleep(POLL_SECONDS)
            return False
        finally:
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
    finally:
        raw.close()


def _vacuum_sqlite(
    engine: Engine, find_work: Callable[[Connection], Work], wait_seconds: float
) -> tuple[Work, bool]:
    """``VACUUM`` (``secure_delete`` is on), then a WAL checkpoint that truncates the log."""
    with engine.connect() as connection:
        work = find_work(connection)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(f"PRAGMA busy_timeout={max(100, int(wait_seconds * 1000))}")
        cursor.execute("VACUUM")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
    finally:
        raw.close()
    tries = max(1, min(CHECKPOINT_TRIES, int(wait_seconds)))
    if not _checkpoint(engine, tries=tries):
        log.warning(
            "VACUUM after close: a reader kept the SQLite WAL busy, so the pre-seal pages "
            "are still in it; the worker retries"
        )
        return work, False
    return work, True


def _vacuum_postgresql(
    engine: Engine,
    find_work: Callable[[Connection], Work],
    tables: Callable[[Work], Sequence[str]],
    wait_seconds: float,
) -> tuple[Work, bool]:
    """``VACUUM FULL`` once no snapshot older than the seal is left.

    VACUUM FULL copies "recently dead" tuples, those some open snapshot may still see,
    into the new file. A snapshot taken before the seal committed (another request, the
    worker, pg_dump, autoanalyze) would keep every pre-seal ballot, in submission order
    and with its rater's xid. So first take an xid certainly newer than the seal and
    wait until nothing in this database is older.
    """
    with engine.begin() as connection:
        # What this snapshot sees deleted committed before the xid taken next.
        work = find_work(connection)
        fresh = int(connection.exec_driver_sql("SELECT pg_current_xact_id()::text").scalar_one())
    xid = str(fresh % 2**32)  # the 32-bit xid that pg_stat_activity shows
    deadline = time.monotonic() + wait_seconds
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # Autocommit: each poll is its own transaction, so pg_stat_activity is re-read.
        while conn.execute(text(_OLDER_SNAPSHOTS), {"xid": xid}).scalar_one():
            if time.monotonic() >= deadline:
                log.warning(
                    "VACUUM after close postponed: a transaction older than the seal is "
                    "still open after %.0f s; the worker retries",
                    wait_seconds,
                )
                return work, False
            time.sleep(POLL_SECONDS)
        conn.exec_driver_sql("SET lock_timeout = '10s'")
        conn.exec_driver_sql(f"VACUUM FULL {', '.join(tables(work))}")
        conn.exec_driver_sql("RESET lock_timeout")
    return work, True
