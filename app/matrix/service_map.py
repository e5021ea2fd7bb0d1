"""HR's department-level service map: which departments each department serves.

"IT Support serves Sales, Finance". Nobody rates anybody because of it: the matrix
suggestions expand it to people and HR accepts the links that fit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, aliased

from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.matrix.models import DepartmentService
from app.org import service as org_service
from app.org.models import Department

MAX_SERVED = 1000


@dataclass(frozen=True)
class ServedDepartments:
    """One department and the departments it serves, by name."""

    department: Department
    serves: list[Department]


@dataclass(frozen=True)
class ServiceMapChange:
    line: ServedDepartments
    added: int
    removed: int


def service_map(session: Session) -> list[ServedDepartments]:
    """Every department that serves another, by name, with whom it serves."""
    supplier, customer = aliased(Department), aliased(Department)
    rows = session.execute(
        select(supplier, customer)
        .select_from(DepartmentService)
        .join(supplier, supplier.id == DepartmentService.supplier_department_id)
        .join(customer, customer.id == DepartmentService.customer_department_id)
        .order_by(supplier.name, supplier.external_id, customer.name, customer.external_id)
    ).all()
    lines: dict[int, ServedDepartments] = {}
    for s, c in rows:
        lines.setdefault(s.id, ServedDepartments(department=s, serves=[])).serves.append(c)
    return list(lines.values())


def served_by(session: Session, *, department_id: int) -> list[Department]:
    """The departments this one serves, by name."""
    return list(
        session.scalars(
            select(Department)
            .join(DepartmentService, DepartmentService.customer_department_id == Department.id)
            .where(DepartmentService.supplier_department_id == department_id)
            .order_by(Department.name, Department.external_id)
        )
    )


def service_pairs(session: Session) -> list[tuple[int, int]]:
    """(supplier department id, customer department id) of every line of the map."""
    return [
        (s, c)
        for s, c in session.execute(
            select(
                DepartmentService.supplier_department_id, DepartmentService.customer_department_id
            )
        )
    ]


def replace_served(
    session: Session, *, department_external_id: str, served_external_ids: Sequence[str]
) -> ServiceMapChange:
    """Make ``served_external_ids`` the complete list of departments this one serves."""
    department = org_service.get_department(session, external_id=department_external_id)
    if len(served_external_ids) > MAX_SERVED:
        raise Invalid(f"A department can serve at most {MAX_SERVED} departments")
    known = org_service.department_id_map(session)
    counts: dict[str, int] = defaultdict(int)
    for ext in served_external_ids:
        counts[ext] += 1
    errors: list[dict[str, str]] = []
    for ext, n in counts.items():
        if n > 1:
            errors.append({"field": "departments", "message": f"{ext!r} is listed {n} times"})
        if ext == department_external_id:
            errors.append(
                {"field": "departments", "message": f"{ext!r} cannot be its own customer"}
            )
        elif ext not in known:
            errors.append({"field": "departments", "message": f"unknown department {ext[:100]!r}"})
    if errors:
        raise Invalid(
            "The list of served departments is not valid: "
            + "; ".join(e["message"] for e in errors[:10]),
            errors=errors,
        )
    wanted = {known[ext] for ext in counts}
    current = {d.id for d in served_by(session, department_id=department.id)}
    to_add, to_remove = wanted - current, current - wanted
    if to_remove:
        session.execute(
            delete(DepartmentService).where(
                DepartmentService.supplier_department_id == department.id,
                DepartmentService.customer_department_id.in_(to_remove),
            )
        )
    if to_add:
        now = utcnow()
        session.execute(
            insert(DepartmentService),
            [
                {
                    "supplier_department_id": department.id,
                    "customer_department_id": c,
                    "created_at": now,
                }
                for c in sorted(to_add)
            ],
        )
    session.flush()
    return ServiceMapChange(
        line=ServedDepartments(department, served_by(session, department_id=department.id)),
        added=len(to_add),
        removed=len(to_remove),
    )


def add_served(session: Session, *, department_id: int, served_id: int) -> DepartmentService:
    """One more line on the map (HR screen); 409 when it is there already."""
    department = session.get(Department, department_id)
    served = session.get(Department, served_id)
    if department is None or served is None:
        raise NotFound("No such department")
    if department.id == served.id:
        raise Invalid(
            "A department cannot be its own customer: colleagues in the same team are "
            "suggested as a source of their own",
            errors=[{"field": "served_id", "message": "same as the supplier department"}],
        )
    if session.get(DepartmentService, (department.id, served.id)) is not None:
        raise Conflict(f"{department.name} already serves {served.name}")
    line = DepartmentService(supplier_department_id=department.id, customer_department_id=served.id)
    session.add(line)
    session.flush()
    return line


def remove_served(session: Session, *, department_id: int, served_id: int) -> bool:
    """Take one line off the map; False when it was not there."""
    result = session.execute(
        delete(DepartmentService).where(
            DepartmentService.supplier_department_id == department_id,
            DepartmentService.customer_department_id == served_id,
        )
    )
    session.flush()
    return bool(getattr(result, "rowcount", 0))
