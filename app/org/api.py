"""HRIS API for the organisation: departments, employees, competencies, employee import."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.auth.deps import ApiKeyDep, ApiRoute, SettingsDep, require_scopes
from app.auth.models import ApiKey
from app.db import SessionDep
from app.org import importing
from app.org import service as org_service
from app.org.models import Employee
from app.org.schemas import (
    COMPETENCY_IMPORT_BODY,
    DEPARTMENT_IMPORT_BODY,
    EMPLOYEE_IMPORT_BODY,
    CompetencyRead,
    CompetencyUpsert,
    DepartmentRead,
    DepartmentUpsert,
    EmployeePageRead,
    EmployeeRead,
    EmployeeUpsert,
    ExternalId,
    ImportReportRead,
    problems,
)
from app.uploads import fields
from app.uploads.parsing import ParsedUpload, UploadLimits, parse_upload

# Documents the Bearer scheme in OpenAPI (the "Authorize" button); the real check,
# with scopes and the refusal of keys in URLs, is ``require_scopes``.
bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer p360_...`")


def audit_import(
    session: Session, key: ApiKey, *, what: str, report: importing.ImportReport
) -> None:
    """An applied API import, in the audit log like an HR page's (dry runs are not)."""
    if report.dry_run or report.needs_confirmation:
        return
    auth_service.audit_api(
        session,
        key,
        action=f"import {what}",
        entity=what,
        detail=(
            f"{report.rows} rows: {report.created} created, {report.updated} updated, "
            f"{report.deactivated} deactivated, {report.removed} removed"
        ),
    )


router = APIRouter(route_class=ApiRoute, dependencies=[Depends(bearer)])
READ = [Depends(require_scopes("org:read"))]
WRITE = [Depends(require_scopes("org:write"))]

ExternalIdPath = Annotated[ExternalId, Path(description="The HRIS's id of the record.")]
CodePath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=fields.CODE_MAX,
        pattern=fields.CODE_RE.pattern,
        description="The competency's code, e.g. `responsiveness`.",
    ),
]


def upsert_status(response: Response, request: Request, outcome: org_service.Outcome) -> None:
    """PUT answers 201 with a Location when it created the record, else 200."""
    if outcome is org_service.Outcome.created:
        response.status_code = 201
        # Percent-encoded: external ids may hold any Unicode, headers only Latin-1.
        response.headers["Location"] = quote(request.url.path, safe="/")


async def raw_body(request: Request) -> bytes:
    # Read here (async) so the import route itself stays a sync def in the threadpool.
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]
# Every import can be tried first: all the checks, no writes.
DryRun = Annotated[bool, Query(description="Validate and count; write nothing.")]


def import_route(request_body: dict[str, Any]) -> dict[str, Any]:
    """The options every bulk-import route shares (scope `org:write`), for ``router.post``."""
    return {
        "response_model": ImportReportRead,
        "dependencies": WRITE,
        "tags": ["import"],
        "openapi_extra": {"requestBody": request_body},
        "responses": problems(409, 413, 415, 422),
    }


def parse_import_body(
    request: Request,
    body: bytes,
    *,
    limits: UploadLimits,
    columns: Sequence[str],
    required: Sequence[str],
    ignored: Sequence[str] = (),
) -> ParsedUpload:
    """The uploaded rows, read as CSV, JSON or XLSX according to the request's Content-Type."""
    return parse_upload(
        body,
        content_type=request.headers.get("content-type"),
        columns=columns,
        required=required,
        ignored=ignored,
        limits=limits,
    )


# --- departments -----------------------------------------------------------------------


@router.put(
    "/departments/{external_id}",
    response_model=DepartmentRead,
    status_code=200,
    dependencies=WRITE,
    tags=["departments"],
    summary="Create or update a department",
    description="Idempotent upsert by external id (scope `org:write`). Answers 201 when "
    "created, 200 otherwise. The parent must already exist (422), and a move that would "
    "make the tree loop is refused (409).",
    responses={201: {"description": "Created", "model": DepartmentRead}, **problems(404, 409, 422)},
)
def put_department(
    external_id: ExternalIdPath,
    body: DepartmentUpsert,
    session: SessionDep,
    request: Request,
    response: Response,
) -> DepartmentRead:
    dept, outcome = org_service.upsert_department(
        session,
        external_id=external_id,
        name=body.name,
        parent_external_id=body.parent_external_id,
    )
    upsert_status(response, request, outcome)
    session.refresh(dept, ["parent"])
    return DepartmentRead.of(dept)


