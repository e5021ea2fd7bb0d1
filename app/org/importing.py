"""Bulk import from the HRIS (or an HR upload): validate every row, then write.

Reading the upload (CSV, JSON, XLSX, with limits) and each row's field rules live in
``app.uploads``; this module adds what needs the database and the whole file: unknown
departments and managers, repeated ids and emails, loops, and what would change.

An import is all or nothing: every row is checked in memory first (set and dict
lookups, no query per row) and every problem is reported with its line, field and
message; only a clean batch is written, with bulk statements. The HRIS sends its whole
company this way (50,000 employees in the benchmark), so nothing here may do a database
round trip per row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from app import i18n
from app.db import large_sqlite_cache, utcnow
from app.db.bulk import insert_tuples, reserve_ids, update_tuples
from app.errors import Conflict, TooLarge
from app.org import service as org_service
from app.org.models import Competency, Department, Employee
from app.uploads import fields
from app.uploads import rows as row_models
from app.uploads.parsing import Problems, SourceRow, UploadLimits

# Kept under its old name: the report exports import it from here.
spreadsheet_safe = fields.spreadsheet_safe

# The file's column order: the id first, then the fields of a PUT body.
EMPLOYEE_COLUMNS = ("external_id", *row_models.EmployeeFields.model_fields)
EMPLOYEE_REQUIRED = ("external_id", "email", "full_name")
EMPLOYEE_TABLE_COLUMNS = (
    "id",
    "external_id",
    "email",
    "full_name",
    "department_id",
    "manager_id",
    "language",
    "active",
    "paper_channel",
    "created_at",
    "updated_at",
)

DEPARTMENT_COLUMNS = ("external_id", *row_models.DepartmentFields.model_fields)
DEPARTMENT_REQUIRED = ("external_id", "name")
DEPARTMENT_TABLE_COLUMNS = ("id", "external_id", "name", "parent_id", "created_at", "updated_at")

# Texts in other languages come flat, one column per field and language (name_ru...).
COMPETENCY_COLUMNS = (
    "code",
    *(name for name in row_models.CompetencyFields.model_fields if name != "translations"),
    *(
        f"{name}_{language}"
        for language in i18n.available_languages()
        for name in row_models.TRANSLATED_FIELDS
    ),
)
COMPETENCY_REQUIRED = ("code", "name")
# A rating form asks every competency: a few dozen at most. Written one by one through
# the service, so the count is bounded well below UPLOAD_MAX_ROWS.
COMPETENCY_IMPORT_MAX_ROWS = 1000


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do)."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    removed: int = 0
    dry_run: bool = False
    # A full import would deactivate more than IMPORT_MAX_DEACTIVATE_FRACTION of the
    # active employees: it is written only when the request confirms it.
    needs_confirmation: bool = False


def problems(
    found: Iterable[dict[str, Any]] = (), *, what: str, limits: UploadLimits | None = None
) -> Problems:
    """An import's problem list, refused at once past UPLOAD_MAX_PROBLEMS."""
    return Problems(found, limit=(limits or UploadLimits()).max_problems, what=f"{what} import")


def raw_id(values: Mapping[str, Any], name: str) -> str | None:
    """The id a rejected row was meant to have, when it is usable, so that rows naming
    it (as parent or manager) are not also reported as unknown."""
    try:
        value = fields.cell_text(values.get(name))
    except ValueError:
        return None
    return value if value and not fields.external_id_problem(value) else None


def cycle_members(parents: Mapping[str, str | None], starts: Iterable[str]) -> set[str]:
    """Every node on a loop reachable from ``starts`` (linear time, no recursion)."""
    done: set[str] = set()
    looped: set[str] = set()
    for start in starts:
        path: dict[str, int] = {}
        order: list[str] = []
        node: str | None = start
        while node is not None and node not in done:
            if node in path:
                looped.update(order[path[node] :])
                break
            path[node] = len(order)
            order.append(node)
            node = parents.get(node)
        done.update(order)
    return looped


