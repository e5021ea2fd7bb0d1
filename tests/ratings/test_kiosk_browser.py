"""A shared kiosk in headless Chromium: type a letter's code, rate, and the next person
finds no session and nothing typed left in the browser."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.cycles import paper
from app.ratings.models import PendingSubmission
from tests.conftest import LiveServer, screenshot
from tests.cycles.helpers import launched_cycle, make_company

pytestmark = pytest.mark.browser


@pytest.fixture
def codes(committed_db: sessionmaker[Session], settings: Settings) -> list[str]:
    with committed_db() as session:
        company = make_company(session, suppliers=2, customers=2, competencies=2)
        for customer in company.customers:
            customer.paper_channel = True
        session.flush()
        cycle = launched_cycle(session, settings)
        letters = paper.issue_letters(
            session,
            cycle=cycle,
            department_key=str(company.departments[0].id),
            secret_key=settings.secret_key,
        )
        session.commit()
    return [paper.display_code(letter.code) for letter in letters]


def test_kiosk_forgets_the_session_after_submit(
    page: Any, live_server: LiveServer, codes: list[str], committed_db: sessionmaker[Session]
) -> None:
    page.goto(f"{live_server.url}/code")
    page.get_by_label("Your code").fill(codes[0].lower())
    page.get_by_role("button", name="Continue").click()
    assert page.url == f"{live_server.url}/rate"
    questions = page.locator("fieldset.question:not(.nps)")
    questions.first.wait_for()
    for i in range(questions.count()):
        questions.nth(i).locator("label").nth(6).click()
    # Nothing typed on a kiosk is kept in the browser, not even while answering.
    saved = page.evaluate("() => Object.keys(localStorage).length")
    assert saved == 0
    screenshot(page, "kiosk-rating-page")
    page.get_by_role("button", name="Submit my answers").click()
    page.get_by_role("heading", name="Thank you!").wait_for()
    screenshot(page, "kiosk-thanks")
    with committed_db() as session:
        assert session.scalar(select(func.count()).select_from(PendingSubmission)) == 1
    assert [c["name"] for c in page.context.cookies()] == []

    # The next person: the back button and /rate show nothing of the last one.
    page.go_back()
    assert "Supplier" not in page.content()
    page.goto(f"{live_server.url}/rate")
    page.get_by_role("heading", name="This link does not work").wait_for()
    page.goto(f"{live_server.url}/code")
    page.get_by_label("Your code").fill(codes[1])
    page.get_by_role("button", name="Continue").click()
    page.locator("fieldset.question").first.wait_for()
