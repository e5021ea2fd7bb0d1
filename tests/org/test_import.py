"""Bulk employee import: all or nothing, every error listed, idempotent, robust parsing."""

from __future__ import annotations

import io
import json

from fastapi.testclient import TestClient
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.matrix.models import MatrixLink
from app.org.models import Employee
from app.uploads import parsing
from tests.factories import link, make_department, make_employee
from tests.org.test_api import assert_problem, headers

URL = "/api/v1/import/employees"
HEADER = "external_id,email,full_name,department_external_id,manager_external_id,language,active"
CSV_TYPE = {"content-type": "text/csv"}
COLUMNS = HEADER.split(",")
REQUIRED = COLUMNS[:3]


def csv_body(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def post(client: TestClient, h: dict[str, str], body: bytes, **params: object):  # type: ignore[no-untyped-def]
    return client.post(URL, content=body, params=params, headers={**h, **CSV_TYPE})


def snapshot(db: Session) -> list[tuple[object, ...]]:
    db.expire_all()
    return [
        tuple(r)
        for r in db.execute(
            select(
                Employee.external_id,
                Employee.email,
                Employee.full_name,
                Employee.department_id,
                Employee.manager_id,
                Employee.language,
                Employee.active,
            ).order_by(Employee.external_id)
        )
    ]


def test_csv_import_creates_then_is_idempotent(client: TestClient, db: Session) -> None:
    make_department(db, external_id="OPS")
    h = headers(db)
    body = csv_body(
        # E1's manager E3 only appears further down the file.
        "E1,Anna@Example.com,Anna Ivanova,OPS,E3,ru,true",
        "E2,boris@example.com,Boris Novak,OPS,E1,,",
        "E3,chen@example.com,Chen Li,,,en,yes",
    )
    r = post(client, h, body)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "rows": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "deactivated": 0,
        "removed": 0,
        "dry_run": False,
        "needs_confirmation": False,
    }
    rows = {e["external_id"]: e for e in client.get("/api/v1/employees", headers=h).json()["items"]}
    assert rows["E1"]["email"] == "anna@example.com"
    assert rows["E1"]["manager_external_id"] == "E3"
    assert rows["E2"]["manager_external_id"] == "E1"
    assert rows["E2"]["language"] == "en"
    before = snapshot(db)

    again = post(client, h, body)
    assert again.json()["unchanged"] == 3
    assert again.json()["created"] == again.json()["updated"] == 0
    assert snapshot(db) == before


def test_import_updates_and_counts(client: TestClient, db: Session) -> None:
    make_employee(db, external_id="E1", email="a@example.com", full_name="A")
    make_employee(db, external_id="E2", email="b@example.com", full_name="B")
    h = headers(db)
    r = post(
        client,
        h,
        csv_body("E1,a@example.com,A renamed,,,,", "E2,b@example.com,B,,,,", "E3,c@x.io,C,,,,"),
    )
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (1, 1, 1)


def test_bad_batch_changes_nothing_and_lists_every_error(client: TestClient, db: Session) -> None:
    make_department(db, external_id="OPS")
    make_employee(db, external_id="OLD", email="taken@example.com", full_name="Old")
    h = headers(db)
    before = snapshot(db)
    r = post(
        client,
        h,
        csv_body(
            "E1,good@example.com,Good Row,OPS,,en,true",
            "E2,not-an-email,Bad Email,OPS,,,",
            "E3,x3@example.com,Unknown Dept,NOPE,,,",
            "E4,TAKEN@example.com,Duplicate Email,,,,",
            "E5,x5@example.com,Self Manager,,E5,,",
            "E6,x6@example.com,Unknown Manager,,GHOST,,",
            "E1,x7@example.com,Repeated Id,,,,",
            "E8,good@example.com,Repeated Email,,,,",
            "E9,x9@example.com,,,,,",
            "E10,x10@example.com,Bad Flag,,,,perhaps",
            "E11,x11@example.com,Bad Language,,,english!,",
        ),
    )
    body = assert_problem(r, 422)
    found = {(e["line"], e["field"]) for e in body["errors"]}
    assert found == {
        (3, "email"),
        (4, "department_external_id"),
        (5, "email"),
        (6, "manager_external_id"),
        (7, "manager_external_id"),
        (8, "external_id"),
        (9, "email"),
        (10, "full_name"),
        (11, "active"),
        (12, "language"),
    }
    assert body["error_count"] == 10
    assert "nothing was saved" in body["detail"]
    assert snapshot(db) == before  # all or nothing


def test_reporting_loop_in_file_is_refused(client: TestClient, db: Session) -> None:
    h = headers(db)
    r = post(client, h, csv_body("A,a@x.io,A,,B,,", "B,b@x.io,B,,C,,", "C,c@x.io,C,,A,,"))
    body = assert_problem(r, 422)
    assert {e["line"] for e in body["errors"]} == {2, 3, 4}
    assert db.scalar(select(func.count()).select_from(Employee)) == 0


