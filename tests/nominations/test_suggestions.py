"""Matrix suggestions: every source with its reasons, accepting some or all, the API,
the HR screens and the department service map."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry
from app.config import Settings
from app.errors import Invalid
from app.matrix import service_map
from app.matrix.models import MatrixLink
from app.nominations import suggestions
from app.nominations.suggestions import Source, SuggestionFilter
from app.org.models import Department, Employee
from tests.auth.helpers import sign_in
from tests.cycles.helpers import launched_cycle
from tests.factories import link, make_competency, make_department, make_employee
from tests.org.test_api import assert_problem, headers

API = "/api/v1/matrix/suggestions"


@dataclass
class Org:
    it: Department
    helpdesk: Department  # under IT
    sales: Department
    boss: Employee  # heads IT; Ivan and Iris report to her
    ivan: Employee  # IT
    iris: Employee  # IT
    hal: Employee  # IT / Helpdesk
    sam: Employee  # Sales
    sue: Employee  # Sales
    gone: Employee  # Sales, inactive


def _org(db: Session) -> Org:
    it = make_department(db, name="IT Support", external_id="D-IT")
    helpdesk = make_department(db, name="Helpdesk", external_id="D-HD", parent=it)
    sales = make_department(db, name="Sales", external_id="D-SALES")
    boss = make_employee(db, department=it, full_name="Bea Boss", external_id="BOSS")
    ivan = make_employee(db, department=it, manager=boss, full_name="Ivan It", external_id="IVAN")
    iris = make_employee(db, department=it, manager=boss, full_name="Iris It", external_id="IRIS")
    hal = make_employee(db, department=helpdesk, full_name="Hal Help", external_id="HAL")
    sam = make_employee(db, department=sales, full_name="Sam Sales", external_id="SAM")
    sue = make_employee(db, department=sales, full_name="Sue Sales", external_id="SUE")
    gone = make_employee(db, department=sales, full_name="Gil Gone", external_id="GIL")
    gone.active = False
    db.flush()
    return Org(it, helpdesk, sales, boss, ivan, iris, hal, sam, sue, gone)


def _links(db: Session) -> set[tuple[int, int]]:
    return {(s, c) for s, c in db.execute(select(MatrixLink.supplier_id, MatrixLink.customer_id))}


def _found(db: Session, *sources: Source, **kw: object) -> dict[tuple[str, str], list[str]]:
    """(supplier ext id, customer ext id) -> reason texts."""
    flt = SuggestionFilter(sources=sources or suggestions.ALL_SOURCES, **kw)  # type: ignore[arg-type]
    found = suggestions.suggest(db, flt)
    names = suggestions.people(db, {i for s in found for i in (s.supplier_id, s.customer_id)})
    texts = suggestions.describe(db, found, names)
    return {
        (names[s.supplier_id].external_id, names[s.customer_id].external_id): [
            t.text for t in texts[(s.supplier_id, s.customer_id)]
        ]
        for s in found
    }


def test_manager_and_direct_reports_both_ways(db: Session) -> None:
    o = _org(db)
    assert _found(db, Source.manager) == {
        ("BOSS", "IVAN"): ["Bea Boss is the line manager of Ivan It"],
        ("BOSS", "IRIS"): ["Bea Boss is the line manager of Iris It"],
        ("IVAN", "BOSS"): ["Bea Boss is the line manager of Ivan It"],
        ("IRIS", "BOSS"): ["Bea Boss is the line manager of Iris It"],
    }
    # An inactive manager suggests nothing.
    o.boss.active = False
    db.flush()
    assert _found(db, Source.manager) == {}


def test_same_team_colleagues(db: Session) -> None:
    _org(db)
    assert _found(db, Source.team) == {
        ("IVAN", "IRIS"): ["Same team: both report to Bea Boss"],
        ("IRIS", "IVAN"): ["Same team: both report to Bea Boss"],
    }


def test_service_map_expanded_to_people_with_sub_departments(db: Session) -> None:
    o = _org(db)
    service_map.add_served(db, department_id=o.it.id, served_id=o.sales.id)
    found = _found(db, Source.service_map)
    reason = ["Service map: IT Support serves Sales"]
    # Helpdesk sits under IT; the inactive Gil is never suggested.
    assert found == {
        (s, c): reason for s in ("BOSS", "IVAN", "IRIS", "HAL") for c in ("SAM", "SUE")
    }
    # Narrowed to suppliers of one department (and its sub-departments).
    assert set(_found(db, Source.service_map, department_id=o.helpdesk.id)) == {
        ("HAL", "SAM"),
        ("HAL", "SUE"),
    }


def test_previous_cycle_pairs_with_the_cycle_name(db: Session, settings: Settings) -> None:
    o = _org(db)
    make_competency(db)
    link(db, supplier=o.hal, customer=o.sam)
    link(db, supplier=o.hal, customer=o.sue)
    launched_cycle(db, settings, name="2026-Q3")
    assert _found(db, Source.previous_cycle) == {}  # still in the matrix: nothing new
    db.execute(MatrixLink.__table__.delete())
    assert _found(db, Source.previous_cycle) == {
        ("HAL", "SAM"): ["Sam Sales rated Hal Help in 2026-Q3"],
        ("HAL", "SUE"): ["Sue Sales rated Hal Help in 2026-Q3"],
    }


def test_reasons_combine_and_existing_links_are_left_out(db: Session) -> None:
    o = _org(db)
    link(db, supplier=o.ivan, customer=o.iris)
    found = _found(db)
    assert ("IVAN", "IRIS") not in found  # already rates
    assert found[("IRIS", "BOSS")] == ["Bea Boss is the line manager of Iris It"]
    assert found[("IRIS", "IVAN")] == ["Same team: both report to Bea Boss"]
    # Two sources for one pair: both reasons, in a fixed order.
    dept_it = make_department(db, name="Ops", external_id="D-OPS")
    db.execute(
        Employee.__table__.update().where(Employee.id == o.boss.id).values(department_id=dept_it.id)
    )
    service_map.add_served(db, department_id=dept_it.id, served_id=o.it.id)
    assert _found(db)[("BOSS", "IVAN")] == [
        "Service map: Ops serves IT Support",
        "Bea Boss is the line manager of Ivan It",
    ]


def test_accept_some_writes_links_and_refuses_what_is_not_suggested(db: Session) -> None:
    o = _org(db)
    result = suggestions.accept(db, pairs=[(o.boss.id, o.ivan.id), (o.ivan.id, o.iris.id)])
    assert len(result.added) == 2 and result.by_source == {"manager": 1, "team": 1}
    links = _links(db)
    assert links == {(o.boss.id, o.ivan.id), (o.ivan.id, o.iris.id)}
    # Again: nothing new, counted as unchanged.
    again = suggestions.accept(db, pairs=[(o.boss.id, o.ivan.id)])
    assert (len(again.added), again.unchanged) == (0, 1)
    # Sam and Hal have nothing in common: all or nothing.
    with pytest.raises(Invalid, match=r"not \(or no longer\) suggested") as refused:
        suggestions.accept(db, pairs=[(o.boss.id, o.iris.id), (o.hal.id, o.sam.id)])
    assert "Sam Sales (SAM) rating Hal Help (HAL)" in refused.value.errors[0]["message"]
    assert (o.boss.id, o.iris.id) not in _links(db)
    # A source that was not asked for does not count.
    with pytest.raises(Invalid):
        suggestions.accept(db, pairs=[(o.iris.id, o.ivan.id)], sources=(Source.manager,))


def test_api_lists_pages_and_accepts(client: TestClient, db: Session) -> None:
    o = _org(db)
    service_map.add_served(db, department_id=o.helpdesk.id, served_id=o.sales.id)
    h = headers(db)
    r = client.post(API, json={}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 8 and body["by_source"] == {
        "previous_cycle": 0,
        "service_map": 2,
        "manager": 4,
        "team": 2,
    }
    first = body["items"][0]
    assert set(first) == {"supplier", "customer", "reasons"}
    assert first["reasons"][0]["source"] in {"service_map", "manager", "team"}
    page = client.post(API, json={"offset": 2, "limit": 3}, headers=h).json()
    assert page["items"] == body["items"][2:5] and page["total"] == 8
    only = client.post(API, json={"supplier_external_id": "HAL"}, headers=h).json()
    assert [(i["customer"]["external_id"], i["reasons"]) for i in only["items"]] == [
        ("SAM", [{"source": "service_map", "text": "Service map: Helpdesk serves Sales"}]),
        ("SUE", [{"source": "service_map", "text": "Service map: Helpdesk serves Sales"}]),
    ]

    r = client.post(
        f"{API}/accept",
        json={"links": [{"supplier_external_id": "HAL", "customer_external_id": "SAM"}]},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"added": 1, "unchanged": 0, "by_source": {"service_map": 1}}
    r = client.post(f"{API}/accept", json={"all": True, "sources": ["team"]}, headers=h)
    assert r.json()["added"] == 2
    assert client.post(API, json={}, headers=h).json()["total"] == 5
    audit = db.scalars(select(AuditEntry).where(AuditEntry.action == "accept suggestions")).all()
    assert [a.detail for a in audit] == [
        "1 suggested links accepted (1 service_map)",
        "2 suggested links accepted (2 team)",
    ]
    assert all(a.actor.startswith("api-key:") for a in audit)


def test_api_refuses_bad_requests(client: TestClient, db: Session) -> None:
    _org(db)
    h = headers(db)
    assert_problem(client.post(API, json={"sources": []}, headers=h), 422)
    assert_problem(client.post(API, json={"sources": ["gossip"]}, headers=h), 422)
    assert_problem(client.post(API, json={"limit": 5000}, headers=h), 422)
    assert_problem(client.post(API, json={"department_external_id": "NOPE"}, headers=h), 404)
    assert_problem(client.post(f"{API}/accept", json={}, headers=h), 422)
    both = {"all": True, "links": []}
    assert_problem(client.post(f"{API}/accept", json=both, headers=h), 422)
    ghost = {"links": [{"supplier_external_id": "HAL", "customer_external_id": "GHOST"}]}
    body = assert_problem(client.post(f"{API}/accept", json=ghost, headers=h), 422)
    assert "GHOST" in body["detail"]
    stranger = {"links": [{"supplier_external_id": "HAL", "customer_external_id": "SAM"}]}
    assert_problem(client.post(f"{API}/accept", json=stranger, headers=h), 422)
    read_only = headers(db, "org:read")
    assert client.post(API, json={}, headers=read_only).status_code == 200
    assert_problem(client.post(f"{API}/accept", json={"all": True}, headers=read_only), 403)
    assert db.scalar(select(MatrixLink.supplier_id)) is None


def test_service_map_api(client: TestClient, db: Session) -> None:
    _org(db)
    h = headers(db)
    r = client.put("/api/v1/service-map/D-IT", json=["D-SALES", "D-HD"], headers=h)
    assert r.status_code == 200, r.text
    assert [d["external_id"] for d in r.json()["serves"]] == ["D-HD", "D-SALES"]
    assert (r.json()["added"], r.json()["removed"]) == (2, 0)
    r = client.put(
        "/api/v1/service-map/D-IT", json={"department_external_ids": ["D-SALES"]}, headers=h
    )
    assert (r.json()["added"], r.json()["removed"]) == (0, 1)
    got = client.get("/api/v1/service-map", headers=h).json()
    assert got == [
        {
            "department_external_id": "D-IT",
            "department_name": "IT Support",
            "serves": [{"external_id": "D-SALES", "name": "Sales"}],
            "added": None,
            "removed": None,
        }
    ]
    for bad in (["D-IT"], ["D-SALES", "D-SALES"], ["D-NOPE"]):
        assert_problem(client.put("/api/v1/service-map/D-IT", json=bad, headers=h), 422)
    assert_problem(client.put("/api/v1/service-map/D-NOPE", json=[], headers=h), 404)
    assert client.put("/api/v1/service-map/D-IT", json=[], headers=h).json()["serves"] == []
    actions = db.scalars(select(AuditEntry.action).where(AuditEntry.entity == "matrix")).all()
    assert actions.count("replace service map") == 3


def test_hr_screens_suggest_accept_ticked_and_all(client: TestClient, db: Session) -> None:
    o = _org(db)
    signed = sign_in(client, db)
    r = client.get("/matrix/service-map")
    assert r.status_code == 200 and "The map is empty." in r.text
    r = client.post(
        "/matrix/service-map",
        data={"csrf_token": signed.csrf, "department_id": o.helpdesk.id, "served_id": o.sales.id},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "Helpdesk serves" in client.get("/matrix/service-map").text
    r = client.post(
        "/matrix/service-map",
        data={"csrf_token": signed.csrf, "department_id": o.sales.id, "served_id": o.sales.id},
    )
    assert r.status_code == 422 and "cannot be its own customer" in r.text

    r = client.get("/matrix/suggestions")
    assert r.status_code == 200
    assert "8 suggestions" in r.text and "Helpdesk serves Sales" in r.text
    assert "Both report to Bea Boss" in r.text and "The supplier is their line manager" in r.text
    r = client.get("/matrix/suggestions", params={"source": "team"})
    assert "2 suggestions" in r.text
    r = client.post(
        "/matrix/suggestions/accept",
        data={
            "csrf_token": signed.csrf,
            "pair": [f"{o.hal.id}-{o.sam.id}", f"{o.boss.id}-{o.ivan.id}"],
            "accept": "selected",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert "added=2" in r.headers["location"]
    assert "2 links added." in client.get(r.headers["location"]).text
    r = client.post(
        "/matrix/suggestions/accept",
        data={"csrf_token": signed.csrf, "accept": "selected"},
    )
    assert r.status_code == 422 and "Tick the suggestions" in r.text
    r = client.post(
        "/matrix/suggestions/accept",
        data={"csrf_token": signed.csrf, "source": "team", "accept": "all"},
        follow_redirects=False,
    )
    assert "added=2" in r.headers["location"] and "source=team" in r.headers["location"]
    assert len(db.scalars(select(MatrixLink.supplier_id)).all()) == 4
    details = db.scalars(
        select(AuditEntry.detail).where(AuditEntry.action == "accept suggestions")
    ).all()
    assert details == [
        "2 suggested links accepted (1 manager, 1 service_map)",
        "2 suggested links accepted (2 team)",
    ]
    r = client.post(
        "/matrix/service-map/remove",
        data={"csrf_token": signed.csrf, "department_id": o.helpdesk.id, "served_id": o.sales.id},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "The map is empty." in client.get("/matrix/service-map").text


def test_demo_service_map_gives_suggestions(db: Session) -> None:
    from app.demo import seed_org, seed_service_map

    seed_org(db)
    seed_service_map(db)
    assert len(service_map.service_map(db)) == 4
    found = _found(db, Source.service_map)
    assert found and all(r[0].startswith("Service map: ") for r in found.values())


def test_too_many_suggestions_are_refused_with_a_hint(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    o = _org(db)
    service_map.add_served(db, department_id=o.it.id, served_id=o.sales.id)
    monkeypatch.setattr(suggestions, "MAX_SUGGESTIONS", 5)
    h = headers(db)
    body = assert_problem(client.post(API, json={}, headers=h), 422)
    assert "choose fewer sources" in body["detail"]
    assert client.post(API, json={"sources": ["team"]}, headers=h).json()["total"] == 2
    sign_in(client, db)
    r = client.get("/matrix/suggestions")
    assert r.status_code == 422 and "choose fewer sources" in r.text
    assert 'id="f-source-team"' in r.text  # the filters stay, to narrow it down
