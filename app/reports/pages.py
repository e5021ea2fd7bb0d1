"""HR results pages: closed cycles, a cycle's results, one employee's feedback page.

HR (and admins) see everything; a manager sees the company summary and the employees
of their own reporting line only (another employee's page answers 404, as if it did
not exist). Every figure comes from the stored, already suppressed results.
"""

from __future__ import annotations

import math
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.auth.deps import Principal, require_role
from app.auth.models import Role
from app.config import Settings
from app.db import SessionDep
from app.errors import Forbidden, NotFound
from app.fields import RowId, RowIdQuery
from app.org import service as org_service
from app.reports import charts, exports, feedback, personal, service
from app.reports.api import CHART_FORMAT_MISSING, chart_response, split_filename
from app.templating import render
from app.web import page_router

router = page_router()

ResultsReader = Annotated[Principal, Depends(require_role(Role.hr, Role.manager))]
CycleId = RowId
EmployeeId = RowId
PAGE_SIZE = 50


def visible_employee_ids(session: Session, principal: Principal) -> set[int] | None:
    """None for HR (everyone); a manager's reporting line otherwise."""
    if principal.role != Role.manager:
        return None
    if principal.user.employee_id is None:
        return set()
    return org_service.reporting_line_ids(session, manager_employee_id=principal.user.employee_id)


def _require_hr(principal: Principal) -> None:
    if principal.role == Role.manager:
        raise Forbidden("Department and company tables are for HR.")


def _check_employee(session: Session, principal: Principal, employee_id: int) -> None:
    allowed = visible_employee_ids(session, principal)
    if allowed is not None and employee_id not in allowed:
        # 404, not 403: a manager does not learn who else was rated.
        raise NotFound("This employee has no results you can see.")


def _query(request: Request, **changes: object) -> str:
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return "?" + urlencode(params) if params else ""


@router.get("/results")
def results_index(request: Request, session: SessionDep, principal: ResultsReader) -> Response:
    cycles = service.closed_cycles(session)
    return render(request, "reports/index.html", {"cycles": cycles})


