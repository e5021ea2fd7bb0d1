"""The mixing pool: sealed sizes, crashes around the release, a changed SECRET_KEY."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import crypto, lifecycle
from app.config import Settings
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CycleState, Invitation
from app.ratings import pool
from app.ratings import service as ratings_service
from app.ratings.models import PendingSubmission
from app.ratings.schemas import SupplierAnswer
from app.reports.models import EmployeeResult
from tests.cycles.helpers import answers_for, launched_cycle, make_company
from tests.factories import ballot_count, stored_ballots, stored_comments

ROOT = Path(__file__).resolve().parents[2]


def _submission(comment: str | None, suppliers: int = 3) -> pool.Submission:
    return pool.Submission(
        counts_toward_k=True,
        answers={
            s: SupplierAnswer(scores={1: 5, 2: None, 3: 7}, nps=8, comment=comment)
            for s in range(1, suppliers + 1)
        },
    )


def test_a_sealed_submission_is_as_long_as_its_shape_not_its_comments() -> None:
    key = crypto.derive_key("k" * 40, "test")
    sizes = {
        len(pool.seal(key, _submission(comment), cycle_id=1, ask_comment=True))
        for comment in (None, "ok", "Помогает быстро и по делу. " * 15, "x" * 900)
    }
    assert len(sizes) == 1  # nobody can match a pool row to a long comment by its length
    # Only comments far beyond the slot (2,000 characters each) move to a larger class.
    big = pool.seal(key, _submission("ж" * 2000), cycle_id=1, ask_comment=True)
    assert len(big) > sizes.pop()
    # More suppliers (public through the matrix) make a longer row.
    assert len(pool.seal(key, _submission(None, 4), cycle_id=1, ask_comment=True)) > len(
        pool.seal(key, _submission(None, 3), cycle_id=1, ask_comment=True)
    )


def test_a_sealed_submission_opens_only_in_its_cycle_under_its_key() -> None:
    key = crypto.derive_key("k" * 40, "test")
    sealed = pool.seal(key, _submission("fine"), cycle_id=7, ask_comment=True)
    assert pool.open_sealed(key, sealed, cycle_id=7).answers[1].comment == "fine"
    with pytest.raises(crypto.DecryptionFailed):
        pool.open_sealed(key, sealed, cycle_id=8)
    with pytest.raises(crypto.DecryptionFailed):
        pool.open_sealed(crypto.derive_key("other" * 8, "test"), sealed, cycle_id=7)


def _sealed_version_1(key: bytes, submission: pool.Submission, *, cycle_id: int) -> bytes:
    """A submission as the previous release sealed it (JSON), for pools that were filled
    before an upgrade and are closed after it."""
    document = {
        "v": 1,
        "k": submission.counts_toward_k,
        "a": [
            [sid, a.nps, a.comment, [[cid, score] for cid, score in a.scores.items()]]
            for sid, a in submission.answers.items()
        ],
    }
    data = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    return crypto.encrypt(key, crypto.pad(data, 4096), context=pool._context(cycle_id))


MIXED = pool.Submission(
    counts_toward_k=False,
    answers={
        11: SupplierAnswer(scores={1: 5, 2: None, 3: 0}, nps=None, comment="Ясно и быстро"),
        12: SupplierAnswer(scores={1: 10, 3: 7}, nps=0, comment=None),  # 2 not asked
        13: SupplierAnswer(scores={}, nps=10, comment=None),
    },
)


@pytest.mark.parametrize("version", [1, 2])
def test_both_sealed_versions_open_to_the_same_answers(version: int) -> None:
    key = crypto.derive_key("k" * 40, "test")
    sealed = (
        _sealed_version_1(key, MIXED, cycle_id=3)
        if version == 1
        else pool.seal(key, MIXED, cycle_id=3, ask_comment=True)
    )
    assert pool.open_sealed(key, sealed, cycle_id=3) == MIXED
    columns = pool.open_columns(key, sealed, cycle_id=3)
    assert columns.competencies == (1, 2, 3)
    assert columns.suppliers.tolist() == [11, 12, 13]
    assert columns.nps.tolist() == [pool.CANT_JUDGE, 0, 10]
    assert columns.scores.tolist() == [
        [5, pool.CANT_JUDGE, 0],
        [10, pool.NOT_ASKED, 7],
        [pool.NOT_ASKED] * 3,
    ]
    assert list(columns.comments) == ["Ясно и быстро", None, None]


def test_a_pool_sealed_by_the_previous_version_is_released_at_close(
    committed_db: sessionmaker[Session], settings: Settings
) -> None:
    """Answers pooled as JSON before an upgrade, closed after it: every ballot is kept."""
    cycle_id = _open_cycle_with_answers(committed_db, settings, answered=3)
    with committed_db() as session, session.begin():
        cycle = session.get(Cycle, cycle_id)
        assert cycle is not None
        key = cycles_service.pool_key(settings.secret_key, cycle)
        current = ratings_service.open_pool(session, cycle=cycle, secret_key=settings.secret_key)
        submissions = list(current)
        session.execute(delete(PendingSubmission))
        session.add_all(
            PendingSubmission(
                cycle_id=cycle_id, sealed=_sealed_version_1(key, sub, cycle_id=cycle_id)
            )
            for sub in submissions
        )
    with committed_db() as session, session.begin():
        lifecycle.close_cycle(session, cycle_id=cycle_id, secret_key=settings.secret_key)
    with committed_db() as session:
        ballots = stored_ballots(session, cycle_id=cycle_id)
        answers = [(sid, a) for sub in submissions for sid, a in sub.answers.items()]
        expected = sorted((sid, tuple(a.scores.values()), a.nps) for sid, a in answers)
        assert sorted((b.supplier_id, b.scores, b.nps) for b in ballots) == expected
        assert sorted(stored_comments(session, cycle_id=cycle_id)) == sorted(
            a.comment.strip() for _sid, a in answers if a.comment and a.comment.strip()
        )
        assert len(ballots) == 6


def _open_cycle_with_answers(
    committed_db: sessionmaker[Session], settings: Settings, *, answered: int
) -> int:
    with committed_db() as session, session.begin():
        company = make_company(session, suppliers=2, customers=answered + 1)
        cycle = launched_cycle(session, settings)
        cycle_id = cycle.id
        invitations = {
            i.customer_id: i.id
            for i in session.scalars(select(Invitation).where(Invitation.cycle_id == cycle.id))
        }
        answers = answers_for(session, cycle, company.suppliers, score=6, comment="steady")
        customers = [c.id for c in company.customers[:answered]]
    for customer in customers:
        with committed_db() as session, session.begin():
            ratings_service.submit_answers(
                session,
                invitation_id=invitations[customer],
                answers=answers,
                secret_key=settings.secret_key,
            )
    return cycle_id


def _env(database_url: str, secret_key: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": secret_key,
        "MAIL_DIR": str(tmp_path / "mail"),
        "ENVIRONMENT": "development",
    }


def test_a_close_killed_midway_loses_nothing_and_doubles_nothing(
    committed_db: sessionmaker[Session], settings: Settings, database_url: str, tmp_path: Path
) -> None:
    cycle_id = _open_cycle_with_answers(committed_db, settings, answered=4)
    # Another process closes the cycle and is killed (SIGKILL) after writing the
    # ballot boxes, before its transaction commits: as a crash or an OOM kill would.
    script = textwrap.dedent(
        f"""
        import sys, time
        from app import lifecycle
        from app.config import get_settings
        from app.db import make_engine, make_sessionmaker, writer_session
        from app.ratings import service

        original = service.insert_rows

        def insert_then_hang(*args, **kwargs):
            written = original(*args, **kwargs)
            print("written", written, flush=True)
            time.sleep(60)
            return written

        service.insert_rows = insert_then_hang
        settings = get_settings()
        factory = make_sessionmaker(make_engine(settings.database_url))
        with writer_session(factory) as session, session.begin():
            lifecycle.close_cycle(session, cycle_id={cycle_id}, secret_key=settings.secret_key)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_env(database_url, settings.secret_key, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        # Two suppliers: two boxes, eight ballots in all.
        assert line.startswith("written 2"), process.stderr.read() if process.stderr else line
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    with committed_db() as session:
        cycle = session.get_one(Cycle, cycle_id)
        assert cycle.state == CycleState.open  # nothing half-closed
        assert ballot_count(session) == 0
        assert session.scalar(select(func.count()).select_from(PendingSubmission)) == 4
    deadline = time.monotonic() + 30
    while True:  # PostgreSQL notices the dead connection and rolls it back
        try:
            with committed_db() as session, session.begin():
                lifecycle.close_cycle(session, cycle_id=cycle_id, secret_key=settings.secret_key)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with committed_db() as session:
        assert ballot_count(session) == 8
        raters = session.scalars(
            select(EmployeeResult.raters).where(EmployeeResult.cycle_id == cycle_id)
        ).all()
        assert sorted(raters) == [4, 4]


def test_the_close_leaves_a_pool_nobody_can_open_and_the_vacuum_drops_it(
    committed_db: sessionmaker[Session], settings: Settings, engine: Engine
) -> None:
    cycle_id = _open_cycle_with_answers(committed_db, settings, answered=3)
    with committed_db() as session:
        pooled = set(session.scalars(select(PendingSubmission.sealed)))
        salt = session.get_one(Cycle, cycle_id).pool_salt
    with committed_db() as session, session.begin():
        lifecycle.close_cycle(session, cycle_id=cycle_id, secret_key=settings.secret_key)

    # Right after the close, as someone who also holds SECRET_KEY: the rows are there,
    # but the salt their key came from is not.
    with committed_db() as session:
        cycle = session.get_one(Cycle, cycle_id)
        assert set(session.scalars(select(PendingSubmission.sealed))) == pooled
        assert cycle.pool_salt is not None and cycle.pool_salt != salt
        key = cycles_service.pool_key(settings.secret_key, cycle)
        for sealed in pooled:
            with pytest.raises(crypto.DecryptionFailed):
                pool.open_sealed(key, sealed, cycle_id=cycle_id)
        # (With the old salt they would have opened: the test proves its own point.)
        old_key = cycles_service.cycle_pool_key(settings.secret_key, cycle_id, salt)
        assert pool.open_sealed(old_key, next(iter(pooled)), cycle_id=cycle_id).answers
        assert ballot_count(session) == 6

    assert lifecycle.vacuum_after_close(engine)
    with committed_db() as session:
        assert session.scalar(select(func.count()).select_from(PendingSubmission)) == 0
        assert session.get_one(Cycle, cycle_id).vacuumed_at is not None


def test_another_secret_key_is_refused_at_start_up_and_at_close(
    committed_db: sessionmaker[Session], settings: Settings, database_url: str, tmp_path: Path
) -> None:
    cycle_id = _open_cycle_with_answers(committed_db, settings, answered=3)
    wrong = "another-secret-key-" + "y" * 32
    for command in (["worker", "--once"],):
        result = subprocess.run(
            [sys.executable, "-m", "app", *command],
            cwd=ROOT,
            env=_env(database_url, wrong, tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 3, result.stderr
        assert "SECRET_KEY" in result.stderr and "nothing has been changed" in result.stderr
    with committed_db() as session, pytest.raises(ratings_service.PoolKeyMismatch):
        lifecycle.close_cycle(session, cycle_id=cycle_id, secret_key=wrong)
    with committed_db() as session:
        assert session.scalar(select(func.count()).select_from(PendingSubmission)) == 3
        assert session.get_one(Cycle, cycle_id).state == CycleState.open
    # With the right key the worker starts, and the close releases every answer.
    result = subprocess.run(
        [sys.executable, "-m", "app", "worker", "--once"],
        cwd=ROOT,
        env=_env(database_url, settings.secret_key, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with committed_db() as session, session.begin():
        lifecycle.close_cycle(session, cycle_id=cycle_id, secret_key=settings.secret_key)
    with committed_db() as session:
        assert ballot_count(session) == 6