@router.get(
    "/departments",
    response_model=list[DepartmentRead],
    dependencies=READ,
    tags=["departments"],
    summary="List departments",
    description="Every department with its parent's external id, ordered by name "
    "(scope `org:read`). Rebuild the tree from `parent_external_id`.",
    responses=problems(),
)
def get_departments(session: SessionDep) -> list[DepartmentRead]:
    return [DepartmentRead.of(d) for d in org_service.list_departments(session)]


@router.get(
    "/departments/{external_id}",
    response_model=DepartmentRead,
    dependencies=READ,
    tags=["departments"],
    summary="Read one department",
    description="Scope `org:read`.",
    responses=problems(404, 422),
)
def get_department(external_id: ExternalIdPath, session: SessionDep) -> DepartmentRead:
    return DepartmentRead.of(org_service.get_department(session, external_id=external_id))


# --- employees -------------------------------------------------------------------------


@router.put(
    "/employees/{external_id}",
    response_model=EmployeeRead,
    status_code=200,
    dependencies=WRITE,
    tags=["employees"],
    summary="Create or update an employee",
    description="Idempotent upsert by external id (scope `org:write`): sending the same "
    "body twice changes nothing. 201 when created, 200 otherwise. The email is unique "
    "regardless of case (409); department and manager must exist (422); nobody manages "
    "themselves (422) or loops round a reporting line (409). `active: false` deactivates "
    "and removes the employee from the live matrix. `paper_channel: true` puts them on "
    "the paper channel (no email; a printed letter with a one-time code); omitted, it "
    "keeps its value.",
    responses={201: {"description": "Created", "model": EmployeeRead}, **problems(409, 422)},
)
def put_employee(
    external_id: ExternalIdPath,
    body: EmployeeUpsert,
    session: SessionDep,
    request: Request,
    response: Response,
    key: ApiKeyDep,
) -> EmployeeRead:
    email_before = session.scalar(select(Employee.email).where(Employee.external_id == external_id))
    paper_before = session.scalar(
        select(Employee.paper_channel).where(Employee.external_id == external_id)
    )
    emp, outcome = org_service.upsert_employee(
        session,
        external_id=external_id,
        email=body.email,
        full_name=body.full_name,
        department_external_id=body.department_external_id,
        manager_external_id=body.manager_external_id,
        language=body.language,
        active=body.active,
        paper_channel=body.paper_channel,
    )
    upsert_status(response, request, outcome)
    if outcome == org_service.Outcome.created or emp.email != email_before:
        # New records and new addresses decide who counts toward k at the next launch.
        auth_service.audit_api(
            session,
            key,
            action="create employee"
            if outcome == org_service.Outcome.created
            else "change employee email",
            entity="employee",
            entity_id=external_id,
            detail=emp.email,
        )
    if outcome != org_service.Outcome.created and emp.paper_channel != paper_before:
        # Who gets a printed letter (whose code passes through HR) instead of an email.
        auth_service.audit_api(
            session,
            key,
            action="paper channel on" if emp.paper_channel else "paper channel off",
            entity="employee",
            entity_id=external_id,
        )
    session.refresh(emp, ["department", "manager"])
    return EmployeeRead.of(emp)


@router.get(
    "/employees/{external_id}",
    response_model=EmployeeRead,
    dependencies=READ,
    tags=["employees"],
    summary="Read one employee",
    description="Active or not (scope `org:read`).",
    responses=problems(404, 422),
)
def get_employee(external_id: ExternalIdPath, session: SessionDep) -> EmployeeRead:
    return EmployeeRead.of(org_service.get_employee(session, external_id=external_id))


