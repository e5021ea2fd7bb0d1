"""The results API: shapes, errors, scopes, and that nothing below k gets out."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.cycles.models import CycleState
from app.reports import service
from app.reports.schemas import EmployeePage
from tests.factories import auth_header, make_api_key
from tests.reports.factories import build_three_levels, make_cycle
from tests.reports.helpers import FIGURES

HIDDEN_TEXTS = ("secret praise", "and more")


@pytest.fixture
def setup(db: Session) -> dict[str, Any]:
    t = build_three_levels(db)
    t["headers"] = auth_header(make_api_key(db, "results:read"))
    # Release the savepoint: a request that fails (404, 409) rolls back only its own work.
    db.commit()
    return t


def assert_hidden(record: dict[str, Any]) -> None:
    assert record["status"] == "not_enough_responses"
    assert all(record[f] is None for f in FIGURES), record
    assert record["competencies"] == []


def test_employee_results(client: TestClient, setup: dict[str, Any]) -> None:
    cycle = setup["cycle"]
    r = client.get(f"/api/v1/cycles/{cycle.id}/results/employees", headers=setup["headers"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 6 and body["cycle"]["min_raters"] == 3
    by_name = {e["full_name"]: e for e in body["items"]}
    assert by_name["e2"]["coefficient"] == 7.0
    assert by_name["e2"]["competencies"] == [
        {"code": "quality", "name": "Quality", "mean": 7.0, "count": 3}
    ]
    assert_hidden(by_name["e4"])
    assert_hidden(by_name["e6"])
    assert not any(text in r.text for text in HIDDEN_TEXTS)


def test_employee_results_body_is_the_documented_model(
    client: TestClient, setup: dict[str, Any], db: Session
) -> None:
    """The page is written without models (app.jsonbody): it must still be exactly what
    EmployeePage, the documented response model, gives for the same rows."""
    cycle = setup["cycle"]
    r = client.get(f"/api/v1/cycles/{cycle.id}/results/employees", headers=setup["headers"])
    body = r.json()
    assert r.headers["content-type"] == "application/json"
    total, items = service.employee_results(db, cycle_id=cycle.id, limit=500)
    expected = EmployeePage(
        cycle=service.cycle_ref(db, cycle=service.results_cycle(db, cycle_id=cycle.id)),
        total=total,
        limit=500,
        offset=0,
        items=items,
    )
    assert EmployeePage.model_validate(body).model_dump(mode="json") == body
    assert body == expected.model_dump(mode="json")


def test_employee_results_paging_and_department_filter(
    client: TestClient, setup: dict[str, Any]
) -> None:
    cycle, headers = setup["cycle"], setup["headers"]
    url = f"/api/v1/cycles/{cycle.id}/results/employees"
    page = client.get(url, params={"limit": 2, "offset": 2}, headers=headers).json()
    assert page["total"] == 6 and len(page["items"]) == 2
    child = client.get(url, params={"department": setup["c1"].external_id}, headers=headers).json()
    assert {e["full_name"] for e in child["items"]} == {"e2", "e3", "e4"}
    by_id = client.get(url, params={"department": str(setup["g1"].id)}, headers=headers).json()
    assert {e["full_name"] for e in by_id["items"]} == {"e3", "e4"}
    assert client.get(url, params={"department": "nope"}, headers=headers).status_code == 404
    assert client.get(url, params={"limit": 0}, headers=headers).status_code == 422


def test_department_and_company_results(client: TestClient, setup: dict[str, Any]) -> None:
    cycle, headers = setup["cycle"], setup["headers"]
    deps = client.get(f"/api/v1/cycles/{cycle.id}/results/departments", headers=headers)
    assert deps.status_code == 200
    by_name = {d["name"]: d for d in deps.json()["items"]}
    assert by_name["Grandchild"]["coefficient"] == 5.0
    assert by_name["Grandchild"]["employees_included"] == 1
    company = client.get(f"/api/v1/cycles/{cycle.id}/results/company", headers=headers).json()
    assert company["coefficient"] == 7.25
    # 5, 7, 8, 9 in bins of 0.9 from 1: bins 4, 6, 7, 8
    assert company["distribution"]["counts"] == [0, 0, 0, 0, 1, 0, 1, 1, 1, 0]
    assert company["response_rate"] is None  # no invitations in this hand-made cycle


def test_employee_trend(client: TestClient, setup: dict[str, Any]) -> None:
    headers = setup["headers"]
    r = client.get(f"/api/v1/employees/{setup['e2'].external_id}/results", headers=headers)
    assert r.status_code == 200
    points = r.json()["points"]
    assert [p["coefficient"] for p in points] == [7.0]
    assert points[0]["index"] == pytest.approx(100 * 6 / 9)
    hidden = client.get(f"/api/v1/employees/{setup['e4'].external_id}/results", headers=headers)
    point = hidden.json()["points"][0]
    assert point["status"] == "not_enough_responses" and point["coefficient"] is None
    assert point["raters"] is None and point["competencies"] == []
    assert client.get("/api/v1/employees/NOPE/results", headers=headers).status_code == 404


def test_unknown_and_open_cycles(client: TestClient, db: Session, setup: dict[str, Any]) -> None:
    headers = setup["headers"]
    open_cycle = make_cycle(db, state=CycleState.open)
    db.commit()
    for path in (
        "results/employees",
        "results/departments",
        "results/company",
        "charts/heatmap.png",
    ):
        missing = client.get(f"/api/v1/cycles/999999/{path}", headers=headers)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        still_open = client.get(f"/api/v1/cycles/{open_cycle.id}/{path}", headers=headers)
        assert still_open.status_code == 409, path
        assert still_open.json()["title"] == "Conflict"
    assert client.get("/api/v1/cycles/abc/results/company", headers=headers).status_code == 422
    huge = client.get("/api/v1/cycles/99999999999999999999/results/company", headers=headers)
    assert huge.status_code == 422


def test_scope_is_required(client: TestClient, db: Session, setup: dict[str, Any]) -> None:
    cycle = setup["cycle"]
    url = f"/api/v1/cycles/{cycle.id}/results/company"
    assert client.get(url).status_code == 401
    other = auth_header(make_api_key(db, "org:read"))
    db.commit()
    assert client.get(url, headers=other).status_code == 403


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_charts_over_the_api(client: TestClient, setup: dict[str, Any], fmt: str) -> None:
    cycle, headers = setup["cycle"], setup["headers"]
    r = client.get(f"/api/v1/cycles/{cycle.id}/charts/departments.{fmt}", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(
        {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}[fmt]
    )


def test_chart_errors(client: TestClient, setup: dict[str, Any]) -> None:
    cycle, headers = setup["cycle"], setup["headers"]
    base = f"/api/v1/cycles/{cycle.id}/charts"
    assert client.get(f"{base}/nothing.png", headers=headers).status_code == 404
    assert client.get(f"{base}/heatmap.gif", headers=headers).status_code == 404
    assert client.get(f"{base}/heatmap", headers=headers).status_code == 404
    assert client.get(f"{base}/employee.png", headers=headers).status_code == 422
    assert client.get(f"{base}/trend-department.png", headers=headers).status_code == 422
    unknown = client.get(f"{base}/employee.png", params={"employee": "NOPE"}, headers=headers)
    assert unknown.status_code == 404


def test_no_api_route_reveals_an_employee_below_k(
    client: TestClient, setup: dict[str, Any]
) -> None:
    """e4 had two raters giving 10/10 with NPS 10 and two comments: none of it may show."""
    cycle, headers = setup["cycle"], setup["headers"]
    e4 = setup["e4"]
    bodies = [
        client.get(f"/api/v1/cycles/{cycle.id}/results/{what}", headers=headers).text
        for what in ("employees", "departments", "company")
    ]
    bodies.append(client.get(f"/api/v1/employees/{e4.external_id}/results", headers=headers).text)
    for body in bodies:
        assert not any(text in body for text in HIDDEN_TEXTS)
    employees = json.loads(bodies[0])["items"]
    assert_hidden(next(e for e in employees if e["external_id"] == e4.external_id))
    departments = json.loads(bodies[1])["items"]
    grandchild = next(d for d in departments if d["name"] == "Grandchild")
    # e4's 10s would lift the mean; only e3's 5 is in it.
    assert grandchild["coefficient"] == 5.0 and grandchild["competencies"][0]["mean"] == 5.0
    for chart in ("employee", "trend-employee"):
        svg = client.get(
            f"/api/v1/cycles/{cycle.id}/charts/{chart}.svg",
            params={"employee": e4.external_id},
            headers=headers,
        ).text
        # The chart holds exactly two texts: the notice and the footer (cycle, scale, k).
        texts = svg_texts(svg)
        assert len(texts) == 2, texts
        assert texts[0] == f"{e4.full_name}: not enough responses"
        assert texts[1].startswith(f"Peer360 · cycle {cycle.name} · scale 1–10 · shown only")


def svg_texts(svg: str) -> list[str]:
    root = ElementTree.fromstring(svg)  # noqa: S314 - our own chart, not untrusted input
    return ["".join(el.itertext()).strip() for el in root.iter("{http://www.w3.org/2000/svg}text")]
