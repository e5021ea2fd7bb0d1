"""Leased work queues in an ordinary table: the outbox and the results webhooks.

A row is due when its own condition holds and nobody holds its lease. A claim leases
due rows to one worker and counts the attempt up front, in one statement, so a worker
that dies mid-batch leaves rows that become due again when the lease runs out. On
PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED``: several workers never wait on or
double-send each other's rows. SQLite ignores the clause; its single write lock
serialises claims instead. Failures back off exponentially.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker


def backoff(attempts: int, *, base: timedelta, cap: timedelta) -> timedelta:
    """``base`` after the first failed attempt, doubling after each one, at most ``cap``."""
    return min(base * 2 ** max(attempts - 1, 0), cap)


def _unleased(model: Any, now: datetime) -> ColumnElement[bool]:
    return or_(model.locked_until.is_(None), model.locked_until <= now)


def any_due(
    factory: sessionmaker[Session], model: Any, *, due: ColumnElement[bool], now: datetime
) -> bool:
    """Whether a claim would find a row, asked in a read transaction.

    The worker polls every queue every few seconds; on SQLite a claim's write
    transaction takes the one write lock even when nothing is due, and the raters'
    submits queued behind it. Peek first, claim only when there is work.
    """
    with factory() as session:
        return bool(session.scalar(select(exists().where(due, _unleased(model, now)))))


def claim(
    session: Session,
    model: Any,
    *,
    due: ColumnElement[bool],
    order_by: Sequence[Any],
    now: datetime,
    lease: timedelta,
    limit: int,
    returning: Sequence[Any],
) -> Sequence[Row[Any]]:
    """Lease up to ``limit`` due rows of ``model`` (it has ``id``, ``locked_until`` and
    ``attempts``) to this worker; returns ``returning`` of each, in ``order_by`` order.
    The caller commits, which is when the lease becomes visible to other workers."""
    ids = (
        select(model.id)
        .where(due, _unleased(model, now))
        .order_by(*order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(model)
        .where(model.id.in_(ids.scalar_subquery()))
        .values(locked_until=now + lease, attempts=model.attempts + 1)
        .returning(*returning)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).all()
