"""HR screens for the matrix: edit a supplier's customers, reverse view, import, export."""

from __future__ import annotations

import io
import re
from pathlib import Path

from fastapi.testclient import TestClient
from httpx import Response
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry, Role
from app.matrix.models import MatrixLink
from app.org.models import Employee
from tests.auth.helpers import SignedIn, sign_in
from tests.factories import link, make_department, make_employee
from tests.uploads.workbooks import zip_bomb

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _links(db: Session) -> set[tuple[int, int]]:
    return {(s, c) for s, c in db.execute(select(MatrixLink.supplier_id, MatrixLink.customer_id))}


def _people(db: Session) -> dict[str, Employee]:
    dept = make_department(db, name="Finance")
    return {
        name: make_employee(db, department=dept, full_name=name, external_id=ext)
        for name, ext in (
            ("Ada Supplier", "S1"),
            ("Bob Customer", "C1"),
            ("Cid Customer", "C2"),
            ("Dee Other", "C3"),
        )
    }


def test_overview_lists_people_with_counts_and_search(client: TestClient, db: Session) -> None:
    p = _people(db)
    link(db, supplier=p["Ada Supplier"], customer=p["Bob Customer"])
    sign_in(client, db)
    r = client.get("/matrix")
    assert r.status_code == 200
    assert "Ada Supplier" in r.text and "1 customer" in r.text
    assert f'href="/matrix/suppliers/{p["Ada Supplier"].id}"' in r.text
    r = client.get("/matrix", params={"q": "cid"})
    assert "Cid Customer" in r.text and "Ada Supplier" not in r.text
    r = client.get("/matrix", params={"q": "bad\x00"})
    assert r.status_code == 200 and 'aria-invalid="true"' in r.text


