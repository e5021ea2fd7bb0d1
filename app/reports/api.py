"""Results for the HRIS (scope ``results:read``): tables, trends and charts of closed cycles.

Unknown cycles answer 404, cycles not closed (or not computed yet) 409, both as
problem+json. Everything comes from the stored, already suppressed results.
"""

from __future__ import annotations

import pathlib
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.auth.deps import ApiRoute, require_scopes
from app.config import Settings
from app.db import SessionDep
from app.errors import NotFound, problems
from app.fields import RowId
from app.jsonbody import TrustedJSON
from app.reports import charts, service
from app.reports.schemas import (
    CompanyResultRead,
    DepartmentList,
    EmployeePage,
    EmployeeTrend,
)

router = APIRouter(
    route_class=ApiRoute,
    tags=["results"],
    dependencies=[Depends(require_scopes("results:read"))],
    # 404: no such cycle, department or employee; 409: the cycle has no results yet.
    responses=problems(404, 409, 422),
)

CycleId = RowId
ExternalId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]
Selector = Annotated[str | None, Query(max_length=100)]
CHART_FORMAT_MISSING = "Name the chart with its format, e.g. heatmap.png."


def chart_cache_dir(request: Request) -> pathlib.Path:
    """Where the app keeps rendered charts of closed cycles (CHART_CACHE_DIR)."""
    settings: Settings = request.app.state.settings
    return settings.chart_cache_dir


def split_filename(filename: str, *, missing_format: str) -> tuple[str, str]:
    """``heatmap.png`` as ``("heatmap", "png")``; a name without a format is not found."""
    name, dot, fmt = filename.rpartition(".")
    if not dot:
        raise NotFound(missing_format)
    return name, fmt


def chart_response(
    request: Request,
    session: Session,
    *,
    cycle_id: int,
    name: str,
    fmt: str,
    department: str | None,
    employee: str | None,
    disposition: str,
) -> Response:
    """A chart as PNG, SVG or PDF (rendered once per closed cycle, then read from disk),
    downloaded as ``<cycle>-<department or employee>-<chart>.<fmt>``."""
    data = charts.chart_bytes(
        session,
        cycle_id=cycle_id,
        chart=name,
        fmt=fmt,
        department=department,
        employee=employee,
        cache_dir=chart_cache_dir(request),
    )
    filename = charts.download_name(
        session,
        cycle_id=cycle_id,
        chart=name,
        fmt=fmt,
        department=department,
        employee=employee,
    )
    return Response(
        data,
        media_type=charts.FORMATS[fmt],
        headers={
            "Content-Disposition": f'{disposition}; filename="{filename}"',
            "Cache-Control": "private, max-age=300",
        },
    )


@router.get("/cycles/{cycle_id}/results/employees", response_model=EmployeePage)
def employee_results(
    cycle_id: CycleId,
    session: SessionDep,
    department: Selector = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> TrustedJSON:
    """Every supplier's result (paged); ``department`` (id or external id) filters its subtree.

    An employee with fewer than k raters has ``status: not_enough_responses`` and no figures.
    """
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    department_id = (
        service.department_in_cycle(session, cycle_id=cycle_id, department=department).department_id
        if department
        else None
    )
    total, items = service.employee_rows(
        session, cycle_id=cycle_id, department_id=department_id, limit=limit, offset=offset
    )
    # The page in EmployeePage's shape, without a model per row (see app.jsonbody).
    return TrustedJSON(
        {
            "cycle": service.cycle_ref(session, cycle=cycle).model_dump(mode="json"),
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": items,
        }
    )


@router.get("/cycles/{cycle_id}/results/departments", response_model=DepartmentList)
def department_results(cycle_id: CycleId, session: SessionDep) -> DepartmentList:
    """Every department's figures, rolled up over its sub-departments (tree order)."""
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    return DepartmentList(
        cycle=service.cycle_ref(session, cycle=cycle),
        items=service.department_results(session, cycle_id=cycle_id),
    )


@router.get("/cycles/{cycle_id}/results/company", response_model=CompanyResultRead)
def company_results(cycle_id: CycleId, session: SessionDep) -> CompanyResultRead:
    """The company's figures, the distribution of coefficients and the response rate."""
    return service.company_results(session, cycle_id=cycle_id)


@router.get("/employees/{external_id}/results", response_model=EmployeeTrend)
def employee_trend(external_id: ExternalId, session: SessionDep) -> EmployeeTrend:
    """One employee's results over every closed cycle they were rated in (oldest first)."""
    employee = service.employee_by_external_id(session, external_id=external_id)
    return EmployeeTrend(
        external_id=employee.external_id,
        full_name=employee.full_name,
        points=service.employee_trend(session, employee_id=employee.id),
    )


@router.get(
    "/cycles/{cycle_id}/charts/{filename}",
    response_class=Response,
    responses={200: {"content": {m: {} for m in charts.FORMATS.values()}}},
)
def chart(
    request: Request,
    cycle_id: CycleId,
    filename: Annotated[
        str, Path(max_length=60, description="e.g. heatmap.png, trend-employee.svg")
    ],
    session: SessionDep,
    department: Selector = None,
    employee: Selector = None,
) -> Response:
    """A chart as PNG, SVG or PDF: departments, heatmap, distribution, employee (needs
    ``employee``), trend-company, trend-department (needs ``department``), trend-employee."""
    name, fmt = split_filename(filename, missing_format=CHART_FORMAT_MISSING)
    return chart_response(
        request,
        session,
        cycle_id=cycle_id,
        name=name,
        fmt=fmt,
        department=department,
        employee=employee,
        disposition="inline",
    )
