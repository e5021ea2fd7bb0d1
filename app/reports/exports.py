"""Every results table as CSV or XLSX, built from the same stored (already suppressed)
results as the pages, so an export can show nothing a page would not."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from sqlalchemy.orm import Session

from app import i18n
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


def N_(text: str) -> str:
    """Marks a label for the catalogs; it is translated when the sheet is written."""
    return text


# XLSX headers for people (CSV keeps the keys: HRIS imports rely on them). Competency
# columns are headed by the competency's own name.
LABELS = {
    "external_id": N_("Employee ID"),
    "name": N_("Name"),
    "department": N_("Department"),
    "status": N_("Status"),
    "raters": N_("Raters"),
    "coefficient": N_("Coefficient"),
    "sd": N_("Standard deviation"),
    "ci_low": N_("95% interval from"),
    "ci_high": N_("95% interval to"),
    "nps": N_("Internal NPS"),
    "nps_answers": N_("NPS answers"),
    "delta": N_("Change"),
    "delta_significant": N_("Change is significant"),
    "company_rank": N_("Rank in the company"),
    "company_percentile": N_("Percentile in the company"),
    "department_rank": N_("Rank in the department"),
    "department_percentile": N_("Percentile in the department"),
    "se": N_("Standard error"),
    "reliability": N_("Reliability"),
    "company_band": N_("Band in the company"),
    "department_band": N_("Band in the department"),
    "level": N_("Level"),
    "suppliers": N_("Employees rated"),
    "employees_included": N_("Employees with results"),
    "figure": N_("Figure"),
    "value": N_("Value"),
    "from": N_("From"),
    "to": N_("To"),
    "employees": N_("Employees"),
}
# Whole numbers: counts, ranks, bands (everything else numeric shows two decimals).
WHOLE = {
    "raters",
    "nps_answers",
    "company_rank",
    "department_rank",
    "company_band",
    "department_band",
    "level",
    "suppliers",
    "employees_included",
    "employees",
}
# Identity columns stay even when every row holds the same value.
KEEP = {"external_id", "name", "department", "figure", "value"}
MIN_WIDTH = 8
MAX_WIDTH = 50


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


def _varying(table: Table) -> Table:
    """Without the columns that hold one value in every row (e.g. a status that is "ok"
    for everyone): they tell a reader nothing. A table of one row keeps them all."""
    header, rows = table
    if len(rows) < 2:
        return table
    keep = [
        i
        for i, name in enumerate(header)
        if name in KEEP or len({repr(row[i]) for row in rows}) > 1
    ]
    return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]


def to_xlsx(table: Table, *, title: str, lang: str = "en") -> bytes:
    """A sheet for people: translated headers, fitted widths, frozen header row, two
    decimals (whole numbers for counts and ranks), no constant columns."""
    header, rows = _varying(table)
    gettext = i18n.translations(lang).gettext
    labels = [gettext(LABELS[name]) if name in LABELS else name for name in header]
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31])
    sheet.freeze_panes = "A2"
    for index in range(len(header)):
        longest = max([len(labels[index])] + [len(_shown(row[index])) for row in rows[:2000]])
        letter = get_column_letter(index + 1)
        sheet.column_dimensions[letter].width = min(MAX_WIDTH, max(MIN_WIDTH, longest + 2))
    bold = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    head_cells = []
    for label in labels:
        cell = WriteOnlyCell(sheet, value=label)
        cell.font = bold
        cell.alignment = wrap
        head_cells.append(cell)
    sheet.append(head_cells)
    formats = ["0" if name in WHOLE else "0.00" for name in header]
    for row in rows:
        cells = []
        for value, number_format in zip(row, formats, strict=True):
            cell = WriteOnlyCell(sheet, value=_safe_text(value))
            if isinstance(value, str):
                cell.data_type = "s"  # never a formula
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                cell.number_format = number_format
            cells.append(cell)
        sheet.append(cells)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def export(
    session: Session,
    *,
    cycle_id: int,
    name: str,
    fmt: str,
    employee_ids: Iterable[int] | None = None,
    lang: str = "en",
) -> tuple[bytes, str, str]:
    """(content, media type, file name) of one table in one format."""
    if fmt not in FORMATS:
        raise NotFound(f"Unknown export format {fmt!r}; use csv or xlsx.")
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    table = build_table(session, cycle_id=cycle_id, name=name, employee_ids=employee_ids)
    content = to_csv(table) if fmt == "csv" else to_xlsx(table, title=name, lang=lang)
    safe_name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in cycle.name)
    return content, FORMATS[fmt], f"peer360-{safe_name}-{name}.{fmt}"