def test_add_a_customer_through_the_search_box(client: TestClient, db: Session) -> None:
    p = _people(db)
    ada, bob = p["Ada Supplier"], p["Bob Customer"]
    signed = sign_in(client, db)
    r = client.get(f"/matrix/suppliers/{ada.id}", params={"q": "customer"})
    assert r.status_code == 200
    assert "Bob Customer" in r.text and "Cid Customer" in r.text
    assert "Dee Other" not in r.text
    # The supplier never appears as a candidate for themselves.
    assert re.search(f'name="customer_id" value="{ada.id}"', r.text) is None

    r = client.post(
        f"/matrix/suppliers/{ada.id}/customers",
        data={"csrf_token": signed.csrf, "customer_id": str(bob.id), "q": "customer"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/matrix/suppliers/{ada.id}?q=customer&notice=link-added"
    assert _links(db) == {(ada.id, bob.id)}
    page = client.get(r.headers["location"])
    assert "Customer added." in page.text
    r = client.post(
        f"/matrix/suppliers/{ada.id}/customers",
        data={"csrf_token": signed.csrf, "customer_id": str(p["Cid Customer"].id), "q": "a&b=c"},
        follow_redirects=False,
    )
    assert r.headers["location"] == f"/matrix/suppliers/{ada.id}?q=a%26b%3Dc&notice=link-added"
    # Bob is now listed as a customer and no longer offered.
    assert not re.search(f'name="customer_id" value="{bob.id}"', page.text)
    entries = list(db.scalars(select(AuditEntry).where(AuditEntry.entity == "matrix")))
    assert [(e.action, e.entity_id) for e in entries] == [
        ("add customer", "S1<-C1"),
        ("add customer", "S1<-C2"),
    ]


def test_add_refuses_self_duplicate_inactive_and_junk(client: TestClient, db: Session) -> None:
    p = _people(db)
    ada, bob, dee = p["Ada Supplier"], p["Bob Customer"], p["Dee Other"]
    link(db, supplier=ada, customer=bob)
    dee.active = False
    signed = sign_in(client, db)
    cases = [
        (str(ada.id), 422, "rate themselves"),
        (str(bob.id), 409, "already rates"),
        (str(dee.id), 422, "not active"),
        ("abc", 422, "Choose a customer"),
        ("99999", 404, "No employee"),
    ]
    for customer_id, status, text in cases:
        r = client.post(
            f"/matrix/suppliers/{ada.id}/customers",
            data={"csrf_token": signed.csrf, "customer_id": customer_id},
        )
        assert r.status_code == status, (customer_id, r.status_code)
        assert text in r.text
        assert 'id="add-error"' in r.text
    assert _links(db) == {(ada.id, bob.id)}


def test_remove_asks_for_confirmation(client: TestClient, db: Session) -> None:
    p = _people(db)
    ada, bob = p["Ada Supplier"], p["Bob Customer"]
    link(db, supplier=ada, customer=bob)
    signed = sign_in(client, db)
    url = f"/matrix/suppliers/{ada.id}/customers/{bob.id}/remove"
    confirm = client.get(url)
    assert "Remove Bob Customer as a customer of Ada Supplier?" in confirm.text
    assert _links(db) == {(ada.id, bob.id)}
    r = client.post(url, data={}, follow_redirects=False)
    assert r.status_code == 403 and _links(db) == {(ada.id, bob.id)}
    r = client.post(url, data={"csrf_token": signed.csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert _links(db) == set()


def test_reverse_view_shows_whom_a_customer_rates(client: TestClient, db: Session) -> None:
    p = _people(db)
    link(db, supplier=p["Ada Supplier"], customer=p["Bob Customer"])
    link(db, supplier=p["Cid Customer"], customer=p["Bob Customer"])
    sign_in(client, db)
    r = client.get(f"/matrix/customers/{p['Bob Customer'].id}")
    assert r.status_code == 200
    assert "Whom Bob Customer rates" in r.text
    assert "Ada Supplier" in r.text and "Cid Customer" in r.text and "Dee Other" not in r.text
    assert client.get("/matrix/customers/999999").status_code == 404


def _upload(
    client: TestClient, signed: SignedIn, content: bytes, *, name: str = "m.csv", **extra: str
) -> Response:
    ctype = XLSX if name.endswith(".xlsx") else "text/csv"
    return client.post(
        "/matrix/import",
        data={"csrf_token": signed.csrf, **extra},
        files={"file": (name, content, ctype)},
    )


def test_import_preview_lists_every_bad_row_and_saves_nothing(
    client: TestClient, db: Session
) -> None:
    p = _people(db)
    signed = sign_in(client, db)
    csv_text = (
        "supplier_external_id,customer_external_id\n"
        "S1,C1\n"
        "S1,S1\n"  # self-rating
        "S1,NOPE\n"  # unknown
        "S1,C1\n"  # repeat
        ",C2\n"  # missing
    )
    r = _upload(client, signed, csv_text.encode())
    assert r.status_code == 422
    html = r.text
    assert "Nothing was saved" in html
    rows = re.findall(r'<tr><td class="num">(\d+)</td>', html)
    assert rows == ["3", "4", "5", "6"]
    assert "unknown employee" in html and "themselves" in html and "repeats line 2" in html
    assert _links(db) == set()
    assert p  # the company exists; the file was wrong


def test_import_preview_then_confirm_saves_and_audits(client: TestClient, db: Session) -> None:
    p = _people(db)
    ada, bob, cid, dee = (
        p[n] for n in ("Ada Supplier", "Bob Customer", "Cid Customer", "Dee Other")
    )
    link(db, supplier=ada, customer=dee)  # not in the file: removed for supplier S1
    link(db, supplier=cid, customer=dee)  # another supplier: kept (no replace_all)
    signed = sign_in(client, db)
    r = _upload(
        client, signed, b"\xef\xbb\xbfsupplier_external_id;customer_external_id\nS1;C1\nS1;C2\n"
    )
    html = r.text
    assert r.status_code == 200, html
    assert "All 2 rows are valid" in html
    assert re.search(r'<span class="stat">2</span><span class="stat-label">links to add', html)
    assert re.search(r'<span class="stat">1</span><span class="stat-label">links to remove', html)
    assert "Dee Other → no longer rates Ada Supplier" in html
    assert _links(db) == {(ada.id, dee.id), (cid.id, dee.id)}  # dry run only

    payload = re.search(r'name="payload" value="([^"]+)"', html)
    assert payload
    r = client.post(
        "/matrix/import/confirm",
        data={"csrf_token": signed.csrf, "payload": payload.group(1), "filename": "m.csv"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert _links(db) == {(ada.id, bob.id), (ada.id, cid.id), (cid.id, dee.id)}
    entry = db.scalar(select(AuditEntry).where(AuditEntry.action == "import"))
    assert entry is not None and "2 added, 1 removed" in (entry.detail or "")


def test_import_whole_matrix_from_xlsx(client: TestClient, db: Session) -> None:
    p = _people(db)
    ada, bob, cid, dee = (
        p[n] for n in ("Ada Supplier", "Bob Customer", "Cid Customer", "Dee Other")
    )
    link(db, supplier=cid, customer=dee)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["supplier_external_id", "customer_external_id"])
    ws.append(["S1", "C1"])
    buf = io.BytesIO()
    wb.save(buf)
    signed = sign_in(client, db)
    r = _upload(client, signed, buf.getvalue(), name="matrix.xlsx", replace_all="on")
    html = r.text
    assert r.status_code == 200, html
    assert 'name="replace_all" value="on"' in html
    payload = re.search(r'name="payload" value="([^"]+)"', html)
    assert payload
    client.post(
        "/matrix/import/confirm",
        data={"csrf_token": signed.csrf, "payload": payload.group(1), "replace_all": "on"},
    )
    assert _links(db) == {(ada.id, bob.id)}
    assert dee and bob


def test_import_refuses_unreadable_files(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    r = client.post("/matrix/import", data={"csrf_token": signed.csrf})
    assert r.status_code == 422 and 'id="file-error"' in r.text
    for name, content in (
        ("m.csv", b""),
        ("m.csv", b"\xff\xfe\x00garbage"),
        ("m.xlsx", b"not a zip"),
        ("m.pdf", b"%PDF-1.4"),
        ("m.csv", b"wrong,header\n1,2\n"),
    ):
        r = _upload(client, signed, content, name=name)
        assert r.status_code == 422, name
    r = client.post(
        "/matrix/import/confirm", data={"csrf_token": signed.csrf, "payload": "%%%not-base64"}
    )
    assert r.status_code == 422 and "Upload it again" in r.text
    assert db.scalar(select(func.count()).select_from(MatrixLink)) == 0


def test_export_csv_and_xlsx_round_trip(client: TestClient, db: Session) -> None:
    p = _people(db)
    p["Dee Other"].full_name = "=HYPERLINK(1)"
    link(db, supplier=p["Ada Supplier"], customer=p["Bob Customer"])
    link(db, supplier=p["Ada Supplier"], customer=p["Dee Other"])
    signed = sign_in(client, db)
    r = client.get("/matrix/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    lines = r.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("supplier_external_id,customer_external_id")
    assert any(line.startswith("S1,C1,Ada Supplier") for line in lines)
    assert "'=HYPERLINK(1)" in r.text  # no formula when opened in a spreadsheet

    x = client.get("/matrix/export.xlsx")
    assert x.headers["content-type"] == XLSX
    sheet = load_workbook(io.BytesIO(x.content)).active
    assert sheet is not None
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0][:2] == ["supplier_external_id", "customer_external_id"]
    assert ["S1", "C1"] in [v[:2] for v in values]
    assert "=HYPERLINK(1)" in [v[6] for v in values]
    assert all(c.data_type == "s" for row in sheet.iter_rows(min_row=2) for c in row if c.value)

    # The download is a valid upload: nothing to change.
    r2 = _upload(client, signed, r.content)
    assert r2.status_code == 200
    assert re.search(r'<span class="stat">2</span><span class="stat-label">unchanged', r2.text)


def test_manager_cannot_open_matrix_pages(client: TestClient, db: Session) -> None:
    sign_in(client, db, role=Role.manager, employee=make_employee(db))
    for url in ("/matrix", "/matrix/import", "/matrix/export.csv"):
        assert client.get(url).status_code == 403


def test_import_page_refuses_a_zip_bomb_naming_the_limit(
    client: TestClient, db: Session, tmp_path: Path
) -> None:
    signed = sign_in(client, db)
    # 30 MiB of sheet XML in about 120 KB: under the size limits, not a spreadsheet.
    bomb = zip_bomb(tmp_path / "bomb.xlsx", unpacked_mib=30).read_bytes()
    r = _upload(client, signed, bomb, name="matrix.xlsx")
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("text/html")
    assert 'id="file-error"' in r.text and "XLSX_MAX_COMPRESSION_RATIO" in r.text
    wide = ("supplier_external_id,customer_external_id," + ",".join(["x"] * 5000)).encode()
    r = _upload(client, signed, wide + b"\nA,B\n")
    assert r.status_code == 422 and "UPLOAD_MAX_COLUMNS" in r.text
    assert db.scalar(select(func.count()).select_from(MatrixLink)) == 0
