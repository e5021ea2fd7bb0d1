"""The feedback report: an A4 document a manager hands over, laid out by Typst.

Typst (the ``typst`` package: a compiler in a wheel, no system libraries) typesets
``templates/reports/feedback.typ`` with the figures as JSON and the charts as SVG, so
the charts stay vectors and the text stays text. matplotlib's PdfPages used to make one
figure per page, in three page sizes.

Fonts are matplotlib's DejaVu family (Latin and Cyrillic), the same as the charts', and
no system font is read: the same data gives the same document on every machine.
"""

from __future__ import annotations

import io
import json
import random
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib
import typst
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import i18n
from app.cycles.models import CycleDepartment, CycleEmployee
from app.dates import format_date
from app.errors import Invalid, NotFound
from app.reports import charts, personal, service
from app.reports.filenames import report_filename, reports_zip_filename
from app.reports.models import DepartmentClosure, EmployeeResult
from app.reports.schemas import (
    CompanyResultRead,
    CycleRef,
    DepartmentResultRead,
    EmployeeResultRead,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "reports" / "feedback.typ"
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
# A department's ZIP is built in the request: beyond this many reports HR is asked to
# choose a smaller department (each report takes a few hundred milliseconds).
MAX_ZIP_REPORTS = 300
MAX_COMMENTS = 200


@dataclass(frozen=True)
class Report:
    filename: str
    content: bytes


def _fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _strengths_and_areas(
    employee: EmployeeResultRead, company: CompanyResultRead
) -> tuple[list[str], list[str]]:
    """The competencies furthest above and below the company's means (a third each)."""
    reference = {m.code: m.mean for m in company.competencies}
    ranked = sorted(
        (m for m in employee.competencies if m.code in reference),
        key=lambda m: m.mean - reference[m.code],
        reverse=True,
    )
    if len(ranked) < 2:
        return [], []
    share = max(1, len(ranked) // 3)
    return [m.name for m in ranked[:share]], [m.name for m in ranked[-share:][::-1]]


def _document_data(
    *,
    cycle: CycleRef,
    employee: EmployeeResultRead,
    company: CompanyResultRead,
    department: DepartmentResultRead | None,
    comments: list[str],
    trend: list[dict[str, str]],
    show_rank: bool,
    lang: str,
    focus: personal.FocusView | None = None,
    earlier: EmployeeResultRead | None = None,
) -> dict[str, Any]:
    _ = i18n.translations(lang).gettext
    focus_codes = focus.first_codes if focus else []
    dept_means = {m.code: m.mean for m in department.competencies} if department else {}
    company_means = {m.code: m.mean for m in company.competencies}
    strengths, areas = _strengths_and_areas(employee, company)
    ok = employee.status == "ok"
    labels = {
        "title": _("Feedback report"),
        "period": _("Period"),
        "cycle": _("Cycle"),
        "department": _("Department"),
        "role": _("Role"),
        "role_text": _("internal supplier, rated by the colleagues who depend on their work"),
        "coefficient": _("Customer-orientation coefficient"),
        "interval": _("95% interval"),
        "department_ref": _("Department"),
        "company_ref": _("Company"),
        "raters": _("Raters"),
        "reliability": _("Reliability"),
        "nps": _("Internal NPS"),
        "change": _("Change since the previous cycle"),
        "significant": _("larger than its uncertainty"),
        "not_significant": _("within its uncertainty"),
        "rank": _("Rank in the company"),
        "profile": _("Competency profile"),
        "competency": _("Competency"),
        "this_employee": _("This employee"),
        "answers": _("Answers"),
        "strengths": _("Strengths"),
        "areas": _("Areas to develop"),
        "strengths_note": _("Compared with the company's mean for each competency."),
        "trend": _("Trend over the closed cycles"),
        "comments": _("What colleagues wrote"),
        "comments_note": _(
            "In random order and without dates, so no comment can be matched to a rater."
        ),
        "no_comments": _("No comments."),
        "not_enough": _("Not enough responses"),
        "not_enough_text": _(
            "Fewer than %(k)s colleagues rated this employee in this cycle, so no figures and "
            "no comments are shown."
        )
        % {"k": cycle.min_raters},
        "footer": _("Confidential: for the feedback conversation only"),
        "scale": _("scale"),
        "focus_area": _("focus area"),
    }
    delta = None
    if employee.delta is not None:
        delta = (
            _fmt(employee.delta, sign=True)
            + " ("
            + (labels["significant"] if employee.delta_significant else labels["not_significant"])
            + ")"
        )
    return {
        "lang": lang,
        "labels": labels,
        "ok": ok,
        "name": employee.full_name,
        "department": employee.department_name or "–",
        "cycle": cycle.name,
        "period": " – ".join(format_date(d, lang) for d in (cycle.period_start, cycle.period_end)),
        "scale": f"{cycle.scale_min}–{cycle.scale_max}",
        "k": cycle.min_raters,
        "coefficient": _fmt(employee.coefficient),
        "interval": f"{_fmt(employee.ci_low)} – {_fmt(employee.ci_high)}",
        "department_coefficient": _fmt(department.coefficient if department else None),
        "company_coefficient": _fmt(company.coefficient),
        "company_interval": f"{_fmt(company.ci_low)} – {_fmt(company.ci_high)}",
        "raters": str(employee.raters or "–"),
        "reliability": _fmt(employee.reliability),
        "nps": _fmt(employee.nps, 0),
        "delta": delta or "–",
        "rank": (
            f"{employee.company_rank} ({labels['rank']})"
            if show_rank and employee.company_rank is not None
            else None
        ),
        "competencies": [
            {
                "name": m.name,
                "mean": _fmt(m.mean),
                "answers": str(m.count),
                "department": _fmt(dept_means.get(m.code)),
                "company": _fmt(company_means.get(m.code)),
                "focus": m.code in focus_codes,
            }
            for m in personal.focus_first(employee.competencies, focus_codes)
        ],
        "focus": _focus_section(
            focus=focus, earlier=earlier, employee=employee, cycle=cycle, lang=lang
        )
        if ok
        else None,
        "strengths": strengths,
        "areas": areas,
        "trend": trend,
        "comments": comments,
    }


def _focus_section(
    *,
    focus: personal.FocusView | None,
    earlier: EmployeeResultRead | None,
    employee: EmployeeResultRead,
    cycle: CycleRef,
    lang: str,
) -> dict[str, Any] | None:
    """The report's opening section: the focus areas of the earlier cycle, then and now.

    Competency means are stored without their spread, so they get no interval; the
    coefficient's 95% intervals are given instead, then and now, and the note says that
    a small change may be chance. Figures below k are not shown (a dash).
    """
    if focus is None or not focus.changes:
        return None
    _ = i18n.translations(lang).gettext
    earlier_name = focus.earlier_cycle or ""
    agreed = focus.earlier_agreed
    before_ok = earlier is not None and earlier.status == "ok"
    note = _(
        "Competency means are shown without an interval (their spread is not kept): a change "
        "of a few tenths may be chance. The coefficient, with its 95%% interval: "
        "%(earlier)s %(before)s (%(before_low)s – %(before_high)s), "
        "%(now)s %(after)s (%(low)s – %(high)s)."
    ) % {
        "earlier": earlier_name,
        "before": _fmt(earlier.coefficient if before_ok and earlier else None),
        "before_low": _fmt(earlier.ci_low if before_ok and earlier else None),
        "before_high": _fmt(earlier.ci_high if before_ok and earlier else None),
        "now": cycle.name,
        "after": _fmt(employee.coefficient),
        "low": _fmt(employee.ci_low),
        "high": _fmt(employee.ci_high),
    }
    if focus.rescaled:
        note += " " + _("The earlier cycle's means are mapped onto this cycle's scale.")
    return {
        "title": _("Focus areas agreed last cycle")
        if agreed
        else _("Focus areas chosen last cycle"),
        "intro": (
            _("Agreed with the manager after %(cycle)s.")
            if agreed
            else _("Chosen after %(cycle)s (not confirmed by the manager).")
        )
        % {"cycle": earlier_name},
        "competency": _("Competency"),
        "earlier": earlier_name,
        "now": cycle.name,
        "change": _("Change"),
        "rows": [
            {
                "name": c.name,
                "before": _fmt(c.before),
                "now": _fmt(c.now),
                "change": _fmt(c.change, sign=True),
            }
            for c in focus.changes
        ],
        "note": note,
    }


def feedback_report(
    session: Session,
    *,
    cycle_id: int,
    employee_id: int,
    show_rank: bool = False,
    lang: str = "en",
    fmt: Literal["pdf", "png"] = "pdf",
) -> Report:
    """One employee's feedback report as an A4 PDF and its download name (``png``: an
    image of the first page, for the documentation)."""
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    ref = service.cycle_ref(session, cycle=cycle)
    employee = service.employee_result(session, cycle_id=cycle_id, employee_id=employee_id)
    company = service.company_results(session, cycle_id=cycle_id)
    department = None
    if employee.department_id is not None:
        found = service.department_results(
            session, cycle_id=cycle_id, department_ids=[employee.department_id]
        )
        department = found[0] if found else None
    ok = employee.status == "ok"
    comments: list[str] = []
    trend_rows: list[dict[str, str]] = []
    svgs: dict[str, bytes] = {}
    focus: personal.FocusView | None = None
    earlier: EmployeeResultRead | None = None
    if ok:
        focus = personal.focus_view(
            session, cycle_id=cycle_id, employee_id=employee_id, result=employee
        )
        if focus.earlier_cycle_id is not None:
            earlier = service.employee_result(
                session, cycle_id=focus.earlier_cycle_id, employee_id=employee_id
            )
        # Stored in random order already; shuffled again so two reports of the same
        # person never list them alike.
        comments = service.comments(session, cycle_id=cycle_id, employee_id=employee_id)
        random.SystemRandom().shuffle(comments)
        comments = comments[:MAX_COMMENTS]
        points = service.employee_trend(session, employee_id=employee_id, up_to=cycle)
        trend_rows = [
            {
                "cycle": p.cycle.name,
                "coefficient": _fmt(p.coefficient),
                "raters": str(p.raters or "–"),
            }
            for p in points
        ]
        svgs["profile.svg"] = charts.render(
            charts.employee_profile(ref, employee, company, department, focus=focus.first_codes),
            "svg",
        )
        svgs["trend.svg"] = charts.render(
            charts.trend_chart(employee.full_name, points, ref, focus=focus.first_areas), "svg"
        )
    data = _document_data(
        cycle=ref,
        employee=employee,
        company=company,
        department=department,
        comments=comments,
        trend=trend_rows,
        show_rank=show_rank,
        lang=lang,
        focus=focus,
        earlier=earlier,
    )
    content = _typeset(data, svgs, fmt=fmt)
    return Report(report_filename(employee.full_name, ref.name), content)


def _typeset(
    data: dict[str, Any], files: dict[str, bytes], *, fmt: Literal["pdf", "png"] = "pdf"
) -> bytes:
    """Compile the template with the data (and chart files) in a private directory."""
    with tempfile.TemporaryDirectory(prefix="peer360-report-") as directory:
        root = Path(directory)
        (root / "main.typ").write_bytes(TEMPLATE.read_bytes())
        (root / "data.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        for name, content in files.items():
            (root / name).write_bytes(content)
        result = typst.compile(
            str(root / "main.typ"),
            root=str(root),
            font_paths=[str(FONT_DIR)],
            ignore_system_fonts=True,
            format=fmt,
            ppi=110 if fmt == "png" else None,
        )
    if isinstance(result, list):  # PNG: one image per page; the first is the one shown
        return bytes(result[0])
    return bytes(result)


def department_reports_zip(
    session: Session,
    *,
    cycle_id: int,
    department_id: int,
    show_rank: bool = False,
    lang: str = "en",
) -> Report:
    """A ZIP of the feedback reports of everyone with results in a department's subtree."""
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    department = session.get(CycleDepartment, (cycle_id, department_id))
    if department is None:
        raise NotFound(f"There is no department {department_id} in this cycle.")
    er = EmployeeResult
    ids = list(
        session.scalars(
            select(er.employee_id)
            .join(
                CycleEmployee,
                (CycleEmployee.cycle_id == er.cycle_id)
                & (CycleEmployee.employee_id == er.employee_id),
            )
            .where(
                er.cycle_id == cycle_id,
                er.department_id.in_(
                    select(DepartmentClosure.descendant_id).where(
                        DepartmentClosure.cycle_id == cycle_id,
                        DepartmentClosure.ancestor_id == department.department_id,
                    )
                ),
            )
            .order_by(CycleEmployee.full_name, er.employee_id)
        )
    )
    if len(ids) > MAX_ZIP_REPORTS:
        raise Invalid(
            f"This department has {len(ids)} reports, more than {MAX_ZIP_REPORTS} in one "
            "download: choose a sub-department.",
            errors=[{"field": "department", "message": "too many reports"}],
        )
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for employee_id in ids:
            report = feedback_report(
                session, cycle_id=cycle_id, employee_id=employee_id, show_rank=show_rank, lang=lang
            )
            name, number = report.filename, 2
            while name in used:  # two people of the same name
                name = report.filename.removesuffix(".pdf") + f"-{number}.pdf"
                number += 1
            used.add(name)
            archive.writestr(name, report.content)
    return Report(reports_zip_filename(department.name, cycle.name), buffer.getvalue())