def _table(model: type[Department] | type[Employee]) -> Table:
    return cast(Table, model.__table__)


# --- ordering shared by the department and employee imports -----------------------------


class _TreeRow(Protocol):
    @property
    def external_id(self) -> str: ...


_Row = TypeVar("_Row", bound=_TreeRow)


def parents_first(rows: Sequence[_Row], *, parent_of: Callable[[_Row], str | None]) -> list[_Row]:
    """New rows ordered so each row's parent (department or manager) in the batch comes first.

    Parents outside the batch already exist. Iterative, not recursive: reporting lines can
    be deep, and the caller has already refused loops.
    """
    by_ext = {row.external_id: row for row in rows}
    depth: dict[str, int] = {}

    def depth_of(ext: str) -> int:
        chain: list[str] = []
        node: str | None = ext
        while node is not None and node in by_ext and node not in depth:
            chain.append(node)
            node = parent_of(by_ext[node])
        base = depth.get(node, 0) if node is not None else 0
        for offset, item in enumerate(reversed(chain), start=1):
            depth[item] = base + offset
        return depth[ext]

    return sorted(rows, key=lambda row: depth_of(row.external_id))


def _write_rows(
    session: Session,
    table: Table,
    new_rows: Sequence[_Row],
    changed: Sequence[_Row],
    ids: dict[str, int],
    *,
    parent_of: Callable[[_Row], str | None],
    columns: Sequence[str],
    values: Callable[[_Row, dict[str, int]], tuple[Any, ...]],
    now: datetime,
) -> None:
    """Insert the new departments or employees and update the changed ones, each in one
    bulk statement; ``values(row, ids)`` gives ``columns``, and ``ids`` maps external ids
    to row ids (the new rows' are added).

    The new rows get their ids reserved up front and go in parents (department or
    manager) first, so every parent id is known at insert time, with no follow-up
    UPDATE per row. Timestamps are ``now``.
    """
    if new_rows:
        ordered = parents_first(new_rows, parent_of=parent_of)
        ids.update(
            zip(
                [r.external_id for r in ordered],
                reserve_ids(session, table, len(ordered)),
                strict=True,
            )
        )
        # Their unique indexes (external id, email) take the rows in random order.
        with large_sqlite_cache(session):
            insert_tuples(
                session,
                table,
                columns,
                [values(row, ids) for row in ordered],
                constants={"created_at": now, "updated_at": now},
            )
    if changed:
        update_tuples(
            session,
            table,
            (*columns, "updated_at"),
            [(*values(row, ids), now) for row in changed],
        )


# --- departments -----------------------------------------------------------------------


@dataclass
class _DepartmentRow:
    line: int
    external_id: str
    name: str
    parent_external_id: str | None


def _check_department_row(
    source: SourceRow, *, seen_ids: dict[str, int], errors: Problems
) -> _DepartmentRow | None:
    """One row's own problems (and a repeat of an earlier id); the row when it is clean."""
    line = source.line
    row, row_errors = row_models.check_row(row_models.DepartmentRow, source.values, line=line)
    errors.extend(row_errors)
    external_id = row.external_id if row else raw_id(source.values, "external_id")
    if external_id is not None:
        if external_id in seen_ids:
            errors.add(line, "external_id", f"repeats line {seen_ids[external_id]}")
            return None
        seen_ids[external_id] = line
    if row is None:
        return None
    return _DepartmentRow(line, row.external_id, row.name, row.parent_external_id)


def _department_values(row: _DepartmentRow, ids: Mapping[str, int]) -> tuple[Any, ...]:
    """The row in ``DEPARTMENT_TABLE_COLUMNS`` order, without the timestamps."""
    return (
        ids[row.external_id],
        row.external_id,
        row.name,
        ids.get(row.parent_external_id or ""),
    )


