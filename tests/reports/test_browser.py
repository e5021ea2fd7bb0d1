"""The HR results pages in headless Chromium, logged in through the real /login form."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import LiveServer, screenshot
from tests.factories import make_user
from tests.reports.factories import build_three_levels

PASSWORD = "correct horse battery"


def login(page: Any, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def test_hr_walks_from_results_to_an_employee(
    committed_db: sessionmaker[Session], live_server: LiveServer, page: Any
) -> None:
    with committed_db() as session:
        t = build_three_levels(session, name="B-2026-Q3")
        make_user(session, email="hr-results@example.com", password=PASSWORD)
        session.commit()
        cycle_id, e1_id, e4_id = t["cycle"].id, t["e1"].id, t["e4"].id

    errors: list[str] = []
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and "404" not in msg.text else None
        ),
    )
    failed: list[str] = []
    page.on(
        "response",
        lambda r: (
            failed.append(r.url) if r.status >= 400 and not r.url.endswith("/favicon.ico") else None
        ),
    )
    login(page, live_server.url, "hr-results@example.com")

    page.goto(f"{live_server.url}/results")
    page.click("text=B-2026-Q3")
    page.wait_for_load_state("networkidle")
    assert page.url.endswith(f"/results/{cycle_id}")
    assert page.locator("h1").inner_text().startswith("Results B-2026-Q3")
    # Every chart image on the page loaded as a real image.
    images = page.locator("figure.chart img")
    assert images.count() == 4
    for i in range(images.count()):
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 100")
    screenshot(page, "reports-cycle")

    # Sort by coefficient, then filter to a department.
    page.click("#employee-table th >> text=Coefficient")
    page.wait_for_load_state("networkidle")
    first_row = page.locator("#employee-table tbody tr").first.inner_text()
    assert first_row.startswith("e5")
    page.select_option("#f-department", label="— Child")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    names = page.locator("#employee-table tbody tr td:first-child").all_inner_texts()
    assert sorted(names) == ["e2", "e3", "e4"]

    page.goto(f"{live_server.url}/results/{cycle_id}/employees/{e1_id}")
    assert "Always helps" in page.locator("main").inner_text()
    assert page.locator("figure.chart img").first.evaluate("img => img.naturalWidth > 100")
    screenshot(page, "reports-employee")

    page.goto(f"{live_server.url}/results/{cycle_id}/employees/{e4_id}")
    text = page.locator("main").inner_text()
    assert "Not enough responses" in text and "secret praise" not in text
    assert not errors, errors  # no CSP violations
    assert not failed, failed
