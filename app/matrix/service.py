"""The supplier-customer matrix: who rates whom.

Rules (the same for the API, the HR screens and the bulk import): nobody rates
themselves; a pair appears once; both supplier and customer must be active employees.
An employee may be a supplier and a customer at the same time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, and_, bindparam, case, delete, func, insert, or_, select
from sqlalchemy.orm import Session, aliased

from app.db import large_sqlite_cache, utcnow
from app.db.bulk import insert_tuples
from app.errors import Conflict, Invalid, NotFound
from app.matrix.models import MatrixLink
from app.org import importing
from app.org import service as org_service
from app.org.models import Department, Employee
from app.uploads import rows as uploads_rows
from app.uploads.parsing import Problems, SourceRow, UploadLimits

MATRIX_COLUMNS = ("supplier_external_id", "customer_external_id")


@dataclass
class CustomerChange:
    """The result of replacing one supplier's customers."""

    supplier: Employee
    customers: list[Employee]
    added: int
    removed: int


def _active_employee(session: Session, *, employee_id: int, role: str) -> Employee:
    emp = session.get(Employee, employee_id)
    if emp is None:
        raise NotFound(f"No employee has the id {employee_id}")
    if not emp.active:
        raise Invalid(
            f"{emp.full_name} ({emp.external_id}) is not active and cannot be a {role}",
            errors=[{"field": f"{role}_id", "message": "employee is not active"}],
        )
    return emp


def replace_customers(
    session: Session, *, supplier_external_id: str, customer_external_ids: Sequence[str]
) -> CustomerChange:
    """Make ``customer_external_ids`` the supplier's complete set of internal customers."""
    supplier = org_service.get_employee(session, external_id=supplier_external_id)
    errors: list[dict[str, str]] = []
    if not supplier.active:
        errors.append(
            {"field": "supplier", "message": f"supplier {supplier_external_id!r} is not active"}
        )
    counts: dict[str, int] = defaultdict(int)
    for ext in customer_external_ids:
        counts[ext] += 1
    for ext, n in counts.items():
        if n > 1:
            errors.append({"field": "customers", "message": f"{ext!r} is listed {n} times"})
    if supplier_external_id in counts:
        errors.append(
            {
                "field": "customers",
                "message": f"{supplier_external_id!r} cannot rate themselves (no self-rating)",
            }
        )
    known = org_service.employee_ids_by_external_id(session, external_ids=counts)
    for ext in counts:
        if ext == supplier_external_id:
            continue
        if ext not in known:
            errors.append({"field": "customers", "message": f"unknown employee {ext[:100]!r}"})
        elif not known[ext][1]:
            errors.append(
                {"field": "customers", "message": f"{ext!r} is not active and cannot rate"}
            )
    if errors:
        raise Invalid(
            "The customer list is not valid: " + "; ".join(e["message"] for e in errors[:10]),
            errors=errors,
        )

    wanted = {known[ext][0] for ext in counts}
    current = set(
        session.scalars(select(MatrixLink.customer_id).where(MatrixLink.supplier_id == supplier.id))
    )
    to_add = wanted - current
    to_remove = current - wanted
    if to_remove:
        session.execute(
            delete(MatrixLink).where(
                MatrixLink.supplier_id == supplier.id, MatrixLink.customer_id.in_(to_remove)
            )
        )
    if to_add:
        now = utcnow()
        session.execute(
            insert(MatrixLink),
            [{"supplier_id": supplier.id, "customer_id": c, "created_at": now} for c in to_add],
        )
    session.flush()
    return CustomerChange(
        supplier=supplier,
        customers=customers_of(session, supplier_id=supplier.id),
        added=len(to_add),
        removed=len(to_remove),
    )


def add_customer(session: Session, *, supplier_id: int, customer_id: int) -> MatrixLink:
    """Add one internal customer to a supplier (HR screen); 409 if already there."""
    if supplier_id == customer_id:
        raise Invalid(
            "Nobody can rate themselves",
            errors=[{"field": "customer_id", "message": "same as the supplier"}],
        )
    supplier = _active_employee(session, employee_id=supplier_id, role="supplier")
    customer = _active_employee(session, employee_id=customer_id, role="customer")
    if session.get(MatrixLink, (supplier_id, customer_id)) is not None:
        raise Conflict(f"{customer.full_name} already rates {supplier.full_name}")
    link = MatrixLink(supplier_id=supplier_id, customer_id=customer_id)
    session.add(link)
    session.flush()
    return link


