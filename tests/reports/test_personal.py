"""Results that reach the rated person: the emailed link after close, focus areas."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app import lifecycle
from app.auth.models import Role
from app.config import Settings
from app.cycles.models import Cycle
from app.mail import service as mail_service
from app.mail.models import OutboxMessage
from app.matrix.models import MatrixLink
from app.org.models import Employee
from app.ratings import service as ratings_service
from app.reports import personal
from app.reports.personal_models import FocusPlan, ResultsLink
from app.reports.service import competencies
from tests.auth.helpers import sign_in
from tests.conftest import TEST_SECRET_KEY
from tests.cycles.helpers import Company, answers_for, invitation_of, launched_cycle, make_company
from tests.factories import auth_header, make_api_key, make_employee

FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


def _run_cycle(
    db: Session, settings: Settings, company: Company, *, start: date, score: int
) -> Cycle:
    """Launch, let every customer answer, close: supplier 0 has 4 raters, supplier 1 two."""
    cycle = launched_cycle(db, settings, period_start=start, period_end=start + timedelta(days=89))
    for i, customer in enumerate(company.customers):
        suppliers = company.suppliers if i < 2 else company.suppliers[:1]
        ratings_service.submit_answers(
            db,
            invitation_id=invitation_of(db, cycle, customer).id,
            answers=answers_for(db, cycle, suppliers, score=score, comment=f"note {score}"),
        )
    return lifecycle.close_cycle(db, cycle_id=cycle.id, min_raters=3)


@pytest.fixture
def company(db: Session) -> Company:
    company = make_company(db, suppliers=2, customers=4, competencies=3)
    boss = make_employee(db, department=company.departments[1], full_name="Boss")
    company.suppliers[0].manager_id = boss.id
    company.extra["boss"] = boss
    # Supplier 1 serves only two customers: below k = 3.
    db.execute(
        delete(MatrixLink).where(
            MatrixLink.supplier_id == company.suppliers[1].id,
            MatrixLink.customer_id.in_([c.id for c in company.customers[2:]]),
        )
    )
    db.flush()
    return company


def _results_links(db: Session, cycle: Cycle) -> dict[str, str]:
    rows = db.execute(
        select(OutboxMessage.to_address, OutboxMessage.secret_link).where(
            OutboxMessage.tag == personal.mail_tag(cycle.id), OutboxMessage.kind == "results"
        )
    ).all()
    return {to: str(mail_service.open_link(TEST_SECRET_KEY, secret)) for to, secret in rows}


def _open(client: TestClient, url: str) -> str:
    token = url.rsplit("/my-results/", 1)[1]
    r = client.get(f"/my-results/{token}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/my-results"
    page = client.get("/my-results")
    assert page.status_code == 200, page.text
    return page.text


def test_link_after_close_only_for_suppliers_who_reach_k(
    client: TestClient, db: Session, settings: Settings, company: Company
) -> None:
    cycle = _run_cycle(db, settings, company, start=date(2026, 4, 1), score=6)
    assert personal.cycles_to_mail(db) == [cycle.id]
    assert personal.send_personal_results(db, cycle_id=cycle.id, settings=settings) == 1
    assert personal.send_personal_results(db, cycle_id=cycle.id, settings=settings) == 0
    assert personal.cycles_to_mail(db) == []
    links = _results_links(db, cycle)
    assert set(links) == {company.suppliers[0].email}  # supplier 1 is below k: nothing
    assert db.scalar(select(func.count()).select_from(ResultsLink)) == 1
    message = db.scalars(select(OutboxMessage).where(OutboxMessage.kind == "results")).one()
    assert mail_service.LINK_PLACEHOLDER in message.body_text  # the link is not in the body

    page = _open(client, links[company.suppliers[0].email])
    assert company.suppliers[0].full_name in page
    assert "6.00" in page and "95%" in page  # coefficient with its interval
    assert "note 6" in page  # comments
    assert "Department" in page and "Company" in page
    chart = client.get("/my-results/charts/trend-employee.png")
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/png"
    assert client.get("/my-results/charts/department.png").status_code == 404

    client.cookies.clear()
    assert client.get("/my-results").status_code == 404
    assert client.get("/my-results/not-a-real-token-0123456789").status_code == 404


def test_switched_off_for_a_cycle_sends_nothing(
    client: TestClient, db: Session, settings: Settings, company: Company
) -> None:
    cycle = _run_cycle(db, settings, company, start=date(2026, 4, 1), score=6)
    h = auth_header(make_api_key(db, "cycles:write"))
    db.commit()
    r = client.put(f"/api/v1/cycles/{cycle.id}/personal-results", json={"send": False}, headers=h)
    assert r.status_code == 200 and r.json() == {"send": False, "sent_at": None}
    assert personal.cycles_to_mail(db) == []
    assert personal.send_personal_results(db, cycle_id=cycle.id, settings=settings) == 0
    assert not _results_links(db, cycle)
    client.put(f"/api/v1/cycles/{cycle.id}/personal-results", json={"send": True}, headers=h)
    assert personal.send_personal_results(db, cycle_id=cycle.id, settings=settings) == 1
    db.commit()
    late = client.put(
        f"/api/v1/cycles/{cycle.id}/personal-results", json={"send": False}, headers=h
    )
    assert late.status_code == 409


def test_focus_areas_chosen_agreed_counted_and_shown_first_next_cycle(
    client: TestClient, db: Session, settings: Settings, company: Company
) -> None:
    first = _run_cycle(db, settings, company, start=date(2026, 4, 1), score=5)
    personal.send_personal_results(db, cycle_id=first.id, settings=settings)
    supplier = company.suppliers[0]
    codes = [c.code for c in competencies(db, cycle_id=first.id)]
    page = _open(client, _results_links(db, first)[supplier.email])
    token = FORM_TOKEN.search(page)
    assert token
    one = client.post("/my-results/focus", data={"form_token": token.group(1), "focus": codes[0]})
    assert one.status_code == 422 and "Choose 2 or 3" in one.text
    r = client.post(
        "/my-results/focus",
        data={"form_token": token.group(1), "focus": codes[:2]},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "Waiting for your manager" in client.get("/my-results").text
    client.cookies.clear()

    # HR sees it but may not agree for the manager.
    hr = sign_in(client, db)
    hr_page = client.get(f"/results/{first.id}/employees/{supplier.id}")
    assert "Chosen by the employee" in hr_page.text
    refused = client.post(
        f"/results/{first.id}/employees/{supplier.id}/focus",
        data={"csrf_token": hr.csrf, "focus": codes[:2]},
    )
    assert refused.status_code == 403

    boss: Employee = company.extra["boss"]
    manager = sign_in(client, db, role=Role.manager, employee=boss)
    r = client.post(
        f"/results/{first.id}/employees/{supplier.id}/focus",
        data={"csrf_token": manager.csrf, "focus": codes[:2]},
        follow_redirects=False,
    )
    assert r.status_code == 303
    plan = db.scalars(select(FocusPlan)).one()
    db.refresh(plan)
    assert plan.agreed_by == manager.user.email and plan.agreed_at is not None

    sign_in(client, db)
    overview = client.get(f"/results/{first.id}/focus")
    assert overview.status_code == 200
    row = re.search(r"<td>IT</td>(.*?)</tr>", overview.text)
    assert row and re.findall(r">(\d+)<", row.group(1)) == ["1", "1", "2"]

    # The next quarter: the change on the focus areas comes first.
    db.execute(delete(OutboxMessage))
    second = _run_cycle(db, settings, company, start=date(2026, 7, 1), score=8)
    page2 = client.get(f"/results/{second.id}/employees/{supplier.id}").text
    assert page2.index(f"Focus areas since {first.name}") < page2.index("Coefficient")
    assert "+3.00" in page2


def test_results_tokens_never_reach_a_log_line() -> None:
    from app.redaction import redact_path

    assert redact_path("/my-results/AbCdEf0123456789xyz") == "/my-results/[redacted]"
    assert redact_path("/r/AbCdEf0123456789xyz") == "/r/[redacted]"
    assert redact_path("/my-results/focus") == "/my-results/focus"
    assert redact_path("/my-results/charts/employee.png") == "/my-results/charts/employee.png"
