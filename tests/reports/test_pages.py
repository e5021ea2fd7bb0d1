"""HR results pages: rendering, sorting and filtering, manager scoping, suppression."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.cycles.models import CycleState
from app.reports import service
from tests.auth.helpers import sign_in
from tests.factories import make_employee
from tests.reports.factories import build_three_levels, make_cycle

HIDDEN_TEXTS = ("secret praise", "and more")


@pytest.fixture
def data(db: Session) -> dict[str, Any]:
    t = build_three_levels(db, name="P-2026-Q3")
    db.commit()
    return t


def test_pages_need_a_login(client: TestClient, data: dict[str, Any]) -> None:
    r = client.get(f"/results/{data['cycle'].id}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_index_lists_closed_cycles_only(
    client: TestClient, db: Session, data: dict[str, Any]
) -> None:
    make_cycle(db, name="P-open", state=CycleState.open)
    sign_in(client, db)
    r = client.get("/results")
    assert r.status_code == 200
    assert "P-2026-Q3" in r.text and "P-open" not in r.text


def test_cycle_page_for_hr(client: TestClient, db: Session, data: dict[str, Any]) -> None:
    sign_in(client, db)
    cycle = data["cycle"]
    r = client.get(f"/results/{cycle.id}")
    assert r.status_code == 200, r.text
    html = r.text
    for text in (
        "7.25",
        "Grandchild",
        "Leaderboard",
        "Biggest declines",
        "heatmap.png",
        "employees.xlsx",
        "k = 3",
    ):
        assert text in html, text
    assert "not enough responses" in html
    assert not any(t in html for t in HIDDEN_TEXTS)
    assert "style=" not in html and "<script>" not in html  # CSP: no inline styles or scripts


def test_employee_table_sorts_and_filters(
    client: TestClient, db: Session, data: dict[str, Any]
) -> None:
    sign_in(client, db)
    cycle = data["cycle"]
    by_coefficient = client.get(
        f"/results/{cycle.id}", params={"sort": "coefficient", "order": "desc"}
    ).text
    table = by_coefficient[by_coefficient.index('id="employee-table"') :]
    order = [table.index(f">{name}</a>") for name in ("e5", "e1", "e2", "e3", "e4")]
    assert order == sorted(order)  # e4 (suppressed) sorts last
    filtered = client.get(f"/results/{cycle.id}", params={"department": data["c1"].id}).text
    table = filtered[filtered.index('id="employee-table"') :]
    assert ">e2</a>" in table and ">e3</a>" in table and ">e1</a>" not in table
    # Bad input is answered, never a 500.
    assert client.get(f"/results/{cycle.id}", params={"sort": "evil';--"}).status_code == 200
    assert client.get(f"/results/{cycle.id}", params={"order": "sideways"}).status_code == 422
    assert client.get(f"/results/{cycle.id}", params={"page": "0"}).status_code == 422


def test_choosing_a_department_drills_the_department_table_and_charts_down(
    client: TestClient, db: Session, data: dict[str, Any]
) -> None:
    sign_in(client, db)
    cycle, c1 = data["cycle"], data["c1"]
    page = client.get(f"/results/{cycle.id}", params={"department": c1.id}).text
    table = page[page.index('class="results-table heatmap-table"') : page.index("</table>")]
    rows = re.findall(r'<th scope="row"[^>]*><a [^>]*>([^<]+)</a>', table)
    assert rows == ["Child", "Grandchild"]  # the department, its children; not Root
    assert f"charts/heatmap.png?department={c1.id}" in page
    assert f"charts/departments.png?download=1&amp;department={c1.id}" in page
    top = client.get(f"/results/{cycle.id}").text
    table = top[top.index('class="results-table heatmap-table"') : top.index("</table>")]
    assert {"Root", "Child", "Grandchild", "Other root"} <= set(
        re.findall(r'<th scope="row"[^>]*><a [^>]*>([^<]+)</a>', table)
    )
    assert "charts/heatmap.png?department" not in top


def test_employee_page_and_report(client: TestClient, db: Session, data: dict[str, Any]) -> None:
    sign_in(client, db)
    cycle = data["cycle"]
    page = client.get(f"/results/{cycle.id}/employees/{data['e1'].id}")
    assert page.status_code == 200
    assert "Always helps" in page.text and "8.00" in page.text
    pdf = client.get(f"/results/{cycle.id}/employees/{data['e1'].id}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")


def test_employee_below_k_shows_nothing_on_any_page_chart_or_export(
    client: TestClient, db: Session, data: dict[str, Any]
) -> None:
    sign_in(client, db)
    cycle, e4 = data["cycle"], data["e4"]
    base = f"/results/{cycle.id}"
    page = client.get(f"{base}/employees/{e4.id}")
    assert page.status_code == 200
    assert "Not enough responses" in page.text
    main = page.text[page.text.index("<main") :]
    assert not any(t in main for t in HIDDEN_TEXTS)
    assert "10.00" not in main and "employee.png" not in main
    report = client.get(f"{base}/employees/{e4.id}/report.pdf")
    assert report.status_code == 200 and b"secret" not in report.content
    for table in ("employees", "leaderboard", "decliners", "departments", "heatmap", "company"):
        body = client.get(f"{base}/exports/{table}.csv").text
        assert not any(t in body for t in HIDDEN_TEXTS)
        if table == "employees":
            row = next(line for line in body.splitlines() if line.startswith(e4.external_id + ","))
            assert row.split(",")[3] == "not enough responses"
            assert set(row.split(",")[4:]) == {""}
    svg = client.get(f"{base}/charts/employee.svg", params={"employee": e4.external_id}).text
    assert "not enough responses" in svg and "10.00" not in svg


def test_manager_sees_only_their_reporting_line(
    client: TestClient, db: Session, data: dict[str, Any]
) -> None:
    boss = make_employee(db, full_name="Boss")
    data["e2"].manager_id = boss.id
    db.flush()
    sign_in(client, db, role=Role.manager, employee=boss)
    cycle = data["cycle"]
    base = f"/results/{cycle.id}"
    page = client.get(base)
    assert page.status_code == 200
    table = page.text[page.text.index('id="employee-table"') :]
    assert ">e2</a>" in table and ">e1</a>" not in table
    assert "Grandchild" not in page.text  # department tables are HR's
    assert client.get(f"{base}/employees/{data['e2'].id}").status_code == 200
    assert client.get(f"{base}/employees/{data['e1'].id}").status_code == 404
    assert client.get(f"{base}/employees/{data['e1'].id}/report.pdf").status_code == 404
    chart = client.get(f"{base}/charts/employee.png", params={"employee": data["e1"].external_id})
    assert chart.status_code == 404
    assert client.get(f"{base}/charts/heatmap.png").status_code == 403
    assert client.get(f"{base}/exports/departments.csv").status_code == 403
    export = client.get(f"{base}/exports/employees.csv").text
    assert "e2" in export and ",e1," not in export
    assert client.get(f"{base}/charts/trend-company.png").status_code == 200


def test_unknown_and_open_cycles_on_pages(
    client: TestClient, db: Session, data: dict[str, Any]
) -> None:
    open_cycle = make_cycle(db, state=CycleState.open)
    sign_in(client, db)
    assert client.get("/results/999999").status_code == 404
    assert client.get(f"/results/{open_cycle.id}").status_code == 409
    assert client.get(f"/results/{data['cycle'].id}/employees/999999").status_code == 404
    assert client.get(f"/results/{data['cycle'].id}/charts/heatmap").status_code == 404
    assert client.get(f"/results/{data['cycle'].id}/exports/ballots.csv").status_code == 404
    assert client.get("/results/abc").status_code == 422


def test_leaderboard_shows_bands_and_the_employee_page_reliability(
    client: TestClient, db: Session, data: dict[str, Any]
) -> None:
    sign_in(client, db)
    cycle = data["cycle"]
    html = client.get(f"/results/{cycle.id}").text
    board = html[html.index('id="leaders-h"') : html.index('id="decliners-h"')]
    # e5 9 [9, 9] | e1 8 [8, 8] and e2 7 [4.5, 9.5] | e3 5 [2.5, 7.5]
    assert board.index("Band 1") < board.index("e5") < board.index("Band 2")
    assert board.index("Band 2") < board.index("e1") < board.index("e2") < board.index("Band 3")
    assert board.index("Band 3") < board.index("e3")
    assert "cannot be told apart" in board
    page = client.get(f"/results/{cycle.id}/employees/{data['e2'].id}").text
    # ICC 0.846 (see test_coefficients), 3 raters -> 0.94; se = 1 / sqrt(3) = 0.58
    assert "Reliability of this mean" in page and "0.94" in page and "0.58" in page
    assert "band 2" in page


def test_department_picker_drills_down_instead_of_listing_the_whole_tree(
    client: TestClient, db: Session, data: dict[str, Any]
) -> None:
    cycle, r, c1, g1, r2 = (data[k] for k in ("cycle", "r", "c1", "g1", "r2"))

    def picked(around: int | None) -> list[str]:
        rows = service.department_picker(db, cycle_id=cycle.id, around=around, top_levels=0)
        return [name for _id, name, _level in rows]

    # The top of the tree; around a choice its ancestors and sub-departments, in tree order.
    assert picked(None) == ["Other root", "Root"]
    assert picked(r.id) == ["Other root", "Root", "Child"]
    assert picked(c1.id) == ["Other root", "Root", "Child", "Grandchild"]
    assert picked(g1.id) == ["Other root", "Root", "Child", "Grandchild"]
    assert picked(r2.id) == ["Other root", "Root"]
    # The page offers the picker's list with the choice selected; an unknown one is ignored.
    sign_in(client, db)
    page = client.get(f"/results/{cycle.id}", params={"department": g1.id}).text
    select = page[page.index('<select id="f-department"') : page.index("</select>")]
    assert f'<option value="{g1.id}" selected>' in select
    unknown = client.get(f"/results/{cycle.id}", params={"department": 999_999})
    assert unknown.status_code == 200 and " selected>" not in unknown.text
