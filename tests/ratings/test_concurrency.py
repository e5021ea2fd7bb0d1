"""Concurrent submits of one link against a real server: one set of ballots, never two;
a submit that overlaps the close is released with the rest, never lost."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import lifecycle
from app.config import Settings
from app.cycles.models import Invitation
from app.errors import NotFound
from app.ratings import service as ratings_service
from app.ratings.models import PendingSubmission
from app.ratings.schemas import SupplierAnswer
from app.ratings.service import AlreadySubmitted
from tests.conftest import TEST_SECRET_KEY, LiveServer
from tests.cycles.helpers import (
    answers_for,
    form_for,
    invitation_of,
    launched_cycle,
    links_by_customer,
    make_company,
    token_of,
)
from tests.factories import ballot_count

FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
CLIENTS = 6


def _open_forms(
    base_url: str, urls: list[str], data: dict[str, str]
) -> list[tuple[httpx.Client, dict[str, str]]]:
    """A browser per link: the link opened and the form filled in, ready to post."""
    opened = []
    for url in urls:
        client = httpx.Client(base_url=base_url, timeout=30)
        page = client.get("/r/" + token_of(url), follow_redirects=True)
        match = FORM_TOKEN.search(page.text)
        assert page.status_code == 200 and match
        opened.append((client, {**data, "form_token": match.group(1)}))
    return opened


def _post_all_at_once(opened: list[tuple[httpx.Client, dict[str, str]]]) -> list[httpx.Response]:
    """Every browser posts its form at the same moment; the answers, in the order they came back."""
    barrier = threading.Barrier(len(opened))
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def submit(client: httpx.Client, form: dict[str, str]) -> None:
        barrier.wait()
        response = client.post("/rate", data=form)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=submit, args=pair) for pair in opened]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for client, _ in opened:
        client.close()
    return answers


def test_concurrent_submits_store_one_set_of_ballots(
    committed_db: sessionmaker[Session], live_server: LiveServer, settings: Settings
) -> None:
    with committed_db() as session:
        company = make_company(session, suppliers=3, customers=2, competencies=3)
        cycle = launched_cycle(session, settings)
        url = links_by_customer(session, cycle)[company.customers[0].id]
        data = form_for(session, cycle, company.suppliers, score="9")
        session.commit()

    # Several browsers open the same link, then all submit at once.
    answers = _post_all_at_once(_open_forms(live_server.url, [url] * CLIENTS, data))

    assert len(answers) == CLIENTS
    assert all(r.status_code == 200 for r in answers), [r.status_code for r in answers]
    thanked = [r for r in answers if "were stored anonymously" in r.text]
    already = [r for r in answers if "Already submitted" in r.text]
    assert len(thanked) == 1
    assert len(already) == CLIENTS - 1
    with committed_db() as session:
        assert session.scalar(select(func.count()).select_from(PendingSubmission)) == 1
        assert ballot_count(session) == 0
        used = session.scalars(select(Invitation.used).where(Invitation.cycle_id == cycle.id))
        assert sorted(used) == [False, True]


def test_a_submit_in_flight_when_the_close_starts_is_released_not_lost(
    committed_db: sessionmaker[Session], engine: Engine, settings: Settings
) -> None:
    """A rater's submit that has pooled its answers but not yet committed when the close
    begins: the close waits for it (the pool row holds a share lock on the cycle row,
    which the close locks first), so its answers are released with everyone's.

    Were the close not to wait, it would read the pool before the submit committed and
    delete the invitations after it: the answers would stay sealed in the pool of a
    closed cycle, behind a thank-you page.
    """
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: a submit cannot overlap a close")
    cycle_id, invitations, answers = _three_of_four_answered(committed_db, settings)

    # The fourth rater's submit: claimed and pooled, not yet committed.
    late = committed_db()
    ratings_service.submit_answers(
        late, invitation_id=invitations[3], answers=answers, secret_key=TEST_SECRET_KEY
    )
    closed = threading.Event()
    failure: list[BaseException] = []

    def close() -> None:
        try:
            with committed_db() as session:
                lifecycle.close_cycle(
                    session, cycle_id=cycle_id, min_raters=3, secret_key=TEST_SECRET_KEY
                )
                session.commit()
        except BaseException as exc:
            failure.append(exc)
        finally:
            closed.set()

    closer = threading.Thread(target=close)
    closer.start()
    # Whatever the close does, it must not finish while the submit is open.
    assert not closed.wait(1.5), "the close finished around a submit still in flight"
    late.commit()
    late.close()
    closer.join(60)
    assert closed.is_set() and not failure, failure

    with committed_db() as session:
        # The four released submissions, left for the vacuum (unreadable now).
        assert session.scalar(select(func.count()).select_from(PendingSubmission)) == 4
        # Four raters, two suppliers each: every answer became a ballot.
        assert ballot_count(session) == 8


def test_a_submit_that_starts_during_the_close_is_refused_and_the_close_goes_on(
    committed_db: sessionmaker[Session], engine: Engine, settings: Settings
) -> None:
    """A rater who posts while the close runs: the post waits for the close and is then
    refused (the link is dead); the close neither loses it nor fails on it.

    The two once took their locks in opposite orders (the submit: its invitation, then
    the cycle through the pool's foreign key; the close: the cycle, then every
    invitation), and PostgreSQL broke the deadlock by failing the close.
    """
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: a submit cannot overlap a close")
    cycle_id, invitations, answers = _three_of_four_answered(committed_db, settings)

    late_result: list[BaseException | None] = []

    def late_submit() -> None:
        with committed_db() as session:
            try:
                ratings_service.submit_answers(
                    session,
                    invitation_id=invitations[3],
                    answers=answers,
                    secret_key=TEST_SECRET_KEY,
                )
                session.commit()
                late_result.append(None)
            except BaseException as exc:
                late_result.append(exc)

    submitter = threading.Thread(target=late_submit)

    def when_releasing(step: str, percent: int) -> None:
        # The close holds its locks now: the rater posts, and the post has to wait.
        if not submitter.is_alive() and not late_result:
            submitter.start()
            submitter.join(2)

    with committed_db() as session:
        lifecycle.close_cycle(
            session,
            cycle_id=cycle_id,
            min_raters=3,
            secret_key=TEST_SECRET_KEY,
            progress=when_releasing,
        )
        session.commit()
    submitter.join(60)

    assert len(late_result) == 1 and late_result[0] is not None
    assert isinstance(late_result[0], AlreadySubmitted | NotFound), late_result
    with committed_db() as session:
        # The three released submissions only: the refused post took its row back.
        assert session.scalar(select(func.count()).select_from(PendingSubmission)) == 3
        assert ballot_count(session) == 6


def _three_of_four_answered(
    committed_db: sessionmaker[Session], settings: Settings
) -> tuple[int, list[int], dict[int, SupplierAnswer]]:
    """An open cycle whose four customers rate two suppliers; three have answered.

    Returns the cycle, the four invitations and the answers each customer gives."""
    with committed_db() as session:
        company = make_company(session, suppliers=2, customers=4, competencies=2)
        cycle = launched_cycle(session, settings)
        invitations = [invitation_of(session, cycle, c).id for c in company.customers]
        answers = answers_for(session, cycle, company.suppliers, score=8)
        for invitation_id in invitations[:3]:
            ratings_service.submit_answers(
                session, invitation_id=invitation_id, answers=answers, secret_key=TEST_SECRET_KEY
            )
        session.commit()
        return cycle.id, invitations, answers


def test_submits_take_turns_in_lanes_and_all_are_kept(
    committed_db: sessionmaker[Session],
    live_server: LiveServer,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six raters post at once; with two lanes no more than two submits are checked and
    stored at a time, and every one is kept."""
    settings.submit_concurrency = 2
    with committed_db() as session:
        company = make_company(session, suppliers=2, customers=CLIENTS, competencies=2)
        cycle = launched_cycle(session, settings)
        urls = links_by_customer(session, cycle)
        data = form_for(session, cycle, company.suppliers, score="8")
        session.commit()

    running = 0
    peak = 0
    entered = 0
    lock = threading.Lock()
    first_two = threading.Barrier(2, timeout=10)
    seal = ratings_service.seal_answers

    # Sealing takes no lock of the database's (SQLite's write lock would serialise the
    # stores whatever the lanes): only the lanes bound how many seal at once.
    def slow_seal(*args: Any, **kwargs: Any) -> bytes:
        nonlocal running, peak, entered
        with lock:
            running += 1
            entered += 1
            peak = max(peak, running)
            meet = entered <= 2
        try:
            if meet:
                first_two.wait()  # both lanes busy at once; a third seal would show
            time.sleep(0.1)  # time for every other post to arrive meanwhile
            return seal(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(ratings_service, "seal_answers", slow_seal)

    answers = _post_all_at_once(_open_forms(live_server.url, list(urls.values()), data))

    assert [r.status_code for r in answers] == [200] * CLIENTS
    assert peak == 2
    with committed_db() as session:
        pooled = session.scalar(select(func.count()).select_from(PendingSubmission))
        assert pooled == CLIENTS
