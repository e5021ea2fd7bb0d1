"""Closing a cycle, above the domains: cycles -> ratings (seal) -> reports (results).

``cycles`` may not import ``ratings`` or ``reports``, so the steps that span them live
here, as do the worker's scheduled jobs.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app import processes
from app.auth import service as auth_service
from app.auth.models import Role, User
from app.config import Settings, get_settings
from app.cycles import rhythm as cycles_rhythm
from app.cycles import service as cycles_service
from app.cycles.models import CloseJob, CloseJobState, Cycle, CycleState
from app.cycles.service import close_job_key
from app.db import (
    concurrent_writers,
    defer_wal_checkpoint,
    large_sqlite_cache,
    make_engine,
    make_sessionmaker,
    purge,
    utcnow,
    writer_session,
)
from app.db import progress as job_progress
from app.errors import Conflict, DomainError
from app.mail import service as mail_service
from app.privacy import service as privacy_service
from app.ratings import service as ratings_service
from app.reports import charts as reports_charts
from app.reports import personal as reports_personal
from app.reports import service as reports_service
from app.reports import webhook as reports_webhook
from app.scheduling import every

log = logging.getLogger(__name__)


# What a close job reports while it runs: (step, percent done).
Progress = Callable[[str, int], None]


def _no_progress(step: str, percent: int) -> None:
    return None


@contextmanager
def _no_cycle_collector() -> Iterator[None]:
    """Pause Python's cycle collector: the close builds hundreds of thousands of rows,
    tuples and arrays, none of them in reference cycles, and the collector's full passes
    over them took a sixth of the close. Freed as usual by reference counting."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def close_cycle(
    session: Session,
    *,
    cycle_id: int,
    now: datetime | None = None,
    min_raters: int | None = None,
    secret_key: str | None = None,
    progress: Progress = _no_progress,
) -> Cycle:
    """Close an open cycle: links die, the pool is released, results are computed.

    One transaction (the caller's). Closing a closed cycle does nothing; a draft cannot
    be closed. Afterwards the database keeps no invitation, link hash, reminder mark or
    outbox row of the cycle, only counts; run :func:`vacuum_after_close` after the
    commit so their old row versions go too.
    """
    # Held until the commit. A submit's pool row share-locks this row through its foreign
    # key (PostgreSQL), so a submit in flight finishes before the pool is read, and one
    # that starts now waits and then finds its link dead (``ratings.service.pool_sealed``).
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id, for_update=True)
    if cycle.state == CycleState.closed:
        return cycle
    if cycle.state != CycleState.open:
        raise Conflict(f"Cycle {cycle.name} was never launched; only an open cycle can close")
    settings = get_settings()
    now = now or utcnow()
    k = max(min_raters if min_raters is not None else settings.anonymity_min_raters, 3)
    with _no_cycle_collector():
        defer_wal_checkpoint(session)
        progress(cycles_service.STEP_RELEASING, 20)
        cycles_service.mark_closed(session, cycle=cycle, now=now)
        counting = cycles_service.counting_responders(session, cycle_id=cycle.id)
        # With SQLite's default cache: the pool is read once, and its half a gigabyte
        # would only push the pages the rest of the close needs out of the large one.
        release = ratings_service.release_pool(
            session,
            cycle=cycle,
            secret_key=secret_key or settings.secret_key,
            k=k,
            counting_raters=counting,
        )
        cycles_service.forget_pool_key(cycle)
        with large_sqlite_cache(session):
            cycles_service.forget_respondents(session, cycle_id=cycle.id)
            # Who was reminded, and when, says who had not answered by then; unsent mail
            # of a closed cycle only carries dead links. None of it outlives the cycle.
            mail_service.delete_messages_by_tags(
                session, tags=[cycles_service.mail_tag(cycle.id)], now=now
            )
            cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
            cycle.sealed_at = now
            session.flush()
            progress(cycles_service.STEP_COMPUTING, 50)
            reports_service.compute_cycle_results(
                session, cycle_id=cycle.id, min_raters=k, release=release
            )
            session.flush()
    return cycle


