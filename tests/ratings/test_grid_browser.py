"""The rating page at the size issue 14 measured: 12 suppliers x 6 competencies.

Goals: at most 8,000 px tall at 1280 px, 16,000 px at 390 px, one action per rating
(a single click or key press answers a question, "can't judge" included), a progress
count that stays in view, and "next unanswered". The answers must reach the pool exactly
as clicked. Screenshots go to test-reports/screenshots (``rating-grid-<width>.png``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.cycles.models import CycleCompetency
from app.org.default_competencies import DEFAULT_COMPETENCIES
from tests.conftest import LiveServer, screenshot
from tests.cycles.helpers import (
    launched_cycle,
    links_by_customer,
    pooled_ballots,
    token_of,
)
from tests.factories import link, make_competency, make_department, make_employee

pytestmark = pytest.mark.browser

SUPPLIER_NAMES = [
    "Alexandra Konstantinopolskaya",
    "Boris Ivanov",
    "Chen Wei",
    "Dagmar Oberhauser-Lindqvist",
    "Emeka Okafor",
    "Fatima Al-Hashimi",
    "Giovanni Bianchi",
    "Hanna Virtanen",
    "Ines Carvalho",
    "Jakub Nowakowski",
    "Kiri Tane",
    "Lucía Fernández",
]
HEIGHT_GOALS = {1280: 8_000, 390: 16_000}


@dataclass
class BigPage:
    url: str
    supplier_ids: list[int]
    competency_ids: list[int]


@pytest.fixture
def big_page(committed_db: sessionmaker[Session], settings: Settings) -> BigPage:
    with committed_db() as session:
        depts = [
            make_department(session, name=name)
            for name in ("IT Service Desk", "Payroll and Benefits", "Facilities Management")
        ]
        suppliers = [
            make_employee(session, department=depts[i % 3], full_name=name)
            for i, name in enumerate(SUPPLIER_NAMES)
        ]
        customer = make_employee(session, department=depts[0], full_name="Maria Customer")
        for order, texts in enumerate(DEFAULT_COMPETENCIES.values()):
            en = texts["en"]
            make_competency(
                session,
                name=en["name"],
                description=en["description"],
                indicators=en["indicators"],
                display_order=order,
            )
        for supplier in suppliers:
            link(session, supplier=supplier, customer=customer)
        cycle = launched_cycle(session, settings)
        url = links_by_customer(session, cycle)[customer.id]
        competency_ids = list(
            session.scalars(
                select(CycleCompetency.id)
                .where(CycleCompetency.cycle_id == cycle.id)
                .order_by(CycleCompetency.display_order)
            )
        )
        session.commit()
        supplier_ids = [s.id for s in suppliers]
    return BigPage(url=url, supplier_ids=supplier_ids, competency_ids=competency_ids)


@pytest.fixture
def page(page: Any) -> Any:
    # A 72-question page on a loaded 2-core machine: more room than the default 10 s.
    page.set_default_timeout(30_000)
    return page


def _page_height(page: Any) -> int:
    height: int = page.evaluate("() => document.documentElement.scrollHeight")
    return height


def test_page_height_and_no_sideways_scroll(
    page: Any, live_server: LiveServer, big_page: BigPage
) -> None:
    # One load, then narrowed: the page's script never reads the width, so the narrow
    # layout is the one a phone gets.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/r/{token_of(big_page.url)}")
    page.locator("form.rating-form").wait_for()
    for width, height_of_screen in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height_of_screen})
        height = _page_height(page)
        screenshot(page, f"rating-grid-{width}")
        print(f"rating page height at {width} px: {height} px")
        assert height <= HEIGHT_GOALS[width], width
        scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
        assert scroll_width <= width


def test_one_click_per_rating_with_progress_in_view(
    page: Any,
    live_server: LiveServer,
    big_page: BigPage,
    committed_db: sessionmaker[Session],
    settings: Settings,
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/r/{token_of(big_page.url)}")
    progress = page.locator("#rating-progress")
    total = len(big_page.supplier_ids) * len(big_page.competency_ids)
    assert progress.inner_text() == f"0 of {total} questions answered"

    expected: dict[int, dict[int, int | None]] = {}
    clicks = 0
    for si, sid in enumerate(big_page.supplier_ids):
        for ci, cid in enumerate(big_page.competency_ids):
            # Every third question "can't judge", the others a score from the row.
            value = "na" if (si + ci) % 3 == 0 else str((si + ci) % 10 + 1)
            page.locator(f"label[for='s{sid}-c{cid}-{value}']").click()
            clicks += 1
            expected.setdefault(sid, {})[cid] = None if value == "na" else int(value)
        if si == 5:
            # Half way down the page the count is still on screen.
            assert progress.is_visible()
            box = progress.bounding_box()
            assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 844
            assert progress.inner_text() == f"{(si + 1) * 6} of {total} questions answered"
    assert clicks == total  # one action per rating
    assert progress.inner_text() == f"{total} of {total} questions answered"

    # The optional parts of one colleague open with one tap; nothing else needs one.
    first = big_page.supplier_ids[0]
    page.locator(f"#s{first}-extras summary").click()
    page.locator(f"label[for='s{first}-nps-9']").click()
    page.get_by_label(f"Comment, {SUPPLIER_NAMES[0]}").fill("Quick and friendly")
    page.get_by_role("button", name="Submit my answers").click()
    page.get_by_role("heading", name="Thank you!").wait_for()

    with committed_db() as session:
        pooled = dict(pooled_ballots(session, settings))
    assert {sid: answer.scores for sid, answer in pooled.items()} == expected
    assert pooled[first].nps == 9 and pooled[first].comment == "Quick and friendly"
    assert all(pooled[sid].nps is None for sid in big_page.supplier_ids[1:])


def test_next_unanswered_jumps_and_focuses(
    page: Any, live_server: LiveServer, big_page: BigPage
) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/r/{token_of(big_page.url)}")
    first, second = big_page.supplier_ids[:2]
    for cid in big_page.competency_ids:
        page.locator(f"label[for='s{first}-c{cid}-5']").click()
    skipped = big_page.competency_ids[2]
    for cid in big_page.competency_ids:
        if cid != skipped:
            page.locator(f"label[for='s{second}-c{cid}-na']").click()
    jump = page.get_by_role("button", name="Next unanswered")
    jump.click()
    focused = page.evaluate("() => document.activeElement.name")
    assert focused == f"s{second}-c{skipped}"
    page.keyboard.press("ArrowRight")  # the keyboard answers from there
    assert page.evaluate("() => document.activeElement.checked") is True
    jump.click()
    assert page.evaluate("() => document.activeElement.name") == (
        f"s{big_page.supplier_ids[2]}-c{big_page.competency_ids[0]}"
    )


def test_grid_without_javascript(
    browser: Any,
    live_server: LiveServer,
    big_page: BigPage,
    committed_db: sessionmaker[Session],
    settings: Settings,
) -> None:
    """No script: one click per rating still, the counter from CSS, the submit works."""
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{live_server.url}/r/{token_of(big_page.url)}")
        assert _page_height(page) <= HEIGHT_GOALS[390]
        for sid in big_page.supplier_ids:
            for cid in big_page.competency_ids:
                page.locator(f"label[for='s{sid}-c{cid}-7']").click()
        # The count is generated content: read it from Chromium's accessibility tree, as
        # assistive technology does.
        total = len(big_page.supplier_ids) * len(big_page.competency_ids)
        tree = context.new_cdp_session(page).send("Accessibility.getFullAXTree")
        texts = [
            str(node.get("name", {}).get("value", ""))
            for node in tree["nodes"]
            if node.get("role", {}).get("value") in ("StaticText", "paragraph")
        ]
        assert f"{total}" in texts, [t for t in texts if "answered" in t or t.isdigit()]
        page.get_by_role("button", name="Submit my answers").click()
        page.get_by_role("heading", name="Thank you!").wait_for()
    finally:
        context.close()
    with committed_db() as session:
        pooled = dict(pooled_ballots(session, settings))
    assert len(pooled) == len(big_page.supplier_ids)
    assert all(set(a.scores.values()) == {7} for a in pooled.values())
