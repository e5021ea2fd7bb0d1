"""axe-core over every page, in Chromium at 1280 px and 390 px.

Every page a rater, an HR partner, an administrator or a line manager opens is checked
with axe-core (WCAG 2.0/2.1 A and AA rules, best practices, and the experimental
label-in-name rule) through ``axe-playwright-python``, which ships axe-core, so this runs
offline. No serious or critical violation is allowed, and at 390 px no page may scroll
sideways. The counts per page are printed (``-s``) for the record.

Each page is loaded once, at 1280 px, then narrowed to 390 px (no script of ours reads the
width, so this is the layout a phone gets). axe runs once per template and state: a page
whose template another listed page already shows in the same state (another confirm
page with a red button, a filtered results page) is checked for fit only.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.auth.models import Role
from app.config import Settings
from tests.auth.helpers import PASSWORD, fast_user
from tests.conftest import LiveServer
from tests.cycles.helpers import (
    launched_cycle,
    links_by_customer,
    make_company,
    make_cycle,
    token_of,
)
from tests.reports.factories import close, random_company, random_org

pytestmark = pytest.mark.browser

AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    },
    "rules": {"label-content-name-mismatch": {"enabled": True}},
    "resultTypes": ["violations"],
}
BLOCKING = ("serious", "critical")
# A checkbox must sit on its label's first line, to its left (not alone above it).
DETACHED_CHECKBOXES = """() => [...document.querySelectorAll("input[type=checkbox][id]")]
  .filter(box => {
    const label = document.querySelector(`label[for="${box.id}"]`);
    if (!label || box.getBoundingClientRect().width === 0) return false;
    const b = box.getBoundingClientRect(), l = label.getBoundingClientRect();
    const firstLine = label.getClientRects()[0] || l;
    return b.right > l.left + 1 || b.bottom < firstLine.top || b.top > firstLine.bottom;
  }).map(box => box.id)"""
WIDER_THAN_VIEWPORT = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll("main *, header *")) {
    const box = el.getBoundingClientRect();
    if (box.width <= 1) continue;  // visually hidden text for screen readers
    const style = getComputedStyle(el);
    const inner = el.scrollWidth > el.clientWidth + 1 && style.overflowX !== "visible";
    // A table cell whose text runs past its edge (over the next column, or cut off).
    const cell = el.tagName === "TH" || el.tagName === "TD";
    const spills = cell && el.scrollWidth > el.clientWidth + 1;
    if (box.right > width + 1 || inner || spills) {
      const what = inner ? " (scrolls)" : spills ? " (text spills)" : "";
      out.push(el.tagName.toLowerCase() + (el.className ? "." + el.className : "") + what);
    }
  }
  return out.slice(0, 5);
}"""
WIDTHS = (1280, 390)


@dataclass
class Site:
    admin_pages: list[str]
    manager_pages: list[str]
    public_pages: list[str]
    rating_form: str
    # Pages whose template and state another page above already puts through axe.
    same_template: set[str]


@pytest.fixture
def site(committed_db: sessionmaker[Session], settings: Settings) -> Site:
    with committed_db() as session:
        # Results: a closed quarter over a three-level company.
        rng = random.Random(7)
        org = random_org(session, rng, employees=40, departments=9)
        closed = random_company(
            session,
            rng,
            org=org,
            name="2026-Q2",
            period_start=date(2026, 4, 1),
            # Long names, as real competencies have: the column headers must still fit.
            weights={"professionalism": 2, "responsiveness": 1, "communication": 1.5},
        )
        close(session, closed.cycle)
        depts, _parents, emps = org
        rated = next(e for e in emps if len(closed.data.ballots.get(e.id, ())) >= 3)
        # An open quarter with invitations, and a draft.
        company = make_company(session, suppliers=3, customers=3, competencies=3)
        running = launched_cycle(session, settings, name="2026-Q3")
        draft = make_cycle(session, name="2026-Q4")
        link_url = links_by_customer(session, running)[company.customers[0].id]
        admin = fast_user(session, role=Role.admin, email="admin@example.com")
        manager_employee = emps[0]
        for e in emps[1:4]:
            e.manager_id = manager_employee.id
        fast_user(session, role=Role.manager, email="boss@example.com", employee=manager_employee)
        session.flush()
        supplier, customer = company.suppliers[0], company.customers[0]
        session.commit()
        c = closed.cycle.id
        admin_pages = [
            "/",
            "/org/departments",
            "/org/employees",
            f"/org/employees/{emps[5].id}/deactivate",
            "/org/competencies",
            "/org/competencies/new",
            f"/org/competencies/{company.competencies[0].id}",
            "/matrix",
            f"/matrix/suppliers/{supplier.id}",
            f"/matrix/customers/{customer.id}",
            f"/matrix/suppliers/{supplier.id}/customers/{customer.id}/remove",
            "/matrix/import",
            "/cycles",
            "/cycles/new",
            f"/cycles/{draft.id}",
            f"/cycles/{draft.id}/launch",
            f"/cycles/{running.id}",
            f"/cycles/{running.id}/close",
            f"/cycles/{c}",
            "/results",
            f"/results/{c}",
            f"/results/{c}?department={depts[0].id}",
            f"/results/{c}/employees/{rated.id}",
            "/outbox",
            "/admin/users",
            f"/admin/users/{admin.id}",
            "/admin/api-keys",
            "/admin/audit",
            "/admin/settings",
        ]
    manager_employee_page = f"/results/{c}/employees/{emps[1].id}"
    rating_form = f"/r/{token_of(link_url)}"
    assert manager_employee_page not in admin_pages  # its template is checked there
    return Site(
        admin_pages=admin_pages,
        manager_pages=["/", manager_employee_page],
        public_pages=["/login", rating_form, "/r/not-a-valid-token-at-all"],
        rating_form=rating_form,
        same_template={
            # hr/competency_form.html, as /org/competencies/{id} (which has values).
            "/org/competencies/new",
            # hr/confirm.html with the red button, as /cycles/{id}/close.
            f"/org/employees/{emps[5].id}/deactivate",
            f"/matrix/suppliers/{supplier.id}/customers/{customer.id}/remove",
            # reports/cycle.html, as /results/{id} (the whole company).
            f"/results/{c}?department={depts[0].id}",
            # reports/employee.html, as the HR partner's /results/{id}/employees/{id}.
            manager_employee_page,
        },
    )