def import_departments(
    session: Session,
    *,
    rows: Sequence[SourceRow],
    dry_run: bool = False,
    parse_errors: Iterable[dict[str, Any]] = (),
    limits: UploadLimits | None = None,
) -> ImportReport:
    """Upsert departments in bulk, all or nothing; parents may come later in the file.

    Departments are never deleted or deactivated by an import: employees and past cycles
    refer to them.
    """
    errors = problems(parse_errors, what="department", limits=limits)
    report = ImportReport(rows=len(rows) + len(errors), dry_run=dry_run)
    if not rows and not errors:
        errors.add(1, "body", "the import contains no rows")
    # external id -> (id, name, parent_id)
    existing: dict[str, tuple[int, str, int | None]] = {
        ext: (id_, name, parent_id)
        for id_, ext, name, parent_id in session.execute(
            select(Department.id, Department.external_id, Department.name, Department.parent_id)
        )
    }
    ext_by_id = {values[0]: ext for ext, values in existing.items()}
    seen_ids: dict[str, int] = {}
    checked: list[_DepartmentRow] = []
    for source in rows:
        row = _check_department_row(source, seen_ids=seen_ids, errors=errors)
        if row is not None:
            checked.append(row)
    for row in checked:
        parent = row.parent_external_id
        if parent is not None and parent not in seen_ids and parent not in existing:
            errors.add(row.line, "parent_external_id", f"unknown department {parent!r}")
    if not errors:
        parents: dict[str, str | None] = {
            ext: ext_by_id.get(values[2]) if values[2] is not None else None
            for ext, values in existing.items()
        }
        in_file = {row.external_id: row for row in checked}
        parents.update({ext: row.parent_external_id for ext, row in in_file.items()})
        for ext in sorted(cycle_members(parents, in_file)):
            if ext in in_file:
                errors.add(
                    in_file[ext].line,
                    "parent_external_id",
                    "the department tree would form a loop through this department",
                )
    errors.refuse()

    new_rows = [row for row in checked if row.external_id not in existing]
    changed = [
        row
        for row in checked
        if row.external_id in existing
        and (existing[row.external_id][1], ext_by_id.get(existing[row.external_id][2] or -1))
        != (row.name, row.parent_external_id)
    ]
    report.created, report.updated = len(new_rows), len(changed)
    report.unchanged = len(checked) - len(new_rows) - len(changed)
    if dry_run or not (new_rows or changed):
        return report

    _write_rows(
        session,
        _table(Department),
        new_rows,
        changed,
        {ext: values[0] for ext, values in existing.items()},
        parent_of=lambda row: row.parent_external_id,
        columns=DEPARTMENT_TABLE_COLUMNS[:-2],
        values=_department_values,
        now=utcnow(),
    )
    # The bulk statements bypass the identity map: make loaded objects re-read.
    session.expire_all()
    return report


# --- employees -------------------------------------------------------------------------


@dataclass
class _EmployeeRow:
    line: int
    external_id: str
    email: str
    full_name: str
    department_id: int | None
    manager_external_id: str | None
    language: str
    active: bool
    # None in the file: keep the stored value (resolved by plan_employee_import).
    paper_channel: bool | None


@dataclass
class EmployeeImportPlan:
    """The checked import: its errors, or what writing it will do."""

    report: ImportReport
    errors: Problems
    rows: list[_EmployeeRow] = field(default_factory=list)
    existing: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    deactivate_ids: list[int] = field(default_factory=list)
    active_before: int = 0