@router.get("/results/{cycle_id}")
def cycle_results(
    request: Request,
    cycle_id: CycleId,
    session: SessionDep,
    principal: ResultsReader,
    sort: Annotated[str, Query(max_length=20)] = "name",
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
    department: RowIdQuery = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    allowed = visible_employee_ids(session, principal)
    is_hr = allowed is None
    company = service.company_results(session, cycle_id=cycle_id)
    department_choices = (
        service.department_picker(
            session, cycle_id=cycle_id, around=department, top_levels=charts.TABLE_LEVELS
        )
        if is_hr
        else []
    )
    if department is not None and not any(d[0] == department for d in department_choices):
        department = None
    # The department table (and its charts) shows the top three levels, or the chosen
    # department with its sub-departments: a drill-down, tens of rows at any size.
    if not is_hr:
        departments = []
    elif department is None:
        departments = service.department_results(
            session, cycle_id=cycle_id, max_level=charts.TABLE_LEVELS
        )
    else:
        departments = service.department_and_children(
            session, cycle_id=cycle_id, department_id=department
        )
    sort = sort if sort in service.SORT_KEYS else "name"
    total, employees = service.employee_results(
        session,
        cycle_id=cycle_id,
        department_id=department,
        employee_ids=allowed,
        sort=sort,
        descending=order == "desc",
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        with_competencies=False,
    )
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return render(
        request,
        "reports/cycle.html",
        {
            "cycle": company.cycle,
            "company": company,
            "departments": departments,
            "department_choices": department_choices,
            "competencies": service.competencies(session, cycle_id=cycle_id),
            "employees": employees,
            "total": total,
            "page": page,
            "pages": pages,
            "sort": sort,
            "order": order,
            "department": department,
            "is_hr": is_hr,
            "leaders": service.leaderboard(
                session, cycle_id=cycle_id, limit=10, employee_ids=allowed
            ),
            "decliners": service.decliners(
                session, cycle_id=cycle_id, limit=10, employee_ids=allowed
            ),
            "q": lambda **kw: _query(request, **kw),
            "export_tables": exports.TABLES if is_hr else exports.EMPLOYEE_TABLES,
            "state_closed": cycle.state,
        },
    )


@router.get("/results/{cycle_id}/employees/{employee_id}")
def employee_page(
    request: Request,
    cycle_id: CycleId,
    employee_id: EmployeeId,
    session: SessionDep,
    principal: ResultsReader,
) -> Response:
    service.results_cycle(session, cycle_id=cycle_id)
    _check_employee(session, principal, employee_id)
    employee = service.employee_result(session, cycle_id=cycle_id, employee_id=employee_id)
    company = service.company_results(session, cycle_id=cycle_id)
    ok = employee.status == "ok"
    focus = (
        personal.focus_view(session, cycle_id=cycle_id, employee_id=employee_id, result=employee)
        if ok
        else None
    )
    focus_codes = focus.first_codes if focus else []
    if focus_codes:
        employee = employee.model_copy(
            update={"competencies": personal.focus_first(employee.competencies, focus_codes)}
        )
    return render(
        request,
        "reports/employee.html",
        {
            "cycle": company.cycle,
            "company": company,
            "employee": employee,
            "focus": focus,
            "focus_codes": focus_codes,
            "can_agree": principal.role == Role.manager,
            "comments": service.comments(session, cycle_id=cycle_id, employee_id=employee_id)
            if ok
            else [],
            "trend": service.employee_trend(session, employee_id=employee_id) if ok else [],
        },
    )


@router.get("/results/{cycle_id}/employees/{employee_id}/report.pdf")
def feedback_report(
    request: Request,
    cycle_id: CycleId,
    employee_id: EmployeeId,
    session: SessionDep,
    principal: ResultsReader,
) -> Response:
    service.results_cycle(session, cycle_id=cycle_id)
    _check_employee(session, principal, employee_id)
    settings: Settings = request.app.state.settings
    report = feedback.feedback_report(
        session,
        cycle_id=cycle_id,
        employee_id=employee_id,
        show_rank=settings.report_show_rank,
        lang=settings.default_language,
    )
    return _download(report, "application/pdf")


@router.get("/results/{cycle_id}/departments/{department_id}/reports.zip")
def department_reports(
    request: Request,
    cycle_id: CycleId,
    department_id: Annotated[int, Path(ge=1, le=2_147_483_647)],
    session: SessionDep,
    principal: ResultsReader,
) -> Response:
    """HR: the feedback reports of a department (with its sub-departments) as one ZIP."""
    _require_hr(principal)
    settings: Settings = request.app.state.settings
    report = feedback.department_reports_zip(
        session,
        cycle_id=cycle_id,
        department_id=department_id,
        show_rank=settings.report_show_rank,
        lang=settings.default_language,
    )
    return _download(report, "application/zip")


def _download(report: feedback.Report, media_type: str) -> Response:
    return Response(
        report.content,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{report.filename}"',
            "Cache-Control": "private, no-store",
        },
    )


@router.get("/results/{cycle_id}/charts/{filename}")
def chart(
    request: Request,
    cycle_id: CycleId,
    filename: Annotated[str, Path(max_length=60)],
    session: SessionDep,
    principal: ResultsReader,
    department: Annotated[str | None, Query(max_length=100)] = None,
    employee: Annotated[str | None, Query(max_length=100)] = None,
    download: Annotated[bool, Query()] = False,
) -> Response:
    name, fmt = split_filename(filename, missing_format=CHART_FORMAT_MISSING)
    allowed = visible_employee_ids(session, principal)
    if allowed is not None:
        # Managers get the company trend and the charts of their own people only.
        if name == "employee" or name == "trend-employee":
            if not employee:
                raise NotFound("Which employee?")
            found = service.employee_by_external_id(session, external_id=employee)
            _check_employee(session, principal, found.id)
        elif name not in ("trend-company", "distribution"):
            raise Forbidden("Department charts are for HR.")
    return chart_response(
        request,
        session,
        cycle_id=cycle_id,
        name=name,
        fmt=fmt,
        department=department,
        employee=employee,
        disposition="attachment" if download else "inline",
    )


@router.get("/results/{cycle_id}/exports/{filename}")
def export(
    request: Request,
    cycle_id: CycleId,
    filename: Annotated[str, Path(max_length=60)],
    session: SessionDep,
    principal: ResultsReader,
) -> Response:
    name, fmt = split_filename(
        filename, missing_format="Name the table with its format, e.g. employees.csv."
    )
    allowed = visible_employee_ids(session, principal)
    if allowed is not None and name not in exports.EMPLOYEE_TABLES:
        _require_hr(principal)
    settings: Settings = request.app.state.settings
    content, media_type, download_name = exports.export(
        session,
        cycle_id=cycle_id,
        name=name,
        fmt=fmt,
        employee_ids=allowed,
        lang=settings.default_language,
    )
    return Response(
        content,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{download_name}"',
            "Cache-Control": "private, no-store",
        },
    )
