"""The feedback report: an A4 document read back with pypdf, and a department's ZIP."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.reports import feedback
from tests.auth.helpers import sign_in
from tests.reports.factories import build_three_levels

A4 = (595.28, 841.89)  # points


@pytest.fixture
def data(db: Session) -> dict[str, Any]:
    t = build_three_levels(db, name="P-2026-Q3")
    db.commit()
    return t


def read(content: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(content))
    return reader, "\n".join(page.extract_text() for page in reader.pages)


def assert_a4(reader: PdfReader) -> None:
    for page in reader.pages:
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        assert (width, height) == (pytest.approx(A4[0], abs=0.5), pytest.approx(A4[1], abs=0.5))


def test_report_is_a4_with_a_designed_first_page(db: Session, data: dict[str, Any]) -> None:
    cycle, e1 = data["cycle"], data["e1"]
    report = feedback.feedback_report(db, cycle_id=cycle.id, employee_id=e1.id)
    assert report.filename == "feedback-e1-p-2026-q3.pdf"
    reader, text = read(report.content)
    assert len(reader.pages) >= 3
    assert_a4(reader)
    first = reader.pages[0].extract_text()
    for expected in ("FEEDBACK REPORT", "e1", "P-2026-Q3", "Customer-orientation coefficient"):
        assert expected in first, expected
    # e1 8.00 with sd 0; its department R rolls up 8, 7, 5 -> 6.67; the company 7.25
    assert "8.00" in first and "6.67" in first and "7.25" in first
    assert "Rank in the company" not in text  # off unless the organisation enables it
    assert "Competency profile" in text and "Trend over the closed cycles" in text
    assert "Always helps" in text  # the comments, together on one page
    assert reader.metadata is not None and "e1" in (reader.metadata.title or "")


def test_rank_only_when_enabled(db: Session, data: dict[str, Any]) -> None:
    report = feedback.feedback_report(
        db, cycle_id=data["cycle"].id, employee_id=data["e1"].id, show_rank=True
    )
    _reader, text = read(report.content)
    assert "Rank in the company" in text


def test_below_k_the_report_says_so_and_shows_nothing_else(
    db: Session, data: dict[str, Any]
) -> None:
    report = feedback.feedback_report(db, cycle_id=data["cycle"].id, employee_id=data["e4"].id)
    reader, text = read(report.content)
    assert len(reader.pages) == 1
    assert_a4(reader)
    assert "Not enough responses" in text
    assert "10.00" not in text and "Competency profile" not in text


def test_report_download_and_department_zip(
    client: TestClient, db: Session, data: dict[str, Any]
) -> None:
    sign_in(client, db)
    cycle = data["cycle"]
    r = client.get(f"/results/{cycle.id}/employees/{data['e2'].id}/report.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert 'filename="feedback-e2-p-2026-q3.pdf"' in r.headers["content-disposition"]
    r = client.get(f"/results/{cycle.id}/departments/{data['c1'].id}/reports.zip")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert "feedback-" in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        # C1 holds e2 and, below it in G1, e3 and e4 (e4 below k: a report saying so)
        assert sorted(archive.namelist()) == [
            "feedback-e2-p-2026-q3.pdf",
            "feedback-e3-p-2026-q3.pdf",
            "feedback-e4-p-2026-q3.pdf",
        ]
        assert_a4(PdfReader(io.BytesIO(archive.read("feedback-e3-p-2026-q3.pdf"))))


def test_department_zip_is_for_hr(client: TestClient, db: Session, data: dict[str, Any]) -> None:
    sign_in(client, db, role=Role.manager, employee=data["e1"])
    r = client.get(f"/results/{data['cycle'].id}/departments/{data['c1'].id}/reports.zip")
    assert r.status_code == 403


def test_department_zip_of_an_unknown_department(
    client: TestClient, db: Session, data: dict[str, Any]
) -> None:
    sign_in(client, db)
    r = client.get(f"/results/{data['cycle'].id}/departments/987654/reports.zip")
    assert r.status_code == 404
