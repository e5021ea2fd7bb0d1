"""The background worker: ``python -m app worker`` or in-process with ``serve --with-worker``.

One runner for every scheduled job, each at its own interval: queued closes every
quarter second (HR waits for them), mail every pass, reminders and clean-ups once a minute.
Queued closes and mail also wake it at once (:mod:`app.db.wakeup`).
The jobs come from ``lifecycle.scheduled_jobs()`` (the registry above the domains; a
job's interval is its ``@app.scheduling.every(seconds)``) plus mail delivery. Every job
uses its own sessions and commits on its own, so one failing job never blocks the
others; it runs again at its next turn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import lifecycle, processes
from app.config import Settings
from app.db import make_sessionmaker
from app.db.wakeup import Alarm
from app.mail import sender
from app.scheduling import interval_of, woken_by_queued_work

log = logging.getLogger(__name__)

JobFunction = Callable[[Settings, Engine, sessionmaker[Session]], None]


@dataclass
class Job:
    name: str
    run: JobFunction
    # Seconds between two runs; None: every pass (``WORKER_POLL_SECONDS``).
    every: float | None = None
    # Also run as soon as work is queued (app.db.wakeup), not only at its interval.
    woken: bool = False


def deliver_mail_job(settings: Settings, engine: Engine, factory: sessionmaker[Session]) -> None:
    stats = sender.deliver_due(factory, settings)
    if stats.attempted:
        log.info(
            "mail delivered: %d sent, %d to retry, %d undeliverable",
            stats.sent,
            stats.retried,
            stats.undeliverable,
        )


def default_jobs() -> list[Job]:
    """The registry's jobs, each at the interval its ``@every`` gives, then mail delivery."""
    return [
        *(
            Job(name, run, interval_of(run), woken_by_queued_work(run))
            for name, run in lifecycle.scheduled_jobs()
        ),
        Job("deliver mail", deliver_mail_job, woken=True),
    ]


def _run(job: Job, settings: Settings, engine: Engine, factory: sessionmaker[Session]) -> None:
    try:
        job.run(settings, engine, factory)
    except Exception:
        log.exception("worker job %r failed; it runs again at its next turn", job.name)


def run_pass(settings: Settings, engine: Engine, jobs: Sequence[Job] | None = None) -> None:
    """Run every job once, whatever its interval (``worker --once``, tests).

    A single pass leaves no work behind: charts are drawn in this process, not handed
    to chart processes that would outlive it.
    """
    settings = settings.model_copy(update={"chart_processes": 0})
    factory = make_sessionmaker(engine)
    for job in jobs if jobs is not None else default_jobs():
        _run(job, settings, engine, factory)


def run_worker(
    settings: Settings,
    engine: Engine,
    *,
    once: bool = False,
    stop: threading.Event | None = None,
    jobs: Sequence[Job] | None = None,
) -> None:
    """Run each job at its interval until stopped (or every job once)."""
    stop = stop or threading.Event()
    jobs = list(jobs if jobs is not None else default_jobs())
    log.info("worker started (mail via %s)", settings.smtp_host or f"files in {settings.mail_dir}")
    if once:
        run_pass(settings, engine, jobs)
        log.info("worker stopped")
        return
    factory = make_sessionmaker(engine)
    due = {job.name: 0.0 for job in jobs}
    alarm = Alarm(engine, stop)
    while not stop.is_set():
        for job in jobs:
            if stop.is_set():
                break
            if time.monotonic() >= due[job.name]:
                _run(job, settings, engine, factory)
                due[job.name] = time.monotonic() + (job.every or settings.worker_poll_seconds)
        wait = min(due.values()) - time.monotonic()
        if wait > 0 and alarm.wait(wait):
            for job in jobs:
                if job.woken:
                    due[job.name] = 0.0
    alarm.close()
    processes.shut_down()
    log.info("worker stopped")


class BackgroundWorker:
    """The worker in a daemon thread of the web server (``make run``)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=run_worker,
            args=(settings, engine),
            kwargs={"stop": self._stop},
            name="peer360-worker",
            daemon=True,
        )

    def start(self) -> BackgroundWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def start_background_worker(settings: Settings, engine: Engine) -> BackgroundWorker:
    """Start the worker thread; call ``.stop()`` on shutdown."""
    return BackgroundWorker(settings, engine).start()
