"""Every table as CSV and XLSX, with the same suppression as the pages."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.reports import exports
from tests.reports.factories import build_three_levels


def read_csv(data: bytes) -> list[dict[str, str]]:
    assert data.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def read_xlsx(data: bytes) -> list[dict[str, Any]]:
    sheet = load_workbook(io.BytesIO(data), read_only=True).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    header = rows[0]
    # Trailing empty cells are not written, so a row may be shorter than the header.
    return [
        dict(zip(header, row + (None,) * (len(header) - len(row)), strict=True)) for row in rows[1:]
    ]


@pytest.mark.parametrize("table", exports.TABLES)
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_every_table_in_both_formats(db: Session, table: str, fmt: str) -> None:
    t = build_three_levels(db)
    content, media_type, name = exports.export(db, cycle_id=t["cycle"].id, name=table, fmt=fmt)
    assert name.endswith(f"-{table}.{fmt}")
    assert media_type == exports.FORMATS[fmt]
    rows = read_csv(content) if fmt == "csv" else read_xlsx(content)
    assert rows or table == "decliners"  # a first cycle has nobody to compare
    text = content.decode("utf-8", "replace") if fmt == "csv" else str(rows)
    assert "secret praise" not in text


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_employee_below_k_exports_only_its_status(db: Session, fmt: str) -> None:
    t = build_three_levels(db)
    content, _, _ = exports.export(db, cycle_id=t["cycle"].id, name="employees", fmt=fmt)
    rows = read_csv(content) if fmt == "csv" else read_xlsx(content)
    if fmt == "xlsx":  # human headers: map them back to the keys
        keys = {label: key for key, label in exports.LABELS.items()}
        rows = [{keys.get(k, k): v for k, v in r.items()} for r in rows]
    by_name = {r["name"]: r for r in rows}
    hidden = by_name["e4"]
    assert hidden["status"] == "not enough responses"
    empty = "" if fmt == "csv" else None
    for column in (
        "raters",
        "coefficient",
        "sd",
        "ci_low",
        "ci_high",
        "nps",
        "nps_answers",
        "company_rank",
        "Quality",
    ):
        assert hidden[column] == empty, column
    assert float(by_name["e2"]["coefficient"]) == 7.0
    assert float(by_name["e2"]["Quality"]) == 7.0
    leaders = read_csv(exports.export(db, cycle_id=t["cycle"].id, name="leaderboard", fmt="csv")[0])
    assert [r["name"] for r in leaders] == ["e5", "e1", "e2", "e3"]


def test_department_and_heatmap_exports(db: Session) -> None:
    t = build_three_levels(db)
    rows = read_csv(exports.export(db, cycle_id=t["cycle"].id, name="departments", fmt="csv")[0])
    grandchild = next(r for r in rows if r["department"] == "Grandchild")
    assert grandchild["coefficient"] == "5.0" and grandchild["employees_included"] == "1"
    heat = read_csv(exports.export(db, cycle_id=t["cycle"].id, name="heatmap", fmt="csv")[0])
    assert {r["department"]: r["Quality"] for r in heat}["Child"] == "6.0"


def test_spreadsheet_formulas_are_neutralised(db: Session) -> None:
    t = build_three_levels(db)
    t["e1"].full_name = '=HYPERLINK("http://evil")'
    from app.cycles.models import CycleEmployee

    snap = db.get(CycleEmployee, (t["cycle"].id, t["e1"].id))
    assert snap is not None
    snap.full_name = '=HYPERLINK("http://evil")'
    db.flush()
    rows = read_csv(exports.export(db, cycle_id=t["cycle"].id, name="employees", fmt="csv")[0])
    assert any(r["name"] == '\'=HYPERLINK("http://evil")' for r in rows)
    sheet = load_workbook(
        io.BytesIO(exports.export(db, cycle_id=t["cycle"].id, name="employees", fmt="xlsx")[0])
    ).active
    assert sheet is not None
    cells = [
        c
        for row in sheet.iter_rows()
        for c in row
        if isinstance(c.value, str) and "HYPERLINK" in c.value
    ]
    assert cells and all(c.data_type == "s" for c in cells)


def test_unknown_table_or_format(db: Session) -> None:
    t = build_three_levels(db)
    with pytest.raises(NotFound):
        exports.export(db, cycle_id=t["cycle"].id, name="ballots", fmt="csv")
    with pytest.raises(NotFound):
        exports.export(db, cycle_id=t["cycle"].id, name="employees", fmt="json")


def test_xlsx_is_laid_out_for_people(db: Session) -> None:
    t = build_three_levels(db)
    content = exports.export(db, cycle_id=t["cycle"].id, name="employees", fmt="xlsx", lang="ru")[0]
    sheet = load_workbook(io.BytesIO(content)).active
    assert sheet is not None
    header = [c.value for c in next(sheet.iter_rows(max_row=1))]
    assert "Коэффициент" in header and "Имя" in header  # translated
    assert not any(isinstance(h, str) and "_" in h for h in header)  # no snake_case
    assert sheet.freeze_panes == "A2"
    widths = {sheet.column_dimensions[chr(65 + i)].width for i in range(len(header))}
    assert min(widths) >= exports.MIN_WIDTH and max(widths) <= exports.MAX_WIDTH
    column = {h: i for i, h in enumerate(header)}
    rows = list(sheet.iter_rows(min_row=2))
    coefficient = next(r[column["Коэффициент"]] for r in rows if r[column["Имя"]].value == "e2")
    assert coefficient.value == 7.0 and coefficient.number_format == "0.00"
    raters = next(r[column["Оценивших"]] for r in rows if r[column["Имя"]].value == "e2")
    assert raters.number_format == "0"
    # No column holds one value for everyone: the first cycle has no changes at all.
    assert "Изменение" not in header
    assert "delta" not in header


def test_constant_columns_are_dropped_but_identity_columns_stay() -> None:
    table = (["name", "status", "coefficient"], [["a", "ok", 1.0], ["b", "ok", 2.0]])
    assert exports._varying(table) == (["name", "coefficient"], [["a", 1.0], ["b", 2.0]])
    one = (["name", "status"], [["a", "ok"]])
    assert exports._varying(one) == one