def _check_employee_row(
    source: SourceRow,
    *,
    departments: Mapping[str, int],
    seen_ids: dict[str, int],
    seen_emails: dict[str, int],
    errors: Problems,
) -> _EmployeeRow | None:
    """One row's own problems (and repeats of earlier rows); the row when it is clean."""
    line = source.line
    row, row_errors = row_models.check_row(row_models.EmployeeRow, source.values, line=line)
    errors.extend(row_errors)
    clean = row is not None
    external_id = row.external_id if row else raw_id(source.values, "external_id")
    if external_id is not None:
        if external_id in seen_ids:
            errors.add(line, "external_id", f"repeats line {seen_ids[external_id]}")
            clean = False
        else:
            seen_ids[external_id] = line
    if row is None:
        return None
    if row.email in seen_emails:
        errors.add(line, "email", f"{row.email!r} is also on line {seen_emails[row.email]}")
        clean = False
    else:
        seen_emails[row.email] = line
    department_id = None
    if row.department_external_id is not None:
        department_id = departments.get(row.department_external_id)
        if department_id is None:
            errors.add(
                line,
                "department_external_id",
                f"unknown department {row.department_external_id!r}",
            )
            clean = False
    if not clean:
        return None
    return _EmployeeRow(
        line=line,
        external_id=row.external_id,
        email=row.email,
        full_name=row.full_name,
        department_id=department_id,
        manager_external_id=row.manager_external_id,
        language=row.language,
        active=row.active,
        paper_channel=row.paper_channel,
    )


def _employee_values(row: _EmployeeRow, ids: Mapping[str, int]) -> tuple[Any, ...]:
    """The row in ``EMPLOYEE_TABLE_COLUMNS`` order, without the timestamps."""
    return (
        ids[row.external_id],
        row.external_id,
        row.email,
        row.full_name,
        row.department_id,
        ids.get(row.manager_external_id or ""),
        row.language,
        row.active,
        bool(row.paper_channel),
    )


def _employee_changed(
    old: tuple[Any, ...], row: _EmployeeRow, *, ext_by_id: Mapping[int, str]
) -> bool:
    """Whether the row differs from the stored employee (a tuple of the plan's ``existing``)."""
    return (old[1], old[2], old[3], ext_by_id.get(old[4]), old[5], old[6], old[7]) != (
        row.email,
        row.full_name,
        row.department_id,
        row.manager_external_id,
        row.language,
        row.active,
        row.paper_channel,
    )


def plan_employee_import(
    session: Session,
    *,
    rows: Sequence[SourceRow],
    deactivate_missing: bool = False,
    parse_errors: Iterable[dict[str, Any]] = (),
    limits: UploadLimits | None = None,
) -> EmployeeImportPlan:
    """Check every row against the file and the database; count what would change.

    ``parse_errors`` are the upload's own problems (from ``parse_upload``), reported
    together with the rows' problems.
    """
    errors = problems(parse_errors, what="employee", limits=limits)
    report = ImportReport(rows=len(rows) + len(errors))
    plan = EmployeeImportPlan(report=report, errors=errors)
    if not rows:
        if not errors:
            errors.add(1, "body", "the import contains no rows")
        return plan

    departments = org_service.department_id_map(session)
    # external id -> (id, email, full_name, department_id, manager_id, language, active,
    # paper_channel)
    existing: dict[str, tuple[Any, ...]] = {
        r[0]: tuple(r[1:])
        for r in session.execute(
            select(
                Employee.external_id,
                Employee.id,
                Employee.email,
                Employee.full_name,
                Employee.department_id,
                Employee.manager_id,
                Employee.language,
                Employee.active,
                Employee.paper_channel,
            )
        )
    }
    plan.existing = existing
    email_holder = {values[1]: ext for ext, values in existing.items()}
    ext_by_id = {values[0]: ext for ext, values in existing.items()}

    seen_ids: dict[str, int] = {}
    seen_emails: dict[str, int] = {}
    for source in rows:
        row = _check_employee_row(
            source,
            departments=departments,
            seen_ids=seen_ids,
            seen_emails=seen_emails,
            errors=errors,
        )
        if row is not None:
            plan.rows.append(row)

    # Second pass: managers may be defined later in the same file.
    in_file = {row.external_id: row for row in plan.rows}
    for row in plan.rows:
        manager = row.manager_external_id
        if manager is not None and manager not in seen_ids and manager not in existing:
            errors.add(row.line, "manager_external_id", f"unknown employee {manager!r}")
        holder = email_holder.get(row.email)
        if holder is not None and holder != row.external_id and holder not in seen_ids:
            errors.add(row.line, "email", f"{row.email!r} already belongs to employee {holder!r}")
    if errors:
        return plan

    # Nobody may end up managing themselves round a loop.
    parents: dict[str, str | None] = {
        ext: ext_by_id.get(values[4]) for ext, values in existing.items()
    }
    parents.update({row.external_id: row.manager_external_id for row in plan.rows})
    for ext in sorted(cycle_members(parents, in_file)):
        if ext in in_file:
            errors.add(
                in_file[ext].line,
                "manager_external_id",
                "the reporting lines would form a loop through this employee",
            )
    if errors:
        return plan

    for row in plan.rows:
        old = existing.get(row.external_id)
        if row.paper_channel is None:
            row.paper_channel = bool(old[7]) if old is not None else False
        if old is None:
            report.created += 1
            continue
        if not _employee_changed(old, row, ext_by_id=ext_by_id):
            report.unchanged += 1
        else:
            report.updated += 1
    plan.active_before = sum(1 for values in existing.values() if values[6])
    if deactivate_missing:
        # Every id the file names counts as present, whatever else its row says: an
        # employee in the file is never deactivated for being "missing".
        plan.deactivate_ids = [
            values[0] for ext, values in existing.items() if values[6] and ext not in seen_ids
        ]
        report.deactivated = len(plan.deactivate_ids)
    return plan


