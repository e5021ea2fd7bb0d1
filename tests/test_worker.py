"""The worker runs each scheduled job at its own interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_engine, wakeup
from app.db.wakeup import wake_worker
from app.scheduling import every, interval_of
from app.worker import Job, default_jobs, run_worker


def test_jobs_run_at_their_own_intervals(settings: Settings) -> None:
    runs: dict[str, int] = {"often": 0, "rarely": 0}
    stop = threading.Event()

    def often(_s: Settings, _e: Engine, _f: sessionmaker[Session]) -> None:
        runs["often"] += 1
        if runs["often"] >= 5:
            stop.set()

    def rarely(_s: Settings, _e: Engine, _f: sessionmaker[Session]) -> None:
        runs["rarely"] += 1

    def broken(_s: Settings, _e: Engine, _f: sessionmaker[Session]) -> None:
        raise RuntimeError("a failing job never stops the others")

    quick = settings.model_copy(update={"worker_poll_seconds": 60.0})
    jobs = [Job("broken", broken, 0.01), Job("often", often, 0.01), Job("rarely", rarely, 60)]
    engine = make_engine("sqlite://")  # the jobs here touch no database
    run_worker(quick, engine, stop=stop, jobs=jobs)
    assert runs == {"often": 5, "rarely": 1}


def test_the_registry_declares_intervals_with_a_default() -> None:
    jobs = {job.name: job for job in default_jobs()}
    assert jobs["run close jobs"].every == 0.25
    assert jobs["send reminders"].every == 60.0
    assert jobs["deliver mail"].every is None  # every pass (WORKER_POLL_SECONDS)
    # Queued closes and mail also run as soon as they are queued.
    assert jobs["run close jobs"].woken and jobs["deliver mail"].woken
    assert not jobs["send reminders"].woken

    @every(5)
    def marked(_s: Settings, _e: Engine, _f: sessionmaker[Session]) -> None: ...

    assert interval_of(marked) == 5.0
    with pytest.raises(ValueError):
        every(0)


def test_polling_an_empty_queue_never_waits_for_the_write_lock(
    settings: Settings, engine: Engine, committed_db: sessionmaker[Session]
) -> None:
    """The worker polls the outbox, the webhooks and the close jobs every few seconds.
    With nothing due it must not queue for SQLite's one write lock, where the raters'
    submits wait too: a writer holds the lock here, and the passes still return."""
    from app.lifecycle import close_jobs_job
    from app.reports.webhook import deliver_webhooks_job
    from app.worker import deliver_mail_job

    done = threading.Event()

    def poll() -> None:
        for job in (deliver_mail_job, deliver_webhooks_job, close_jobs_job):
            job(settings, engine, committed_db)
        done.set()

    writer = engine.execution_options(sqlite_immediate=True).connect()
    transaction = writer.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
    writer.exec_driver_sql("UPDATE cycle SET name = name")
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    finished = done.wait(5)
    transaction.rollback()
    writer.close()
    poller.join(35)
    assert finished, "a worker pass with nothing due waited for another writer"


def _woken_worker(
    settings: Settings, engine: Engine
) -> tuple[threading.Event, threading.Thread, list[float]]:
    """A worker whose one job runs at start, then only when queued work wakes it: its
    interval and the poll are an hour."""
    runs: list[float] = []
    stop = threading.Event()

    def queue_reader(_s: Settings, _e: Engine, _f: sessionmaker[Session]) -> None:
        runs.append(time.monotonic())

    slow = settings.model_copy(update={"worker_poll_seconds": 3600.0})
    thread = threading.Thread(
        target=run_worker,
        args=(slow, engine),
        kwargs={"stop": stop, "jobs": [Job("queue reader", queue_reader, 3600, woken=True)]},
        daemon=True,
    )
    thread.start()
    _wait_for(lambda: len(runs) == 1)
    return stop, thread, runs


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_queued_work_wakes_the_worker_when_it_commits(
    settings: Settings, engine: Engine, committed_db: sessionmaker[Session]
) -> None:
    stop, thread, runs = _woken_worker(settings, engine)
    try:
        with committed_db() as session:
            wake_worker(session)
            session.rollback()  # nothing was queued after all
        assert not _wait_for(lambda: len(runs) > 1, seconds=1.0)
        with committed_db() as session:
            wake_worker(session)
            session.commit()
        assert _wait_for(lambda: len(runs) == 2), "the commit did not wake the worker"
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_a_close_queued_by_another_process_wakes_the_worker(
    settings: Settings, engine: Engine, db_kind: str
) -> None:
    # An API process queues the close; the worker, elsewhere, hears the commit.
    if db_kind != "postgresql":
        pytest.skip("SQLite has no notifications: a worker in another process polls")
    stop, thread, runs = _woken_worker(settings, engine)
    other_process = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        with other_process.connect() as connection:
            connection.exec_driver_sql(f"NOTIFY {wakeup.CHANNEL}")
            time.sleep(0.5)
            assert len(runs) == 1, "woken before the commit"
            connection.commit()
        assert _wait_for(lambda: len(runs) == 2), "the notification did not wake the worker"
        # The server drops the listening connection (a restart, a failover): the worker
        # listens again on its own and later work still wakes it.
        with other_process.connect() as connection:
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE query = 'LISTEN {wakeup.CHANNEL}' AND pid <> pg_backend_pid()"
            )
            connection.commit()

        def notify() -> bool:
            with other_process.connect() as connection:
                connection.exec_driver_sql(f"NOTIFY {wakeup.CHANNEL}")
                connection.commit()
            return _wait_for(lambda: len(runs) == 3, seconds=0.5)

        assert _wait_for(notify, seconds=15), "the worker did not listen again"
    finally:
        other_process.dispose()
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