@router.get(
    "/employees",
    response_model=EmployeePageRead,
    dependencies=READ,
    tags=["employees"],
    summary="List employees",
    description="A page of employees ordered by name (scope `org:read`), filtered by "
    "department (optionally with its sub-departments), active flag and a search text "
    "matched against name, email and external id. An unknown department is 404.",
    responses=problems(404, 422),
)
def list_employees(
    session: SessionDep,
    department: Annotated[ExternalId | None, Query(description="Department external id.")] = None,
    include_sub_departments: Annotated[
        bool, Query(description="Also list the department's sub-departments.")
    ] = False,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones.")] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Search in name, email, external id.")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> EmployeePageRead:
    page = org_service.list_employees(
        session,
        department_external_id=department,
        include_sub_departments=include_sub_departments,
        active=active,
        search=q,
        offset=offset,
        limit=limit,
    )
    return EmployeePageRead(
        items=[EmployeeRead.of(e) for e in page.items],
        total=page.total,
        offset=page.offset,
        limit=page.limit,
    )


@router.delete(
    "/employees/{external_id}",
    response_model=EmployeeRead,
    dependencies=WRITE,
    tags=["employees"],
    summary="Deactivate an employee",
    description="Leavers are deactivated, never deleted, so their history stays (scope "
    "`org:write`). They leave the live matrix (as supplier and as customer); closed and "
    "running cycles keep their own snapshot. Idempotent: answers the employee.",
    responses=problems(404, 422),
)
def delete_employee(external_id: ExternalIdPath, session: SessionDep) -> EmployeeRead:
    emp = org_service.deactivate_employee(session, external_id=external_id)
    return EmployeeRead.of(emp)


# --- competencies ----------------------------------------------------------------------


@router.put(
    "/competencies/{code}",
    response_model=CompetencyRead,
    status_code=200,
    dependencies=WRITE,
    tags=["competencies"],
    summary="Create or update a competency",
    description="Idempotent upsert by code (scope `org:write`); 201 when created, 200 "
    "otherwise. Changes apply to cycles launched afterwards: a launched cycle keeps the "
    "competencies it started with. `translations` holds the texts in other languages "
    "(raters see their own language, or these texts where it has none); omitted, the "
    "stored translations are kept.",
    responses={201: {"description": "Created", "model": CompetencyRead}, **problems(422)},
)
def put_competency(
    code: CodePath,
    body: CompetencyUpsert,
    session: SessionDep,
    request: Request,
    response: Response,
) -> CompetencyRead:
    comp, outcome = org_service.upsert_competency(
        session,
        code=code,
        name=body.name,
        description=body.description,
        indicators=body.indicators,
        weight=body.weight,
        display_order=body.display_order,
        active=body.active,
        translations=(
            None
            if body.translations is None
            else {lang: text.model_dump() for lang, text in body.translations.items()}
        ),
    )
    upsert_status(response, request, outcome)
    return CompetencyRead.of(comp)


@router.get(
    "/competencies",
    response_model=list[CompetencyRead],
    dependencies=READ,
    tags=["competencies"],
    summary="List competencies",
    description="In the order raters see them (scope `org:read`).",
    responses=problems(422),
)
def list_competencies(
    session: SessionDep,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones.")] = None,
) -> list[CompetencyRead]:
    return [CompetencyRead.of(c) for c in org_service.list_competencies(session, active=active)]


# --- bulk import -----------------------------------------------------------------------


@router.post(
    "/import/departments",
    **import_route(DEPARTMENT_IMPORT_BODY),
    summary="Import departments in bulk (all or nothing)",
    description="Upserts every department in the upload (scope `org:write`); parents may "
    "come later in the same file. Every row is checked first (unknown parent, a loop in the "
    "tree, repeated ids...); one bad row rejects the whole batch with a 422 listing each "
    "problem as `{line, field, message}` and nothing is saved. Departments missing from the "
    "upload are left alone. Re-sending the same import changes nothing; `dry_run=true` only "
    "validates and counts.",
)
def import_departments(
    request: Request,
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    key: ApiKeyDep,
    dry_run: DryRun = False,
) -> ImportReportRead:
    limits = UploadLimits.of(settings)
    parsed = parse_import_body(
        request,
        body,
        limits=limits,
        columns=importing.DEPARTMENT_COLUMNS,
        required=importing.DEPARTMENT_REQUIRED,
    )
    report = importing.import_departments(
        session, rows=parsed.rows, dry_run=dry_run, parse_errors=parsed.errors, limits=limits
    )
    audit_import(session, key, what="departments", report=report)
    return ImportReportRead.model_validate(report, from_attributes=True)


