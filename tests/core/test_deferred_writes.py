"""Bookkeeping writes queued by reading requests run after them, in their own transaction."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from app.auth import service as auth_service
from app.auth.models import RateLimit, UserSession
from app.db import defer_write, run_deferred_writes, utcnow
from tests.factories import make_user


def test_reading_request_does_not_write_in_its_own_transaction(db: Session) -> None:
    user = make_user(db)
    token, row = auth_service.start_user_session(db, user=user)
    row.last_seen_at = utcnow() - timedelta(minutes=5)
    db.flush()
    db.expire_all()
    found = auth_service.resolve_user_session(db, token=token, idle=timedelta(minutes=30))
    assert found is not None
    # Nothing pending in the request's session: the touch is queued instead.
    assert not db.dirty and not db.new and not db.deleted
    run_deferred_writes(db, db)
    db.expire_all()
    fresh = db.get(UserSession, row.id_hash)
    assert fresh is not None and utcnow() - fresh.last_seen_at < timedelta(minutes=1)


def test_failure_counter_survives_and_reports_the_limit(db: Session) -> None:
    window = timedelta(minutes=1)
    results = []
    for _ in range(3):
        results.append(auth_service.note_failure(db, key="ip:test", limit=2, window=window))
        run_deferred_writes(db, db)
        db.expire_all()
    assert results == [False, False, True]
    assert db.scalar(select(RateLimit.count).where(RateLimit.key == "ip:test")) == 3


def test_deferred_writes_run_in_a_new_transaction_and_failures_are_dropped(
    committed_db: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    with committed_db() as request_session:
        defer_write(
            request_session,
            lambda s: s.add(RateLimit(key="k1", window_started_at=utcnow(), count=1)),
        )
        request_session.rollback()  # the request itself failed
        run_deferred_writes(request_session, committed_db)
    with committed_db() as check:
        assert check.get(RateLimit, "k1") is not None

    with committed_db() as request_session:
        defer_write(request_session, lambda s: s.execute(text("SELECT * FROM no_such_table")))
        with caplog.at_level(logging.WARNING):
            run_deferred_writes(request_session, committed_db)  # does not raise
    assert "bookkeeping write skipped" in caplog.text
