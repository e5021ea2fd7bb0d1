"""The request's session ends in as few thread trips as it can, Core statements see what
the session has pending, and lanes bound a hot route's threads in arrival order."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import app.db
from app.auth.models import RateLimit
from app.db import SessionDep, core_connection, defer_write, utcnow
from app.web import run_in_lane


def _limit(key: str) -> RateLimit:
    return RateLimit(key=key, window_started_at=utcnow(), count=1)


def test_a_route_that_committed_itself_ends_without_a_trip_to_the_thread_pool(
    committed_db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = FastAPI()
    api.state.sessionmaker = committed_db

    @api.post("/committed")
    def committed(session: SessionDep) -> None:
        session.add(_limit("committed"))
        session.commit()

    @api.post("/pending")
    def pending(session: SessionDep) -> None:
        session.add(_limit("pending"))

    @api.post("/bookkeeping")
    def bookkeeping(session: SessionDep) -> None:
        session.add(_limit("request"))
        session.commit()
        defer_write(session, lambda other: other.add(_limit("deferred")))

    trips: list[str] = []
    to_thread = app.db.run_in_threadpool

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(func.__name__)
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(app.db, "run_in_threadpool", counted)
    client = TestClient(api)
    for path in ("/committed", "/pending", "/bookkeeping"):
        assert client.post(path).status_code == 200
    # Only the route that left work behind (a flush and commit, a deferred write) paid.
    assert trips == ["_end_session", "_end_session"]
    with committed_db() as check:
        keys = set(check.scalars(select(RateLimit.key)))
    assert keys == {"committed", "pending", "request", "deferred"}


def test_core_statements_see_what_the_session_has_pending(db: Session) -> None:
    db.add(_limit("pending"))
    count = core_connection(db).execute(select(func.count()).select_from(RateLimit)).scalar()
    assert count == 1


def _in_a_loop_of_its_own(width: int, calls: int) -> tuple[list[int], int]:
    """``calls`` calls queued one after the other on one lane: their start order and the
    most that ran at once."""
    started: list[int] = []
    running = 0
    peak = 0
    lock = threading.Lock()

    def work(index: int) -> None:
        nonlocal running, peak
        with lock:
            started.append(index)
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for index in range(calls):
                group.start_soon(run_in_lane, "test", width, work, index)
                await anyio.sleep(0.005)  # arrive in this order

    # A thread with a loop of its own: the browser tests keep one running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(anyio.run, main).result()
    return started, peak


@pytest.mark.parametrize("width", [1, 2])
def test_a_lane_runs_at_most_its_width_at_once_in_arrival_order(width: int) -> None:
    started, peak = _in_a_loop_of_its_own(width, calls=8)
    assert peak == width
    # In order: call j cannot start before call i has a lane, once j is a width behind.
    # (Calls that get their lanes in one pass of the loop may record their start in
    # either order.)
    position = {index: place for place, index in enumerate(started)}
    assert sorted(started) == list(range(8))
    assert all(position[i] < position[j] for i in range(8) for j in range(i + width, 8))