def check_mass_deactivation(
    plan: EmployeeImportPlan, *, max_fraction: float, confirmed: bool, dry_run: bool
) -> None:
    """Refuse (409) an import that would deactivate too many employees, unless confirmed.

    A truncated HRIS export or a half-read spreadsheet looks like a company that lost
    most of its people; deactivating them drops their live matrix links, which is slow
    to undo. A dry run only flags it (``needs_confirmation``) and shows the count.
    """
    count, active = len(plan.deactivate_ids), plan.active_before
    if not count or count <= max_fraction * active:
        return
    plan.report.needs_confirmation = not confirmed
    if confirmed or dry_run:
        return
    raise Conflict(
        f"This import would deactivate {count:,} of {active:,} active employees "
        f"({count / active:.0%}), more than IMPORT_MAX_DEACTIVATE_FRACTION allows "
        f"({max_fraction:.0%}). Nothing was saved. If the file really is the whole company, "
        "send it again with confirm_mass_deactivation=true.",
        errors=[
            {
                "field": "deactivate_missing",
                "message": f"would deactivate {count} of {active} active employees",
            }
        ],
        deactivated=count,
        active=active,
        limit="IMPORT_MAX_DEACTIVATE_FRACTION",
        limit_value=max_fraction,
    )


def apply_employee_import(session: Session, plan: EmployeeImportPlan) -> None:
    """Write a clean plan with bulk statements (a handful of round trips in all)."""
    if plan.errors:
        plan.errors.refuse()
    session.flush()
    table = cast(Table, Employee.__table__)
    existing = plan.existing
    ext_by_id = {values[0]: ext for ext, values in existing.items()}
    now = utcnow()
    ids = {ext: values[0] for ext, values in existing.items()}

    changed = []
    for row in plan.rows:
        old = existing.get(row.external_id)
        if old is None:
            continue
        if _employee_changed(old, row, ext_by_id=ext_by_id):
            changed.append(row)

    # Emails can move between employees in one import (A takes B's old address): park
    # the addresses that move first, so the unique index never sees two holders.
    claimed = {row.email for row in plan.rows}
    moving = [
        {"_id": existing[row.external_id][0], "email": f"#moving-{existing[row.external_id][0]}"}
        for row in changed
        if existing[row.external_id][1] != row.email and existing[row.external_id][1] in claimed
    ]
    by_id = table.c.id == bindparam("_id")
    if moving:
        session.execute(update(table).where(by_id), moving)

    _write_rows(
        session,
        _table(Employee),
        [row for row in plan.rows if row.external_id not in existing],
        changed,
        ids,
        parent_of=lambda row: row.manager_external_id,
        columns=EMPLOYEE_TABLE_COLUMNS[:-2],
        values=_employee_values,
        now=now,
    )
    if plan.deactivate_ids:
        session.execute(
            update(table).where(by_id),
            [{"_id": id_, "active": False, "updated_at": now} for id_ in plan.deactivate_ids],
        )
    if plan.deactivate_ids or any(not row.active for row in changed):
        org_service.inactive_employees_left(session)
    # The bulk statements bypass the identity map: make loaded objects re-read.
    session.expire_all()