# --- the close as a job ------------------------------------------------------------------


def run_close_job(
    session: Session,
    *,
    job_id: int,
    settings: Settings,
    progress: Progress = _no_progress,
    now: datetime | None = None,
) -> Cycle:
    """Close the job's cycle and mark the job done, in the caller's one transaction."""
    job = session.get_one(CloseJob, job_id)
    cycle = close_cycle(
        session,
        cycle_id=job.cycle_id,
        now=now,
        min_raters=settings.anonymity_min_raters,
        secret_key=settings.secret_key,
        progress=progress,
    )
    # Last: on PostgreSQL the progress writer updates this row from another connection
    # until here, and must never wait for this transaction's lock on it.
    job.state = CloseJobState.done
    job.step = cycles_service.STEP_READY
    job.percent = 100
    job.finished_at = utcnow()
    job.locked_until = None
    session.flush()
    return cycle


def _failure_text(exc: BaseException) -> str:
    # A domain error says what to do (another SECRET_KEY, say); anything else is a bug
    # whose text could quote row values, so HR gets a pointer to the worker's log.
    if isinstance(exc, DomainError):
        return str(exc.detail)
    return f"{type(exc).__name__}: the close failed; details are in the worker's log"


def _progress_writer(engine: Engine, job_id: int) -> Progress:
    """Write a running job's step from a connection of its own, so HR sees it move.

    Where two writers cannot work at once (SQLite: the close holds the one write lock)
    the step goes to a file beside the database instead (:mod:`app.db.progress`).
    """
    if not concurrent_writers(engine):

        def write_file(step: str, percent: int) -> None:
            try:
                job_progress.write(engine, close_job_key(job_id), step=step, percent=percent)
            except OSError:
                log.warning("close job %s: progress not recorded", job_id, exc_info=True)

        return write_file

    def write(step: str, percent: int) -> None:
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(
                    update(CloseJob).where(CloseJob.id == job_id).values(step=step, percent=percent)
                )
        except SQLAlchemyError:
            log.warning("close job %s: progress not recorded", job_id, exc_info=True)

    return write


def run_close_jobs(settings: Settings, engine: Engine, factory: sessionmaker[Session]) -> int:
    """Run every queued close job, each close in one transaction; returns how many ran.

    A failed close rolls back whole (links, pool and results as before) and its job is
    marked failed with the reason; HR can close again.
    """
    ran = 0
    while True:
        with factory() as session:
            if not cycles_service.close_job_waiting(session):
                return ran
        with writer_session(factory) as session, session.begin():
            job = cycles_service.claim_close_job(session)
            job_id = job.id if job is not None else None
        if job_id is None:
            return ran
        ran += 1
        try:
            with writer_session(factory) as session, session.begin():
                cycle = run_close_job(
                    session,
                    job_id=job_id,
                    settings=settings,
                    progress=_progress_writer(engine, job_id),
                )
                name = cycle.name
        except Exception as exc:
            log.exception("close job %s failed; the cycle stays open, close it again", job_id)
            with writer_session(factory) as session, session.begin():
                cycles_service.fail_close_job(session, job_id=job_id, error=_failure_text(exc))
            job_progress.clear(engine, close_job_key(job_id))
            continue
        job_progress.clear(engine, close_job_key(job_id))
        log.info("cycle %s closed (close job %s)", name, job_id)
        vacuum_after_close(engine)


class ForeignSecretKey(RuntimeError):
    """Pending answers were sealed under another SECRET_KEY: refuse to start."""


