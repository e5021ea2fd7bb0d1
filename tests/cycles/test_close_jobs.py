"""The close as a job: queued by HR, the API or the close date, run by the worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import lifecycle
from app.config import Settings
from app.cycles import service as cycles_service
from app.cycles.models import CloseJob, CloseJobState, Cycle, CycleState, Invitation
from app.db import progress as job_progress
from app.db import utcnow, writer_session
from app.errors import Conflict
from app.ratings import service as ratings_service
from app.ratings.models import PendingSubmission
from app.reports.models import EmployeeResult
from tests.cycles.helpers import (
    answers_for,
    finish_close_jobs,
    launched_cycle,
    make_company,
    make_cycle,
)
from tests.factories import ballot_count


def _answered_cycle(committed_db: sessionmaker[Session], settings: Settings) -> int:
    with committed_db() as session, session.begin():
        company = make_company(session, suppliers=2, customers=4)
        cycle = launched_cycle(session, settings)
        answers = answers_for(session, cycle, company.suppliers, score=7, comment="fine")
        invitations = session.scalars(
            select(Invitation.id).where(Invitation.cycle_id == cycle.id)
        ).all()
        for invitation_id in invitations[:3]:
            ratings_service.submit_answers(
                session,
                invitation_id=invitation_id,
                answers=answers,
                secret_key=settings.secret_key,
            )
        return cycle.id


def test_a_failed_close_changes_nothing_and_can_be_retried(
    committed_db: sessionmaker[Session], engine: Engine, settings: Settings
) -> None:
    cycle_id = _answered_cycle(committed_db, settings)
    with committed_db() as session, session.begin():
        job, queued = cycles_service.request_close(session, cycle_id=cycle_id, requested_by="hr")
        assert queued and job.state == CloseJobState.queued
    # The worker runs under another SECRET_KEY: the pool does not open, the close stops.
    wrong = settings.model_copy(update={"secret_key": "another-secret-key-" + "z" * 32})
    assert lifecycle.run_close_jobs(wrong, engine, committed_db) == 1
    with committed_db() as session:
        failed = session.scalars(select(CloseJob)).one()
        assert failed.state == CloseJobState.failed and failed.step == "failed"
        assert failed.error and "SECRET_KEY" in failed.error
        assert failed.attempts == 1 and failed.locked_until is None
        # Nothing half-done: still open, the answers still sealed, no ballot, no result.
        assert session.get_one(Cycle, cycle_id).state == CycleState.open
        assert session.scalar(select(func.count()).select_from(PendingSubmission)) == 3
        assert ballot_count(session) == 0
        assert session.scalar(select(func.count()).select_from(EmployeeResult)) == 0
    # Nothing left to run; HR closes again and the right key finishes it.
    assert lifecycle.run_close_jobs(settings, engine, committed_db) == 0
    with committed_db() as session, session.begin():
        retry, queued = cycles_service.request_close(session, cycle_id=cycle_id, requested_by="hr")
        assert queued and retry.id != failed.id
    assert lifecycle.run_close_jobs(settings, engine, committed_db) == 1
    with committed_db() as session:
        done = session.get_one(CloseJob, retry.id)
        assert (done.state, done.percent, done.step) == (CloseJobState.done, 100, "results ready")
        cycle = session.get_one(Cycle, cycle_id)
        assert cycle.state == CycleState.closed and cycle.results_ready_at is not None
        assert ballot_count(session) == 6
        assert sorted(session.scalars(select(EmployeeResult.raters))) == [3, 3]


def test_the_close_date_queues_the_close_and_the_worker_runs_it(
    committed_db: sessionmaker[Session], engine: Engine, settings: Settings
) -> None:
    cycle_id = _answered_cycle(committed_db, settings)
    with committed_db() as session, session.begin():
        session.execute(
            update(Cycle)
            .where(Cycle.id == cycle_id)
            .values(closes_at=utcnow() - timedelta(minutes=1))
        )
    lifecycle.close_due_cycles_job(settings, engine, committed_db)
    with committed_db() as session:
        job = session.scalars(select(CloseJob)).one()
        assert job.requested_by == cycles_service.REQUESTED_BY_CLOSE_DATE
        assert job.state == CloseJobState.done
        assert session.get_one(Cycle, cycle_id).vacuumed_at is not None
    # The next pass finds nothing due and queues nothing.
    lifecycle.close_due_cycles_job(settings, engine, committed_db)
    with committed_db() as session:
        assert session.scalar(select(func.count()).select_from(CloseJob)) == 1


def test_a_job_whose_worker_died_is_taken_over_after_its_lease(db: Session) -> None:
    cycle = make_cycle(db)
    cycle.state = CycleState.open
    db.flush()
    job, _ = cycles_service.request_close(db, cycle_id=cycle.id, requested_by="hr")
    now = utcnow()
    assert cycles_service.claim_close_job(db, now=now) is job
    # Running under a live lease: nobody else takes it, and asking again returns it.
    assert cycles_service.claim_close_job(db, now=now + timedelta(minutes=1)) is None
    assert cycles_service.request_close(db, cycle_id=cycle.id, requested_by="hr") == (job, False)
    later = now + cycles_service.CLOSE_LEASE + timedelta(seconds=1)
    assert cycles_service.claim_close_job(db, now=later) is job
    assert job.attempts == 2


def test_a_draft_cannot_be_queued_and_progress_steps_are_reported(
    db: Session, settings: Settings
) -> None:
    with pytest.raises(Conflict):
        cycles_service.request_close(db, cycle_id=make_cycle(db).id, requested_by="hr")
    company = make_company(db, suppliers=1, customers=3)
    cycle = launched_cycle(db, settings)
    answers = answers_for(db, cycle, company.suppliers)
    for invitation in db.scalars(select(Invitation).where(Invitation.cycle_id == cycle.id)):
        ratings_service.submit_answers(
            db, invitation_id=invitation.id, answers=answers, secret_key=settings.secret_key
        )
    job, _ = cycles_service.request_close(db, cycle_id=cycle.id, requested_by="hr")
    claimed = cycles_service.claim_close_job(db)
    assert claimed is job
    steps: list[tuple[str, int]] = []
    lifecycle.run_close_job(
        db, job_id=job.id, settings=settings, progress=lambda s, p: steps.append((s, p))
    )
    assert steps == [("releasing answers", 20), ("computing results", 50)]
    assert job.state == CloseJobState.done
    assert finish_close_jobs(db, settings) == 0


def test_hr_sees_the_close_move_while_it_holds_the_database(
    committed_db: sessionmaker[Session], settings: Settings, engine: Engine
) -> None:
    # On SQLite the close holds the one write lock until it commits: the steps must
    # still reach a request made meanwhile (the job page, GET on the job).
    cycle_id = _answered_cycle(committed_db, settings)
    with committed_db() as session, session.begin():
        job_id = cycles_service.request_close(session, cycle_id=cycle_id, requested_by="hr")[0].id
    with committed_db() as session, session.begin():
        assert cycles_service.claim_close_job(session) is not None
    write = lifecycle._progress_writer(engine, job_id)
    seen: list[tuple[str, int]] = []

    def progress(step: str, percent: int) -> None:
        write(step, percent)
        with committed_db() as reader:  # another connection, as a request would be
            job = cycles_service.get_close_job(reader, cycle_id=cycle_id, job_id=job_id)
            seen.append((job.step, job.percent))

    try:
        with writer_session(committed_db) as session, session.begin():
            lifecycle.run_close_job(session, job_id=job_id, settings=settings, progress=progress)
    finally:
        job_progress.clear(engine, cycles_service.close_job_key(job_id))
    assert seen == [("releasing answers", 20), ("computing results", 50)]
    with committed_db() as session:
        done = cycles_service.latest_close_job(session, cycle_id=cycle_id)
        assert done is not None and (done.state, done.percent) == (CloseJobState.done, 100)
