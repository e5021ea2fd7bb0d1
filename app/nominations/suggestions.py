"""Matrix suggestions: supplier -> customer links proposed from what the system knows.

Nobody knows a whole company's matrix, but the data already hints at most of it:

* ``previous_cycle``: the pairs of the latest launched cycle (its snapshot);
* ``service_map``: HR's department-level map ("IT Support serves Sales") expanded to
  people, sub-departments included;
* ``manager``: a line manager and each of their direct reports, both ways;
* ``team``: colleagues who report to the same manager.

Each suggestion carries every reason that produced it. Pairs already in the matrix,
self-pairs and inactive people are never suggested. Accepting writes ordinary matrix
links; the suggestions themselves are never stored (they follow from the data).
This module sits above ``cycles`` because one source is a cycle's snapshot.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, aliased

from app.cycles.models import Cycle, CyclePair
from app.db import utcnow
from app.errors import Invalid
from app.matrix import service_map
from app.matrix.models import MatrixLink
from app.org import service as org_service
from app.org.models import Department, Employee


class Source(enum.StrEnum):
    previous_cycle = "previous_cycle"
    service_map = "service_map"
    manager = "manager"
    team = "team"


ALL_SOURCES: tuple[Source, ...] = tuple(Source)
# Suggestions are computed in memory on every request: a service-map line between two
# large divisions, or "same team" across 50,000 people, can propose millions of pairs.
# Past this many the request is refused with a hint to narrow it (about 150 MB).
MAX_SUGGESTIONS = 500_000


@dataclass(frozen=True)
class Reason:
    """Why a pair is suggested: the source and the one name that explains it (the
    previous cycle, the service-map line, the manager)."""

    source: Source
    # previous_cycle: the cycle's name; service_map: "<supplier dept> -> <customer dept>"
    # ids; manager: "supplier" or "customer" (who is the manager); team: the manager's id.
    key: str


@dataclass
class Suggestion:
    supplier_id: int
    customer_id: int
    reasons: list[Reason] = field(default_factory=list)


@dataclass(frozen=True)
class SuggestionFilter:
    """Which suggestions to compute: sources, and suppliers by id or department subtree."""

    sources: tuple[Source, ...] = ALL_SOURCES
    supplier_ids: frozenset[int] | None = None
    department_id: int | None = None


class _Collector:
    """Pairs -> reasons, skipping self-pairs, existing links and anyone inactive."""

    def __init__(self, session: Session, flt: SuggestionFilter) -> None:
        self.active = set(session.scalars(select(Employee.id).where(Employee.active)))
        suppliers = set(self.active)
        if flt.supplier_ids is not None:
            suppliers &= flt.supplier_ids
        if flt.department_id is not None:
            depts = org_service.descendant_department_ids(session, department_id=flt.department_id)
            suppliers &= set(
                session.scalars(select(Employee.id).where(Employee.department_id.in_(depts)))
            )
        self.suppliers = suppliers
        self.linked = _linked_pairs(session, suppliers)
        self.pairs: dict[tuple[int, int], list[Reason]] = {}

    def add(self, supplier_id: int, customer_id: int, reason: Reason) -> None:
        if supplier_id == customer_id or supplier_id not in self.suppliers:
            return
        if customer_id not in self.active or (supplier_id, customer_id) in self.linked:
            return
        reasons = self.pairs.get((supplier_id, customer_id))
        if reasons is None:
            if len(self.pairs) >= MAX_SUGGESTIONS:
                raise Invalid(
                    f"More than {MAX_SUGGESTIONS:,} suggestions: choose fewer sources or the "
                    "suppliers of one department",
                    errors=[{"field": "sources", "message": "too many suggestions"}],
                )
            self.pairs[(supplier_id, customer_id)] = [reason]
        elif reason not in reasons:
            reasons.append(reason)


def _linked_pairs(session: Session, suppliers: Collection[int]) -> set[tuple[int, int]]:
    query = select(MatrixLink.supplier_id, MatrixLink.customer_id)
    if len(suppliers) <= 1000:  # a few suppliers: ask for theirs; else one scan
        query = query.where(MatrixLink.supplier_id.in_(suppliers))
    return {(s, c) for s, c in session.execute(query) if s in suppliers}


def previous_cycle(session: Session) -> Cycle | None:
    """The latest launched cycle (open or closed): its snapshot is last time's matrix."""
    return session.scalar(
        select(Cycle)
        .where(Cycle.launched_at.is_not(None))
        .order_by(Cycle.launched_at.desc(), Cycle.id.desc())
        .limit(1)
    )


