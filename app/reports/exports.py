"""Every results table as CSV or XLSX, built from the same stored (already suppressed)
results as the pages, so an export can show nothing a page would not."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.org import importing
from app.reports import service
from app.reports.schemas import DepartmentResultRead, EmployeeResultRead

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# Tables a manager may export (restricted to their reporting line); the rest are HR's.
EMPLOYEE_TABLES = ("employees", "leaderboard", "decliners")
TABLES = (*EMPLOYEE_TABLES, "departments", "heatmap", "company", "distribution")
NOT_ENOUGH_TEXT = "not enough responses"

Table = tuple[list[str], list[list[Any]]]


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _employee_rows(rows: Sequence[EmployeeResultRead], codes: Sequence[tuple[str, str]]) -> Table:
    header = [
        "external_id",
        "name",
        "department",
        "status",
        *service.EMPLOYEE_FIGURES,
        *[name for _, name in codes],
    ]
    out = []
    for e in rows:
        means = {m.code: m.mean for m in e.competencies}
        out.append(
            [
                e.external_id,
                e.full_name,
                e.department_name,
                "ok" if e.status == "ok" else NOT_ENOUGH_TEXT,
                e.raters,
                _r(e.coefficient),
                _r(e.sd),
                _r(e.ci_low),
                _r(e.ci_high),
                _r(e.nps, 1),
                e.nps_answers,
                _r(e.delta),
                e.delta_significant,
                e.company_rank,
                _r(e.company_percentile, 1),
                e.department_rank,
                _r(e.department_percentile, 1),
                _r(e.se),
                _r(e.reliability),
                e.company_band,
                e.department_band,
                *[_r(means.get(code)) for code, _ in codes],
            ]
        )
    return header, out


def _department_rows(
    rows: Sequence[DepartmentResultRead], codes: Sequence[tuple[str, str]], *, heatmap: bool
) -> Table:
    if heatmap:
        header = ["external_id", "department", *[name for _, name in codes]]
    else:
        header = [
            "external_id",
            "department",
            "level",
            "suppliers",
            "employees_included",
            "coefficient",
            "sd",
            "nps",
            "delta",
            "delta_significant",
            *[name for _, name in codes],
        ]
    out = []
    for d in rows:
        means = {m.code: m.mean for m in d.competencies}
        per_competency = [_r(means.get(code)) for code, _ in codes]
        if heatmap:
            out.append([d.external_id, d.name, *per_competency])
        else:
            out.append(
                [
                    d.external_id,
                    d.name,
                    d.level,
                    d.suppliers,
                    d.employees_included,
                    _r(d.coefficient),
                    _r(d.sd),
                    _r(d.nps, 1),
                    _r(d.delta),
                    d.delta_significant,
                    *per_competency,
                ]
            )
    return header, out


def build_table(
    session: Session, *, cycle_id: int, name: str, employee_ids: Iterable[int] | None = None
) -> Table:
    """(header, rows) of one results table; employee_ids limits the employee tables."""
    if name not in TABLES:
        raise NotFound(f"There is no table {name!r}; tables: {', '.join(TABLES)}.")
    codes = [(c.code, c.name) for c in service.competencies(session, cycle_id=cycle_id)]
    ids = list(employee_ids) if employee_ids is not None else None
    if name == "employees":
        _total, rows = service.employee_results(
            session, cycle_id=cycle_id, employee_ids=ids, limit=None
        )
        return _employee_rows(rows, codes)
    if name == "leaderboard":
        return _employee_rows(
            service.leaderboard(session, cycle_id=cycle_id, limit=50, employee_ids=ids), []
        )
    if name == "decliners":
        return _employee_rows(
            service.decliners(session, cycle_id=cycle_id, limit=50, employee_ids=ids), []
        )
    if name in ("departments", "heatmap"):
        return _department_rows(
            service.department_results(session, cycle_id=cycle_id), codes, heatmap=name == "heatmap"
        )
    company = service.company_results(session, cycle_id=cycle_id)
    if name == "distribution":
        edges, counts = company.distribution.edges, company.distribution.counts
        return ["from", "to", "employees"], [
            [_r(a), _r(b), n] for a, b, n in zip(edges, edges[1:], counts, strict=False)
        ]
    pairs: list[list[Any]] = [
        ["cycle", company.cycle.name],
        ["scale", f"{company.cycle.scale_min}-{company.cycle.scale_max}"],
        ["k (minimum raters)", company.cycle.min_raters],
        ["suppliers", company.suppliers],
        ["employees included", company.employees_included],
        ["coefficient", _r(company.coefficient)],
        ["sd", _r(company.sd)],
        ["ci_low", _r(company.ci_low)],
        ["ci_high", _r(company.ci_high)],
        ["nps", _r(company.nps, 1)],
        ["delta", _r(company.delta)],
        ["delta_significant", company.delta_significant],
        ["invited", company.invited],
        ["responded", company.responded],
        ["response_rate", _r(company.response_rate, 4)],
        *[[f"competency: {m.name}", _r(m.mean)] for m in company.competencies],
    ]
    return ["figure", "value"], pairs


def _safe_text(value: Any) -> Any:
    # A name starting with = + - @ would run as a formula in a spreadsheet (CSV injection).
    return importing.spreadsheet_safe(value) if isinstance(value, str) else value


def to_csv(table: Table) -> bytes:
    header, rows = table
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else _safe_text(v) for v in row])
    # A BOM so spreadsheet programs read the names as UTF-8.
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(table: Table, *, title: str) -> bytes:
    header, rows = table
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31])
    bold = Font(bold=True)
    head_cells = []
    for name in header:
        cell = WriteOnlyCell(sheet, value=name)
        cell.font = bold
        head_cells.append(cell)
    sheet.append(head_cells)
    for row in rows:
        cells = []
        for value in row:
            cell = WriteOnlyCell(sheet, value=_safe_text(value))
            if isinstance(value, str):
                cell.data_type = "s"  # never a formula
            cells.append(cell)
        sheet.append(cells)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def export(
    session: Session,
    *,
    cycle_id: int,
    name: str,
    fmt: str,
    employee_ids: Iterable[int] | None = None,
) -> tuple[bytes, str, str]:
    """(content, media type, file name) of one table in one format."""
    if fmt not in FORMATS:
        raise NotFound(f"Unknown export format {fmt!r}; use csv or xlsx.")
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    table = build_table(session, cycle_id=cycle_id, name=name, employee_ids=employee_ids)
    content = to_csv(table) if fmt == "csv" else to_xlsx(table, title=name)
    safe_name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in cycle.name)
    return content, FORMATS[fmt], f"peer360-{safe_name}-{name}.{fmt}"
