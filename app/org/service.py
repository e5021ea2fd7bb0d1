"""The organisation's business rules: departments, employees, competencies.

Every function takes the session first and keyword arguments after it, flushes but never
commits (the request or the job commits once), and raises ``app.errors`` classes. The
HRIS API, the HR pages and the bulk import all go through here, so a rule lives in one
place.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, aliased, joinedload

from app.auth import service as auth_service
from app.errors import Conflict, Invalid, NotFound
from app.org.default_competencies import default_competencies, default_translations
from app.org.models import Competency, Department, Employee
from app.uploads import rows
from app.uploads.fields import (
    CODE_MAX,
    CODE_RE,
    DEFAULT_LANGUAGE,
    NAME_MAX,
    external_id_problem,
    text_problem,
)


# What a domain above org must do when employees leave. The live matrix, say, drops their
# links (both sides of a link are active). Org cannot import it, so it registers here:
# app.models wires every such hook once per process.
class LeaversHook(Protocol):
    def __call__(self, session: Session, *, leavers: Select[Any]) -> None: ...


_leavers_hooks: list[LeaversHook] = []


def on_employees_leaving(hook: LeaversHook) -> None:
    """Have ``hook`` run in every transaction that makes employees inactive."""
    if hook not in _leavers_hooks:
        _leavers_hooks.append(hook)


def _employees_left(session: Session, *, leavers: Select[Any]) -> None:
    """Tell every hook; ``leavers`` selects the ids of the employees who left."""
    if not _leavers_hooks:
        # Silently keeping a leaver's live links would break the matrix rule.
        raise RuntimeError("No hook for leavers: import app.models, which connects the matrix")
    for hook in _leavers_hooks:
        hook(session, leavers=leavers)


class Outcome(enum.StrEnum):
    """What an idempotent upsert did."""

    created = "created"
    updated = "updated"
    unchanged = "unchanged"


def _raise_if(errors: list[dict[str, str]], what: str) -> None:
    if errors:
        raise Invalid(
            f"The {what} is not valid: " + "; ".join(e["message"] for e in errors), errors=errors
        )


# --- departments -----------------------------------------------------------------------


def get_department(session: Session, *, external_id: str) -> Department:
    """The department with this external id, or NotFound."""
    if external_id_problem(external_id):
        raise NotFound(f"No department has the external id {external_id[:100]!r}")
    dept = session.scalar(select(Department).where(Department.external_id == external_id))
    if dept is None:
        raise NotFound(f"No department has the external id {external_id!r}")
    return dept


def department_id_map(session: Session) -> dict[str, int]:
    """External id -> id of every department (small: departments number in thousands)."""
    return {ext: id_ for id_, ext in session.execute(select(Department.id, Department.external_id))}


def find_cycle(parents: Mapping[Any, Any], start: Any) -> list[Any] | None:
    """The loop reached by following ``parents`` from ``start``, or None when it ends."""
    seen: dict[Any, int] = {}
    path: list[Any] = []
    node = start
    while node is not None:
        if node in seen:
            return path[seen[node] :]
        seen[node] = len(path)
        path.append(node)
        node = parents.get(node)
    return None


def upsert_department(
    session: Session, *, external_id: str, name: str, parent_external_id: str | None = None
) -> tuple[Department, Outcome]:
    """Create or update a department by external id; refuses an unknown parent or a cycle."""
    row = rows.validated(
        rows.DepartmentRow,
        what="department",
        external_id=external_id,
        name=name,
        parent_external_id=parent_external_id,
    )
    external_id, name, parent_external_id = row.external_id, row.name, row.parent_external_id

    dept = session.scalar(select(Department).where(Department.external_id == external_id))
    parent_id: int | None = None
    if parent_external_id is not None:
        parent_id = session.scalar(
            select(Department.id).where(Department.external_id == parent_external_id)
        )
        if parent_id is None:
            raise Invalid(
                f"Unknown parent department {parent_external_id!r}: create it first",
                errors=[
                    {
                        "field": "parent_external_id",
                        "message": f"no department has the external id {parent_external_id!r}",
                    }
                ],
            )
    if dept is not None and parent_id is not None:
        parents = dict(session.execute(select(Department.id, Department.parent_id)).all())
        parents[dept.id] = parent_id
        loop = find_cycle(parents, dept.id)
        if loop:
            names = dict(
                session.execute(
                    select(Department.id, Department.external_id).where(Department.id.in_(loop))
                ).all()
            )
            chain = " -> ".join(names[i] for i in [*loop, loop[0]])
            raise Conflict(
                f"Department {external_id!r} cannot be placed under {parent_external_id!r}: "
                f"the tree would contain a cycle ({chain})",
                errors=[{"field": "parent_external_id", "message": "would create a cycle"}],
            )

    if dept is None:
        dept = Department(external_id=external_id, name=name, parent_id=parent_id)
        session.add(dept)
        session.flush()
        return dept, Outcome.created
    if dept.name == name and dept.parent_id == parent_id:
        return dept, Outcome.unchanged
    dept.name = name
    dept.parent_id = parent_id
    session.flush()
    return dept, Outcome.updated


def list_departments(session: Session) -> list[Department]:
    """Every department with its parent loaded, ordered by name."""
    return list(
        session.scalars(
            select(Department)
            .options(joinedload(Department.parent))
            .order_by(Department.name, Department.external_id)
        )
    )


@dataclass
class DepartmentNode:
    """One department in the tree view, with its active head counts."""

    id: int
    external_id: str
    name: str
    parent_id: int | None
    employee_count: int = 0
    total_employee_count: int = 0
    children: list[DepartmentNode] = field(default_factory=list)


def department_tree(session: Session) -> list[DepartmentNode]:
    """The department forest, children sorted by name; counts are of active employees.

    ``employee_count`` is the department's own people, ``total_employee_count`` includes
    every sub-department.
    """
    counts = dict(
        session.execute(
            select(Employee.department_id, func.count())
            .where(Employee.active.is_(True), Employee.department_id.is_not(None))
            .group_by(Employee.department_id)
        ).all()
    )
    nodes = {
        id_: DepartmentNode(
            id=id_, external_id=ext, name=name, parent_id=parent, employee_count=counts.get(id_, 0)
        )
        for id_, ext, name, parent in session.execute(
            select(Department.id, Department.external_id, Department.name, Department.parent_id)
        )
    }
    roots: list[DepartmentNode] = []
    for node in nodes.values():
        parent = nodes.get(node.parent_id) if node.parent_id is not None else None
        (parent.children if parent else roots).append(node)

    def finish(node: DepartmentNode) -> int:
        node.children.sort(key=lambda n: (n.name.lower(), n.external_id))
        node.total_employee_count = node.employee_count + sum(finish(c) for c in node.children)
        return node.total_employee_count

    roots.sort(key=lambda n: (n.name.lower(), n.external_id))
    for root in roots:
        finish(root)
    return roots


def descendant_department_ids(session: Session, *, department_id: int) -> set[int]:
    """The department and all its sub-departments, at any depth."""
    tree = (
        select(Department.id).where(Department.id == department_id).cte("subtree", recursive=True)
    )
    tree = tree.union(select(Department.id).where(Department.parent_id == tree.c.id))
    return set(session.scalars(select(tree.c.id)))


# --- employees -------------------------------------------------------------------------


def get_employee(session: Session, *, external_id: str) -> Employee:
    """The employee with this external id (active or not), or NotFound."""
    if external_id_problem(external_id):  # e.g. a NUL, which PostgreSQL cannot even compare
        raise NotFound(f"No employee has the external id {external_id[:100]!r}")
    emp = session.scalar(
        select(Employee)
        .options(joinedload(Employee.department), joinedload(Employee.manager))
        .where(Employee.external_id == external_id)
    )
    if emp is None:
        raise NotFound(f"No employee has the external id {external_id!r}")
    return emp


def get_employee_by_id(session: Session, *, employee_id: int) -> Employee:
    """The employee with this internal id, or NotFound."""
    emp = session.get(Employee, employee_id)
    if emp is None:
        raise NotFound(f"No employee has the id {employee_id}")
    return emp


def inactive_employees_left(session: Session) -> None:
    """Tell the domains above (the live matrix) that every inactive employee has left:
    for bulk writes that deactivated employees without going through this module."""
    _employees_left(session, leavers=select(Employee.id).where(Employee.active.is_(False)))


def _employee_left(session: Session, *, employee_id: int) -> None:
    _employees_left(session, leavers=select(Employee.id).where(Employee.id == employee_id))


class _Directory:
    """Org's employees as auth sees them (a manager account stands for one)."""

    def find_active(self, session: Session, *, email: str) -> auth_service.EmployeeRef | None:
        row = session.execute(
            select(Employee.id, Employee.full_name, Employee.email).where(
                Employee.email == email.strip().lower(), Employee.active.is_(True)
            )
        ).first()
        return _ref(*row) if row else None

    def by_ids(
        self, session: Session, *, ids: Collection[int]
    ) -> dict[int, auth_service.EmployeeRef]:
        rows = session.execute(
            select(Employee.id, Employee.full_name, Employee.email).where(Employee.id.in_(ids))
        )
        return {r[0]: _ref(*r) for r in rows}