def test_deactivate_missing(client: TestClient, db: Session) -> None:
    stay = make_employee(db, external_id="STAY", email="stay@x.io", full_name="Stay")
    gone = make_employee(db, external_id="GONE")
    make_employee(db, external_id="ALREADY", active=False)
    link(db, supplier=stay, customer=gone)
    link(db, supplier=gone, customer=stay)
    h = headers(db)
    # Without the option, missing employees are left alone.
    assert post(client, h, csv_body("STAY,stay@x.io,Stay,,,,")).json()["deactivated"] == 0
    # One of two active employees is more than IMPORT_MAX_DEACTIVATE_FRACTION (20%).
    r = post(
        client,
        h,
        csv_body("STAY,stay@x.io,Stay,,,,"),
        deactivate_missing="true",
        confirm_mass_deactivation="true",
    )
    assert r.json()["deactivated"] == 1
    assert r.json()["unchanged"] == 1
    db.expire_all()
    assert db.get(Employee, gone.id).active is False  # type: ignore[union-attr]
    assert db.scalar(select(func.count()).select_from(MatrixLink)) == 0
    again = post(client, h, csv_body("STAY,stay@x.io,Stay,,,,"), deactivate_missing="true")
    assert again.json()["deactivated"] == 0


def test_dry_run_writes_nothing(client: TestClient, db: Session) -> None:
    make_employee(db, external_id="E1")
    h = headers(db)
    before = snapshot(db)
    r = post(client, h, csv_body("E2,b@x.io,B,,,,"), dry_run="true", deactivate_missing="true")
    assert r.status_code == 200
    assert r.json()["created"] == 1
    assert r.json()["deactivated"] == 1
    assert r.json()["dry_run"] is True
    assert snapshot(db) == before
    bad = post(client, h, csv_body("E2,bad,B,,,,"), dry_run="true")
    assert assert_problem(bad, 422)["errors"][0]["line"] == 2


def test_emails_can_move_between_employees(client: TestClient, db: Session) -> None:
    make_employee(db, external_id="A", email="one@x.io", full_name="A")
    make_employee(db, external_id="B", email="two@x.io", full_name="B")
    h = headers(db)
    r = post(client, h, csv_body("A,two@x.io,A,,,,", "B,one@x.io,B,,,,", "C,three@x.io,C,,,,"))
    assert r.status_code == 200, r.text
    emails = {ext: email for ext, email, *_ in snapshot(db)}
    assert emails == {"A": "two@x.io", "B": "one@x.io", "C": "three@x.io"}


