"""Bulk department import: parents in any order, loops refused, all or nothing."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.org.models import Department
from tests.factories import make_department
from tests.org.test_api import assert_problem, headers

URL = "/api/v1/import/departments"
CSV_TYPE = {"content-type": "text/csv"}


def tree(db: Session) -> dict[str, tuple[str, str | None]]:
    db.expire_all()
    rows = db.execute(
        select(Department.id, Department.external_id, Department.name, Department.parent_id)
    )
    by_id = {}
    out = {}
    records = list(rows)
    for id_, ext, _name, _parent in records:
        by_id[id_] = ext
    for _id, ext, name, parent in records:
        out[ext] = (name, by_id.get(parent) if parent is not None else None)
    return out


def test_children_before_parents_and_idempotent(client: TestClient, db: Session) -> None:
    h = headers(db)
    body = (
        b"external_id,name,parent_external_id\n"
        b"TEAM,Payroll team,FIN\n"
        b"FIN,Finance,ROOT\n"
        b"ROOT,Northwind,\n"
    )
    r = client.post(URL, content=body, headers={**h, **CSV_TYPE})
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (3, 0, 0)
    assert tree(db) == {
        "ROOT": ("Northwind", None),
        "FIN": ("Finance", "ROOT"),
        "TEAM": ("Payroll team", "FIN"),
    }
    again = client.post(URL, content=body, headers={**h, **CSV_TYPE}).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)


def test_update_moves_and_renames(client: TestClient, db: Session) -> None:
    root = make_department(db, external_id="ROOT")
    make_department(db, external_id="OLD", name="Old", parent=root)
    h = headers(db)
    body = json.dumps(
        [{"external_id": "OLD", "name": "Renamed", "parent_external_id": None}]
    ).encode()
    r = client.post(URL, content=body, headers={**h, "content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["updated"] == 1
    assert tree(db)["OLD"] == ("Renamed", None)


def test_bad_rows_reject_everything(client: TestClient, db: Session) -> None:
    a = make_department(db, external_id="A")
    make_department(db, external_id="B", parent=a)
    h = headers(db)
    before = tree(db)
    body = (
        b"external_id,name,parent_external_id\n"
        b"NEW,Fine,\n"  # line 2 is good, but must not be saved
        b"X,,\n"  # no name
        b"NEW,Again,\n"  # repeated id
        b"Y,Orphan,NOPE\n"  # unknown parent
    )
    r = client.post(URL, content=body, headers={**h, **CSV_TYPE})
    assert_problem(r, 422)
    found = {(e["line"], e["field"]) for e in r.json()["errors"]}
    assert found == {(3, "name"), (4, "external_id"), (5, "parent_external_id")}
    assert tree(db) == before
    loop_only = b"external_id,name,parent_external_id\nA,Loop,B\n"
    r = client.post(URL, content=loop_only, headers={**h, **CSV_TYPE})
    assert_problem(r, 422)
    assert r.json()["errors"][0]["field"] == "parent_external_id"
    assert tree(db) == before


def test_dry_run_and_scope(client: TestClient, db: Session) -> None:
    body = b"external_id,name,parent_external_id\nD1,One,\n"
    read_only = headers(db, "org:read")
    assert_problem(client.post(URL, content=body, headers={**read_only, **CSV_TYPE}), 403)
    h = headers(db)
    r = client.post(URL, content=body, params={"dry_run": "true"}, headers={**h, **CSV_TYPE})
    assert r.status_code == 200 and r.json()["created"] == 1 and r.json()["dry_run"]
    assert "D1" not in tree(db)
    assert_problem(client.post(URL, content=b"", headers={**h, **CSV_TYPE}), 422)