def _ref(employee_id: int, full_name: str, email: str) -> auth_service.EmployeeRef:
    return auth_service.EmployeeRef(id=employee_id, full_name=full_name, email=email)


EMPLOYEE_DIRECTORY = _Directory()


def manager_chain_cycle(session: Session, *, employee_id: int, manager_id: int) -> list[int] | None:
    """The loop in the reporting lines if ``employee_id`` reported to ``manager_id``."""
    chain = (
        select(Employee.id, Employee.manager_id)
        .where(Employee.id == manager_id)
        .cte("chain", recursive=True)
    )
    chain = chain.union(
        select(Employee.id, Employee.manager_id).where(Employee.id == chain.c.manager_id)
    )
    above = dict(session.execute(select(chain.c.id, chain.c.manager_id)).all())
    above[employee_id] = manager_id
    return find_cycle(above, employee_id)


def upsert_employee(
    session: Session,
    *,
    external_id: str,
    email: str,
    full_name: str,
    department_external_id: str | None = None,
    manager_external_id: str | None = None,
    language: str | None = DEFAULT_LANGUAGE,
    active: bool = True,
    paper_channel: bool | None = None,
) -> tuple[Employee, Outcome]:
    """Create or update an employee by external id (a PUT: omitted fields get defaults).

    The email is stored lower-cased and must be unique; department and manager must
    exist; nobody manages themselves, directly or round a loop. Deactivating drops the
    employee's live matrix links.
    """
    row = rows.validated(
        rows.EmployeeRow,
        what="employee",
        external_id=external_id,
        email=email,
        full_name=full_name,
        department_external_id=department_external_id,
        manager_external_id=manager_external_id,
        language=language,
        active=active,
        paper_channel=paper_channel,
    )
    external_id, email, full_name = row.external_id, row.email, row.full_name
    language = row.language
    department_external_id = row.department_external_id
    manager_external_id = row.manager_external_id
    errors: list[dict[str, str]] = []

    department_id = None
    if department_external_id is not None:
        department_id = session.scalar(
            select(Department.id).where(Department.external_id == department_external_id)
        )
        if department_id is None:
            errors.append(
                {
                    "field": "department_external_id",
                    "message": f"no department has the external id {department_external_id!r}",
                }
            )
    manager_id = None
    if manager_external_id is not None:
        manager_id = session.scalar(
            select(Employee.id).where(Employee.external_id == manager_external_id)
        )
        if manager_id is None:
            errors.append(
                {
                    "field": "manager_external_id",
                    "message": f"no employee has the external id {manager_external_id!r}",
                }
            )
    _raise_if(errors, "employee")

    emp = session.scalar(select(Employee).where(Employee.external_id == external_id))
    holder = session.scalar(select(Employee.external_id).where(Employee.email == email))
    if holder is not None and holder != external_id:
        raise Conflict(
            f"The email {email!r} already belongs to employee {holder!r}",
            errors=[{"field": "email", "message": "already used by another employee"}],
        )
    if emp is not None and manager_id is not None:
        loop = manager_chain_cycle(session, employee_id=emp.id, manager_id=manager_id)
        if loop:
            raise Conflict(
                f"{manager_external_id!r} cannot manage {external_id!r}: "
                "the reporting lines would form a loop",
                errors=[{"field": "manager_external_id", "message": "would create a loop"}],
            )

    values = {
        "email": email,
        "full_name": full_name,
        "department_id": department_id,
        "manager_id": manager_id,
        "language": language,
        "active": active,
        # None keeps the stored value (false for a new employee).
        "paper_channel": bool(row.paper_channel)
        if row.paper_channel is not None or emp is None
        else emp.paper_channel,
    }
    if emp is None:
        emp = Employee(external_id=external_id, **values)
        session.add(emp)
        session.flush()
        return emp, Outcome.created
    if all(getattr(emp, key) == value for key, value in values.items()):
        return emp, Outcome.unchanged
    was_active = emp.active
    for key, value in values.items():
        setattr(emp, key, value)
    session.flush()
    if was_active and not active:
        _employee_left(session, employee_id=emp.id)
    return emp, Outcome.updated