def import_employees(
    session: Session,
    *,
    rows: Sequence[SourceRow],
    deactivate_missing: bool = False,
    dry_run: bool = False,
    parse_errors: Iterable[dict[str, Any]] = (),
    limits: UploadLimits | None = None,
    max_deactivate_fraction: float = 1.0,
    confirm_mass_deactivation: bool = False,
) -> ImportReport:
    """Validate every row, then write all of them or none (Invalid lists every problem).

    With ``deactivate_missing`` the file is the whole company: active employees not in
    it are deactivated, but more than ``max_deactivate_fraction`` of them only with
    ``confirm_mass_deactivation`` (409 otherwise). With ``dry_run`` nothing is written;
    the report says what would change.
    """
    plan = plan_employee_import(
        session,
        rows=rows,
        deactivate_missing=deactivate_missing,
        parse_errors=parse_errors,
        limits=limits,
    )
    plan.errors.refuse()
    check_mass_deactivation(
        plan,
        max_fraction=max_deactivate_fraction,
        confirmed=confirm_mass_deactivation,
        dry_run=dry_run,
    )
    plan.report.dry_run = dry_run
    if not dry_run:
        apply_employee_import(session, plan)
    return plan.report


# --- competencies ----------------------------------------------------------------------


def import_competencies(
    session: Session,
    *,
    rows: Sequence[SourceRow],
    dry_run: bool = False,
    parse_errors: Iterable[dict[str, Any]] = (),
    limits: UploadLimits | None = None,
) -> ImportReport:
    """Upsert competencies by code, all or nothing (one indicator per line of its cell).

    Competencies missing from the file are left alone: deactivate one with
    ``active=false``. Changes apply to cycles launched afterwards.
    """
    if len(rows) > COMPETENCY_IMPORT_MAX_ROWS:
        raise TooLarge(
            f"Too many competencies: at most {COMPETENCY_IMPORT_MAX_ROWS} per import",
            limit="COMPETENCY_IMPORT_MAX_ROWS",
            limit_value=COMPETENCY_IMPORT_MAX_ROWS,
        )
    errors = problems(parse_errors, what="competency", limits=limits)
    report = ImportReport(rows=len(rows) + len(errors), dry_run=dry_run)
    if not rows and not errors:
        errors.add(1, "body", "the import contains no rows")
    seen: dict[str, int] = {}
    checked: list[row_models.CompetencyRow] = []
    for source in rows:
        row, row_errors = row_models.check_row(
            row_models.CompetencyRow, source.values, line=source.line
        )
        errors.extend(row_errors)
        if row is None:
            continue
        if row.code in seen:
            errors.add(source.line, "code", f"repeats line {seen[row.code]}")
            continue
        seen[row.code] = source.line
        checked.append(row)
    errors.refuse()

    existing = {c.code: c for c in session.scalars(select(Competency))}
    for row in checked:
        old = existing.get(row.code)
        if old is None:
            report.created += 1
        elif all(getattr(old, k) == v for k, v in org_service.competency_values(row).items()):
            report.unchanged += 1
        else:
            report.updated += 1
    if not dry_run:
        for row in checked:
            org_service.upsert_competency(session, **row.model_dump())
    return report
