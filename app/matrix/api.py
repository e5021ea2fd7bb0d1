"""HRIS API for the supplier-customer matrix: per-supplier lists, the whole matrix, import."""

from __future__ import annotations

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import Response

from app.auth import service as auth_service
from app.auth.deps import ApiKeyDep, ApiRoute, SettingsDep, require_scopes
from app.db import SessionDep
from app.matrix import service as matrix_service
from app.matrix import service_map
from app.matrix.schemas import (
    MATRIX_IMPORT_BODY,
    MAX_CUSTOMERS,
    CustomerSet,
    DepartmentRef,
    EmployeeBrief,
    MatrixPageRead,
    MatrixRowRead,
    ServedDepartmentsRead,
    ServedSet,
    SupplierCustomersRead,
    SupplierListRead,
)
from app.org import service as org_service
from app.org.api import (
    DryRun,
    RawBody,
    audit_import,
    bearer,
    import_route,
    parse_import_body,
)
from app.org.schemas import ExternalId, ImportReportRead, problems
from app.uploads.fields import spreadsheet_safe
from app.uploads.parsing import UploadLimits

router = APIRouter(route_class=ApiRoute, dependencies=[Depends(bearer)])
READ = [Depends(require_scopes("org:read"))]
WRITE = [Depends(require_scopes("org:write"))]

ExternalIdPath = Annotated[ExternalId, Path(description="The employee's external id.")]
CustomerList = Annotated[list[ExternalId], Body(max_length=MAX_CUSTOMERS)]

EXPORT_COLUMNS = [
    "supplier_external_id",
    "customer_external_id",
    "supplier_name",
    "supplier_email",
    "supplier_department_external_id",
    "supplier_department",
    "customer_name",
    "customer_email",
    "customer_department_external_id",
    "customer_department",
]
# A CSV download is also a valid upload: the descriptive columns are ignored on import.
IMPORT_IGNORED_COLUMNS = tuple(EXPORT_COLUMNS[2:])


def _supplier_customers(
    change_or_supplier: matrix_service.CustomerChange,
) -> SupplierCustomersRead:
    change = change_or_supplier
    return SupplierCustomersRead(
        supplier=EmployeeBrief.of(change.supplier),
        customers=[EmployeeBrief.of(c) for c in change.customers],
        count=len(change.customers),
        added=change.added,
        removed=change.removed,
    )


@router.put(
    "/suppliers/{external_id}/customers",
    response_model=SupplierCustomersRead,
    dependencies=WRITE,
    tags=["matrix"],
    summary="Replace a supplier's internal customers",
    description="The body is the supplier's complete list of internal customers, as a "
    'bare JSON array of external ids or as `{"customer_external_ids": [...]}` (scope '
    "`org:write`). Customers not in the list stop rating this supplier. Refused with 422 "
    "(naming each problem) when the list repeats someone, names the supplier (no "
    "self-rating), or names an unknown or inactive employee; 404 for an unknown supplier.",
    responses=problems(404, 422),
)
def put_supplier_customers(
    external_id: ExternalIdPath,
    body: Annotated[
        CustomerList | CustomerSet,
        Body(examples=[["E-1001", "E-1077"], {"customer_external_ids": ["E-1001"]}]),
    ],
    session: SessionDep,
    key: ApiKeyDep,
) -> SupplierCustomersRead:
    customers = body.customer_external_ids if isinstance(body, CustomerSet) else body
    change = matrix_service.replace_customers(
        session, supplier_external_id=external_id, customer_external_ids=customers
    )
    if change.added or change.removed:
        # Who changed whose raters, and when: a made-up quorum leaves a trail.
        auth_service.audit_api(
            session,
            key,
            action="replace customers",
            entity="matrix",
            entity_id=external_id,
            detail=f"{change.added} added, {change.removed} removed, {len(change.customers)} now",
        )
    return _supplier_customers(change)


