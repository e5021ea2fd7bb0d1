"""Employee imports that must not lose rows or people: odd workbooks, hostile files, and
a full import that would deactivate a large part of the company."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.org import importing
from app.org.models import Employee
from app.uploads.parsing import XLSX_TYPE, SourceRow
from tests.factories import make_employee
from tests.org.test_api import assert_problem, headers
from tests.uploads.workbooks import wrong_dimension, zip_bomb

URL = "/api/v1/import/employees"
HEADER = ["external_id", "email", "full_name"]
CSV_TYPE = {"content-type": "text/csv"}


def people(count: int, *, start: int = 1) -> list[list[str]]:
    return [[f"E{i}", f"e{i}@x.io", f"Person {i}"] for i in range(start, start + count)]


def as_csv(rows: list[list[str]]) -> bytes:
    return "\n".join(",".join(row) for row in [HEADER, *rows]).encode() + b"\n"


def active_ids(db: Session) -> set[str]:
    db.expire_all()
    return set(db.scalars(select(Employee.external_id).where(Employee.active)))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bytes]:
    path = zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.xlsx", unpacked_mib=300)
    yield path.read_bytes()
    path.unlink()


def test_wrong_dimension_workbook_with_deactivate_missing_keeps_everyone_in_it(
    client: TestClient, db: Session
) -> None:
    h = headers(db)
    company = people(500)
    leavers = people(3, start=501)
    assert (
        client.post(URL, content=as_csv(company + leavers), headers={**h, **CSV_TYPE}).json()[
            "created"
        ]
        == 503
    )
    # The export tool wrote <dimension ref="A1:D101"/> on a 500-row sheet.
    data = wrong_dimension([HEADER, *company], "A1:D101")
    r = client.post(
        URL,
        content=data,
        params={"deactivate_missing": "true"},
        headers={**h, "content-type": XLSX_TYPE},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["rows"], r.json()["unchanged"], r.json()["deactivated"]) == (500, 500, 3)
    assert active_ids(db) == {row[0] for row in company}


def test_mass_deactivation_is_refused_unless_confirmed(client: TestClient, db: Session) -> None:
    h = headers(db)
    assert (
        client.post(URL, content=as_csv(people(10)), headers={**h, **CSV_TYPE}).status_code == 200
    )
    before = active_ids(db)
    seven = as_csv(people(7))  # 3 of 10 left out: 30% > IMPORT_MAX_DEACTIVATE_FRACTION (20%)

    refused = client.post(
        URL, content=seven, params={"deactivate_missing": "true"}, headers={**h, **CSV_TYPE}
    )
    problem = assert_problem(refused, 409)
    assert "deactivate 3 of 10 active employees" in problem["detail"]
    assert "IMPORT_MAX_DEACTIVATE_FRACTION" in problem["detail"]
    assert "confirm_mass_deactivation=true" in problem["detail"]
    assert (problem["deactivated"], problem["active"]) == (3, 10)
    assert active_ids(db) == before

    dry = client.post(
        URL,
        content=seven,
        params={"deactivate_missing": "true", "dry_run": "true"},
        headers={**h, **CSV_TYPE},
    )
    assert dry.status_code == 200, dry.text
    assert (dry.json()["deactivated"], dry.json()["needs_confirmation"]) == (3, True)
    assert active_ids(db) == before

    confirmed = client.post(
        URL,
        content=seven,
        params={"deactivate_missing": "true", "confirm_mass_deactivation": "true"},
        headers={**h, **CSV_TYPE},
    )
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["deactivated"], confirmed.json()["needs_confirmation"]) == (3, False)
    assert active_ids(db) == {f"E{i}" for i in range(1, 8)}


def test_deactivating_up_to_the_fraction_needs_no_confirmation(
    client: TestClient, db: Session
) -> None:
    h = headers(db)
    assert (
        client.post(URL, content=as_csv(people(10)), headers={**h, **CSV_TYPE}).status_code == 200
    )
    r = client.post(
        URL,
        content=as_csv(people(8)),
        params={"deactivate_missing": "true"},
        headers={**h, **CSV_TYPE},
    )
    assert r.status_code == 200, r.text  # 2 of 10 is exactly 20%
    assert (r.json()["deactivated"], r.json()["needs_confirmation"]) == (2, False)


def test_the_fraction_is_the_caller_s_setting(db: Session) -> None:
    for i in range(4):
        make_employee(db, external_id=f"K{i}")
    rows = [SourceRow(2, {"external_id": "K0", "email": "k0@x.io", "full_name": "K"})]
    with pytest.raises(Conflict):
        importing.import_employees(
            db, rows=rows, deactivate_missing=True, max_deactivate_fraction=0.5
        )
    report = importing.import_employees(
        db, rows=rows, deactivate_missing=True, max_deactivate_fraction=0.75
    )
    assert report.deactivated == 3
    assert db.scalar(select(func.count()).select_from(Employee).where(Employee.active)) == 1


def test_zip_bomb_is_refused_fast_through_the_api(
    client: TestClient, db: Session, bomb: bytes
) -> None:
    h = headers(db)
    started = time.perf_counter()
    r = client.post(URL, content=bomb, headers={**h, "content-type": XLSX_TYPE})
    elapsed = time.perf_counter() - started
    problem = assert_problem(r, 413)
    assert problem["limit"] == "XLSX_MAX_UNPACKED_BYTES"
    assert "XLSX_MAX_UNPACKED_BYTES" in problem["detail"]
    assert elapsed < 3, elapsed  # was 49 s and 1.3 GB


def test_wide_csv_header_is_refused_fast_through_the_api(client: TestClient, db: Session) -> None:
    h = headers(db)
    header = ",".join(HEADER + [f"c{i}" for i in range(100_000)])
    started = time.perf_counter()
    r = client.post(URL, content=(header + "\nE1,a@x.io,A\n").encode(), headers={**h, **CSV_TYPE})
    elapsed = time.perf_counter() - started
    problem = assert_problem(r, 422)
    assert problem["limit"] == "UPLOAD_MAX_COLUMNS" and "UPLOAD_MAX_COLUMNS" in problem["detail"]
    assert elapsed < 3, elapsed  # was 154 s of CPU


def test_problems_stop_at_the_limit_and_say_so(client: TestClient, db: Session) -> None:
    h = headers(db)
    bad = [[f"E{i}", "not-an-email", "N"] for i in range(5000)]
    r = client.post(URL, content=as_csv(bad), headers={**h, **CSV_TYPE})
    problem = assert_problem(r, 422)
    assert len(problem["errors"]) == 1000 and problem["error_count"] == 1000
    assert problem["error_count_is_complete"] is False
    assert "stopped after 1000 problems" in problem["detail"]
    assert db.scalar(select(func.count()).select_from(Employee)) == 0
