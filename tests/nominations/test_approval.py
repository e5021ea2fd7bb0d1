"""Line managers in the confirmation round: team links, approval, and routing the links."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry
from app.config import Settings
from app.cycles import nomination, nomination_approval
from app.cycles import service as cycles_service
from app.cycles.models import (
    Cycle,
    CyclePair,
    NominationChange,
    NominationLinksTo,
    NominationList,
    NominationTeam,
)
from app.errors import NotFound
from app.mail.models import OutboxMessage
from app.org.models import Employee
from tests.auth.helpers import sign_in
from tests.cycles.helpers import Company, links_by_customer, make_company, make_cycle
from tests.factories import auth_header, link, make_api_key, make_department, make_employee


@pytest.fixture
def hdr(db: Session) -> dict[str, str]:
    key = make_api_key(db, "cycles:read", "cycles:write")
    db.commit()
    return auth_header(key)


@pytest.fixture
def company(db: Session) -> Company:
    """Mia manages Supplier 0 and 1; Supplier 2 has no manager; Nadia can be proposed."""
    found = make_company(db, suppliers=3, customers=3)
    office = make_department(db, name="Office")
    mia = make_employee(db, department=office, full_name="Mia Manager")
    found.suppliers[0].manager_id = mia.id
    found.suppliers[1].manager_id = mia.id
    found.extra["mia"] = mia
    found.extra["newcomer"] = make_employee(db, department=office, full_name="Nadia Newcomer")
    db.flush()
    return found


def list_of(db: Session, supplier: Employee) -> NominationList:
    found = db.scalar(select(NominationList).where(NominationList.supplier_id == supplier.id))
    assert found is not None
    return found


def team_of(db: Session, manager: Employee) -> NominationTeam:
    found = db.scalar(select(NominationTeam).where(NominationTeam.manager_id == manager.id))
    assert found is not None
    return found


def token_of(link: str) -> str:
    return link.rsplit("/n/", 1)[1]


def open_team(client: TestClient, link: str) -> str:
    """Open a manager's emailed link; the form token of the team page it leads to."""
    r = client.get(f"/n/{token_of(link)}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/nominate/team", r.text
    assert r.headers["referrer-policy"] == "no-referrer"
    page = client.get("/nominate/team")
    assert page.status_code == 200, page.text
    found = re.search(r'name="form_token" value="([0-9a-f]+)"', page.text)
    assert found
    return found.group(1)


# --- service ------------------------------------------------------------------------------


def test_each_manager_gets_one_team_link_and_suppliers_keep_theirs(
    db: Session, settings: Settings, company: Company
) -> None:
    cycle = make_cycle(db)
    emailed = nomination.start_round(db, cycle_id=cycle.id, settings=settings)
    assert emailed == 3  # every supplier, as before
    assert nomination.team_links(db, cycle_id=cycle.id) == 1
    assert cycle.nomination_links_to == NominationLinksTo.supplier
    team = team_of(db, company.extra["mia"])
    assert team.token_hash is not None and len(team.token_hash) == 64
    (message,) = db.scalars(select(OutboxMessage).where(OutboxMessage.kind == "nomination-team"))
    assert message.to_address == company.extra["mia"].email
    assert message.subject == f"Who should rate your team in {cycle.name}?"
    assert "/n/" not in message.body_text  # the link is sealed apart, never in the body
    assert "approve each list" in message.body_text
    members = nomination_approval.team_lists(db, team=team)
    assert [m.full_name for m in members] == ["Supplier 0", "Supplier 1"]
    # A manager who leaves during the round approves nothing any more.
    company.extra["mia"].active = False
    db.flush()
    with pytest.raises(NotFound):
        nomination_approval.get_team(db, team_id=team.id)
    found = nomination.coverage(db, cycle_id=cycle.id, k=settings.anonymity_min_raters)
    assert [(m.full_name, m.has_link) for m in found.managers_waiting] == [("Mia Manager", False)]
    assert {r.full_name: r.link_to for r in found.lists}["Supplier 0"] == "supplier"
    company.extra["mia"].active = True
    db.flush()
    assert nomination_approval.get_team(db, team_id=team.id) is team
    # Supplier 2 is not on Mia's team: her link does not reach that list.
    with pytest.raises(NotFound):
        nomination_approval.team_list(db, team=team, list_id=list_of(db, company.suppliers[2]).id)


def test_line_manager_routing_falls_back_to_the_supplier(
    db: Session, settings: Settings, company: Company
) -> None:
    it = company.departments[1]
    paper_boss = make_employee(db, department=it, full_name="Pat Paper", paper_channel=True)
    gone_boss = make_employee(db, department=it, full_name="Gil Gone", active=False)
    on_paper = make_employee(db, department=it, full_name="Supplier P", manager=paper_boss)
    orphan = make_employee(db, department=it, full_name="Supplier G", manager=gone_boss)
    quiet = make_employee(db, department=it, full_name="Supplier Q", paper_channel=True)
    quiet.manager_id = company.extra["mia"].id
    for supplier in (on_paper, orphan, quiet):
        for customer in company.customers:
            link(db, supplier=supplier, customer=customer)
    cycle = make_cycle(db)
    # The organisation's default chooses when the caller does not.
    routed = settings.model_copy(update={"nomination_links_to": "line_manager"})
    emailed = nomination.start_round(db, cycle_id=cycle.id, settings=routed)
    assert cycle.nomination_links_to == NominationLinksTo.line_manager
    # Own links: no manager, a manager on paper, an inactive manager. Not Mia's reports.
    assert emailed == 3
    own = set(links_by_customer(db, cycle, kind="nomination"))
    assert own == {company.suppliers[2].id, on_paper.id, orphan.id}
    assert list_of(db, company.suppliers[0]).token_hash is None
    # Only Mia can be emailed a team link; her paper report's list is hers to handle too.
    assert nomination.team_links(db, cycle_id=cycle.id) == 1
    found = nomination.coverage(db, cycle_id=cycle.id, k=settings.anonymity_min_raters)
    link_to = {row.full_name: row.link_to for row in found.lists}
    assert link_to == {
        "Supplier 0": "line_manager",
        "Supplier 1": "line_manager",
        "Supplier 2": "supplier",
        "Supplier G": "supplier",
        "Supplier P": "supplier",
        "Supplier Q": "line_manager",
    }
    assert all(row.emailed for row in found.lists)


def test_approval_confirms_and_a_later_change_withdraws_it(
    db: Session, settings: Settings, company: Company
) -> None:
    cycle = make_cycle(db)
    nomination.start_round(db, cycle_id=cycle.id, settings=settings)
    team = team_of(db, company.extra["mia"])
    mine = list_of(db, company.suppliers[0])
    nomination_approval.approve(db, team=team, nomination=mine)
    assert mine.approved_at is not None and mine.confirmed_at is not None
    assert mine.approved_by_id == company.extra["mia"].id
    nomination_approval.approve(db, team=team, nomination=mine)  # a double click
    audits = db.scalars(select(AuditEntry).where(AuditEntry.action == "approve nominations"))
    (audit,) = audits.all()
    assert audit.actor == "line manager"
    assert audit.detail == (
        f"{company.suppliers[0].external_id}'s list approved by {company.extra['mia'].external_id}"
    )

    # The report changes the list: approval and confirmation are withdrawn.
    newcomer = company.extra["newcomer"]
    nomination.propose_add(db, nomination=mine, customer_id=newcomer.id)
    assert (mine.approved_at, mine.approved_by_id, mine.confirmed_at) == (None, None, None)

    # The manager acts on the report's behalf: recorded as the report's proposal, marked.
    nomination.propose_remove(
        db,
        nomination=mine,
        customer_id=company.customers[0].id,
        reason="Moved to another site",
        proposed_by=team.manager_id,
    )
    change = db.scalar(
        select(NominationChange).where(NominationChange.customer_id == company.customers[0].id)
    )
    assert change is not None and change.proposed_by_id == team.manager_id
    shown = {c.full_name: c for c in nomination.customer_list(db, nomination=mine)}
    assert shown["Customer 0"].status == "removed" and shown["Customer 0"].by_manager
    assert shown["Nadia Newcomer"].status == "added" and not shown["Nadia Newcomer"].by_manager

    found = nomination.coverage(db, cycle_id=cycle.id, k=settings.anonymity_min_raters)
    assert (found.approved, found.unapproved) == (0, 3)
    (waiting,) = found.managers_waiting
    assert (waiting.full_name, waiting.lists, waiting.approved, waiting.has_link) == (
        "Mia Manager",
        2,
        0,
        True,
    )
    nomination_approval.approve(db, team=team, nomination=mine)
    nomination_approval.approve(db, team=team, nomination=list_of(db, company.suppliers[1]))
    found = nomination.coverage(db, cycle_id=cycle.id, k=settings.anonymity_min_raters)
    assert (found.approved, found.unapproved, found.managers_waiting) == (2, 1, [])

    # The launch applies the approved list (approval confirmed it) and ends the team link.
    cycles_service.launch_cycle(db, cycle_id=cycle.id, settings=settings)
    pairs = set(
        db.execute(
            select(CyclePair.supplier_id, CyclePair.customer_id).where(
                CyclePair.cycle_id == cycle.id, CyclePair.supplier_id == mine.supplier_id
            )
        ).all()
    )
    assert (mine.supplier_id, newcomer.id) in pairs
    assert (mine.supplier_id, company.customers[0].id) not in pairs
    db.expire_all()
    assert team_of(db, company.extra["mia"]).token_hash is None
    with pytest.raises(NotFound):
        nomination_approval.get_team(db, team_id=team.id)


# --- API ----------------------------------------------------------------------------------


def test_api_starts_with_links_to_managers_and_reports_approval(
    client: TestClient, db: Session, hdr: dict[str, str], company: Company
) -> None:
    cycle = make_cycle(db)
    db.commit()
    url = f"/api/v1/cycles/{cycle.id}/nominations"
    bad = client.post(f"{url}/start", headers=hdr, json={"links_to": "boss"})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    r = client.post(f"{url}/start", headers=hdr, json={"links_to": "line_manager"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "state": "nominating",
        "links_to": "line_manager",
        "emailed": 1,
        "managers_emailed": 1,
    }
    audit = db.scalar(select(AuditEntry).where(AuditEntry.action == "start nominations"))
    assert audit is not None
    assert "1 suppliers emailed, 1 line managers emailed (links to line_manager)" in (
        audit.detail or ""
    )
    nomination_approval.approve(
        db,
        team=team_of(db, company.extra["mia"]),
        nomination=list_of(db, company.suppliers[1]),
    )
    db.commit()

    body = client.get(url, headers=hdr).json()
    assert body["links_to"] == "line_manager"
    assert (body["suppliers"], body["confirmed"], body["approved"], body["unapproved"]) == (
        3,
        1,
        1,
        2,
    )
    assert [m["full_name"] for m in body["managers_waiting"]] == ["Mia Manager"]
    assert body["managers_waiting"][0] | {"external_id": ""} == {
        "external_id": "",
        "full_name": "Mia Manager",
        "lists": 2,
        "approved": 1,
        "has_link": True,
    }
    by_name = {row["full_name"]: row for row in body["lists"]}
    assert by_name["Supplier 1"]["approved_by_external_id"] == company.extra["mia"].external_id
    assert by_name["Supplier 1"]["approved_at"] is not None
    assert by_name["Supplier 0"]["approved_at"] is None
    assert by_name["Supplier 0"]["link_to"] == "line_manager"
    assert by_name["Supplier 2"]["line_manager_external_id"] is None
    page = client.get(url, headers=hdr, params={"offset": 1, "limit": 1}).json()
    assert [row["full_name"] for row in page["lists"]] == ["Supplier 1"]
    too_big = client.get(url, headers=hdr, params={"limit": 5001})
    assert too_big.status_code == 422
    assert too_big.headers["content-type"].startswith("application/problem+json")


# --- pages --------------------------------------------------------------------------------


def test_manager_changes_and_approves_on_the_team_page(
    client: TestClient, db: Session, hdr: dict[str, str], company: Company
) -> None:
    cycle = make_cycle(db)
    db.commit()
    client.post(f"/api/v1/cycles/{cycle.id}/nominations/start", headers=hdr)
    mia = company.extra["mia"]
    team_link = links_by_customer(db, cycle, kind="nomination-team")[mia.id]
    supplier_link = links_by_customer(db, cycle, kind="nomination")[company.suppliers[0].id]
    first = list_of(db, company.suppliers[0])

    form_token = open_team(client, team_link)
    page = client.get("/nominate/team").text
    assert "Who should rate your team in" in page
    assert "Supplier 0" in page and "Supplier 1" in page and "Supplier 2" not in page
    assert "your approval is withdrawn" in page
    found = client.get("/nominate/team", params={"q": "office", "for": first.id}).text
    assert "Nadia Newcomer" in found.split(f'id="search-results-{first.id}"')[1]

    newcomer = company.extra["newcomer"]
    r = client.post(
        "/nominate/team/add",
        data={"form_token": form_token, "list_id": first.id, "employee_id": newcomer.id},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith(f"#list-{first.id}")
    r = client.post(
        "/nominate/team/remove",
        data={
            "form_token": form_token,
            "list_id": first.id,
            "employee_id": company.customers[0].id,
        },
    )
    assert r.status_code == 422 and "Say why" in r.text
    client.post(
        "/nominate/team/remove",
        data={
            "form_token": form_token,
            "list_id": first.id,
            "employee_id": company.customers[0].id,
            "reason": "Moved away",
        },
    )
    # A forged form, or a list outside the team, changes nothing.
    assert (
        client.post(
            "/nominate/team/approve", data={"form_token": "0" * 64, "list_id": first.id}
        ).status_code
        == 403
    )
    other = list_of(db, company.suppliers[2])
    r = client.post("/nominate/team/approve", data={"form_token": form_token, "list_id": other.id})
    assert r.status_code == 404 and "not one of your team" in r.text
    r = client.post("/nominate/team/approve", data={"form_token": form_token, "list_id": first.id})
    assert r.status_code == 200 and "List approved." in r.text
    assert "added by you" in r.text and "removed by you: Moved away" in r.text
    db.expire_all()
    assert list_of(db, company.suppliers[0]).approved_by_id == mia.id
    assert list_of(db, company.suppliers[2]).approved_at is None

    # The report sees the manager's changes and the approval; changing withdraws it.
    manager_cookies = dict(client.cookies)
    client.cookies.clear()
    r = client.get(f"/n/{token_of(supplier_link)}")
    assert "added by your manager" in r.text and "removed by your manager: Moved away" in r.text
    assert "Your manager approved this list" in r.text
    supplier_token = re.search(r'name="form_token" value="([0-9a-f]+)"', r.text)
    assert supplier_token
    client.post(
        "/nominate/add",
        data={"form_token": supplier_token.group(1), "employee_id": company.customers[0].id},
    )
    client.cookies.clear()
    client.cookies.update(manager_cookies)
    page = client.get("/nominate/team").text
    section = page.split(f'id="list-{first.id}"')[1].split("</section>")[0]
    assert "Waiting for your approval" in section

    # The launch ends the team link like the suppliers'.
    assert client.post(f"/api/v1/cycles/{cycle.id}/launch", headers=hdr).status_code == 200
    assert client.get("/nominate/team").status_code == 404
    client.cookies.clear()
    assert client.get(f"/n/{token_of(team_link)}").status_code == 404


def test_hr_starts_the_round_for_line_managers_and_sees_approvals(
    client: TestClient, db: Session, company: Company
) -> None:
    cycle = make_cycle(db)
    signed = sign_in(client, db)
    r = client.post(
        f"/cycles/{cycle.id}/nominations/start",
        data={"csrf_token": signed.csrf, "links_to": "the-boss"},
    )
    assert r.status_code == 422 and "Choose who gets the links" in r.text
    assert client.get(f"/cycles/{cycle.id}").text.count('name="links_to"') == 1
    r = client.post(
        f"/cycles/{cycle.id}/nominations/start",
        data={"csrf_token": signed.csrf, "links_to": "line_manager"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    db.expire_all()
    assert db.get(Cycle, cycle.id).nomination_links_to == NominationLinksTo.line_manager  # type: ignore[union-attr]
    nomination_approval.approve(
        db,
        team=team_of(db, company.extra["mia"]),
        nomination=list_of(db, company.suppliers[0]),
    )
    db.commit()
    page = client.get(f"/cycles/{cycle.id}").text
    assert "1 of 3 lists approved by the supplier&#39;s line manager" in page
    assert "2 unapproved lists launch as they are" in page
    waiting = page.split('id="managers-waiting"')[1].split("</table>")[0]
    assert "Mia Manager" in waiting
    assert "no manager" in page.split('id="round-lists"')[1]
    confirm = client.get(f"/cycles/{cycle.id}/launch").text
    assert "Line managers approved 1 of 3 lists; 2 unapproved lists launch as they are" in confirm
    assert (
        db.scalar(
            select(func.count())
            .select_from(NominationTeam)
            .where(NominationTeam.cycle_id == cycle.id)
        )
        == 1
    )
