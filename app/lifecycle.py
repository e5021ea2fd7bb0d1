"""Closing a cycle, above the domains: cycles -> ratings (seal) -> reports (results).

``cycles`` may not import ``ratings`` or ``reports``, so the steps that span them live
here, as do the worker's scheduled jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CycleState
from app.db import utcnow, writer_session
from app.errors import Conflict
from app.ratings import service as ratings_service
from app.reports import service as reports_service
from app.reports import webhook as reports_webhook

log = logging.getLogger(__name__)


def close_cycle(
    session: Session,
    *,
    cycle_id: int,
    now: datetime | None = None,
    min_raters: int | None = None,
) -> Cycle:
    """Close an open cycle: links die, ballots are sealed, results are computed.

    One transaction (the caller's). Closing a closed cycle does nothing; a draft cannot
    be closed. Run :func:`vacuum_after_close` after the commit.
    """
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id, for_update=True)
    if cycle.state == CycleState.closed:
        return cycle
    if cycle.state != CycleState.open:
        raise Conflict(f"Cycle {cycle.name} was never launched; only an open cycle can close")
    now = now or utcnow()
    cycles_service.mark_closed(session, cycle=cycle, now=now)
    cycles_service.end_links(session, cycle_id=cycle.id)
    ratings_service.seal_ballots(session, cycle_id=cycle.id)
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    cycle.sealed_at = now
    session.flush()
    reports_service.compute_cycle_results(session, cycle_id=cycle.id, min_raters=min_raters)
    session.flush()
    return cycle


def close_due_cycles(
    session: Session, *, now: datetime | None = None, min_raters: int | None = None
) -> list[int]:
    """Close every open cycle whose close date has passed; returns their ids."""
    now = now or utcnow()
    closed = []
    for cycle_id in cycles_service.cycles_due_to_close(session, now=now):
        close_cycle(session, cycle_id=cycle_id, now=now, min_raters=min_raters)
        closed.append(cycle_id)
    return closed


def vacuum_after_close(engine: Engine) -> bool:
    """Purge the dead row versions the seal left behind (after the commit).

    Until then the pre-seal rows, in submission order, may still sit in free pages
    (SQLite) or as dead tuples (PostgreSQL). SQLite: ``VACUUM`` (``secure_delete`` is
    on) and a WAL checkpoint that truncates the log. PostgreSQL: ``VACUUM FULL`` of the
    three tables, which rewrites them and their indexes. Returns False when it could not
    run now (a lock was held); the next close, or a manual VACUUM, does it.
    """
    try:
        if engine.dialect.name == "sqlite":
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("PRAGMA busy_timeout=10000")
                cursor.execute("VACUUM")
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()
            finally:
                raw.close()
        else:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("SET lock_timeout = '10s'")
                conn.exec_driver_sql("VACUUM FULL ballot, ballot_score, invitation")
                conn.exec_driver_sql("RESET lock_timeout")
    except Exception:
        log.exception("VACUUM after closing a cycle failed; run it by hand")
        return False
    return True


# --- the worker's scheduled jobs ---------------------------------------------------------


def close_due_cycles_job(
    settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    """Close each due cycle in its own transaction, then vacuum."""
    with factory() as session:
        due = cycles_service.cycles_due_to_close(session, now=utcnow())
    for cycle_id in due:
        with writer_session(factory) as session, session.begin():
            close_cycle(session, cycle_id=cycle_id, min_raters=settings.anonymity_min_raters)
        log.info("cycle %s closed automatically at its close date", cycle_id)
        vacuum_after_close(engine)


def reminders_job(settings: Settings, engine: Engine, factory: sessionmaker[Session]) -> None:
    """Queue the scheduled reminders of every open cycle (once per reminder date)."""
    with factory() as session:
        open_ids = cycles_service.open_cycle_ids(session)
    for cycle_id in open_ids:
        with writer_session(factory) as session, session.begin():
            queued = cycles_service.send_scheduled_reminders(
                session, cycle_id=cycle_id, settings=settings
            )
        if queued:
            log.info("cycle %s: %d reminders queued", cycle_id, queued)


def scheduled_jobs() -> list[tuple[str, Callable[[Settings, Engine, sessionmaker[Session]], None]]]:
    """The worker's jobs above the mail domain, in the order each pass runs them."""
    return [
        ("close due cycles", close_due_cycles_job),
        ("send reminders", reminders_job),
        ("deliver results webhooks", reports_webhook.deliver_webhooks_job),
    ]
