"""The rating page in headless Chromium: a normal submit and a keyboard-only submit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.ratings.models import PendingSubmission
from tests.conftest import LiveServer, screenshot
from tests.cycles.helpers import launched_cycle, links_by_customer, make_company, token_of

pytestmark = pytest.mark.browser


@dataclass
class Invited:
    url: str
    suppliers: int
    competencies: int


@pytest.fixture
def invited(committed_db: sessionmaker[Session], settings: Settings) -> Invited:
    with committed_db() as session:
        company = make_company(session, suppliers=2, customers=1, competencies=3)
        company.suppliers[0].full_name = "Alice Smith"
        company.suppliers[1].full_name = "Boris Ivanov"
        for comp, name in zip(
            company.competencies,
            ["Responsiveness", "Quality of work", "Communication"],
            strict=True,
        ):
            comp.name = name
            comp.description = f"How well this colleague shows {name.lower()}."
            comp.indicators = ["Answers within a day", "Keeps promises"]
        session.flush()
        cycle = launched_cycle(session, settings)
        url = links_by_customer(session, cycle)[company.customers[0].id]
        session.commit()
    return Invited(url=url, suppliers=2, competencies=3)


def ballots(committed_db: sessionmaker[Session]) -> int:
    """Submissions waiting in the pool (ballots are written at close)."""
    with committed_db() as session:
        return session.scalar(select(func.count()).select_from(PendingSubmission)) or 0


def test_rate_in_the_browser(
    page: Any, live_server: LiveServer, invited: Invited, committed_db: sessionmaker[Session]
) -> None:
    token = token_of(invited.url)
    page.goto(f"{live_server.url}/r/{token}")
    assert page.url == f"{live_server.url}/rate"
    assert token not in page.url
    page.get_by_role("heading", name="Alice Smith").wait_for()

    radio_groups = page.locator("fieldset.question:not(.nps)")
    assert radio_groups.count() == invited.suppliers * invited.competencies
    # Answer all but the last question, then submit: errors, nothing lost.
    for i in range(radio_groups.count() - 1):
        radio_groups.nth(i).locator("label").nth(i % 10).click()
    # The optional questions are folded: one tap opens them.
    page.get_by_text("Recommendation and comment, Alice Smith").click()
    page.get_by_label("Comment, Alice Smith").fill("Quick and friendly")
    progress = page.locator("#rating-progress")
    assert progress.inner_text() == "5 of 6 questions answered"
    saved = page.evaluate(
        "() => Object.keys(localStorage).filter(k => k.startsWith('p360-progress:'))"
    )
    assert len(saved) == 1
    page.get_by_role("button", name="Submit my answers").click()
    page.locator("#error-summary").wait_for()
    assert "1 answer needs your attention" in page.locator("#error-summary").inner_text()
    assert page.get_by_label("Comment, Alice Smith").input_value() == "Quick and friendly"
    screenshot(page, "rating-page-error")
    assert ballots(committed_db) == 0

    page.locator("#error-summary a").first.click()
    radio_groups.nth(radio_groups.count() - 1).get_by_text("can't judge", exact=True).click()
    nps = page.locator("fieldset.nps").first
    nps.get_by_text("9", exact=True).click()
    screenshot(page, "rating-page")
    page.get_by_role("button", name="Submit my answers").click()
    page.get_by_role("heading", name="Thank you!").wait_for()
    screenshot(page, "rating-thanks")
    assert ballots(committed_db) == 1  # one sealed submission covering both suppliers
    # Progress kept in the browser is gone after submitting.
    left = page.evaluate(
        "() => Object.keys(localStorage).filter(k => k.startsWith('p360-progress:'))"
    )
    assert left == []

    # A phone-sized look at "already submitted".
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/r/{token}")
    page.get_by_role("heading", name="Already submitted").wait_for()


def _focused(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        """() => { const e = document.activeElement; return {
            tag: e.tagName, type: e.type || '', name: e.name || '',
            required: !!e.required, checked: !!e.checked, text: (e.innerText || '').trim() }; }"""
    )
    return result


def test_keyboard_only_submit(
    page: Any, live_server: LiveServer, invited: Invited, committed_db: sessionmaker[Session]
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(invited.url.replace("http://testserver", live_server.url))
    page.get_by_role("heading", name="Alice Smith").wait_for()
    answered: set[str] = set()
    for _ in range(200):
        page.keyboard.press("Tab")
        focused = _focused(page)
        if focused["type"] == "radio" and focused["required"] and not focused["checked"]:
            page.keyboard.press("Space")
            assert _focused(page)["checked"]
            answered.add(focused["name"])
        elif focused["tag"] == "BUTTON" and "Submit" in focused["text"]:
            screenshot(page, "rating-page-keyboard")
            page.keyboard.press("Enter")
            break
    else:
        pytest.fail("Tab never reached the submit button")
    assert len(answered) == invited.suppliers * invited.competencies
    page.get_by_role("heading", name="Thank you!").wait_for()
    assert ballots(committed_db) == 1  # one sealed submission covering both suppliers