def remove_customer(session: Session, *, supplier_id: int, customer_id: int) -> bool:
    """Remove one internal customer from a supplier; False when they were not linked."""
    result = session.execute(
        delete(MatrixLink).where(
            MatrixLink.supplier_id == supplier_id, MatrixLink.customer_id == customer_id
        )
    )
    session.flush()
    return bool(getattr(result, "rowcount", 0))


def drop_links_of_leavers(session: Session, *, leavers: Select[Any]) -> None:
    """Delete the live links of employees who left (``leavers`` selects their ids).

    The matrix rule: both sides of a live link are active. If they come back, HR adds
    their links again.
    """
    session.execute(
        delete(MatrixLink)
        .where(or_(MatrixLink.supplier_id.in_(leavers), MatrixLink.customer_id.in_(leavers)))
        .execution_options(synchronize_session=False)
    )


def customers_of(session: Session, *, supplier_id: int) -> list[Employee]:
    """The supplier's internal customers (who rate them), by name."""
    return list(
        session.scalars(
            select(Employee)
            .join(MatrixLink, MatrixLink.customer_id == Employee.id)
            .where(MatrixLink.supplier_id == supplier_id)
            .order_by(Employee.full_name, Employee.external_id)
        )
    )


def suppliers_of(session: Session, *, customer_id: int) -> list[Employee]:
    """The reverse view: whom this customer rates, by name."""
    return list(
        session.scalars(
            select(Employee)
            .join(MatrixLink, MatrixLink.supplier_id == Employee.id)
            .where(MatrixLink.customer_id == customer_id)
            .order_by(Employee.full_name, Employee.external_id)
        )
    )


@dataclass(frozen=True)
class MatrixRow:
    """One supplier-customer pair with the names HR needs to read it."""

    supplier_external_id: str
    supplier_name: str
    supplier_email: str
    supplier_department_external_id: str | None
    supplier_department_name: str | None
    customer_external_id: str
    customer_name: str
    customer_email: str
    customer_department_external_id: str | None
    customer_department_name: str | None
    created_at: datetime


def _matrix_query(
    *,
    supplier_id: int | None = None,
    customer_id: int | None = None,
    department_ids: set[int] | None = None,
) -> Any:
    supplier, customer = aliased(Employee), aliased(Employee)
    s_dept, c_dept = aliased(Department), aliased(Department)
    query = (
        select(
            supplier.external_id,
            supplier.full_name,
            supplier.email,
            s_dept.external_id,
            s_dept.name,
            customer.external_id,
            customer.full_name,
            customer.email,
            c_dept.external_id,
            c_dept.name,
            MatrixLink.created_at,
        )
        .select_from(MatrixLink)
        .join(supplier, supplier.id == MatrixLink.supplier_id)
        .join(customer, customer.id == MatrixLink.customer_id)
        .outerjoin(s_dept, s_dept.id == supplier.department_id)
        .outerjoin(c_dept, c_dept.id == customer.department_id)
    )
    if supplier_id is not None:
        query = query.where(MatrixLink.supplier_id == supplier_id)
    if customer_id is not None:
        query = query.where(MatrixLink.customer_id == customer_id)
    if department_ids is not None:
        query = query.where(supplier.department_id.in_(department_ids))
    return query.order_by(supplier.external_id, customer.external_id)