def _from_previous_cycle(session: Session, out: _Collector) -> None:
    cycle = previous_cycle(session)
    if cycle is None:
        return
    reason = Reason(Source.previous_cycle, cycle.name)
    for s, c in session.execute(
        select(CyclePair.supplier_id, CyclePair.customer_id).where(CyclePair.cycle_id == cycle.id)
    ):
        out.add(s, c, reason)


def _from_service_map(session: Session, out: _Collector) -> None:
    lines = service_map.service_pairs(session)
    if not lines:
        return
    subtrees: dict[int, set[int]] = {}
    for dept in {d for line in lines for d in line}:
        subtrees[dept] = org_service.descendant_department_ids(session, department_id=dept)
    people: dict[int, list[int]] = defaultdict(list)
    for emp_id, dept_id in session.execute(
        select(Employee.id, Department.id)
        .join(Department, Department.id == Employee.department_id)
        .where(Employee.active)
    ):
        people[dept_id].append(emp_id)

    def members(dept: int) -> list[int]:
        return [e for d in subtrees[dept] for e in people.get(d, ())]

    for supplier_dept, customer_dept in lines:
        reason = Reason(Source.service_map, f"{supplier_dept}->{customer_dept}")
        customers = members(customer_dept)
        for s in members(supplier_dept):
            if s in out.suppliers:
                for c in customers:
                    out.add(s, c, reason)


def _reporting_lines(session: Session) -> list[tuple[int, int]]:
    """(employee, manager) for active employees whose manager is active."""
    manager = aliased(Employee)
    return [
        (e, m)
        for e, m in session.execute(
            select(Employee.id, manager.id)
            .join(manager, manager.id == Employee.manager_id)
            .where(Employee.active, manager.active)
        )
    ]


def _from_managers(session: Session, out: _Collector) -> None:
    for report, manager in _reporting_lines(session):
        # A manager serves their team and each member serves their manager: both rate.
        out.add(manager, report, Reason(Source.manager, "supplier"))
        out.add(report, manager, Reason(Source.manager, "customer"))


def _from_teams(session: Session, out: _Collector) -> None:
    teams: dict[int, list[int]] = defaultdict(list)
    for report, manager in _reporting_lines(session):
        teams[manager].append(report)
    for manager, members in teams.items():
        reason = Reason(Source.team, str(manager))
        for s in members:
            if s in out.suppliers:
                for c in members:
                    out.add(s, c, reason)


_SOURCES = {
    Source.previous_cycle: _from_previous_cycle,
    Source.service_map: _from_service_map,
    Source.manager: _from_managers,
    Source.team: _from_teams,
}


def suggest(session: Session, flt: SuggestionFilter | None = None) -> list[Suggestion]:
    """Every suggested pair not yet in the matrix, ordered by supplier then customer id."""
    flt = flt or SuggestionFilter()
    out = _Collector(session, flt)
    for source in ALL_SOURCES:  # a fixed order, so reasons always list the same way
        if source in flt.sources:
            _SOURCES[source](session, out)
    return [Suggestion(s, c, reasons) for (s, c), reasons in sorted(out.pairs.items())]


# --- reading them -----------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    id: int
    external_id: str
    full_name: str
    department_external_id: str | None
    department_name: str | None


@dataclass(frozen=True)
class ReasonText:
    source: Source
    text: str
    # what the text names, for a translated rendering: cycle, departments, manager
    params: dict[str, str]


def people(session: Session, ids: Iterable[int]) -> dict[int, Person]:
    """The names a page of suggestions needs, in one query."""
    wanted = set(ids)
    if not wanted:
        return {}
    rows = session.execute(
        select(
            Employee.id,
            Employee.external_id,
            Employee.full_name,
            Department.external_id,
            Department.name,
        )
        .outerjoin(Department, Department.id == Employee.department_id)
        .where(Employee.id.in_(wanted))
    )
    return {row[0]: Person(*row) for row in rows}


def describe(
    session: Session, suggestions: Sequence[Suggestion], names: dict[int, Person]
) -> dict[tuple[int, int], list[ReasonText]]:
    """Plain-English reasons (and their parameters) for the suggestions given."""
    dept_names = dict(session.execute(select(Department.id, Department.name)).all())
    manager_ids = {int(r.key) for s in suggestions for r in s.reasons if r.source == Source.team}
    names = {**names, **people(session, manager_ids - names.keys())}
    result: dict[tuple[int, int], list[ReasonText]] = {}
    for s in suggestions:
        supplier, customer = names[s.supplier_id], names[s.customer_id]
        texts = []
        for r in s.reasons:
            texts.append(_reason_text(r, supplier, customer, dept_names, names))
        result[(s.supplier_id, s.customer_id)] = texts
    return result