@router.get(
    "/suppliers/{external_id}/customers",
    response_model=SupplierCustomersRead,
    dependencies=READ,
    tags=["matrix"],
    summary="List a supplier's internal customers",
    description="Everyone who rates this supplier, by name (scope `org:read`).",
    responses=problems(404, 422),
)
def get_supplier_customers(
    external_id: ExternalIdPath, session: SessionDep
) -> SupplierCustomersRead:
    supplier = org_service.get_employee(session, external_id=external_id)
    customers = matrix_service.customers_of(session, supplier_id=supplier.id)
    return SupplierCustomersRead(
        supplier=EmployeeBrief.of(supplier),
        customers=[EmployeeBrief.of(c) for c in customers],
        count=len(customers),
    )


@router.get(
    "/customers/{external_id}/suppliers",
    response_model=SupplierListRead,
    dependencies=READ,
    tags=["matrix"],
    summary="List whom a customer rates",
    description="The reverse view of the matrix (scope `org:read`).",
    responses=problems(404, 422),
)
def get_customer_suppliers(external_id: ExternalIdPath, session: SessionDep) -> SupplierListRead:
    customer = org_service.get_employee(session, external_id=external_id)
    suppliers = matrix_service.suppliers_of(session, customer_id=customer.id)
    return SupplierListRead(
        customer=EmployeeBrief.of(customer),
        suppliers=[EmployeeBrief.of(s) for s in suppliers],
        count=len(suppliers),
    )


def export_values(r: matrix_service.MatrixRow) -> list[str | None]:
    """One matrix row's cells in ``EXPORT_COLUMNS`` order (CSV and XLSX downloads)."""
    return [
        r.supplier_external_id,
        r.customer_external_id,
        r.supplier_name,
        r.supplier_email,
        r.supplier_department_external_id,
        r.supplier_department_name,
        r.customer_name,
        r.customer_email,
        r.customer_department_external_id,
        r.customer_department_name,
    ]


