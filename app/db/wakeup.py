"""Waking the worker when work is queued, instead of waiting for its next turn.

A queued close (or mail) would otherwise wait up to a job's interval before the worker
looks. :func:`wake_worker` marks the caller's transaction: once it commits, workers hear
of it. PostgreSQL: ``NOTIFY`` on one channel, which the server delivers at commit to every
listening worker process (and never for a transaction rolled back). In the same process
(``serve --with-worker``, the usual SQLite set-up) an event is set after the commit too. A
worker in another process on SQLite still finds the work at its next turn.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "peer360_worker"
# How long one wait on the server lasts before the stop flag and in-process wakes are
# looked at again.
SLICE_SECONDS = 0.25

_queued_here = threading.Event()
_MARKED = "peer360_wakes_worker"


def wake_worker(session: Session) -> None:
    """Wake the workers once this session's transaction commits (nothing if it rolls back)."""
    if session.info.get(_MARKED):
        return
    session.info[_MARKED] = True
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))

    def committed(_session: Session) -> None:
        session.info.pop(_MARKED, None)
        _queued_here.set()

    def rolled_back(_session: Session) -> None:
        session.info.pop(_MARKED, None)

    event.listen(session, "after_commit", committed, once=True)
    event.listen(session, "after_rollback", rolled_back, once=True)


class Alarm:
    """What the worker sleeps on: a timeout, its stop flag, or work queued anywhere."""

    def __init__(self, engine: Engine, stop: threading.Event) -> None:
        self._engine = engine
        self._stop = stop
        self._listener: Any = None
        # The first pass finds whatever was queued before; listen before it, so that
        # work queued while it runs is heard afterwards.
        _queued_here.clear()
        self._listen()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when woken by queued work."""
        remaining = seconds
        while remaining > 0 and not self._stop.is_set():
            step = min(SLICE_SECONDS, remaining)
            if _queued_here.is_set() or self._heard(step):
                _queued_here.clear()
                return True
            remaining -= step
        return False

    def _heard(self, seconds: float) -> bool:
        """Whether a notification came within ``seconds`` (a plain sleep without one)."""
        listener = self._listen()
        if listener is None:
            return _queued_here.wait(seconds)
        try:
            return any(True for _ in listener.notifies(timeout=seconds, stop_after=1))
        except Exception:  # the server went away: sleep, listen again next time
            log.warning("worker: lost the connection it listens on; polling meanwhile")
            self.close()
            return _queued_here.wait(seconds)

    def _listen(self) -> Any:
        if self._listener is not None or self._engine.dialect.name != "postgresql":
            return self._listener
        try:
            raw = self._engine.raw_connection()
        except SQLAlchemyError:
            return None  # the database is away: sleep, try again at the next wait
        driver: Any = raw.driver_connection
        try:
            driver.rollback()  # out of any transaction a pre-ping may have begun
            driver.autocommit = True
            driver.execute(f"LISTEN {CHANNEL}")
        except Exception:
            raw.invalidate()
            return None
        # Kept out of the pool for good: a LISTEN belongs to its connection.
        raw.detach()
        self._listener = driver
        return driver

    def close(self) -> None:
        if self._listener is not None:
            # It may be broken already (the reason to close it).
            with contextlib.suppress(Exception):
                self._listener.close()
            self._listener = None