def _reason_text(
    r: Reason,
    supplier: Person,
    customer: Person,
    dept_names: dict[int, str],
    names: dict[int, Person],
) -> ReasonText:
    if r.source == Source.previous_cycle:
        return ReasonText(
            r.source,
            f"{customer.full_name} rated {supplier.full_name} in {r.key}",
            {"cycle": r.key},
        )
    if r.source == Source.service_map:
        s_dept, c_dept = (dept_names.get(int(i), "?") for i in r.key.split("->"))
        return ReasonText(
            r.source,
            f"Service map: {s_dept} serves {c_dept}",
            {"supplier_department": s_dept, "customer_department": c_dept},
        )
    if r.source == Source.manager:
        if r.key == "supplier":
            text = f"{supplier.full_name} is the line manager of {customer.full_name}"
        else:
            text = f"{customer.full_name} is the line manager of {supplier.full_name}"
        return ReasonText(r.source, text, {"manager_is": r.key})
    manager = names.get(int(r.key))
    manager_name = manager.full_name if manager else "?"
    return ReasonText(
        r.source, f"Same team: both report to {manager_name}", {"manager": manager_name}
    )


# --- accepting them ---------------------------------------------------------------------


@dataclass
class Acceptance:
    added: list[Suggestion]
    unchanged: int
    by_source: dict[str, int]


def accept(
    session: Session,
    *,
    pairs: Iterable[tuple[int, int]],
    sources: tuple[Source, ...] = ALL_SOURCES,
) -> Acceptance:
    """Write the chosen suggestions as matrix links (all or none).

    Every pair must still be a suggestion from ``sources`` (the data may have changed
    since HR looked), except pairs already in the matrix, which count as unchanged so
    that accepting twice changes nothing.
    """
    chosen = list(dict.fromkeys(pairs))
    if not chosen:
        return Acceptance(added=[], unchanged=0, by_source={})
    suppliers = frozenset(s for s, _ in chosen)
    current = suggest(session, SuggestionFilter(sources=sources, supplier_ids=suppliers))
    by_pair = {(s.supplier_id, s.customer_id): s for s in current}
    linked = _linked_pairs(session, suppliers)
    refused = [p for p in chosen if p not in by_pair and p not in linked]
    if refused:
        names = people(session, {i for pair in refused[:100] for i in pair})
        errors = [
            {
                "field": "links",
                "message": f"{names[c].full_name} ({names[c].external_id}) rating "
                f"{names[s].full_name} ({names[s].external_id}) is not a suggestion",
            }
            for s, c in refused[:100]
        ]
        raise Invalid(
            f"{len(refused)} of the chosen links are not (or no longer) suggested; nothing "
            "was saved. Load the suggestions again.",
            errors=errors,
        )
    return _write(session, [by_pair[p] for p in chosen if p in by_pair], unchanged=len(chosen))


def accept_all(session: Session, flt: SuggestionFilter | None = None) -> Acceptance:
    """Accept every current suggestion under ``flt``."""
    return _write(session, suggest(session, flt), unchanged=None)


def _write(session: Session, added: list[Suggestion], *, unchanged: int | None) -> Acceptance:
    now = utcnow()
    rows = [
        {"supplier_id": s.supplier_id, "customer_id": s.customer_id, "created_at": now}
        for s in added
    ]
    for start in range(0, len(rows), 5000):
        session.execute(insert(MatrixLink), rows[start : start + 5000])
    session.flush()
    by_source: dict[str, int] = defaultdict(int)
    for s in added:
        for source in dict.fromkeys(r.source for r in s.reasons):
            by_source[source.value] += 1
    return Acceptance(
        added=added,
        unchanged=0 if unchanged is None else unchanged - len(added),
        by_source=dict(by_source),
    )


def audit_detail(acceptance: Acceptance) -> str:
    """One line for the audit log: how many, from which sources."""
    sources = ", ".join(f"{n} {source}" for source, n in sorted(acceptance.by_source.items()))
    return (
        f"{len(acceptance.added)} suggested links accepted"
        + (f" ({sources})" if sources else "")
        + (f", {acceptance.unchanged} already in the matrix" if acceptance.unchanged else "")
    )