def matrix_rows(
    session: Session,
    *,
    supplier_id: int | None = None,
    customer_id: int | None = None,
    department_id: int | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[MatrixRow]:
    """The matrix as rows (one query), ordered by supplier then customer external id.

    ``department_id`` keeps suppliers in that department or any of its sub-departments.
    """
    depts = (
        org_service.descendant_department_ids(session, department_id=department_id)
        if department_id is not None
        else None
    )
    query = _matrix_query(supplier_id=supplier_id, customer_id=customer_id, department_ids=depts)
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [MatrixRow(*row) for row in session.execute(query)]


def count_matrix_rows(
    session: Session,
    *,
    supplier_id: int | None = None,
    customer_id: int | None = None,
    department_id: int | None = None,
) -> int:
    """How many pairs ``matrix_rows`` would return without paging."""
    query = select(func.count()).select_from(MatrixLink)
    if supplier_id is not None:
        query = query.where(MatrixLink.supplier_id == supplier_id)
    if customer_id is not None:
        query = query.where(MatrixLink.customer_id == customer_id)
    if department_id is not None:
        depts = org_service.descendant_department_ids(session, department_id=department_id)
        query = query.join(Employee, Employee.id == MatrixLink.supplier_id).where(
            Employee.department_id.in_(depts)
        )
    return session.scalar(query) or 0


@dataclass(frozen=True)
class MatrixCounts:
    links: int
    suppliers: int
    customers: int
    suppliers_below_min: int
    min_customers: int


def counts(session: Session, *, min_customers: int = 3) -> MatrixCounts:
    """Sizes of the live matrix; ``suppliers_below_min`` have fewer customers than the
    anonymity threshold and so will get no results."""
    per_supplier = (
        select(MatrixLink.supplier_id, func.count().label("n"))
        .group_by(MatrixLink.supplier_id)
        .subquery()
    )
    links, suppliers, below = session.execute(
        select(
            func.coalesce(func.sum(per_supplier.c.n), 0),
            func.count(),
            func.coalesce(func.sum(case((per_supplier.c.n < min_customers, 1), else_=0)), 0),
        ).select_from(per_supplier)
    ).one()
    customers = session.scalar(select(func.count(func.distinct(MatrixLink.customer_id)))) or 0
    return MatrixCounts(
        links=int(links),
        suppliers=int(suppliers),
        customers=int(customers),
        suppliers_below_min=int(below),
        min_customers=min_customers,
    )


def customer_counts(session: Session) -> dict[int, int]:
    """Supplier id -> number of internal customers."""
    return dict(
        session.execute(
            select(MatrixLink.supplier_id, func.count()).group_by(MatrixLink.supplier_id)
        ).all()
    )


# --- bulk import -----------------------------------------------------------------------


@dataclass
class MatrixImportPlan:
    report: importing.ImportReport
    errors: Problems
    to_add: list[tuple[int, int]] = field(default_factory=list)
    to_remove: list[tuple[int, int]] = field(default_factory=list)


def plan_matrix_import(
    session: Session,
    *,
    rows: Sequence[SourceRow],
    replace_all: bool = False,
    parse_errors: Iterable[dict[str, Any]] = (),
    limits: UploadLimits | None = None,
) -> MatrixImportPlan:
    """Check every pair; work out which links to add and remove.

    Each supplier in the upload gets exactly the customers listed for them; suppliers
    not in it keep theirs, unless ``replace_all`` makes the upload the whole matrix.
    """
    errors = importing.problems(parse_errors, what="matrix", limits=limits)
    report = importing.ImportReport(rows=len(rows) + len(errors))
    plan = MatrixImportPlan(report=report, errors=errors)
    if not rows:
        if not errors:
            errors.add(1, "body", "the import contains no rows")
        return plan
    employees = org_service.employee_ids_by_external_id(session)
    get = employees.get
    seen: dict[tuple[int, int], int] = {}
    for line, values in rows:
        # Fast path for the common clean row; anything odd goes through the full checks.
        s_ext, c_ext = values.get("supplier_external_id"), values.get("customer_external_id")
        if type(s_ext) is str and type(c_ext) is str:
            s, c = get(s_ext.strip()), get(c_ext.strip())
            if s is not None and c is not None and s[1] and c[1] and s[0] != c[0]:
                pair = (s[0], c[0])
                if pair not in seen:
                    seen[pair] = line
                    continue
        _pair_errors(errors, line=line, values=values, employees=employees, seen=seen)
    if errors:
        return plan

    session.flush()
    current = set(_all_links(session)) if replace_all else _links_of(session, {s for s, _ in seen})
    plan.to_add = [pair for pair in seen if pair not in current]
    plan.to_remove = sorted(current - seen.keys())
    report.created = len(plan.to_add)
    report.unchanged = len(seen) - len(plan.to_add)
    report.removed = len(plan.to_remove)
    return plan


def _pair_errors(
    errors: Problems,
    *,
    line: int,
    values: dict[str, Any],
    employees: dict[str, tuple[int, bool]],
    seen: dict[tuple[int, int], int],
) -> None:
    """Every problem of one matrix row (the slow path of ``plan_matrix_import``)."""
    row, row_errors = uploads_rows.check_row(uploads_rows.MatrixPairRow, values, line=line)
    errors.extend(row_errors)
    bad = {problem["field"] for problem in row_errors}
    ids: list[int] = []
    for name in MATRIX_COLUMNS:
        ext = getattr(row, name) if row else importing.raw_id(values, name)
        if ext is None or name in bad:
            continue
        found = employees.get(ext)
        role = name.split("_", 1)[0]
        if found is None:
            errors.add(line, name, f"unknown employee {ext!r}")
        elif not found[1]:
            errors.add(line, name, f"{role} {ext!r} is not an active employee")
        else:
            ids.append(found[0])
    if row is None or len(ids) != 2:
        return
    pair = (ids[0], ids[1])
    if pair in seen:
        errors.add(line, "row", f"repeats line {seen[pair]}")
    else:
        seen[pair] = line


def _links_of(session: Session, suppliers: Collection[int]) -> set[tuple[int, int]]:
    """The live links of these suppliers (through the key, which starts with the supplier).

    Not the whole matrix filtered here: an HRIS that sends the matrix in parts would
    have every part read all the links the parts before it wrote.
    """
    ordered = sorted(suppliers)
    found: set[tuple[int, int]] = set()
    for start in range(0, len(ordered), _SUPPLIERS_PER_QUERY):
        chunk = ordered[start : start + _SUPPLIERS_PER_QUERY]
        query = select(MatrixLink.supplier_id, MatrixLink.customer_id).where(
            MatrixLink.supplier_id.in_(chunk)
        )
        found.update((s, c) for s, c in session.execute(query))
    return found


# Bound parameters in one IN list (SQLite allows 32,766 per statement).
_SUPPLIERS_PER_QUERY = 5000


def _all_links(session: Session) -> list[tuple[int, int]]:
    # Straight from the driver's cursor: building 500,000 result Row objects costs more
    # than the rest of a matrix import's checks together.
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute("SELECT supplier_id, customer_id FROM matrix_link")
        return [(s, c) for s, c in cursor.fetchall()]
    finally:
        cursor.close()


def apply_matrix_import(session: Session, plan: MatrixImportPlan) -> None:
    """Write a clean plan with bulk statements."""
    if plan.errors:
        plan.errors.refuse()
    session.flush()
    if plan.to_remove:
        table = cast(Table, MatrixLink.__table__)
        session.execute(
            delete(table).where(
                and_(
                    table.c.supplier_id == bindparam("_s"),
                    table.c.customer_id == bindparam("_c"),
                )
            ),
            [{"_s": s, "_c": c} for s, c in plan.to_remove],
        )
    if plan.to_add:
        now = utcnow()
        # The customer index takes the new links in random order: a page cache that
        # holds it, instead of re-reading its pages from the OS on every insert.
        with large_sqlite_cache(session):
            insert_tuples(
                session,
                cast(Table, MatrixLink.__table__),
                ("supplier_id", "customer_id"),
                plan.to_add,
                constants={"created_at": now},
            )
    session.expire_all()


def import_matrix(
    session: Session,
    *,
    rows: Sequence[SourceRow],
    replace_all: bool = False,
    dry_run: bool = False,
    parse_errors: Iterable[dict[str, Any]] = (),
    limits: UploadLimits | None = None,
) -> importing.ImportReport:
    """Validate every pair, then write all or none (Invalid lists every problem)."""
    plan = plan_matrix_import(
        session, rows=rows, replace_all=replace_all, parse_errors=parse_errors, limits=limits
    )
    plan.errors.refuse()
    plan.report.dry_run = dry_run
    if not dry_run:
        apply_matrix_import(session, plan)
    return plan.report