@dataclass
class EmployeePage:
    items: list[Employee]
    total: int
    offset: int
    limit: int


def list_employees(
    session: Session,
    *,
    department_external_id: str | None = None,
    department_id: int | None = None,
    include_sub_departments: bool = False,
    active: bool | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> EmployeePage:
    """A page of employees ordered by name, with the total matching the filters.

    An unknown department external id is NotFound (a typo should not look like an
    empty department).
    """
    query = select(Employee)
    if department_external_id is not None:
        department_id = get_department(session, external_id=department_external_id).id
    if department_id is not None:
        if include_sub_departments:
            ids = descendant_department_ids(session, department_id=department_id)
            query = query.where(Employee.department_id.in_(ids))
        else:
            query = query.where(Employee.department_id == department_id)
    if active is not None:
        query = query.where(Employee.active.is_(active))
    text = (search or "").strip()
    if text:
        problem = text_problem(text, max_length=NAME_MAX)
        if problem:
            raise Invalid(f"search {problem}", errors=[{"field": "q", "message": problem}])
        query = query.where(
            or_(
                Employee.full_name.ilike(f"%{_escape_like(text)}%", escape="\\"),
                Employee.email.ilike(f"%{_escape_like(text.lower())}%", escape="\\"),
                Employee.external_id == text,
            )
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.options(joinedload(Employee.department), joinedload(Employee.manager))
        .order_by(Employee.full_name, Employee.external_id)
        .offset(max(offset, 0))
        .limit(max(limit, 0))
    )
    return EmployeePage(items=list(items), total=total, offset=offset, limit=limit)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def deactivate_employee(session: Session, *, external_id: str) -> Employee:
    """Mark a leaver inactive (never deleted: their history stays) and drop their live
    matrix links; past cycles keep their own snapshots. Idempotent."""
    emp = get_employee(session, external_id=external_id)
    if emp.active:
        emp.active = False
        session.flush()
        _employee_left(session, employee_id=emp.id)
    return emp


def reactivate_employee(session: Session, *, external_id: str) -> Employee:
    """Bring a returning employee back; their matrix links must be added again."""
    emp = get_employee(session, external_id=external_id)
    if not emp.active:
        emp.active = True
        session.flush()
    return emp


def update_employee(
    session: Session, *, employee: Employee, changes: Mapping[str, Any]
) -> list[str]:
    """Change some fields of one employee, leaving the others as they are (a PATCH).

    ``changes`` may name ``external_id`` (a rename: the HRIS key moves, the record and
    its history stay), ``email``, ``full_name``, ``department_external_id``,
    ``manager_external_id``, ``language`` and ``active``. The rules are those of
    :func:`upsert_employee`. Returns the names of the fields that changed.
    """
    unknown = set(changes) - _UPDATABLE_EMPLOYEE_FIELDS
    if unknown:
        raise ValueError(f"not employee fields: {sorted(unknown)}")
    current: dict[str, Any] = {
        "external_id": employee.external_id,
        "email": employee.email,
        "full_name": employee.full_name,
        "department_external_id": employee.department.external_id if employee.department else None,
        "manager_external_id": employee.manager.external_id if employee.manager else None,
        "language": employee.language,
        "active": employee.active,
    }
    row = rows.validated(rows.EmployeeRow, what="employee", **{**current, **changes})
    wanted = row.model_dump()
    changed = [name for name in current if wanted[name] != current[name]]
    if not changed:
        return []
    errors: list[dict[str, str]] = []
    department_id = employee.department_id
    if "department_external_id" in changed:
        department_id = None
        if row.department_external_id is not None:
            department_id = session.scalar(
                select(Department.id).where(Department.external_id == row.department_external_id)
            )
            if department_id is None:
                errors.append(
                    {
                        "field": "department_external_id",
                        "message": "no department has the external id "
                        f"{row.department_external_id!r}",
                    }
                )
    manager_id = employee.manager_id
    if "manager_external_id" in changed:
        manager_id = None
        if row.manager_external_id is not None:
            manager_id = session.scalar(
                select(Employee.id).where(Employee.external_id == row.manager_external_id)
            )
            if manager_id is None:
                errors.append(
                    {
                        "field": "manager_external_id",
                        "message": f"no employee has the external id {row.manager_external_id!r}",
                    }
                )
    _raise_if(errors, "employee")
    if "external_id" in changed and session.scalar(
        select(Employee.id).where(Employee.external_id == row.external_id)
    ):
        raise Conflict(
            f"The external id {row.external_id!r} already belongs to another employee",
            errors=[{"field": "external_id", "message": "already used by another employee"}],
        )
    if "email" in changed:
        holder = session.scalar(select(Employee.external_id).where(Employee.email == row.email))
        if holder is not None:
            raise Conflict(
                f"The email {row.email!r} already belongs to employee {holder!r}",
                errors=[{"field": "email", "message": "already used by another employee"}],
            )
    if (
        manager_id is not None
        and "manager_external_id" in changed
        and manager_chain_cycle(session, employee_id=employee.id, manager_id=manager_id)
    ):
        raise Conflict(
            f"{row.manager_external_id!r} cannot manage {row.external_id!r}: "
            "the reporting lines would form a loop",
            errors=[{"field": "manager_external_id", "message": "would create a loop"}],
        )
    was_active = employee.active
    employee.external_id = row.external_id
    employee.email = row.email
    employee.full_name = row.full_name
    employee.department_id = department_id
    employee.manager_id = manager_id
    employee.language = row.language
    employee.active = row.active
    session.flush()
    session.refresh(employee, ["department", "manager"])
    if was_active and not row.active:
        _employee_left(session, employee_id=employee.id)
    return changed


_UPDATABLE_EMPLOYEE_FIELDS = frozenset(
    {
        "external_id",
        "email",
        "full_name",
        "department_external_id",
        "manager_external_id",
        "language",
        "active",
    }
)


def set_paper_channel(session: Session, *, external_id: str, on: bool) -> bool:
    """Put an employee on the paper channel (no email, a printed letter) or take them
    off it; applies from the next launch. True when it changed."""
    emp = get_employee(session, external_id=external_id)
    if emp.paper_channel == on:
        return False
    emp.paper_channel = on
    session.flush()
    return True


def reporting_line_ids(session: Session, *, manager_employee_id: int) -> set[int]:
    """Ids of everyone under this manager at any depth (not the manager themselves)."""
    line = (
        select(Employee.id)
        .where(Employee.manager_id == manager_employee_id)
        .cte("reporting_line", recursive=True)
    )
    # UNION (not UNION ALL) stops even if bad data ever closed a loop.
    line = line.union(select(Employee.id).where(Employee.manager_id == line.c.id))
    ids = set(session.scalars(select(line.c.id)))
    ids.discard(manager_employee_id)
    return ids


# --- competencies ----------------------------------------------------------------------


def get_competency(session: Session, *, code: str) -> Competency:
    """The competency with this code, or NotFound."""
    if not CODE_RE.match(code) or len(code) > CODE_MAX:
        raise NotFound(f"No competency has the code {code[:100]!r}")
    comp = session.scalar(select(Competency).where(Competency.code == code))
    if comp is None:
        raise NotFound(f"No competency has the code {code!r}")
    return comp


def upsert_competency(
    session: Session,
    *,
    code: str,
    name: str,
    description: str = "",
    indicators: Sequence[str] = (),
    weight: float = 1.0,
    display_order: int = 0,
    active: bool = True,
    translations: Mapping[str, Any] | None = None,
) -> tuple[Competency, Outcome]:
    """Create or update a competency by code; weight must be positive.

    ``translations`` (texts in other languages, by language) replace the stored ones;
    None keeps them, so a client that knows nothing of them never erases them.
    """
    row = rows.validated(
        rows.CompetencyRow,
        what="competency",
        code=code,
        name=name,
        description=description,
        indicators=list(indicators),
        weight=weight,
        display_order=display_order,
        active=active,
        translations=None if translations is None else dict(translations),
    )
    code = row.code
    values = competency_values(row)
    comp = session.scalar(select(Competency).where(Competency.code == code))
    if comp is None:
        comp = Competency(code=code, **values)
        session.add(comp)
        session.flush()
        return comp, Outcome.created
    if all(getattr(comp, key) == value for key, value in values.items()):
        return comp, Outcome.unchanged
    for key, value in values.items():
        setattr(comp, key, value)
    session.flush()
    return comp, Outcome.updated


def competency_values(row: rows.CompetencyRow) -> dict[str, Any]:
    """The columns a validated row sets (translations only when it gives them)."""
    values: dict[str, Any] = row.model_dump(exclude={"code", "translations"})
    if row.translations is not None:
        values["translations"] = {
            language: text.model_dump() for language, text in sorted(row.translations.items())
        }
    return values


def missing_translations(
    competency: Competency, *, languages: Iterable[str], default_language: str
) -> list[str]:
    """The languages (besides the organisation's) with no name for this competency."""
    have = competency.translations or {}
    return [lang for lang in languages if lang != default_language and lang not in have]


@dataclass(frozen=True)
class TranslationGap:
    """Active employees read ``language``, but these active competencies lack it."""

    language: str
    employees: int
    competencies: list[str]


def translation_gaps(
    session: Session, *, languages: Iterable[str], default_language: str
) -> list[TranslationGap]:
    """Where raters would see a competency in the organisation's language, not theirs."""
    readers: Counter[str] = Counter()
    for language, count in session.execute(
        select(Employee.language, func.count()).where(Employee.active).group_by(Employee.language)
    ):
        readers[str(language or "").split("-")[0]] += count
    active = list_competencies(session, active=True)
    gaps = []
    for language in languages:
        if language == default_language or not readers[language]:
            continue
        missing = [c.name for c in active if language not in (c.translations or {})]
        if missing:
            gaps.append(TranslationGap(language, readers[language], missing))
    return gaps


def list_competencies(session: Session, *, active: bool | None = None) -> list[Competency]:
    """Competencies in the order raters see them."""
    query = select(Competency).order_by(Competency.display_order, Competency.code)
    if active is not None:
        query = query.where(Competency.active.is_(active))
    return list(session.scalars(query))


def seed_default_competencies(session: Session, *, language: str = "en") -> int:
    """Add any missing default competency (HR's edits are never overwritten); returns how
    many were created."""
    existing = set(session.scalars(select(Competency.code)))
    created = 0
    for spec in default_competencies(language):
        if spec["code"] in existing:
            continue
        upsert_competency(
            session, **spec, translations=default_translations(spec["code"], language)
        )
        created += 1
    return created


# --- small lookups for other domains ---------------------------------------------------


def employee_ids_by_external_id(
    session: Session, *, external_ids: Iterable[str] | None = None
) -> dict[str, tuple[int, bool]]:
    """External id -> (id, active), for all employees or the ones named."""
    query = select(Employee.external_id, Employee.id, Employee.active)
    if external_ids is not None:
        wanted = list(set(external_ids))
        if not wanted:
            return {}
        query = query.where(Employee.external_id.in_(wanted))
    return {ext: (id_, active) for ext, id_, active in session.execute(query)}


def count_employees(session: Session, *, active: bool | None = True) -> int:
    """How many employees there are (active ones by default)."""
    query = select(func.count()).select_from(Employee)
    if active is not None:
        query = query.where(Employee.active.is_(active))
    return session.scalar(query) or 0


def manager_of(session: Session, *, employee_id: int) -> Employee | None:
    """The employee's line manager, if any."""
    manager = aliased(Employee)
    return session.scalar(
        select(manager)
        .join(Employee, Employee.manager_id == manager.id)
        .where(Employee.id == employee_id)
    )
