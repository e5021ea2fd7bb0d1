"""The matrix API: per-supplier replace, reverse view, the whole matrix, bulk import."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.matrix import service as matrix_service
from app.matrix.models import MatrixLink
from app.org.models import Employee
from tests.factories import link, make_department, make_employee
from tests.org.test_api import assert_problem, headers

API = "/api/v1"
IMPORT = f"{API}/import/matrix"
CSV_TYPE = {"content-type": "text/csv"}


def pairs(db: Session) -> set[tuple[str, str]]:
    db.expire_all()
    s, c = Employee.__table__.alias("s"), Employee.__table__.alias("c")
    rows = db.execute(
        select(s.c.external_id, c.c.external_id)
        .select_from(MatrixLink)
        .join(s, s.c.id == MatrixLink.supplier_id)
        .join(c, c.c.id == MatrixLink.customer_id)
    )
    return {(a, b) for a, b in rows}


def people(db: Session, *ids: str) -> list[Employee]:
    dept = make_department(db, external_id="OPS", name="Operations")
    return [make_employee(db, external_id=i, full_name=f"Name {i}", department=dept) for i in ids]


def test_replace_customers(client: TestClient, db: Session) -> None:
    people(db, "S", "A", "B", "C")
    h = headers(db)
    r = client.put(f"{API}/suppliers/S/customers", json=["A", "B"], headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["external_id"] for c in body["customers"]] == ["A", "B"]
    assert (body["count"], body["added"], body["removed"]) == (2, 2, 0)
    r = client.put(
        f"{API}/suppliers/S/customers", json={"customer_external_ids": ["B", "C"]}, headers=h
    )
    assert (r.json()["added"], r.json()["removed"]) == (1, 1)
    assert pairs(db) == {("S", "B"), ("S", "C")}
    got = client.get(f"{API}/suppliers/S/customers", headers=h).json()
    assert [c["external_id"] for c in got["customers"]] == ["B", "C"]
    assert got["supplier"]["department_external_id"] == "OPS"
    reverse = client.get(f"{API}/customers/B/suppliers", headers=h).json()
    assert [s["external_id"] for s in reverse["suppliers"]] == ["S"]
    assert client.put(f"{API}/suppliers/S/customers", json=[], headers=h).json()["count"] == 0
    assert pairs(db) == set()


def test_replace_customers_rules(client: TestClient, db: Session) -> None:
    s, a, _b, gone = people(db, "S", "A", "B", "GONE")
    gone.active = False
    link(db, supplier=s, customer=a)
    h = headers(db)
    url = f"{API}/suppliers/S/customers"

    def refused(body: object) -> list[str]:
        problem = assert_problem(client.put(url, json=body, headers=h), 422)
        return [e["message"] for e in problem["errors"]]

    assert any("'B' is listed 2 times" in m for m in refused(["A", "B", "B"]))
    assert any("self-rating" in m for m in refused(["A", "S"]))
    assert any("not active" in m for m in refused(["A", "GONE"]))
    assert any("unknown employee 'NOPE'" in m for m in refused(["NOPE"]))
    assert len(refused(["B", "B", "S", "GONE", "NOPE"])) == 4  # every problem named
    assert pairs(db) == {("S", "A")}  # unchanged
    assert_problem(client.put(f"{API}/suppliers/NOPE/customers", json=["A"], headers=h), 404)
    assert_problem(client.get(f"{API}/suppliers/NOPE/customers", headers=h), 404)
    assert_problem(client.put(url, json={"customers": ["A"]}, headers=h), 422)
    assert_problem(client.put(url, json=[1, 2], headers=h), 422)


def test_inactive_supplier_cannot_get_customers(client: TestClient, db: Session) -> None:
    s, _a = people(db, "S", "A")
    s.active = False
    h = headers(db)
    assert_problem(client.put(f"{API}/suppliers/S/customers", json=["A"], headers=h), 422)


def test_matrix_json_and_csv(client: TestClient, db: Session) -> None:
    s, a, b = people(db, "S", "A", "B")
    other = make_department(db, external_id="IT", name="=cmd|calc")
    x = make_employee(db, external_id="X", full_name="-Xavier", department=other)
    link(db, supplier=s, customer=a)
    link(db, supplier=s, customer=b)
    link(db, supplier=x, customer=s)
    h = headers(db)
    page = client.get(f"{API}/matrix", headers=h).json()
    assert page["total"] == 3
    first = page["items"][0]
    assert (first["supplier_external_id"], first["customer_external_id"]) == ("S", "A")
    assert first["supplier_department_name"] == "Operations"
    assert (
        client.get(f"{API}/matrix", params={"limit": 1, "offset": 2}, headers=h).json()["items"][0][
            "supplier_external_id"
        ]
        == "X"
    )
    assert client.get(f"{API}/matrix", params={"supplier": "X"}, headers=h).json()["total"] == 1
    assert client.get(f"{API}/matrix", params={"customer": "S"}, headers=h).json()["total"] == 1
    assert client.get(f"{API}/matrix", params={"department": "OPS"}, headers=h).json()["total"] == 2
    assert_problem(client.get(f"{API}/matrix", params={"supplier": "NOPE"}, headers=h), 404)

    r = client.get(f"{API}/matrix", headers={**h, "accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 3
    assert rows[2]["supplier_name"] == "'-Xavier"  # no formula injection in Excel
    assert rows[2]["supplier_department"] == "'=cmd|calc"
    assert rows[0]["customer_department"] == "Operations"
    # The download is a valid upload: nothing changes when it is sent back.
    back = client.post(IMPORT, content=r.content, headers={**h, **CSV_TYPE})
    assert back.status_code == 200, back.text
    assert (back.json()["unchanged"], back.json()["created"], back.json()["removed"]) == (3, 0, 0)


def test_matrix_import(client: TestClient, db: Session) -> None:
    s, a, _b, c = people(db, "S", "A", "B", "C")
    t = make_employee(db, external_id="T")
    link(db, supplier=s, customer=c)
    link(db, supplier=t, customer=a)
    h = headers(db)
    body = b"supplier_external_id,customer_external_id\nS,A\nS,B\nA,S\n"
    r = client.post(IMPORT, content=body, headers={**h, **CSV_TYPE})
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["removed"], r.json()["unchanged"]) == (3, 1, 0)
    # S's list is replaced; T is not in the file and keeps its customers.
    assert pairs(db) == {("S", "A"), ("S", "B"), ("A", "S"), ("T", "A")}
    again = client.post(IMPORT, content=body, headers={**h, **CSV_TYPE}).json()
    assert (again["created"], again["removed"], again["unchanged"]) == (0, 0, 3)
    full = client.post(
        IMPORT, content=body, params={"replace_all": "true"}, headers={**h, **CSV_TYPE}
    )
    assert full.json()["removed"] == 1
    assert pairs(db) == {("S", "A"), ("S", "B"), ("A", "S")}
    before = utcnow()
    as_json = client.post(
        IMPORT, json=[{"supplier_external_id": "B", "customer_external_id": "C"}], headers=h
    )
    assert as_json.json()["created"] == 1
    # The bulk insert writes the timestamp into the statement once (SQLite) or per row
    # (COPY): either way it reads back as the import's time.
    db.expire_all()
    created = db.scalars(select(MatrixLink.created_at).where(MatrixLink.supplier_id == _b.id)).one()
    assert before - timedelta(seconds=1) <= created <= utcnow() + timedelta(seconds=1)
    assert db.scalar(select(func.count()).where(MatrixLink.created_at == created)) == 1


def test_matrix_import_in_parts_reads_only_its_suppliers_links(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The links of the upload's suppliers are read a few suppliers per query: two here.
    monkeypatch.setattr(matrix_service, "_SUPPLIERS_PER_QUERY", 2)
    s1, s2, s3, a, _b = people(db, "S1", "S2", "S3", "A", "B")
    for supplier in (s1, s2, s3):
        link(db, supplier=supplier, customer=a)
    h = headers(db)
    # The first part of an HRIS's matrix: S1 to S3 now serve B instead of A.
    part = b"supplier_external_id,customer_external_id\nS1,B\nS2,B\nS3,B\n"
    r = client.post(IMPORT, content=part, headers={**h, **CSV_TYPE})
    assert (r.json()["created"], r.json()["removed"], r.json()["unchanged"]) == (3, 3, 0)
    # The second part names other suppliers: the first part's links stay.
    r = client.post(
        IMPORT,
        content=b"supplier_external_id,customer_external_id\nA,B\n",
        headers={**h, **CSV_TYPE},
    )
    assert (r.json()["created"], r.json()["removed"], r.json()["unchanged"]) == (1, 0, 0)
    assert pairs(db) == {("S1", "B"), ("S2", "B"), ("S3", "B"), ("A", "B")}
    # Sent again, every part is unchanged.
    again = client.post(IMPORT, content=part, headers={**h, **CSV_TYPE}).json()
    assert (again["created"], again["removed"], again["unchanged"]) == (0, 0, 3)


def test_matrix_import_is_all_or_nothing(client: TestClient, db: Session) -> None:
    s, a, _b, gone = people(db, "S", "A", "B", "GONE")
    gone.active = False
    link(db, supplier=s, customer=a)
    h = headers(db)
    before = pairs(db)
    body = (
        b"supplier_external_id,customer_external_id\n"
        b"S,B\n"  # fine
        b"S,S\n"  # self-rating
        b"S,GONE\n"  # inactive customer
        b"NOPE,A\n"  # unknown supplier
        b"S,B\n"  # repeat of line 2
        b"A,\n"  # missing customer
    )
    r = client.post(IMPORT, content=body, headers={**h, **CSV_TYPE})
    problem = assert_problem(r, 422)
    assert {(e["line"], e["field"]) for e in problem["errors"]} == {
        (3, "customer_external_id"),
        (4, "customer_external_id"),
        (5, "supplier_external_id"),
        (6, "row"),
        (7, "customer_external_id"),
    }
    assert pairs(db) == before
    dry = client.post(
        IMPORT,
        content=b"supplier_external_id,customer_external_id\nS,B\n",
        params={"dry_run": "true"},
        headers={**h, **CSV_TYPE},
    )
    assert dry.json()["created"] == 1 and dry.json()["removed"] == 1 and dry.json()["dry_run"]
    assert pairs(db) == before
    assert_problem(client.post(IMPORT, content=b"a,b\n", headers={**h, **CSV_TYPE}), 422)
    assert_problem(client.post(IMPORT, content=b"\xff\xfe\x00", headers={**h, **CSV_TYPE}), 422)
    assert_problem(
        client.post(IMPORT, content=b"x", headers={**h, "content-type": "image/png"}), 415
    )
    assert db.scalar(select(func.count()).select_from(MatrixLink)) == 1


def test_matrix_csv_neutralises_formula_like_ids_and_round_trips(
    client: TestClient, db: Session
) -> None:
    supplier = make_employee(db, external_id="=1+1", email="=2+2@x.io")
    customer = make_employee(db, external_id="@SUM(A1)")
    link(db, supplier=supplier, customer=customer)
    h = headers(db)
    r = client.get(f"{API}/matrix", headers={**h, "accept": "text/csv"})
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.text)))[1:]
    assert rows and all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    assert rows[0][0] == "'=1+1" and rows[0][3] == "'=2+2@x.io"
    back = client.post(IMPORT, content=r.content, headers={**h, **CSV_TYPE})
    assert back.status_code == 200, back.text
    assert (back.json()["unchanged"], back.json()["created"]) == (1, 0)
