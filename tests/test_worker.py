"""The worker runs each scheduled job at its own interval."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_engine
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
    assert jobs["run close jobs"].every == 1.0
    assert jobs["send reminders"].every == 60.0
    assert jobs["deliver mail"].every is None  # every pass (WORKER_POLL_SECONDS)

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