def test_json_import(client: TestClient, db: Session) -> None:
    h = headers(db)
    rows = [
        {"external_id": "E1", "email": "a@x.io", "full_name": "A", "active": True},
        {"external_id": 2, "email": "b@x.io", "full_name": "B", "manager_external_id": "E1"},
    ]
    r = client.post(URL, json=rows, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 2
    bad = client.post(
        URL,
        json=[{"external_id": "E3", "email": "c@x.io", "full_name": ["C"], "colour": "red"}, 5],
        headers=h,
    )
    errors = {(e["line"], e["field"]) for e in assert_problem(bad, 422)["errors"]}
    assert errors == {(1, "full_name"), (1, "colour"), (2, "row")}
    assert_problem(client.post(URL, json={"external_id": "E1"}, headers=h), 422)
    assert_problem(
        client.post(URL, content=b"[{]", headers={**h, "content-type": "application/json"}), 422
    )
    deep = b"[" * 100_000 + b"]" * 100_000
    assert_problem(
        client.post(URL, content=deep, headers={**h, "content-type": "application/json"}), 422
    )


def test_malformed_csv(client: TestClient, db: Session) -> None:
    h = headers(db)
    unterminated = (HEADER + '\nE1,"a@x.io,A,,,,\n').encode()
    body = assert_problem(post(client, h, unterminated), 422)
    assert "malformed" in body["detail"].lower()
    stray_quote = (HEADER + '\nE1,a@x.io,"A"B,,,,\n').encode()
    assert_problem(post(client, h, stray_quote), 422)
    too_many = csv_body("E1,a@x.io,A,,,,,extra")
    errors = assert_problem(post(client, h, too_many), 422)["errors"]
    assert errors[0]["line"] == 2
    no_header = b"E1,a@x.io,A\n"
    assert "header" in assert_problem(post(client, h, no_header), 422)["detail"]
    misspelt = b"external_id,email,full_name,manger_external_id\nE1,a@x.io,A,\n"
    assert "manger_external_id" in assert_problem(post(client, h, misspelt), 422)["detail"]
    huge_field = csv_body("E1,a@x.io," + "x" * 200_000 + ",,,,")
    assert_problem(post(client, h, huge_field), 422)
    long_name = csv_body("E1,a@x.io," + "x" * 5000 + ",,,,")
    assert assert_problem(post(client, h, long_name), 422)["errors"][0]["field"] == "full_name"
    nul = csv_body("E1,a@x.io,A\x00B,,,,")
    assert_problem(post(client, h, nul), 422)
    assert db.scalar(select(func.count()).select_from(Employee)) == 0


def test_encodings(client: TestClient, db: Session) -> None:
    h = headers(db)
    latin1 = csv_body("E1,a@x.io,José Müller,,,,").decode().encode("latin-1")
    body = assert_problem(post(client, h, latin1), 422)
    assert "UTF-8" in body["detail"] and "line 2" in body["detail"]
    # Declared encodings are honoured; a BOM (Excel's "CSV UTF-8") is fine.
    cyrillic = csv_body("E1,a@x.io,Иван Петров,,,ru,").decode().encode("windows-1251")
    r = client.post(
        URL, content=cyrillic, headers={**h, "content-type": "text/csv; charset=windows-1251"}
    )
    assert r.status_code == 200, r.text
    bom = b"\xef\xbb\xbf" + csv_body("E2,b@x.io,Борис,,,,")
    assert post(client, h, bom).status_code == 200
    names = {ext: name for ext, _e, name, *_ in snapshot(db)}
    assert names == {"E1": "Иван Петров", "E2": "Борис"}
    unknown = client.post(
        URL, content=latin1, headers={**h, "content-type": "text/csv; charset=klingon"}
    )
    assert_problem(unknown, 415)


def test_semicolon_csv(client: TestClient, db: Session) -> None:
    h = headers(db)
    r = post(client, h, b'external_id;email;full_name\nE1;a@x.io;"Ivanova; Anna"\n')
    assert r.status_code == 200, r.text
    assert snapshot(db)[0][2] == "Ivanova; Anna"


def test_content_type_and_body_checks(client: TestClient, db: Session) -> None:
    h = headers(db)
    body = csv_body("E1,a@x.io,A,,,,")
    assert_problem(client.post(URL, content=body, headers={**h, "content-type": "text/plain"}), 415)
    assert_problem(client.post(URL, content=body, headers=h), 415)
    assert_problem(client.post(URL, content=b"", headers={**h, **CSV_TYPE}), 422)
    assert_problem(client.post(URL, content=HEADER.encode(), headers={**h, **CSV_TYPE}), 422)
    assert_problem(client.post(URL, json=[], headers=h), 422)


def test_oversized_body_is_413(client: TestClient, db: Session) -> None:
    h = headers(db)
    big = csv_body(*[f"E{i},e{i}@example.com,{'N' * 100}" for i in range(90_000)])
    assert len(big) > 10 * 1024 * 1024
    assert_problem(post(client, h, big), 413)
    assert db.scalar(select(func.count()).select_from(Employee)) == 0


def _xlsx(rows: list[list[object]]) -> bytes:
    wb = Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_xlsx_import(client: TestClient, db: Session) -> None:
    h = headers(db)
    data = _xlsx(
        [
            ["external_id", "email", "full_name", "active"],
            [1001, "a@x.io", "Anna", True],
            [None, None, None, None],
            ["E2", "b@x.io", "Boris", "false"],
        ]
    )
    r = client.post(URL, content=data, headers={**h, "content-type": parsing.XLSX_TYPE})
    assert r.status_code == 200, r.text
    assert [(ext, active) for ext, *_rest, active in snapshot(db)] == [
        ("1001", True),
        ("E2", False),
    ]
    bad = client.post(
        URL, content=b"PK\x03\x04 not really", headers={**h, "content-type": parsing.XLSX_TYPE}
    )
    assert "Excel" in assert_problem(bad, 422)["detail"]


def test_parse_xlsx_reports_sheet_rows() -> None:
    data = _xlsx([["external_id", "email", "full_name"], ["E1", "a@x.io", "A"], ["E2", "b", "B"]])
    parsed = parsing.parse_upload(
        data, content_type=parsing.XLSX_TYPE, columns=COLUMNS, required=REQUIRED
    )
    assert [row.line for row in parsed.rows] == [2, 3]
    assert parsed.rows[1].values == {"external_id": "E2", "email": "b", "full_name": "B"}


def test_json_error_positions_are_items() -> None:
    text = json.dumps([{"external_id": "E1"}, {"external_id": "E2", "nope": 1}])
    parsed = parsing.parse_upload(
        text.encode(), content_type="application/json", columns=COLUMNS, required=REQUIRED
    )
    assert parsed.errors == [{"line": 2, "field": "nope", "message": "unknown field"}]