def refuse_foreign_secret_key(engine: Engine, settings: Settings) -> None:
    """Stop start-up when open cycles hold answers this SECRET_KEY cannot open."""
    with make_sessionmaker(engine)() as session:
        names = ratings_service.cycles_sealed_under_another_key(
            session, secret_key=settings.secret_key
        )
    if names:
        raise ForeignSecretKey(
            "SECRET_KEY differs from the one that sealed the submitted answers of open "
            f"cycle(s) {', '.join(names)}. Start with the SECRET_KEY those cycles were "
            "launched with: under another key their answers cannot be read, and the "
            "close would refuse to run (nothing has been changed or lost)."
        )


def purge_closed_cycles_mail(session: Session, *, now: datetime | None = None) -> int:
    """Delete what is left in the outbox of closed cycles (mail that was being sent at close)."""
    closed = session.scalars(select(Cycle.id).where(Cycle.state == CycleState.closed))
    tags = [cycles_service.mail_tag(cycle_id) for cycle_id in closed]
    return mail_service.delete_messages_by_tags(session, tags=tags, now=now)


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


# Every table whose dead row versions could tie a rater to an answer or hold a link:
# the pool (sealed, but beside its invitation in the same page history), the
# invitations and the outbox (texts written before migration 0019 carry the name).
# Ballot boxes are written once, at close, and leave none.
VACUUMED_TABLES = ("pending_submission", "invitation", "outbox_message", "outbox_body")
# Cycles launched before the pool (no pool key check) had ballots written at submit
# time; the close stores them again in its boxes, and their old versions are in this.
LEGACY_VACUUMED_TABLES = ("ballot_box",)
VACUUM_WAIT_SECONDS = 30.0
# The worker's retry waits less: a long-lived snapshot must not stall mail delivery.
VACUUM_RETRY_WAIT_SECONDS = 5.0


def _cycles_to_vacuum(connection: Connection) -> list[int]:
    return list(
        connection.execute(
            select(Cycle.id).where(Cycle.sealed_at.is_not(None), Cycle.vacuumed_at.is_(None))
        ).scalars()
    )


def _work_to_vacuum(connection: Connection) -> tuple[list[int], tuple[str, ...]]:
    """(the sealed cycles not vacuumed yet, the tables whose dead rows must go)."""
    cycle_ids = _cycles_to_vacuum(connection)
    legacy = connection.scalar(
        select(exists().where(Cycle.id.in_(cycle_ids), Cycle.pool_key_check.is_(None)))
    )
    return cycle_ids, VACUUMED_TABLES + (LEGACY_VACUUMED_TABLES if legacy else ())


def vacuum_after_close(engine: Engine, *, wait_seconds: float = VACUUM_WAIT_SECONDS) -> bool:
    """Purge the dead row versions the seal left behind (after the commit).

    Until then the pre-seal rows, in submission order, may still sit in free pages or the
    WAL (SQLite) or as dead tuples (PostgreSQL). Returns True, and sets
    ``Cycle.vacuumed_at`` on every sealed cycle, only when they are really gone; False
    (nothing marked) when it could not finish within ``wait_seconds``: the worker retries.
    """
    try:
        # The pools the closes left behind (unreadable already), so that the purge
        # below takes their old versions too.
        with writer_session(make_sessionmaker(engine)) as session, session.begin():
            ratings_service.drop_released_pools(session)
        (cycle_ids, _tables), done = purge.purge_dead_rows(
            engine, _work_to_vacuum, tables=lambda work: work[1], wait_seconds=wait_seconds
        )
    except Exception:
        log.exception("VACUUM after closing a cycle failed; the worker retries it")
        return False
    if not done:
        return False
    if cycle_ids:
        with writer_session(make_sessionmaker(engine)) as session, session.begin():
            session.execute(
                update(Cycle).where(Cycle.id.in_(cycle_ids)).values(vacuumed_at=utcnow())
            )
        purge.empty_log(engine)  # leave an empty WAL behind if nobody reads
    return True


# --- the worker's scheduled jobs ---------------------------------------------------------