@router.post(
    "/import/employees",
    **import_route(EMPLOYEE_IMPORT_BODY),
    summary="Import employees in bulk (all or nothing)",
    description="Upserts every employee in the upload (scope `org:write`). Every row is "
    "checked first; one bad row rejects the whole batch with a 422 listing each problem "
    "as `{line, field, message}` (the first 1000; `error_count` has the total) and nothing "
    "is saved. Lines are file lines for CSV/XLSX (the header is line 1) and 1-based "
    "positions for JSON. Re-sending the same import changes nothing. "
    "`deactivate_missing=true` treats the upload as the whole company and deactivates "
    "active employees it leaves out; if that is more than `IMPORT_MAX_DEACTIVATE_FRACTION` "
    "(default 20%) of the active employees, the import is refused with 409 unless "
    "`confirm_mass_deactivation=true` (a dry run reports `needs_confirmation`). An "
    "employee present in the upload is never deactivated as missing. `dry_run=true` only "
    "validates and counts.",
)
def import_employees(
    request: Request,
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    key: ApiKeyDep,
    deactivate_missing: Annotated[
        bool, Query(description="Deactivate active employees missing from the upload.")
    ] = False,
    confirm_mass_deactivation: Annotated[
        bool,
        Query(
            description="Allow `deactivate_missing` to deactivate more than "
            "`IMPORT_MAX_DEACTIVATE_FRACTION` of the active employees."
        ),
    ] = False,
    dry_run: DryRun = False,
) -> ImportReportRead:
    limits = UploadLimits.of(settings)
    parsed = parse_import_body(
        request,
        body,
        limits=limits,
        columns=importing.EMPLOYEE_COLUMNS,
        required=importing.EMPLOYEE_REQUIRED,
    )
    report = importing.import_employees(
        session,
        rows=parsed.rows,
        deactivate_missing=deactivate_missing,
        dry_run=dry_run,
        parse_errors=parsed.errors,
        limits=limits,
        max_deactivate_fraction=settings.import_max_deactivate_fraction,
        confirm_mass_deactivation=confirm_mass_deactivation,
    )
    audit_import(session, key, what="employees", report=report)
    return ImportReportRead.model_validate(report, from_attributes=True)


@router.post(
    "/import/competencies",
    **import_route(COMPETENCY_IMPORT_BODY),
    summary="Import competencies in bulk (all or nothing)",
    description="Upserts every competency in the upload by code (scope `org:write`), with "
    "the same rules as `PUT /competencies/{code}`. Every row is checked first; one bad row "
    "rejects the whole batch with a 422 listing each problem as `{line, field, message}` "
    "and nothing is saved. Competencies missing from the upload are left alone. Re-sending "
    "the same import changes nothing; `dry_run=true` only validates and counts. Texts in "
    "other languages come in `name_<lang>`, `description_<lang>` and `indicators_<lang>` "
    "columns (e.g. `name_ru`); a file with such columns replaces the translations, one "
    "without keeps them.",
)
def import_competencies(
    request: Request,
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    key: ApiKeyDep,
    dry_run: DryRun = False,
) -> ImportReportRead:
    limits = UploadLimits.of(settings)
    parsed = parse_import_body(
        request,
        body,
        limits=limits,
        columns=importing.COMPETENCY_COLUMNS,
        required=importing.COMPETENCY_REQUIRED,
    )
    report = importing.import_competencies(
        session, rows=parsed.rows, dry_run=dry_run, parse_errors=parsed.errors, limits=limits
    )
    audit_import(session, key, what="competencies", report=report)
    return ImportReportRead.model_validate(report, from_attributes=True)