@pytest.fixture
def axe() -> Iterator[Any]:
    from axe_playwright_python.sync_playwright import Axe

    yield Axe()


def _log_in(page: Any, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def _axe(page: Any, axe: Any) -> dict[str, Any]:
    violations = axe.run(page, options=AXE_OPTIONS).response["violations"]
    return {
        "axe": True,
        "total": sum(len(v["nodes"]) for v in violations),
        "blocking": [
            f"{v['id']} ({v['impact']}, {len(v['nodes'])}): {v['nodes'][0]['target']}"
            for v in violations
            if v["impact"] in BLOCKING
        ],
    }


def _fit(page: Any) -> dict[str, Any]:
    return {
        "scroll_width": page.evaluate("() => document.documentElement.scrollWidth"),
        # What sticks out (a table scrolling inside its box counts too), for the message.
        "too_wide": page.evaluate(WIDER_THAN_VIEWPORT),
        "detached": page.evaluate(DETACHED_CHECKBOXES),
    }


def _check(page: Any, axe: Any, url: str, axe_widths: tuple[int, ...]) -> list[dict[str, Any]]:
    """One load of ``url``: axe (seconds per page) at ``axe_widths``, fit at every width."""
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})
    response = page.goto(url)
    assert response is not None and response.status < 500, url
    rows = []
    for width in WIDTHS:  # widest first: narrowing needs no reload
        page.set_viewport_size({"width": width, "height": 900})
        found = _axe(page, axe) if width in axe_widths else {"axe": False, "total": 0}
        rows.append({"blocking": [], **found, **_fit(page), "width": width})
    return rows


def test_every_page_passes_axe_and_fits_a_phone(
    browser: Any, live_server: LiveServer, site: Site, axe: Any
) -> None:
    base = live_server.url
    report: list[dict[str, Any]] = []
    for who, pages in (
        (None, site.public_pages),
        ("admin@example.com", site.admin_pages),
        ("boss@example.com", site.manager_pages),
    ):
        context = browser.new_context(viewport={"width": WIDTHS[0], "height": 900})
        try:
            page = context.new_page()
            page.set_default_timeout(15_000)
            if who:
                _log_in(page, base, who)
            for path in pages:
                # axe at the desktop width (the phone width is for fit), the rating form
                # at both; once per template and state.
                widths = WIDTHS if path == site.rating_form else WIDTHS[:1]
                rows = _check(page, axe, base + path, () if path in site.same_template else widths)
                report += [{**row, "page": f"{path} @{row['width']}"} for row in rows]
        finally:
            context.close()
    every = [*site.public_pages, *site.admin_pages, *site.manager_pages]
    assert len(report) == len(WIDTHS) * len(every)
    assert sum(row["axe"] for row in report) == len(every) - len(site.same_template) + 1
    for row in report:
        print(f"{row['page']:60} axe nodes {row['total']:3}  {row['blocking']}")
    blocking = {row["page"]: row["blocking"] for row in report if row["blocking"]}
    assert blocking == {}
    too_wide = {
        row["page"]: (row["scroll_width"], row["too_wide"])
        for row in report
        if row["too_wide"] or (row["page"].endswith("@390") and row["scroll_width"] > 390)
    }
    detached = {row["page"]: row["detached"] for row in report if row["detached"]}
    assert detached == {}
    assert too_wide == {}, "\n".join(f"{k}: {v}" for k, v in too_wide.items())
