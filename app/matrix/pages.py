"""HR screens for the matrix: a supplier's customers, the reverse view, import, export."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import zlib
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, Request
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from app.auth import service as auth_service
from app.auth.deps import CsrfProtect, HrOnly, SettingsDep
from app.config import Settings
from app.db import SessionDep
from app.errors import DomainError
from app.fields import RowId
from app.matrix import service as matrix_service
from app.matrix import service_map
from app.matrix.api import EXPORT_COLUMNS, IMPORT_IGNORED_COLUMNS, export_values, matrix_csv
from app.matrix.models import MatrixLink
from app.org import service as org_service
from app.org.models import Employee
from app.uploads.parsing import XLSX_TYPE, ParsedUpload, SourceRow, UploadLimits, parse_upload
from app.web import confirm_page, form_fields, make_pager, page, page_router, parse_int, see_other

router = page_router(dependencies=[HrOnly])

SEARCH_LIMIT = 20
PREVIEW_LIMIT = 200
# The checked upload travels back in the confirm form, compressed; Starlette refuses a
# form field above 1 MiB, so larger matrices go through the API instead.
MAX_CARRIED_BYTES = 900_000
XLSX_SUFFIXES = (".xlsx", ".xlsm")


def _audit(request: Request, session: Session, action: str, entity_id: Any, detail: str) -> None:
    auth_service.record_audit(
        session,
        actor=request.state.principal.email,
        action=action,
        entity="matrix",
        entity_id=entity_id,
        detail=detail,
    )


def _search(session: Session, q: str, *, limit: int = SEARCH_LIMIT) -> tuple[list[Employee], str]:
    """Active employees matching ``q``, or an error message for a query we refuse."""
    if not q:
        return [], ""
    try:
        found = org_service.list_employees(session, search=q, active=True, limit=limit)
    except DomainError as exc:
        return [], exc.detail
    return found.items, ""


# --- overview: pick a supplier ------------------------------------------------------------


@router.get("/matrix")
def matrix_home(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    q = request.query_params.get("q", "").strip()[:200]
    error = ""
    try:
        total = org_service.list_employees(session, search=q or None, active=True, limit=0).total
    except DomainError as exc:
        total, error = 0, exc.detail
    pager = make_pager(request, total, per_page=25)
    people: list[Employee] = []
    if not error:
        people = org_service.list_employees(
            session, search=q or None, active=True, offset=pager.offset, limit=pager.per_page
        ).items
    customer_counts = matrix_service.customer_counts(session)
    rates_counts = _rates_counts(session, [p.id for p in people])
    return page(
        request,
        "hr/matrix/index.html",
        {
            "q": q,
            "error": error,
            "people": people,
            "pager": pager,
            "customer_counts": customer_counts,
            "rates_counts": rates_counts,
            "counts": matrix_service.counts(session, min_customers=settings.anonymity_min_raters),
        },
    )


def _rates_counts(session: Session, employee_ids: list[int]) -> dict[int, int]:
    """Customer id -> how many suppliers they rate (for the people on this page)."""
    if not employee_ids:
        return {}
    rows = session.execute(
        select(MatrixLink.customer_id, func.count())
        .where(MatrixLink.customer_id.in_(employee_ids))
        .group_by(MatrixLink.customer_id)
    )
    return {int(c): int(n) for c, n in rows}


# --- one supplier's customers ---------------------------------------------------------------


def _supplier_page(
    request: Request,
    session: Session,
    employee_id: int,
    *,
    q: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    supplier = org_service.get_employee_by_id(session, employee_id=employee_id)
    customers = matrix_service.customers_of(session, supplier_id=supplier.id)
    taken = {c.id for c in customers} | {supplier.id}
    candidates, search_error = _search(session, q, limit=SEARCH_LIMIT + len(taken))
    candidates = [c for c in candidates if c.id not in taken][:SEARCH_LIMIT]
    settings = request.app.state.settings
    return page(
        request,
        "hr/matrix/supplier.html",
        {
            "supplier": supplier,
            "customers": customers,
            "q": q,
            "candidates": candidates,
            "search_error": search_error,
            "error": error,
            "min_raters": settings.anonymity_min_raters,
        },
        status_code=status_code,
    )


@router.get("/matrix/suppliers/{employee_id}")
def supplier_customers(request: Request, session: SessionDep, employee_id: RowId) -> Response:
    q = request.query_params.get("q", "").strip()[:200]
    return _supplier_page(request, session, employee_id, q=q)


@router.post("/matrix/suppliers/{employee_id}/customers", dependencies=[CsrfProtect])
def add_customer(
    request: Request,
    session: SessionDep,
    employee_id: RowId,
    customer_id: Annotated[str, Form(max_length=20)] = "",
    q: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    supplier = org_service.get_employee_by_id(session, employee_id=employee_id)
    chosen = parse_int(customer_id)
    if chosen is None:
        return _supplier_page(
            request, session, supplier.id, q=q, error="Choose a customer to add.", status_code=422
        )
    try:
        matrix_service.add_customer(session, supplier_id=supplier.id, customer_id=chosen)
    except DomainError as exc:
        return _supplier_page(
            request, session, supplier.id, q=q, error=exc.detail, status_code=exc.status
        )
    customer = org_service.get_employee_by_id(session, employee_id=chosen)
    _audit(
        request,
        session,
        "add customer",
        f"{supplier.external_id}<-{customer.external_id}",
        f"{customer.full_name} now rates {supplier.full_name}",
    )
    suffix = f"?{urlencode({'q': q})}" if q else ""
    return see_other(f"/matrix/suppliers/{supplier.id}{suffix}", notice="link-added")


@router.get("/matrix/suppliers/{employee_id}/customers/{customer_id}/remove")
def remove_customer_confirm(
    request: Request, session: SessionDep, employee_id: RowId, customer_id: RowId
) -> Response:
    supplier = org_service.get_employee_by_id(session, employee_id=employee_id)
    customer = org_service.get_employee_by_id(session, employee_id=customer_id)
    back = f"/matrix/suppliers/{supplier.id}"
    return confirm_page(
        request,
        title=f"Remove {customer.full_name} as a customer of {supplier.full_name}?",
        crumbs=[("Matrix", "/matrix"), (supplier.full_name, back), ("Remove", None)],
        message=f"{customer.full_name} will no longer rate {supplier.full_name} in "
        "the next cycles. Cycles already launched keep their snapshot.",
        action=f"/matrix/suppliers/{supplier.id}/customers/{customer.id}/remove",
        button="Remove customer",
        cancel=back,
    )


@router.post(
    "/matrix/suppliers/{employee_id}/customers/{customer_id}/remove",
    dependencies=[CsrfProtect],
)
def remove_customer(
    request: Request, session: SessionDep, employee_id: RowId, customer_id: RowId
) -> Response:
    supplier = org_service.get_employee_by_id(session, employee_id=employee_id)
    customer = org_service.get_employee_by_id(session, employee_id=customer_id)
    if matrix_service.remove_customer(session, supplier_id=supplier.id, customer_id=customer.id):
        _audit(
            request,
            session,
            "remove customer",
            f"{supplier.external_id}<-{customer.external_id}",
            f"{customer.full_name} no longer rates {supplier.full_name}",
        )
    return see_other(f"/matrix/suppliers/{supplier.id}", notice="link-removed")


# --- the reverse view ---------------------------------------------------------------------


@router.get("/matrix/customers/{employee_id}")
def customer_suppliers(request: Request, session: SessionDep, employee_id: RowId) -> Response:
    customer = org_service.get_employee_by_id(session, employee_id=employee_id)
    return page(
        request,
        "hr/matrix/customer.html",
        {
            "customer": customer,
            "suppliers": matrix_service.suppliers_of(session, customer_id=customer.id),
        },
    )


# --- import: upload, preview (dry run), confirm ----------------------------------------------


def _import_form(
    request: Request, *, errors: dict[str, str] | None = None, status_code: int = 200
) -> Response:
    return page(
        request,
        "hr/matrix/import.html",
        {"errors": errors or {}, "columns": matrix_service.MATRIX_COLUMNS},
        status_code=status_code,
    )


@router.get("/matrix/import")
def import_form(request: Request) -> Response:
    return _import_form(request)


def _content_type(filename: str, declared: str | None) -> str:
    """Trust the file name over the browser's guess (Windows sends CSV as Excel)."""
    name = filename.lower()
    if name.endswith(XLSX_SUFFIXES):
        return XLSX_TYPE
    if name.endswith((".csv", ".txt")):
        return "text/csv"
    return declared or ""


