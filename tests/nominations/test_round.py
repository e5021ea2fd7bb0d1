"""The confirmation round: start, the supplier's page, coverage, and the launch."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry
from app.config import Settings
from app.cycles import nomination
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CyclePair, CycleState, NominationList
from app.mail.models import OutboxMessage
from app.matrix.models import MatrixLink
from app.redaction import redact_path
from tests.cycles.helpers import Company, links_by_customer, make_company, make_cycle
from tests.factories import auth_header, make_api_key, make_department, make_employee


@pytest.fixture
def hdr(db: Session) -> dict[str, str]:
    key = make_api_key(db, "cycles:read", "cycles:write")
    db.commit()
    return auth_header(key)


@pytest.fixture
def company(db: Session) -> Company:
    found = make_company(db, suppliers=2, customers=3)
    finance = make_department(db, name="Finance")
    found.extra["newcomer"] = make_employee(db, department=finance, full_name="Nadia Newcomer")
    found.extra["paper"] = make_employee(db, department=finance, full_name="Paul Paper")
    db.flush()
    return found


def problem(r: object, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body: dict[str, object] = r.json()  # type: ignore[attr-defined]
    return body


def token_of(link: str) -> str:
    return link.rsplit("/n/", 1)[1]


def start(client: TestClient, hdr: dict[str, str], cycle: Cycle) -> dict[str, object]:
    r = client.post(f"/api/v1/cycles/{cycle.id}/nominations/start", headers=hdr)
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def open_list(client: TestClient, link: str) -> str:
    """Open the emailed link; the form token of the page it leads to."""
    r = client.get(f"/n/{token_of(link)}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/nominate"
    assert r.headers["referrer-policy"] == "no-referrer"
    page = client.get("/nominate")
    assert page.status_code == 200, page.text
    found = re.search(r'name="form_token" value="([0-9a-f]+)"', page.text)
    assert found
    return found.group(1)


def test_start_emails_each_supplier_and_coverage_follows(
    client: TestClient, db: Session, hdr: dict[str, str], company: Company, settings: Settings
) -> None:
    cycle = make_cycle(db)
    db.commit()
    body = start(client, hdr, cycle)
    assert body == {
        "state": "nominating",
        "links_to": "supplier",
        "emailed": 2,
        "managers_emailed": 0,
    }
    # Starting again is refused: the cycle is no longer a draft.
    problem(client.post(f"/api/v1/cycles/{cycle.id}/nominations/start", headers=hdr), 409)
    links = links_by_customer(db, cycle, kind="nomination")
    assert set(links) == {s.id for s in company.suppliers}
    # Only hashes are stored; the body holds the placeholder, never the link.
    stored = db.scalars(select(NominationList.token_hash)).all()
    assert all(h and len(h) == 64 for h in stored)
    for message in db.scalars(select(OutboxMessage)).all():
        assert "/n/" not in message.body_text
    audit = db.scalar(select(AuditEntry).where(AuditEntry.action == "start nominations"))
    assert audit is not None and "2 suppliers emailed" in (audit.detail or "")

    coverage = client.get(f"/api/v1/cycles/{cycle.id}/nominations", headers=hdr).json()
    assert coverage["state"] == "nominating"
    assert (coverage["suppliers"], coverage["confirmed"]) == (2, 0)
    assert coverage["short_of"] == settings.anonymity_min_raters + 2
    assert {s["full_name"] for s in coverage["short_suppliers"]} == {"Supplier 0", "Supplier 1"}
    problem(client.get("/api/v1/cycles/999999/nominations", headers=hdr), 404)


def test_supplier_adds_removes_confirms_and_the_launch_applies_it(
    client: TestClient, db: Session, hdr: dict[str, str], company: Company, settings: Settings
) -> None:
    cycle = make_cycle(db)
    db.commit()
    start(client, hdr, cycle)
    links = links_by_customer(db, cycle, kind="nomination")
    first, second = company.suppliers
    newcomer = company.extra["newcomer"]
    dropped = company.customers[0]

    form_token = open_list(client, links[first.id])
    page = client.get("/nominate").text
    assert "Customer 0" in page and "Supplier 0" in page
    # The directory search: by department, the supplier's own customers left out.
    found = client.get("/nominate", params={"q": "finan"}).text
    assert "Nadia Newcomer" in found and "Paul Paper" in found
    assert "Customer 1" not in found.split('id="search-results"')[1]
    assert "Type 2 to 100 characters" in client.get("/nominate", params={"q": "x"}).text

    r = client.post(
        "/nominate/add",
        data={"form_token": form_token, "employee_id": str(newcomer.id)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    # Removing needs a reason; nothing is recorded without one.
    r = client.post(
        "/nominate/remove",
        data={"form_token": form_token, "employee_id": str(dropped.id), "reason": "  "},
    )
    assert r.status_code == 422 and "Say why" in r.text
    r = client.post(
        "/nominate/remove",
        data={"form_token": form_token, "employee_id": str(dropped.id), "reason": "Left my area"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    # A forged form token changes nothing.
    r = client.post("/nominate/confirm", data={"form_token": "0" * 64})
    assert r.status_code == 403
    r = client.post("/nominate/confirm", data={"form_token": form_token})
    assert r.status_code == 200 and "your list is confirmed" in r.text
    assert "removed: Left my area" in r.text and "added by you" in r.text

    # The second supplier proposes a change but never confirms: it launches as it is.
    client.cookies.clear()
    other_token = open_list(client, links[second.id])
    client.post("/nominate/add", data={"form_token": other_token, "employee_id": str(newcomer.id)})
    db.expire_all()
    coverage = client.get(f"/api/v1/cycles/{cycle.id}/nominations", headers=hdr).json()
    assert coverage["confirmed"] == 1
    (confirmed,) = coverage["confirmed_lists"]
    assert (confirmed["full_name"], confirmed["added"], confirmed["removed"]) == (
        "Supplier 0",
        1,
        1,
    )
    assert confirmed["customers"] == 3

    r = client.post(f"/api/v1/cycles/{cycle.id}/launch", headers=hdr)
    assert r.status_code == 200 and r.json()["state"] == "open"
    db.expire_all()
    pairs = set(
        db.execute(
            select(CyclePair.supplier_id, CyclePair.customer_id).where(
                CyclePair.cycle_id == cycle.id
            )
        ).all()
    )
    assert (first.id, newcomer.id) in pairs and (first.id, dropped.id) not in pairs
    assert (second.id, newcomer.id) not in pairs and (second.id, dropped.id) in pairs
    assert db.scalar(
        select(func.count())
        .select_from(MatrixLink)
        .where(MatrixLink.supplier_id == first.id, MatrixLink.customer_id == newcomer.id)
    )
    audit = db.scalar(select(AuditEntry).where(AuditEntry.action == "apply nominations"))
    assert audit is not None
    assert "links added 1, removed 1, confirmed lists 1" in (audit.detail or "")
    # The links die with the launch.
    assert db.scalar(select(func.count()).where(NominationList.token_hash.is_not(None))) == 0
    client.cookies.clear()
    assert client.get(f"/n/{token_of(links[first.id])}").status_code == 404


def test_paper_suppliers_get_no_email_others_get_their_language(
    client: TestClient, db: Session, hdr: dict[str, str], company: Company
) -> None:
    company.suppliers[1].paper_channel = True
    company.suppliers[0].language = "ru"
    cycle = make_cycle(db)
    db.commit()
    assert start(client, hdr, cycle)["emailed"] == 1
    assert set(links_by_customer(db, cycle, kind="nomination")) == {company.suppliers[0].id}
    # In the supplier's language, and so is their page.
    subject = db.scalar(select(OutboxMessage.subject).where(OutboxMessage.kind == "nomination"))
    assert subject == f"Кто оценит вас в цикле {cycle.name}?"
    open_list(client, links_by_customer(db, cycle, kind="nomination")[company.suppliers[0].id])
    assert "Подтвердить мой список" in client.get("/nominate").text


def test_bad_links_look_alike_and_are_throttled(
    client: TestClient, db: Session, settings: Settings
) -> None:
    pages = [client.get(f"/n/{'A' * 40}{i}") for i in range(settings.bad_token_limit_per_minute)]
    assert {p.status_code for p in pages} == {404}
    assert client.get("/n/short").status_code == 429
    assert client.get("/nominate").status_code == 404


def test_start_refuses_an_empty_matrix(
    client: TestClient, db: Session, hdr: dict[str, str]
) -> None:
    cycle = make_cycle(db)
    db.commit()
    problem(client.post(f"/api/v1/cycles/{cycle.id}/nominations/start", headers=hdr), 422)
    db.expire_all()
    assert cycles_service.get_cycle(db, cycle_id=cycle.id).state == CycleState.draft


def test_service_limits(db: Session, settings: Settings, company: Company) -> None:
    cycle = make_cycle(db)
    nomination.start_round(db, cycle_id=cycle.id, settings=settings)
    found = db.scalar(
        select(NominationList).where(NominationList.supplier_id == company.suppliers[0].id)
    )
    assert found is not None
    with pytest.raises(Exception, match="rate yourself"):
        nomination.propose_add(db, nomination=found, customer_id=company.suppliers[0].id)
    with pytest.raises(Exception, match="not on your list"):
        nomination.propose_remove(
            db, nomination=found, customer_id=company.extra["newcomer"].id, reason="x"
        )
    with pytest.raises(Exception, match="under 300"):
        nomination.propose_remove(
            db, nomination=found, customer_id=company.customers[0].id, reason="x" * 301
        )
    # Wildcards in a search are literal.
    assert nomination.search_directory(db, query="%%", exclude=set()) == []
    assert len(nomination.search_directory(db, query="Custom", exclude=set(), limit=2)) == 2


def test_nomination_tokens_never_reach_a_log_line() -> None:
    assert redact_path("/n/AbCdEf0123456789xyz") == "/n/[redacted]"
    assert redact_path("/nominate") == "/nominate"


def test_a_colleague_who_left_before_the_launch_is_not_added(
    db: Session, settings: Settings, company: Company
) -> None:
    cycle = make_cycle(db)
    nomination.start_round(db, cycle_id=cycle.id, settings=settings)
    found = db.scalar(
        select(NominationList).where(NominationList.supplier_id == company.suppliers[0].id)
    )
    assert found is not None
    newcomer, paper = company.extra["newcomer"], company.extra["paper"]
    nomination.propose_add(db, nomination=found, customer_id=newcomer.id)
    nomination.propose_add(db, nomination=found, customer_id=paper.id)
    nomination.confirm(db, nomination=found)
    newcomer.active = False
    db.flush()
    assert cycles_service.apply_nominations(db, cycle=cycle) == (1, 0)
    customers = set(
        db.scalars(
            select(MatrixLink.customer_id).where(MatrixLink.supplier_id == company.suppliers[0].id)
        )
    )
    assert paper.id in customers and newcomer.id not in customers
