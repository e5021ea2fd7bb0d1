"""The HR web app in headless Chromium: log in, edit the matrix, launch a cycle, log out;
a manager kept to their own team; screenshots of the main pages for a person to check."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app import lifecycle
from app.auth.models import Role
from app.config import Settings
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CycleState, Invitation
from app.db import utcnow
from app.matrix.models import MatrixLink
from tests.auth.helpers import PASSWORD, fast_user
from tests.conftest import LiveServer, screenshot
from tests.factories import link, make_competency, make_department, make_employee

pytestmark = pytest.mark.browser


def _company(session: Session) -> dict[str, Any]:
    """A small company: two departments, a manager with a team, competencies, a matrix."""
    ops = make_department(session, name="Operations", external_id="OPS")
    support = make_department(session, name="Customer Support", parent=ops, external_id="SUP")
    finance = make_department(session, name="Finance", external_id="FIN")
    boss = make_employee(session, department=ops, full_name="Olivia Boss", external_id="E-BOSS")
    team = [
        make_employee(session, department=support, manager=boss, full_name=name)
        for name in ("Sam Support", "Tia Tickets", "Uma Usability")
    ]
    outsiders = [
        make_employee(session, department=finance, full_name=name)
        for name in ("Felix Ledger", "Gina Budget", "Hugo Audit")
    ]
    for code, name in (("responsiveness", "Responsiveness"), ("quality", "Quality of work")):
        make_competency(session, code=code, name=name, indicators=["Answers fast", "Follows up"])
    for supplier in team[:2]:
        for customer in outsiders:
            link(session, supplier=supplier, customer=customer)
    link(session, supplier=outsiders[0], customer=team[0])
    return {"boss": boss, "team": team, "outsiders": outsiders}


def _log_in(page: Any, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def test_hr_logs_in_edits_the_matrix_launches_a_cycle_and_logs_out(
    page: Any, live_server: LiveServer, committed_db: sessionmaker[Session]
) -> None:
    with committed_db() as session:
        company = _company(session)
        fast_user(session, role=Role.hr, email="hr@example.com")
        supplier_id = company["team"][2].id  # Uma: no customers yet
        session.commit()
    base = live_server.url

    # Straight to a deep page: the login form sends us back there afterwards.
    page.goto(f"{base}/cycles")
    assert "/login?next=%2Fcycles" in page.url
    screenshot(page, "hr-login")
    page.get_by_label("Email").fill("hr@example.com")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    assert "The email or password is not correct." in page.content()
    assert page.get_by_label("Email").input_value() == "hr@example.com"
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/cycles")

    page.goto(f"{base}/")
    assert page.title() == "Start · Peer360"
    screenshot(page, "hr-dashboard")

    for path, name in (
        ("/org/departments", "hr-departments"),
        ("/org/employees", "hr-employees"),
        ("/org/competencies", "hr-competencies"),
    ):
        page.goto(base + path)
        assert page.locator("h1").count() == 1
        screenshot(page, name)

    # The matrix: find Uma, search a colleague, add them as a customer.
    page.get_by_role("link", name="Matrix", exact=True).click()
    page.get_by_label("Find a supplier or customer").fill("Uma")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Edit the customers of Uma Usability").click()
    page.get_by_label("Search colleagues").fill("Gina")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("button", name="Add Gina Budget").click()
    page.wait_for_load_state()
    assert "Customer added." in page.content()
    assert page.locator("#customer-list .person-name", has_text="Gina Budget").count() == 1
    screenshot(page, "hr-matrix-supplier")
    page.goto(f"{base}/matrix")
    screenshot(page, "hr-matrix")
    page.goto(f"{base}/matrix/import")
    screenshot(page, "hr-matrix-import")
    with committed_db() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(MatrixLink)
                .where(MatrixLink.supplier_id == supplier_id)
            )
            == 1
        )

    # A cycle: one click for the next quarter, then launch after the confirmation page.
    page.goto(f"{base}/cycles")
    page.locator("form[action='/cycles/next'] button").click()
    page.wait_for_load_state()
    assert "The cycle was created as a draft." in page.content()
    page.get_by_role("link", name="Launch…").click()
    screenshot(page, "hr-cycle-launch-confirm")
    page.get_by_role("button", name="Launch and send invitations").click()
    page.wait_for_load_state()
    assert "The cycle was launched" in page.content()
    screenshot(page, "hr-cycle-progress")
    with committed_db() as session:
        cycle = session.scalar(select(Cycle))
        assert cycle is not None and cycle.state == CycleState.open
        # Uma's new customer Gina was already a customer of others: 4 customers in all.
        assert session.scalar(select(func.count()).select_from(Invitation)) == 4
    page.goto(f"{base}/cycles")
    screenshot(page, "hr-cycles")

    # The same page on a tablet.
    page.set_viewport_size({"width": 820, "height": 1180})
    page.goto(f"{base}/matrix/suppliers/{supplier_id}")
    screenshot(page, "hr-matrix-supplier-tablet")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login\?notice=logged-out$"))
    assert "You have been logged out." in page.content()
    page.goto(f"{base}/matrix")
    assert "/login?next=%2Fmatrix" in page.url


def test_manager_sees_only_their_own_team(
    page: Any,
    live_server: LiveServer,
    committed_db: sessionmaker[Session],
    settings: Settings,
) -> None:
    with committed_db() as session:
        company = _company(session)
        fast_user(session, role=Role.manager, email="boss@example.com", employee=company["boss"])
        cycle = cycles_service.create_quarter_cycle(session, quarter="2026Q3", now=utcnow())
        cycles_service.launch_cycle(session, cycle_id=cycle.id, settings=settings)
        lifecycle.close_cycle(session, cycle_id=cycle.id)
        cycle_id = cycle.id
        own = company["team"][0].id
        other = company["outsiders"][0].id
        session.commit()
    base = live_server.url
    _log_in(page, base, "boss@example.com")
    assert "Your team's results" in page.content()
    # No HR navigation, and HR pages refuse.
    assert page.locator("nav.mainnav a[href='/matrix']").count() == 0
    screenshot(page, "hr-manager-dashboard")
    for path in ("/matrix", "/org/employees", "/cycles", f"/cycles/{cycle_id}", "/admin/users"):
        response = page.goto(base + path)
        assert response is not None and response.status == 403, path
    screenshot(page, "hr-manager-forbidden")
    # Their own report's results page opens; another team's employee does not exist for them.
    response = page.goto(f"{base}/results/{cycle_id}/employees/{own}")
    assert response is not None and response.status == 200
    response = page.goto(f"{base}/results/{cycle_id}/employees/{other}")
    assert response is not None and response.status == 404


def test_admin_screens(
    page: Any, live_server: LiveServer, committed_db: sessionmaker[Session]
) -> None:
    with committed_db() as session:
        fast_user(session, role=Role.admin, email="admin@example.com")
        make_employee(session, email="lead@example.com", full_name="Lead Person")
        session.commit()
    base = live_server.url
    _log_in(page, base, "admin@example.com")

    page.goto(f"{base}/admin/users")
    page.locator("#f-email").fill("new.manager@example.com")
    page.get_by_label("Role").select_option("manager")
    page.get_by_role("button", name="Create user").click()
    page.wait_for_load_state()
    # A manager must be linked to an employee: the error sits next to that field.
    assert page.locator("#employee_email-error").is_visible()
    assert page.locator("#f-email").input_value() == "new.manager@example.com"
    page.get_by_label("Linked employee (email)").fill("lead@example.com")
    page.get_by_role("button", name="Create user").click()
    page.wait_for_load_state()
    assert page.locator("#new-password").is_visible()
    screenshot(page, "hr-admin-users")

    page.goto(f"{base}/admin/api-keys")
    page.locator("#f-name").fill("HRIS nightly sync")
    page.get_by_label("org:read").check()
    page.get_by_label("org:write").check()
    page.get_by_role("button", name="Create key").click()
    page.wait_for_load_state()
    key = page.locator("#new-key").inner_text()
    assert key.startswith("p360_")
    screenshot(page, "hr-admin-api-keys")
    page.get_by_role("link", name="Revoke").first.click()
    screenshot(page, "hr-admin-revoke-confirm")
    page.get_by_role("button", name="Revoke key").click()
    page.wait_for_load_state()
    assert "The API key was revoked." in page.content()

    page.goto(f"{base}/admin/audit")
    assert page.locator("table.audit tbody tr").count() >= 3
    screenshot(page, "hr-admin-audit")