def matrix_csv(rows: list[matrix_service.MatrixRow]) -> str:
    """The matrix as CSV text (the same columns the import accepts, plus names)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for r in rows:
        writer.writerow([spreadsheet_safe(value) for value in export_values(r)])
    return out.getvalue()


@router.get(
    "/matrix",
    response_model=MatrixPageRead,
    dependencies=READ,
    tags=["matrix"],
    summary="Read the whole matrix (JSON or CSV)",
    description="One row per supplier-customer pair with names and departments, ordered by "
    "supplier then customer (scope `org:read`). JSON answers a page (`offset`, `limit`, "
    "`total`); with `Accept: text/csv` (or `format=csv`) the answer is the whole "
    "filtered matrix as a CSV file, which can be edited and uploaded again to "
    "`POST /import/matrix`. `department` keeps suppliers in that department and its "
    "sub-departments.",
    responses={
        200: {
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": ",".join(EXPORT_COLUMNS) + "\n",
                }
            },
            "description": "The matrix",
        },
        **problems(404, 422),
    },
)
def get_matrix(
    request: Request,
    session: SessionDep,
    supplier: Annotated[ExternalId | None, Query(description="Supplier external id.")] = None,
    customer: Annotated[ExternalId | None, Query(description="Customer external id.")] = None,
    department: Annotated[
        ExternalId | None, Query(description="Supplier's department (with sub-departments).")
    ] = None,
    format: Annotated[
        str | None, Query(pattern="^(json|csv)$", description="Overrides the Accept header.")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> MatrixPageRead | Response:
    supplier_id = org_service.get_employee(session, external_id=supplier).id if supplier else None
    customer_id = org_service.get_employee(session, external_id=customer).id if customer else None
    department_id = (
        org_service.get_department(session, external_id=department).id if department else None
    )
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "").lower()
    )
    if wants_csv:
        rows = matrix_service.matrix_rows(
            session, supplier_id=supplier_id, customer_id=customer_id, department_id=department_id
        )
        return Response(
            matrix_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="matrix.csv"'},
        )
    rows = matrix_service.matrix_rows(
        session,
        supplier_id=supplier_id,
        customer_id=customer_id,
        department_id=department_id,
        offset=offset,
        limit=limit,
    )
    return MatrixPageRead(
        items=[MatrixRowRead(**r.__dict__) for r in rows],
        total=matrix_service.count_matrix_rows(
            session, supplier_id=supplier_id, customer_id=customer_id, department_id=department_id
        ),
        offset=offset,
        limit=limit,
    )


@router.post(
    "/import/matrix",
    **import_route(MATRIX_IMPORT_BODY),
    summary="Import matrix pairs in bulk (all or nothing)",
    description="Each supplier in the upload gets exactly the customers listed for them "
    "(scope `org:write`); suppliers not in it keep theirs unless `replace_all=true` makes "
    "the upload the whole matrix. Every row is checked first (both employees known and "
    "active, no self-rating, no repeats); one bad row rejects the batch with a 422 "
    "listing every problem as `{line, field, message}` and nothing is saved. Reports "
    "`created` (new pairs), `unchanged` and `removed`; re-sending changes nothing. "
    "`dry_run=true` only validates and counts. The CSV download of `GET /matrix` is "
    "accepted as is (its name columns are ignored).",
)
def import_matrix(
    request: Request,
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    key: ApiKeyDep,
    replace_all: Annotated[
        bool, Query(description="Remove the links of suppliers missing from the upload.")
    ] = False,
    dry_run: DryRun = False,
) -> ImportReportRead:
    limits = UploadLimits.of(settings)
    parsed = parse_import_body(
        request,
        body,
        limits=limits,
        columns=matrix_service.MATRIX_COLUMNS,
        required=matrix_service.MATRIX_COLUMNS,
        ignored=IMPORT_IGNORED_COLUMNS,
    )
    report = matrix_service.import_matrix(
        session,
        rows=parsed.rows,
        replace_all=replace_all,
        dry_run=dry_run,
        parse_errors=parsed.errors,
        limits=limits,
    )
    audit_import(session, key, what="matrix", report=report)
    return ImportReportRead.model_validate(report, from_attributes=True)


# --- the department service map ---------------------------------------------------------


def _served_read(
    line: service_map.ServedDepartments, *, added: int | None = None, removed: int | None = None
) -> ServedDepartmentsRead:
    return ServedDepartmentsRead(
        department_external_id=line.department.external_id,
        department_name=line.department.name,
        serves=[DepartmentRef(external_id=d.external_id, name=d.name) for d in line.serves],
        added=added,
        removed=removed,
    )


@router.get(
    "/service-map",
    response_model=list[ServedDepartmentsRead],
    dependencies=READ,
    tags=["matrix"],
    summary="Read the department service map",
    description="Every department that serves other departments, with those it serves "
    '(scope `org:read`). The map ("IT Support serves Sales, Finance") is one source of '
    "`POST /matrix/suggestions`: it is expanded to people, sub-departments included; by "
    "itself it makes nobody rate anybody.",
    responses=problems(422),
)
def get_service_map(session: SessionDep) -> list[ServedDepartmentsRead]:
    return [_served_read(line) for line in service_map.service_map(session)]


@router.put(
    "/service-map/{external_id}",
    response_model=ServedDepartmentsRead,
    dependencies=WRITE,
    tags=["matrix"],
    summary="Replace the departments a department serves",
    description="The body is the department's complete list of served departments, as a "
    'bare JSON array of department external ids or as `{"department_external_ids": '
    "[...]}` (scope `org:write`); an empty list takes it off the map. Refused with 422 "
    "(naming each problem) for repeats, the department itself or unknown departments; "
    "404 for an unknown department.",
    responses=problems(404, 422),
)
def put_service_map(
    external_id: Annotated[ExternalId, Path(description="The serving department's external id.")],
    body: Annotated[
        Annotated[list[ExternalId], Body(max_length=service_map.MAX_SERVED)] | ServedSet,
        Body(examples=[["D-SALES", "D-FIN"], {"department_external_ids": ["D-SALES"]}]),
    ],
    session: SessionDep,
    key: ApiKeyDep,
) -> ServedDepartmentsRead:
    served = body.department_external_ids if isinstance(body, ServedSet) else body
    change = service_map.replace_served(
        session, department_external_id=external_id, served_external_ids=served
    )
    if change.added or change.removed:
        auth_service.audit_api(
            session,
            key,
            action="replace service map",
            entity="matrix",
            entity_id=external_id,
            detail=f"{change.line.department.name} serves "
            + (", ".join(d.name for d in change.line.serves) or "nobody")
            + f" ({change.added} added, {change.removed} removed)",
        )
    return _served_read(change.line, added=change.added, removed=change.removed)
