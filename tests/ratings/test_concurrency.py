"""Concurrent submits of one link against a real server: one set of ballots, never two."""

from __future__ import annotations

import re
import threading

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.cycles.models import Invitation
from app.ratings.models import Ballot, PendingSubmission
from tests.conftest import LiveServer
from tests.cycles.helpers import form_for, launched_cycle, links_by_customer, make_company, token_of

FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
CLIENTS = 6


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
    clients = [httpx.Client(base_url=live_server.url, timeout=30) for _ in range(CLIENTS)]
    prepared = []
    for client in clients:
        page = client.get("/r/" + token_of(url), follow_redirects=True)
        assert page.status_code == 200
        match = FORM_TOKEN.search(page.text)
        assert match
        prepared.append({**data, "form_token": match.group(1)})

    barrier = threading.Barrier(CLIENTS)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def submit(client: httpx.Client, form: dict[str, str]) -> None:
        barrier.wait()
        response = client.post("/rate", data=form)
        with lock:
            answers.append(response)

    threads = [
        threading.Thread(target=submit, args=pair) for pair in zip(clients, prepared, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for client in clients:
        client.close()

    assert len(answers) == CLIENTS
    assert all(r.status_code == 200 for r in answers), [r.status_code for r in answers]
    thanked = [r for r in answers if "were stored anonymously" in r.text]
    already = [r for r in answers if "Already submitted" in r.text]
    assert len(thanked) == 1
    assert len(already) == CLIENTS - 1
    with committed_db() as session:
        assert session.scalar(select(func.count()).select_from(PendingSubmission)) == 1
        assert session.scalar(select(func.count()).select_from(Ballot)) == 0
        used = session.scalars(select(Invitation.used).where(Invitation.cycle_id == cycle.id))
        assert sorted(used) == [False, True]
