"""The background worker: ``python -m app worker`` or in-process with ``serve --with-worker``.

Each pass runs the scheduled jobs (close cycles whose close date has passed, retry a
postponed vacuum, purge closed cycles' mail, send due reminders), then delivers the
outbox. Every job uses its own session and commits on its own, so one failing job never
blocks the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_sessionmaker
from app.mail import sender

log = logging.getLogger(__name__)

JobFunction = Callable[[Settings, Engine, sessionmaker[Session]], None]


@dataclass
class Job:
    name: str
    run: JobFunction


def default_jobs() -> list[Job]:
    """The scheduled jobs above the mail domain, then delivery."""
    # Imported late and from app.lifecycle, the orchestrator above the domains, so the
    # mail package itself still imports no business domain.
    from app import lifecycle

    return [
        *(Job(name, run) for name, run in lifecycle.scheduled_jobs()),
        Job("deliver mail", deliver_job),
    ]


def deliver_job(settings: Settings, engine: Engine, factory: sessionmaker[Session]) -> None:
    stats = sender.deliver_due(factory, settings)
    if stats.attempted:
        log.info(
            "mail delivered: %d sent, %d to retry, %d undeliverable",
            stats.sent,
            stats.retried,
            stats.undeliverable,
        )


def run_pass(settings: Settings, engine: Engine, jobs: list[Job] | None = None) -> None:
    """One pass of every job; an error in one is logged and the others still run."""
    factory = make_sessionmaker(engine)
    for job in jobs if jobs is not None else default_jobs():
        try:
            job.run(settings, engine, factory)
        except Exception:
            log.exception("worker job %r failed; it runs again on the next pass", job.name)


def run_worker(
    settings: Settings,
    engine: Engine,
    *,
    once: bool = False,
    stop: threading.Event | None = None,
) -> None:
    """Run passes every ``WORKER_POLL_SECONDS`` until stopped (or once)."""
    stop = stop or threading.Event()
    jobs = default_jobs()
    log.info("worker started (mail via %s)", settings.smtp_host or f"files in {settings.mail_dir}")
    while True:
        run_pass(settings, engine, jobs)
        if once or stop.wait(settings.worker_poll_seconds):
            break
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