def _parse(data: bytes, content_type: str, limits: UploadLimits) -> ParsedUpload:
    return parse_upload(
        data,
        content_type=content_type,
        columns=matrix_service.MATRIX_COLUMNS,
        required=matrix_service.MATRIX_COLUMNS,
        ignored=IMPORT_IGNORED_COLUMNS,
        limits=limits,
    )


def _pack(rows: list[SourceRow]) -> str:
    """The checked pairs as compressed CSV for the confirm form (names dropped)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(matrix_service.MATRIX_COLUMNS)
    for row in rows:
        writer.writerow([row.values.get(c) or "" for c in matrix_service.MATRIX_COLUMNS])
    return base64.urlsafe_b64encode(zlib.compress(out.getvalue().encode(), 9)).decode()


def _unpack(payload: str) -> bytes | None:
    try:
        packed = base64.urlsafe_b64decode(payload.encode())
        decompressor = zlib.decompressobj()
        # Bounded: a crafted payload cannot inflate into gigabytes.
        data = decompressor.decompress(packed, 50 * 1024 * 1024)
    except (binascii.Error, ValueError, zlib.error):
        return None
    return data if data and not decompressor.unconsumed_tail else None


def _names(session: Session, pairs: list[tuple[int, int]]) -> list[tuple[str, str]]:
    ids = {i for pair in pairs for i in pair}
    names = dict(
        session.execute(select(Employee.id, Employee.full_name).where(Employee.id.in_(ids))).all()
    )
    return [(names.get(s, "?"), names.get(c, "?")) for s, c in pairs]


@router.post("/matrix/import", dependencies=[CsrfProtect])
@form_fields("file", "replace_all")
async def import_preview(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = await request.form()
    upload = form.get("file")
    replace_all = bool(form.get("replace_all"))
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _import_form(request, errors={"file": "Choose a CSV or XLSX file"}, status_code=422)
    data = await upload.read()
    # Parsing and checking thousands of rows is synchronous database work: in the thread
    # pool, so it never blocks the event loop (every other request) meanwhile.
    return await run_in_threadpool(
        _import_preview,
        request,
        session,
        settings,
        data=data,
        filename=upload.filename[:200],
        content_type=upload.content_type,
        replace_all=replace_all,
    )


def _import_preview(
    request: Request,
    session: Session,
    settings: Settings,
    *,
    data: bytes,
    filename: str,
    content_type: str | None,
    replace_all: bool,
) -> Response:
    limits = UploadLimits.of(settings)
    try:
        parsed = _parse(data, _content_type(filename, content_type), limits)
        plan = matrix_service.plan_matrix_import(
            session,
            rows=parsed.rows,
            replace_all=replace_all,
            parse_errors=parsed.errors,
            limits=limits,
        )
    except DomainError as exc:
        # Unreadable as a whole (wrong type, empty, bad encoding, broken workbook, a
        # limit), or so many problems that checking stopped.
        errors = exc.errors or []
        if errors and "line" in errors[0] and exc.status == 422:
            return _preview(request, filename=filename, problems=errors, detail=exc.detail)
        status = 413 if exc.status == 413 else 422
        return _import_form(request, errors={"file": exc.detail}, status_code=status)
    problems = sorted(plan.errors, key=lambda e: (int(e.get("line", 0)), str(e["field"])))
    if problems:
        return _preview(request, filename=filename, problems=problems)
    payload = _pack(parsed.rows)
    too_big = len(payload) > MAX_CARRIED_BYTES
    return page(
        request,
        "hr/matrix/preview.html",
        {
            "filename": filename,
            "report": plan.report,
            "replace_all": replace_all,
            "adds": _names(session, plan.to_add[:PREVIEW_LIMIT]),
            "removes": _names(session, plan.to_remove[:PREVIEW_LIMIT]),
            "limit": PREVIEW_LIMIT,
            "payload": "" if too_big else payload,
            "too_big": too_big,
            "problems": [],
        },
    )


def _preview(
    request: Request, *, filename: str, problems: list[dict[str, Any]], detail: str = ""
) -> Response:
    """The bad rows, every one of them; nothing was saved."""
    return page(
        request,
        "hr/matrix/preview.html",
        {"filename": filename, "problems": problems, "detail": detail, "report": None},
        status_code=422,
    )


@router.post("/matrix/import/confirm", dependencies=[CsrfProtect])
def import_confirm(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    payload: Annotated[str, Form(max_length=MAX_CARRIED_BYTES)] = "",
    filename: Annotated[str, Form(max_length=200)] = "",
    replace_all: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    data = _unpack(payload)
    if data is None:
        return _import_form(
            request,
            errors={"file": "The checked file did not come back intact. Upload it again."},
            status_code=422,
        )
    try:
        limits = UploadLimits.of(settings)
        parsed = _parse(data, "text/csv", limits)
        # Checked again: the matrix or the employees may have changed since the preview.
        report = matrix_service.import_matrix(
            session,
            rows=parsed.rows,
            replace_all=bool(replace_all),
            parse_errors=parsed.errors,
            limits=limits,
        )
    except DomainError as exc:
        return _preview(
            request, filename=filename, problems=list(exc.errors or []), detail=exc.detail
        )
    _audit(
        request,
        session,
        "import",
        None,
        f"{filename or 'upload'}: {report.created} added, {report.removed} removed, "
        f"{report.unchanged} unchanged" + (" (whole matrix)" if replace_all else ""),
    )
    return see_other("/matrix", notice="imported")


# --- export ---------------------------------------------------------------------------------


@router.get("/matrix/export.csv")
def export_csv(session: SessionDep) -> Response:
    rows = matrix_service.matrix_rows(session)
    # A BOM so spreadsheet programs read the names as UTF-8; the import accepts it.
    return Response(
        ("\ufeff" + matrix_csv(rows)).encode(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="matrix.csv"',
            "Cache-Control": "private, no-store",
        },
    )


@router.get("/matrix/export.xlsx")
def export_xlsx(session: SessionDep) -> Response:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title="matrix")
    bold = Font(bold=True)
    header = []
    for name in EXPORT_COLUMNS:
        cell = WriteOnlyCell(sheet, value=name)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    for r in matrix_service.matrix_rows(session):
        cells = []
        for value in export_values(r):
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # text, never a formula (a name may start with '=')
            cells.append(cell)
        sheet.append(cells)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return Response(
        buffer.getvalue(),
        media_type=XLSX_TYPE,
        headers={
            "Content-Disposition": 'attachment; filename="matrix.xlsx"',
            "Cache-Control": "private, no-store",
        },
    )


# --- the department service map ---------------------------------------------------------


def _service_map_page(
    request: Request, session: Session, *, error: str = "", status_code: int = 200
) -> Response:
    return page(
        request,
        "hr/matrix/service_map.html",
        {
            "lines": service_map.service_map(session),
            "departments": org_service.list_departments(session),
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/matrix/service-map")
def service_map_page(request: Request, session: SessionDep) -> Response:
    return _service_map_page(request, session)


@router.post("/matrix/service-map", dependencies=[CsrfProtect])
def service_map_add(
    request: Request,
    session: SessionDep,
    department_id: Annotated[str, Form(max_length=20)] = "",
    served_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    supplier, served = parse_int(department_id), parse_int(served_id)
    if supplier is None or served is None:
        return _service_map_page(
            request, session, error="Choose both departments.", status_code=422
        )
    try:
        line = service_map.add_served(session, department_id=supplier, served_id=served)
    except DomainError as exc:
        return _service_map_page(request, session, error=exc.detail, status_code=exc.status)
    names = {d.id: d for d in org_service.list_departments(session)}
    _audit(
        request,
        session,
        "add service map line",
        names[line.supplier_department_id].external_id,
        f"{names[line.supplier_department_id].name} serves "
        f"{names[line.customer_department_id].name}",
    )
    return see_other("/matrix/service-map", notice="service-map-saved")


@router.post("/matrix/service-map/remove", dependencies=[CsrfProtect])
def service_map_remove(
    request: Request,
    session: SessionDep,
    department_id: Annotated[str, Form(max_length=20)] = "",
    served_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    supplier, served = parse_int(department_id), parse_int(served_id)
    if supplier is not None and served is not None:
        names = {d.id: d for d in org_service.list_departments(session)}
        if service_map.remove_served(session, department_id=supplier, served_id=served):
            _audit(
                request,
                session,
                "remove service map line",
                names[supplier].external_id,
                f"{names[supplier].name} no longer serves {names[served].name}",
            )
    return see_other("/matrix/service-map", notice="service-map-saved")