@every(10)
def close_due_cycles_job(
    settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    """Queue the close of each cycle whose close date has passed, then run the closes."""
    with factory() as session:
        due = cycles_service.cycles_due_to_close(session, now=utcnow())
    for cycle_id in due:
        with writer_session(factory) as session, session.begin():
            _job, queued = cycles_service.request_close(
                session, cycle_id=cycle_id, requested_by=cycles_service.REQUESTED_BY_CLOSE_DATE
            )
        if queued:
            log.info("cycle %s: close queued at its close date", cycle_id)
    close_jobs_job(settings, engine, factory)


# Woken at once where it can be (app.db.wakeup); a worker process of its own on SQLite
# hears of nothing and finds a queued close at its next look: HR waits for this one.
@every(0.25, woken=True)
def close_jobs_job(settings: Settings, engine: Engine, factory: sessionmaker[Session]) -> None:
    """Run the closes HR, the API or the close date queued."""
    run_close_jobs(settings, engine, factory)


@every(30)
def vacuum_closed_cycles_job(
    settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    """Retry the vacuum for closed cycles whose old row versions may still be on disk."""
    with factory() as session:
        pending = session.scalar(
            select(exists().where(Cycle.sealed_at.is_not(None), Cycle.vacuumed_at.is_(None)))
        )
    if pending and vacuum_after_close(engine, wait_seconds=VACUUM_RETRY_WAIT_SECONDS):
        log.info("the postponed VACUUM after close has run")


@every(60)
def purge_closed_cycles_mail_job(
    settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    """Delete closed cycles' outbox rows that a worker was still sending at close."""
    with writer_session(factory) as session, session.begin():
        purged = purge_closed_cycles_mail(session)
    if purged:
        log.info("%d outbox messages of closed cycles deleted", purged)


@every(60)
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


@every(60)
def rhythm_job(settings: Settings, engine: Engine, factory: sessionmaker[Session]) -> None:
    """The quarterly rhythm: create the next cycle when due, start confirmation rounds,
    launch automatic ones, then refresh the launch preview the dashboard reads."""
    with writer_session(factory) as session, session.begin():
        hr = [
            (email, name)
            for email, name in session.execute(
                select(User.email, User.full_name)
                .where(User.active.is_(True), User.role == Role.hr)
                .order_by(User.id)
            )
        ]
        for event in cycles_rhythm.run_rhythm(session, settings=settings, hr_recipients=hr):
            detail = event.detail
            if event.action == "launch":
                cycle = cycles_service.get_cycle(session, cycle_id=event.cycle_id)
                detail = cycles_service.launch_audit_detail(session, cycle=cycle, settings=settings)
            auth_service.record_audit(
                session,
                actor=cycles_rhythm.ACTOR,
                action=event.action,
                entity="cycle",
                entity_id=event.cycle_id,
                detail=detail,
            )
            log.info("quarterly rhythm: %s cycle %s", event.action, event.cycle_id)
    # The launch preview reads the whole matrix (seconds at 50,000 employees): in a read
    # session, outside the write lock (SQLite's WAL lets writers go on meanwhile).
    now = utcnow()
    with factory() as session:
        figures = [
            cycles_rhythm.compute_preview(session, settings=settings, cycle=cycle, now=now)
            for cycle in cycles_rhythm.previews_due(session, now=now)
        ]
    if figures:
        with writer_session(factory) as session, session.begin():
            cycles_rhythm.store_previews(session, figures=figures)


@every(60)
def personal_results_job(
    settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    """Email each supplier of a newly closed cycle a link to their own results."""
    with factory() as session:
        due = reports_personal.cycles_to_mail(session)
    for cycle_id in due:
        with writer_session(factory) as session, session.begin():
            queued = reports_personal.send_personal_results(
                session, cycle_id=cycle_id, settings=settings
            )
        log.info("cycle %s: %d personal results emails queued", cycle_id, queued)


# Charts are rendered ahead for cycles closed this recently; older ones render on request.
PRERENDER_DAYS = 30
# Seconds of rendering per pass, so mail and closes never wait long behind it.
PRERENDER_SECONDS = 3.0
# Seconds one chart process draws before it reports back (and a stopping worker waits).
PRERENDER_SHARE_SECONDS = 10.0
# The chart processes' work in progress: cycle id -> one future per share.
_drawing: dict[int, list[Future[bool]]] = {}


@every(2)
def prerender_charts_job(
    settings: Settings, engine: Engine, factory: sessionmaker[Session]
) -> None:
    """Render every department's charts of recently closed cycles into the chart cache.

    With ``CHART_PROCESSES`` > 0 the chart processes draw (:mod:`app.processes`), each
    its share of the departments, and this pass only checks on them; with 0, this pass
    draws for a few seconds itself.
    """
    since = utcnow() - timedelta(days=PRERENDER_DAYS)
    with factory() as session:
        recent = [
            cycle.id
            for cycle in reports_service.closed_cycles(session)
            if cycle.results_ready_at is not None and cycle.results_ready_at >= since
        ]
        for cycle_id in recent:
            if settings.chart_processes and not _all_drawn(settings, cycle_id):
                return  # the chart processes are at it; checked again next pass
            if not reports_charts.prerender_department_charts(
                session,
                cycle_id=cycle_id,
                cache_dir=settings.chart_cache_dir,
                seconds=0 if settings.chart_processes else PRERENDER_SECONDS,
            ):
                return  # more next pass
            log.debug("cycle %s: every department chart is rendered", cycle_id)


def _all_drawn(settings: Settings, cycle_id: int) -> bool:
    """Whether the chart processes finished the cycle; starts or restarts their shares."""
    futures = _drawing.get(cycle_id)
    if futures and not all(future.done() for future in futures):
        return False
    if futures:
        del _drawing[cycle_id]
        failed = [error for error in (future.exception() for future in futures) if error]
        for error in failed:
            log.error("cycle %s: drawing department charts failed: %r", cycle_id, error)
        if not failed and all(future.result() for future in futures):
            return True
    shares = settings.chart_processes
    pool = processes.low_priority_pool(shares)
    _drawing[cycle_id] = [
        pool.submit(draw_department_charts, settings, cycle_id, (part, shares))
        for part in range(shares)
    ]
    return False


def draw_department_charts(settings: Settings, cycle_id: int, share: tuple[int, int]) -> bool:
    """In a chart process: draw one share of the cycle's department charts for up to
    ``PRERENDER_SHARE_SECONDS``; True when that share is all on disk."""
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return reports_charts.prerender_department_charts(
                session,
                cycle_id=cycle_id,
                cache_dir=settings.chart_cache_dir,
                seconds=PRERENDER_SHARE_SECONDS,
                share=share,
            )
    finally:
        engine.dispose()


def scheduled_jobs() -> list[tuple[str, Callable[[Settings, Engine, sessionmaker[Session]], None]]]:
    """The worker's jobs above the mail domain, in the order each pass runs them.

    Add ``(name, function)``; the function runs every pass (``WORKER_POLL_SECONDS``)
    unless it carries its own interval, ``@app.scheduling.every(seconds)``.
    """
    return [
        ("run the quarterly rhythm", rhythm_job),
        ("close due cycles", close_due_cycles_job),
        ("run close jobs", close_jobs_job),
        ("vacuum closed cycles", vacuum_closed_cycles_job),
        ("purge closed cycles' mail", purge_closed_cycles_mail_job),
        ("send reminders", reminders_job),
        ("deliver results webhooks", reports_webhook.deliver_webhooks_job),
        ("apply retention periods", privacy_service.retention_job),
        ("send personal results", personal_results_job),
        ("render department charts", prerender_charts_job),
    ]
