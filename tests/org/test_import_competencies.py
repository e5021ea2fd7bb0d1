"""Competencies in bulk, and one rule for a competency at every door (file, JSON, form)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.org.models import Competency
from app.uploads.parsing import XLSX_TYPE
from tests.auth.helpers import sign_in
from tests.org.test_api import assert_problem, headers
from tests.uploads.workbooks import workbook

URL = "/api/v1/import/competencies"
CSV_TYPE = {"content-type": "text/csv"}
CSV = (
    "code,name,description,indicators,weight,display_order,active\n"
    'responsiveness,Responsiveness,Reacts quickly,"Answers within a day\n'
    'Warns early of delays",1,20,true\n'
    'teamwork,Teamwork,,,"1,5",30,no\n'
)


def stored(db: Session) -> dict[str, tuple[object, ...]]:
    db.expire_all()
    return {
        c.code: (c.name, list(c.indicators), c.weight, c.display_order, c.active)
        for c in db.scalars(select(Competency))
    }


def test_csv_import_creates_then_is_idempotent(client: TestClient, db: Session) -> None:
    h = headers(db)
    r = client.post(URL, content=CSV.encode(), headers={**h, **CSV_TYPE})
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"]) == (2, 0)
    assert stored(db) == {
        "responsiveness": (
            "Responsiveness",
            ["Answers within a day", "Warns early of delays"],
            1.0,
            20,
            True,
        ),
        "teamwork": ("Teamwork", [], 1.5, 30, False),
    }
    again = client.post(URL, content=CSV.encode(), headers={**h, **CSV_TYPE})
    assert (again.json()["unchanged"], again.json()["created"]) == (2, 0)
    # The same competencies as JSON and as a workbook are unchanged too.
    as_json = [
        {
            "code": "responsiveness",
            "name": "Responsiveness",
            "description": "Reacts quickly",
            "indicators": ["Answers within a day", "Warns early of delays"],
            "weight": 1,
            "display_order": 20,
        }
    ]
    assert client.post(URL, json=as_json, headers=h).json()["unchanged"] == 1
    sheet = workbook(
        [
            ["code", "name", "weight", "display_order", "active"],
            ["teamwork", "Teamwork", 1.5, 30, False],
        ]
    )
    r = client.post(URL, content=sheet, headers={**h, "content-type": XLSX_TYPE})
    assert r.json()["unchanged"] == 1, r.text


def test_every_bad_row_is_listed_and_nothing_saved(client: TestClient, db: Session) -> None:
    h = headers(db)
    body = (
        "code,name,indicators,weight\n"
        "ok,Fine,,1\n"
        "Bad Code,Name,,1\n"
        "heavy,Heavy,,lots\n"
        "ok,Repeated,,1\n"
        f"long,Long,{'x' * 301},1\n"
        "zero,Zero,,0\n"
    )
    problem = assert_problem(
        client.post(URL, content=body.encode(), headers={**h, **CSV_TYPE}), 422
    )
    assert {(e["line"], e["field"]) for e in problem["errors"]} == {
        (3, "code"),
        (4, "weight"),
        (5, "code"),
        (6, "indicators.0"),
        (7, "weight"),
    }
    assert db.scalar(select(func.count()).select_from(Competency)) == 0
    dry = client.post(
        URL, content=CSV.encode(), params={"dry_run": "true"}, headers={**h, **CSV_TYPE}
    )
    assert dry.json()["created"] == 2 and dry.json()["dry_run"] is True
    assert db.scalar(select(func.count()).select_from(Competency)) == 0


def test_one_rule_at_every_door(client: TestClient, db: Session) -> None:
    """A 301-character indicator is refused by the file import, the JSON PUT and the HR
    form, for the same reason in the same words."""
    h = headers(db)
    long = "x" * 301
    message = "must be at most 300 characters"
    imported = client.post(URL, json=[{"code": "c", "name": "C", "indicators": [long]}], headers=h)
    error = assert_problem(imported, 422)["errors"][0]
    assert (error["field"], error["message"]) == ("indicators.0", f"indicators.0 {message}")
    put = client.put("/api/v1/competencies/c", json={"name": "C", "indicators": [long]}, headers=h)
    assert assert_problem(put, 422)["errors"] == [{"field": "indicators.0", "message": message}]
    signed = sign_in(client, db)
    form = client.post(
        "/org/competencies/new",
        data={
            "csrf_token": signed.csrf,
            "code": "c",
            "name": "C",
            "indicators": long,
            "weight": "1",
            "display_order": "1",
        },
    )
    assert form.status_code == 422 and message in form.text
    assert db.scalar(select(func.count()).select_from(Competency)) == 0
