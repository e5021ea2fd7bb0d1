"""Reports: computing the results of a cycle when it closes, and reading them.

``compute_cycle_results`` runs inside the closing transaction (it only flushes). It
takes the cycle's ballots as arrays (from the close, or read back from their boxes),
computes every employee and employee x competency figure with array operations in one
pass, bulk-writes them, and rolls departments and the company up from those figures
while still in memory. The formulas
are the ones of :mod:`app.reports.coefficients`, which the tests hold this code to.

Anonymity: every figure built from fewer than k answers is dropped *before* it is
stored, so the reading side can show everything it finds.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from operator import attrgetter
from typing import Any, Literal, TypedDict, TypeVar, Unpack, cast

import numpy as np
import numpy.typing as npt
import pydantic_core
from pydantic import TypeAdapter
from sqlalchemy import Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.cycles import service as cycles_service
from app.cycles.models import (
    Cycle,
    CycleCompetency,
    CycleDepartment,
    CycleEmployee,
    CyclePair,
    CycleState,
)
from app.db import analyze, utcnow
from app.db.bulk import insert_rows
from app.errors import Conflict, NotFound
from app.org.models import Employee
from app.ratings import service as ratings_service
from app.ratings.ballots import Ballots
from app.reports import coefficients as calc
from app.reports import ranking
from app.reports.models import (
    CompanyCompetencyResult,
    CompanyResult,
    DepartmentClosure,
    DepartmentCompetencyResult,
    DepartmentResult,
    EmployeeComment,
    EmployeeResult,
    WebhookDelivery,
)
from app.reports.schemas import (
    NOT_ENOUGH,
    CompanyResultRead,
    CompetencyMean,
    CompetencyRef,
    CycleRef,
    DepartmentResultRead,
    EmployeeResultRead,
    HistogramRead,
    TrendPoint,
)

RESULTS_READY_EVENT = "cycle.results_ready"
RESULT_TABLES = (
    EmployeeComment,
    EmployeeResult,
    DepartmentCompetencyResult,
    DepartmentResult,
    DepartmentClosure,
    CompanyCompetencyResult,
    CompanyResult,
)


# --- computing at close ------------------------------------------------------------------


def compute_cycle_results(
    session: Session,
    *,
    cycle_id: int,
    min_raters: int | None = None,
    release: ratings_service.Release | None = None,
) -> None:
    """Compute and store every result of a cycle that has just closed (flush only).

    ``release`` (from the close) names the figures that reach k only with answers of
    raters who do not count toward k; they are not stored.
    """
    cycle = session.get(Cycle, cycle_id)
    if cycle is None:
        raise NotFound(f"There is no cycle {cycle_id}.")
    k = max(min_raters if min_raters is not None else get_settings().anonymity_min_raters, 3)
    session.flush()
    for table in RESULT_TABLES:
        session.execute(delete(table).where(table.cycle_id == cycle_id))

    tree = _store_closure(session, cycle_id=cycle_id)
    previous = _previous_cycle(session, cycle=cycle)
    scale = calc.Scale(cycle.scale_min, cycle.scale_max)
    # The close hands over what it just stored; otherwise the boxes are read back.
    ballots = release.released if release is not None else None
    if ballots is None:
        ballots = ratings_service.read_ballots(session, cycle_id=cycle_id)
    employees = _store_employees(
        session,
        cycle_id=cycle_id,
        k=k,
        scale=scale,
        previous=previous,
        thin_competencies=release.thin_competencies if release is not None else set(),
        thin_nps=release.thin_nps if release is not None else set(),
        ballots=ballots,
    )
    _store_departments(
        session, cycle_id=cycle_id, scale=scale, previous=previous, tree=tree, stored=employees
    )
    _store_company(session, cycle=cycle, k=k, scale=scale, previous=previous, stored=employees)
    _store_comments(session, cycle_id=cycle_id, ballots=ballots, employees=employees)
    analyze(session, EmployeeResult, DepartmentClosure, DepartmentResult)
    analyze(session, DepartmentCompetencyResult, EmployeeComment)

    cycle.results_ready_at = utcnow()
    session.add(
        WebhookDelivery(
            event=RESULTS_READY_EVENT,
            cycle_id=cycle_id,
            payload={"cycle_id": cycle_id, "cycle_name": cycle.name},
        )
    )
    session.flush()


@dataclass
class _Tree:
    """The cycle's department tree as the closure table stores it."""

    parents: dict[int, int | None]
    # Department -> itself, its parent, ... up to the root (depth 0, 1, 2, ...).
    ancestors: dict[int, list[int]]


@dataclass
class _Employees:
    """What ``_store_employees`` wrote, kept in memory: departments and the company are
    rolled up from it without reading it back."""

    figures: dict[int, calc.EmployeeFigures]
    competencies: list[int]
    row_of: dict[int, int]  # employee id -> its row in ``shown`` and ``means``
    shown: npt.NDArray[np.bool_]  # employees x competencies: a mean that was stored
    means: npt.NDArray[np.float64]
    icc: float | None


def _store_closure(session: Session, *, cycle_id: int) -> _Tree:
    parents = dict(
        session.execute(
            select(CycleDepartment.department_id, CycleDepartment.parent_id).where(
                CycleDepartment.cycle_id == cycle_id
            )
        ).all()
    )
    rows: list[tuple[int, int, int, int]] = []
    ancestors: dict[int, list[int]] = {}
    for dept in parents:
        node: int | None = dept
        depth = 0
        seen: set[int] = set()
        up = ancestors[dept] = []
        while node is not None and node in parents and node not in seen:
            seen.add(node)
            up.append(node)
            rows.append((cycle_id, node, dept, depth))
            node = parents[node]
            depth += 1
    insert_rows(
        session,
        cast(Table, DepartmentClosure.__table__),
        rows,
        columns=("cycle_id", "ancestor_id", "descendant_id", "depth"),
    )
    return _Tree(parents=parents, ancestors=ancestors)


@dataclass
class _Previous:
    cycle_id: int
    scale: calc.Scale
    # id -> (coefficient, standard error, the n behind it: Welch's test needs both)
    employees: dict[int, tuple[float | None, float | None, int | None]]
    departments: dict[int, tuple[float | None, float | None, int | None]]
    company: tuple[float | None, float | None, int | None]


def _previous_cycle(session: Session, *, cycle: Cycle) -> _Previous | None:
    prev = session.scalars(
        select(Cycle)
        .where(
            Cycle.id != cycle.id,
            Cycle.state == CycleState.closed,
            Cycle.results_ready_at.is_not(None),
            or_(
                Cycle.period_start < cycle.period_start,
                and_(Cycle.period_start == cycle.period_start, Cycle.id < cycle.id),
            ),
        )
        .order_by(Cycle.period_start.desc(), Cycle.id.desc())
        .limit(1)
    ).first()
    if prev is None:
        return None
    employees = {
        emp: (coef, calc.standard_error(sd, n), n)
        for emp, coef, sd, n in session.execute(
            select(
                EmployeeResult.employee_id,
                EmployeeResult.coefficient,
                EmployeeResult.sd,
                EmployeeResult.scored_raters,
            ).where(EmployeeResult.cycle_id == prev.id, EmployeeResult.coefficient.is_not(None))
        )
    }
    departments: dict[int, tuple[float | None, float | None, int | None]] = {
        dept: (coef, calc.standard_error(sd, n), n)
        for dept, coef, sd, n in session.execute(
            select(
                DepartmentResult.department_id,
                DepartmentResult.coefficient,
                DepartmentResult.sd,
                DepartmentResult.employees_included,
            ).where(DepartmentResult.cycle_id == prev.id, DepartmentResult.coefficient.is_not(None))
        )
    }
    company = session.get(CompanyResult, prev.id)
    return _Previous(
        cycle_id=prev.id,
        scale=calc.Scale(prev.scale_min, prev.scale_max),
        employees=employees,
        departments=departments,
        company=(
            (
                company.coefficient,
                calc.standard_error(company.sd, company.employees_included),
                company.employees_included,
            )
            if company
            else (None, None, None)
        ),
    )


def _f(value: Any) -> float | None:
    # PostgreSQL returns avg() of integers as Decimal.
    return None if value is None else float(value)


@dataclass
class _BallotScan:
    """A cycle's ballots as arrays, grouped by supplier for one pass per figure."""

    competencies: list[int]
    weights: npt.NDArray[np.float64]
    suppliers: npt.NDArray[np.int64]  # the distinct suppliers who have ballots
    which: npt.NDArray[np.intp]  # per ballot, its supplier's index in ``suppliers``
    nps: npt.NDArray[np.float64]  # NaN: no answer
    scores: npt.NDArray[np.float64]  # ballots x competencies, NaN: can't judge


def _scan_ballots(session: Session, *, cycle_id: int, ballots: Ballots) -> _BallotScan:
    """The ballots as arrays grouped by supplier, with the competencies' weights."""
    weight_of = dict(
        session.execute(
            select(CycleCompetency.id, CycleCompetency.weight).where(
                CycleCompetency.cycle_id == cycle_id
            )
        ).all()
    )
    weights = np.array(
        [float(weight_of.get(cid) or 0) for cid in ballots.competencies], dtype=np.float64
    )
    suppliers, which = np.unique(ballots.suppliers, return_inverse=True)
    return _BallotScan(
        competencies=ballots.competencies,
        weights=weights,
        suppliers=suppliers,
        which=which.reshape(-1),
        nps=ballots.nps,
        scores=ballots.scores,
    )


def _per_supplier(scan: _BallotScan, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.bincount(scan.which, weights=values, minlength=len(scan.suppliers)).astype(np.float64)


def _store_employees(
    session: Session,
    *,
    cycle_id: int,
    k: int,
    scale: calc.Scale,
    previous: _Previous | None,
    thin_competencies: set[tuple[int, int]],
    thin_nps: set[int],
    ballots: Ballots,
) -> _Employees:
    """Every employee and employee x competency figure, from one scan of the ballots.

    Formulas as in :mod:`app.reports.coefficients`: a competency mean is shown with at
    least k real answers ("can't judge" is no answer; a ballot holds one score per
    competency, so k answers mean k raters), the coefficient is the weighted mean of the
    shown competency means, and sd/interval come from each rater's weighted score over
    the shown competencies.
    """
    scan = _scan_ballots(session, cycle_id=cycle_id, ballots=ballots)
    n_suppliers, n_competencies = len(scan.suppliers), len(scan.competencies)
    answered = ~np.isnan(scan.scores)
    filled = np.nan_to_num(scan.scores)
    counts = np.zeros((n_suppliers, n_competencies))
    sums = np.zeros((n_suppliers, n_competencies))
    for col in range(n_competencies):
        counts[:, col] = _per_supplier(scan, answered[:, col].astype(np.float64))
        sums[:, col] = _per_supplier(scan, filled[:, col])
    shown = counts >= k
    index_of = {int(sid): i for i, sid in enumerate(scan.suppliers)}
    column_of = {cid: j for j, cid in enumerate(scan.competencies)}
    for supplier_id, competency_id in thin_competencies:
        if supplier_id in index_of and competency_id in column_of:
            shown[index_of[supplier_id], column_of[competency_id]] = False
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)

    weighted = shown & (scan.weights > 0)
    weight_sum = (weighted * scan.weights).sum(axis=1)
    coefficient_of = np.divide(
        (weighted * scan.weights * means).sum(axis=1),
        weight_sum,
        out=np.full(n_suppliers, np.nan),
        where=weight_sum > 0,
    )
    # Each rater's weighted score over the competencies shown for their supplier.
    used = answered & weighted[scan.which]
    ballot_weight = (used * scan.weights).sum(axis=1)
    scored_ballot = ballot_weight > 0
    x = np.divide(
        (used * filled * scan.weights).sum(axis=1),
        ballot_weight,
        out=np.zeros(len(scan.which)),
        where=scored_ballot,
    )
    scored_of = _per_supplier(scan, scored_ballot.astype(np.float64))
    x_sum = _per_supplier(scan, x)
    x2_sum = _per_supplier(scan, x * x)
    raters_of = np.bincount(scan.which, minlength=n_suppliers)
    has_nps = ~np.isnan(scan.nps)
    nps_of = _per_supplier(scan, has_nps.astype(np.float64))
    promoters_of = _per_supplier(scan, (has_nps & (scan.nps >= 9)).astype(np.float64))
    detractors_of = _per_supplier(scan, (has_nps & (scan.nps <= 6)).astype(np.float64))

    means_json = _competency_means_json(
        session,
        cycle_id=cycle_id,
        columns=scan.competencies,
        shown=shown,
        means=means,
        counts=counts,
    )

    # Every supplier of the matrix, and anyone who has ballots (the scan's suppliers),
    # with their department at launch; not a UNION over the ballots just written.
    department_of = dict(
        session.execute(
            select(CycleEmployee.employee_id, CycleEmployee.department_id).where(
                CycleEmployee.cycle_id == cycle_id
            )
        ).all()
    )
    paired = session.scalars(
        select(CyclePair.supplier_id).where(CyclePair.cycle_id == cycle_id).distinct()
    )
    departments: dict[int, int | None] = {
        emp: department_of.get(emp) for emp in sorted({*paired, *scan.suppliers.tolist()})
    }
    figures: dict[int, calc.EmployeeFigures] = {}
    for emp, dept in departments.items():
        i = index_of.get(emp)
        raters = int(raters_of[i]) if i is not None else 0
        if raters < k or i is None:
            figures[emp] = calc.EmployeeFigures(emp, dept, meets_k=False)
            continue
        nps_answers = 0 if emp in thin_nps else int(nps_of[i])
        coefficient = None if np.isnan(coefficient_of[i]) else float(coefficient_of[i])
        scored = int(scored_of[i])
        mean = float(x_sum[i] / scored) if scored else None
        mean_sq = float(x2_sum[i] / scored) if scored else None
        sd = calc.sd_from_moments(scored, mean, mean_sq)
        ci_low, ci_high = calc.confidence_interval(coefficient, sd, scored, scale=scale)
        figures[emp] = calc.EmployeeFigures(
            emp,
            dept,
            meets_k=True,
            raters=raters,
            scored_raters=scored,
            coefficient=coefficient,
            sd=sd,
            ci_low=ci_low,
            ci_high=ci_high,
            nps=calc.nps_from_counts(nps_answers, int(promoters_of[i]), int(detractors_of[i]), k=k),
            nps_answers=nps_answers,
            rater_mean=mean,
        )
    icc = calc.assign_reliability(figures)
    ranking.assign_ranks(figures)
    if previous is not None:
        for fig in figures.values():
            before = previous.employees.get(fig.employee_id)
            fig.delta, fig.delta_significant = calc.compare(
                fig.coefficient,
                fig.se,
                before[0] if before else None,
                before[1] if before else None,
                scale=scale,
                previous_scale=previous.scale,
                current_n=fig.scored_raters,
                previous_n=before[2] if before else None,
            )
    name_order = _name_order(session, cycle_id=cycle_id, employee_ids=figures)
    # Plain Python values (ints, floats, bools, None, JSON text) in the columns' order:
    # already the stored form, so no value goes through its column type's conversion.
    figures_of = attrgetter(*EMPLOYEE_FIGURES)
    employee_rows = [
        (
            cycle_id,
            f.employee_id,
            f.department_id,
            f.meets_k,
            f.scored_raters,
            *figures_of(f),
            name_order[f.employee_id],
            means_json[index_of[f.employee_id]] if f.meets_k else None,
        )
        for f in figures.values()
    ]
    insert_rows(
        session,
        cast(Table, EmployeeResult.__table__),
        employee_rows,
        columns=EMPLOYEE_RESULT_COLUMNS,
        stored=EMPLOYEE_RESULT_COLUMNS,
    )
    return _Employees(
        figures=figures,
        competencies=scan.competencies,
        row_of=index_of,
        shown=shown,
        means=means,
        icc=icc,
    )


def _competency_means_json(
    session: Session,
    *,
    cycle_id: int,
    columns: Sequence[int],
    shown: npt.NDArray[np.bool_],
    means: npt.NDArray[np.float64],
    counts: npt.NDArray[np.float64],
) -> list[str]:
    """Per scanned supplier, the ``EmployeeResult.competency_means`` JSON of the
    competencies shown for them, in the cycle's display order (``columns``: the
    competency ids of ``shown``, ``means`` and ``counts``)."""
    column_of = {cid: j for j, cid in enumerate(columns)}
    display = [
        column_of[shown_as.id]
        for shown_as in competencies(session, cycle_id=cycle_id)
        if shown_as.id in column_of
    ]
    shown_in_order = shown[:, display]
    # Whole columns as Python values at once (350,000 means at 50,000 employees), then
    # one slice of them per supplier: row-major, so each supplier's run is contiguous.
    rows, cols = np.nonzero(shown_in_order)
    picked = np.asarray(display, dtype=np.int64)[cols]
    triples = list(
        zip(
            np.asarray(columns, dtype=np.int64)[picked].tolist(),
            means[rows, picked].tolist(),
            counts[rows, picked].astype(np.int64).tolist(),
            strict=True,
        )
    )
    ends = np.cumsum(shown_in_order.sum(axis=1)).tolist()
    # pydantic-core's serialiser: a third of json.dumps's time for 45,000 short lists.
    return [
        pydantic_core.to_json(triples[start:end]).decode()
        for start, end in zip([0, *ends][:-1], ends, strict=True)
    ]


def _name_order(session: Session, *, cycle_id: int, employee_ids: Iterable[int]) -> dict[int, int]:
    """Each employee's position (0, 1, 2, ...) in the cycle's name order: full name in
    the database's collation, then id; anyone missing from the snapshot last."""
    by_name = session.execute(
        select(CycleEmployee.employee_id)
        .where(CycleEmployee.cycle_id == cycle_id)
        .order_by(CycleEmployee.full_name, CycleEmployee.employee_id)
    ).scalars()
    position = {employee_id: i for i, employee_id in enumerate(by_name)}
    ordered = sorted(employee_ids, key=lambda e: (position.get(e, len(position)), e))
    return {employee_id: i for i, employee_id in enumerate(ordered)}


def reorder_names(session: Session, *, cycle_ids: Iterable[int]) -> None:
    """Store the name order again after names changed or rows went (an erasure): the
    erased person's old position would still hint at their old name."""
    er = EmployeeResult
    for cycle_id in cycle_ids:
        employees = session.execute(select(er.employee_id).where(er.cycle_id == cycle_id)).scalars()
        order = _name_order(session, cycle_id=cycle_id, employee_ids=list(employees))
        current = dict(
            session.execute(
                select(er.employee_id, er.name_order).where(er.cycle_id == cycle_id)
            ).all()
        )
        changed = [
            {"c": cycle_id, "e": employee_id, "o": position}
            for employee_id, position in order.items()
            if current.get(employee_id) != position
        ]
        if changed:
            session.connection().execute(
                update(er)
                .where(er.cycle_id == bindparam("c"), er.employee_id == bindparam("e"))
                .values(name_order=bindparam("o")),
                changed,
            )


def _store_departments(
    session: Session,
    *,
    cycle_id: int,
    scale: calc.Scale,
    previous: _Previous | None,
    tree: _Tree,
    stored: _Employees,
) -> None:
    """Every department's figures, rolled up the tree from the employee figures in memory.

    Only included employees (a stored coefficient) count, each once: the figure is then a
    function of visible employee figures only, so it can reveal no hidden one.
    """
    departments = list(tree.parents)
    place = {dept: p for p, dept in enumerate(departments)}
    figures = list(stored.figures.values())
    coefficient = np.array([_nan(f.coefficient) for f in figures], dtype=np.float64)
    nps = np.array([_nan(f.nps) for f in figures], dtype=np.float64)
    # One pair per employee and department above it (its own included): the rollups are
    # then sums over pairs grouped by department.
    pair_place: list[int] = []
    pair_figure: list[int] = []
    for x, fig in enumerate(figures):
        up = tree.ancestors.get(fig.department_id) if fig.department_id is not None else None
        for dept in up or ():
            pair_place.append(place[dept])
            pair_figure.append(x)
    at = np.array(pair_place, dtype=np.intp)
    of = np.array(pair_figure, dtype=np.intp)
    size = len(departments)

    def per_department(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        return np.bincount(at, weights=values, minlength=size).astype(np.float64)

    suppliers = np.bincount(at, minlength=size)
    pair_coefficient = coefficient[of]
    pair_nps = nps[of]
    included = ~np.isnan(pair_coefficient)
    with_nps = included & ~np.isnan(pair_nps)
    n_of = per_department(included)
    sum_of = per_department(np.where(included, pair_coefficient, 0.0))
    sum_sq_of = per_department(np.where(included, pair_coefficient**2, 0.0))
    nps_n_of = per_department(with_nps)
    nps_sum_of = per_department(np.where(with_nps, pair_nps, 0.0))

    rows: list[dict[str, Any]] = []
    for p, dept in enumerate(departments):
        n = int(n_of[p])
        mean = float(sum_of[p] / n) if n else None
        sd = calc.sd_from_moments(n, mean, float(sum_sq_of[p] / n) if n else None)
        nps_n = int(nps_n_of[p])
        delta: float | None = None
        significant: bool | None = None
        if previous is not None:
            before = previous.departments.get(dept)
            delta, significant = calc.compare(
                mean,
                calc.standard_error(sd, n),
                before[0] if before else None,
                before[1] if before else None,
                scale=scale,
                previous_scale=previous.scale,
                current_n=n,
                previous_n=before[2] if before else None,
            )
        rows.append(
            {
                "cycle_id": cycle_id,
                "department_id": dept,
                "parent_id": tree.parents[dept],
                "level": len(tree.ancestors[dept]) - 1,
                "suppliers": int(suppliers[p]),
                "employees_included": n,
                "coefficient": mean,
                "sd": sd,
                "nps": float(nps_sum_of[p] / nps_n) if nps_n else None,
                "nps_employees": nps_n,
                "delta": delta,
                "delta_significant": significant,
            }
        )
    if rows:
        insert_rows(
            session,
            cast(Table, DepartmentResult.__table__),
            (tuple(row.values()) for row in rows),
            columns=tuple(rows[0]),
        )

    # Competency means: over the included employees with that competency's mean stored.
    row_of = np.array([stored.row_of.get(f.employee_id, -1) for f in figures], dtype=np.intp)
    counted = included & (row_of[of] >= 0)
    places, shown, means = at[counted], stored.shown[row_of[of[counted]]], stored.means
    means = np.where(shown, means[row_of[of[counted]]], 0.0)
    insert_rows(
        session,
        cast(Table, DepartmentCompetencyResult.__table__),
        (
            (cycle_id, departments[p], stored.competencies[j], n, total / n)
            for j in range(len(stored.competencies))
            for p, (n, total) in enumerate(
                zip(
                    np.bincount(places, weights=shown[:, j], minlength=size).astype(int).tolist(),
                    np.bincount(places, weights=means[:, j], minlength=size).tolist(),
                    strict=True,
                )
            )
            if n
        ),
        columns=("cycle_id", "department_id", "cycle_competency_id", "employees", "mean"),
    )


def _nan(value: float | None) -> float:
    return np.nan if value is None else value


def _store_company(
    session: Session,
    *,
    cycle: Cycle,
    k: int,
    scale: calc.Scale,
    previous: _Previous | None,
    stored: _Employees,
) -> None:
    included = [f for f in stored.figures.values() if f.coefficient is not None]
    values = [cast(float, f.coefficient) for f in included]
    n = len(values)
    coefficient = sum(values) / n if n else None
    sd = calc.sd_from_moments(n, coefficient, sum(v * v for v in values) / n if n else None)
    nps_values = [f.nps for f in included if f.nps is not None]
    ci_low, ci_high = calc.confidence_interval(coefficient, sd, n, scale=scale)
    delta: float | None = None
    significant: bool | None = None
    if previous is not None:
        delta, significant = calc.compare(
            coefficient,
            calc.standard_error(sd, n),
            previous.company[0],
            previous.company[1],
            scale=scale,
            previous_scale=previous.scale,
            current_n=n,
            previous_n=previous.company[2],
        )
    invited, responded = cycles_service.response_counts(session, cycle_ids=[cycle.id])[cycle.id]
    session.add(
        CompanyResult(
            cycle_id=cycle.id,
            min_raters=k,
            scale_min=cycle.scale_min,
            scale_max=cycle.scale_max,
            suppliers=len(stored.figures),
            employees_included=n,
            coefficient=coefficient,
            sd=sd,
            ci_low=ci_low,
            ci_high=ci_high,
            nps=sum(nps_values) / len(nps_values) if nps_values else None,
            nps_employees=len(nps_values),
            delta=delta,
            delta_significant=significant,
            previous_cycle_id=previous.cycle_id if previous else None,
            invited=invited,
            responded=int(responded),
            response_rate=(int(responded) / invited) if invited else None,
            distribution=calc.histogram(values, low=cycle.scale_min, high=cycle.scale_max),
            icc=stored.icc,
        )
    )
    rows = np.array([stored.row_of.get(f.employee_id, -1) for f in included], dtype=np.intp)
    rows = rows[rows >= 0]
    shown = stored.shown[rows]
    counts = shown.sum(axis=0).tolist()
    totals = np.where(shown, stored.means[rows], 0.0).sum(axis=0).tolist()
    session.add_all(
        CompanyCompetencyResult(
            cycle_id=cycle.id, cycle_competency_id=competency, employees=count, mean=total / count
        )
        for competency, count, total in zip(stored.competencies, counts, totals, strict=True)
        if count
    )
    session.flush()


def _store_comments(
    session: Session, *, cycle_id: int, ballots: Ballots, employees: _Employees
) -> None:
    # Copied only for employees who meet k, with a random sort key and nothing else:
    # no ballot, no date, no order of submission.
    shown = [
        (employee_id, text)
        for employee_id, texts in ballots.comments.items()
        if (figures := employees.figures.get(employee_id)) is not None and figures.meets_k
        for text in texts
    ]
    keys = np.random.default_rng(secrets.randbits(128)).random(len(shown)).tolist()
    insert_rows(
        session,
        cast(Table, EmployeeComment.__table__),
        (
            (cycle_id, employee_id, key, text)
            for (employee_id, text), key in zip(shown, keys, strict=True)
        ),
        columns=("cycle_id", "employee_id", "sort_key", "text"),
    )


# --- reading -----------------------------------------------------------------------------


def results_cycle(session: Session, *, cycle_id: int) -> Cycle:
    """The cycle, if its results may be shown: 404 unknown, 409 not closed or not ready."""
    cycle = session.get(Cycle, cycle_id)
    if cycle is None:
        raise NotFound(f"There is no cycle {cycle_id}.")
    if cycle.state != CycleState.closed:
        # No live results: comparing before and after one more ballot would reveal it.
        raise Conflict(
            f"Cycle {cycle.name} is not closed yet; results exist only for closed cycles."
        )
    ready = _ready_results(session)
    if cycle_id not in ready:
        if cycle.results_ready_at is None or session.get(CompanyResult, cycle_id) is None:
            raise Conflict(f"The results of cycle {cycle.name} are not ready yet.")
        ready[cycle_id] = None
    return cycle


def _ready_results(session: Session) -> dict[int, list[CompetencyRef] | None]:
    """Per session, the cycles whose results were found ready, each with its
    competencies once read. A page asks for both several times (company, departments,
    employees, leaderboard...); a closed cycle's results and competency snapshot never
    change, so the session asks the database once. (The identity map would not spare the
    queries: it holds the rows only while something refers to them.)"""
    ready: dict[int, list[CompetencyRef] | None] = session.info.setdefault(_READY_RESULTS, {})
    return ready


_READY_RESULTS = "reports.ready_results"


def closed_cycles(session: Session) -> list[Cycle]:
    """Closed cycles with results, newest first."""
    return list(
        session.scalars(
            select(Cycle)
            .where(Cycle.state == CycleState.closed, Cycle.results_ready_at.is_not(None))
            .order_by(Cycle.period_start.desc(), Cycle.id.desc())
        )
    )


def cycle_ref(session: Session, *, cycle: Cycle) -> CycleRef:
    company = session.get(CompanyResult, cycle.id)
    return CycleRef(
        id=cycle.id,
        name=cycle.name,
        period_start=cycle.period_start,
        period_end=cycle.period_end,
        scale_min=cycle.scale_min,
        scale_max=cycle.scale_max,
        min_raters=company.min_raters if company else get_settings().anonymity_min_raters,
    )


def competencies(session: Session, *, cycle_id: int) -> list[CompetencyRef]:
    ready = _ready_results(session)
    known = ready.get(cycle_id)
    if known is not None:
        return list(known)
    refs = [
        CompetencyRef(id=c.id, code=c.code, name=c.name, weight=c.weight)
        for c in session.scalars(
            select(CycleCompetency)
            .where(CycleCompetency.cycle_id == cycle_id)
            .order_by(CycleCompetency.display_order, CycleCompetency.id)
        )
    ]
    if cycle_id in ready:  # a closed cycle with results: its snapshot is final
        ready[cycle_id] = refs
    return list(refs)


def company_results(session: Session, *, cycle_id: int) -> CompanyResultRead:
    """The company's figures for a closed cycle."""
    cycle = results_cycle(session, cycle_id=cycle_id)
    row = session.get(CompanyResult, cycle_id)
    assert row is not None  # results_cycle checked it
    comps = {c.id: c for c in competencies(session, cycle_id=cycle_id)}
    means = [
        CompetencyMean(
            code=comps[r.cycle_competency_id].code,
            name=comps[r.cycle_competency_id].name,
            mean=r.mean,
            count=r.employees,
        )
        for r in session.scalars(
            select(CompanyCompetencyResult).where(CompanyCompetencyResult.cycle_id == cycle_id)
        )
    ]
    order = {c.code: i for i, c in enumerate(comps.values())}
    means.sort(key=lambda m: order[m.code])
    return CompanyResultRead(
        cycle=cycle_ref(session, cycle=cycle),
        suppliers=row.suppliers,
        employees_included=row.employees_included,
        coefficient=row.coefficient,
        sd=row.sd,
        ci_low=row.ci_low,
        ci_high=row.ci_high,
        nps=row.nps,
        nps_employees=row.nps_employees,
        delta=row.delta,
        delta_significant=row.delta_significant,
        invited=row.invited,
        responded=row.responded,
        response_rate=row.response_rate,
        icc=row.icc,
        distribution=HistogramRead(
            edges=row.distribution.get("edges", []), counts=row.distribution.get("counts", [])
        ),
        competencies=means,
    )


def department_results(
    session: Session,
    *,
    cycle_id: int,
    department_ids: Iterable[int] | None = None,
    max_level: int | None = None,
) -> list[DepartmentResultRead]:
    """Every department's rolled-up figures (tree order: parents before children).

    ``max_level`` keeps the top of the tree only (0 = roots), for pages and charts of a
    company with thousands of departments.
    """
    results_cycle(session, cycle_id=cycle_id)
    dr = DepartmentResult
    filters: list[Any] = [dr.cycle_id == cycle_id]
    if department_ids is not None:
        filters.append(dr.department_id.in_(list(department_ids)))
    if max_level is not None:
        filters.append(dr.level <= max_level)
    query = (
        select(DepartmentResult, CycleDepartment.external_id, CycleDepartment.name)
        .join(
            CycleDepartment,
            and_(
                CycleDepartment.cycle_id == DepartmentResult.cycle_id,
                CycleDepartment.department_id == DepartmentResult.department_id,
            ),
        )
        .where(*filters)
    )
    rows = session.execute(query).all()
    comps = {c.id: c for c in competencies(session, cycle_id=cycle_id)}
    order = {cid: i for i, cid in enumerate(comps)}
    means: dict[int, list[tuple[int, CompetencyMean]]] = {}
    dcr = DepartmentCompetencyResult
    for r in session.scalars(
        select(dcr)
        .join(dr, and_(dr.cycle_id == dcr.cycle_id, dr.department_id == dcr.department_id))
        .where(*filters)
    ):
        c = comps[r.cycle_competency_id]
        means.setdefault(r.department_id, []).append(
            (order[c.id], CompetencyMean(code=c.code, name=c.name, mean=r.mean, count=r.employees))
        )
    out = [
        DepartmentResultRead(
            department_id=d.department_id,
            external_id=ext,
            name=name,
            parent_id=d.parent_id,
            level=d.level,
            suppliers=d.suppliers,
            employees_included=d.employees_included,
            coefficient=d.coefficient,
            sd=d.sd,
            nps=d.nps,
            nps_employees=d.nps_employees,
            delta=d.delta,
            delta_significant=d.delta_significant,
            competencies=[m for _, m in sorted(means.get(d.department_id, []), key=lambda t: t[0])],
        )
        for d, ext, name in rows
    ]
    return _tree_order(
        out,
        id_of=lambda d: d.department_id,
        parent_of=lambda d: d.parent_id,
        name_of=lambda d: d.name,
    )


def department_and_children(
    session: Session, *, cycle_id: int, department_id: int
) -> list[DepartmentResultRead]:
    """A department and its direct sub-departments (tree order): what the results page
    and the department charts show once HR picks a department, at any company size."""
    children = session.scalars(
        select(CycleDepartment.department_id).where(
            CycleDepartment.cycle_id == cycle_id, CycleDepartment.parent_id == department_id
        )
    )
    return department_results(session, cycle_id=cycle_id, department_ids=[department_id, *children])


def department_picker(
    session: Session, *, cycle_id: int, around: int | None, top_levels: int
) -> list[tuple[int, str, int]]:
    """(id, name, level) of what the results page offers to pick, in tree order (each
    after its parent, siblings by name): the top of the tree (levels 0 to
    ``top_levels``), and around a chosen department its ancestors and direct
    sub-departments: the top of the tree and one branch. The whole tree was 2,032
    entries at 50,000 employees, 100 KB of every page and half its time."""
    dr = DepartmentResult
    shown = dr.level <= top_levels
    if around is not None:
        ancestors = select(DepartmentClosure.ancestor_id).where(
            DepartmentClosure.cycle_id == cycle_id, DepartmentClosure.descendant_id == around
        )
        shown = or_(shown, dr.department_id.in_(ancestors), dr.parent_id == around)
    rows = session.execute(
        select(dr.department_id, CycleDepartment.name, dr.level, dr.parent_id)
        .join(
            CycleDepartment,
            and_(
                CycleDepartment.cycle_id == dr.cycle_id,
                CycleDepartment.department_id == dr.department_id,
            ),
        )
        .where(dr.cycle_id == cycle_id, shown)
    ).all()
    ordered = _tree_order(
        rows, id_of=lambda r: r[0], parent_of=lambda r: r[3], name_of=lambda r: r[1]
    )
    return [(dept, name, level) for dept, name, level, _parent in ordered]


_Department = TypeVar("_Department")


def _tree_order(
    items: Sequence[_Department],
    *,
    id_of: Callable[[_Department], int],
    parent_of: Callable[[_Department], int | None],
    name_of: Callable[[_Department], str],
) -> list[_Department]:
    """Each department after its parent, siblings by name; one whose parent is not among
    ``items`` is a root."""
    children: dict[int | None, list[_Department]] = {}
    ids = {id_of(d) for d in items}
    for d in items:
        parent = parent_of(d)
        children.setdefault(parent if parent in ids else None, []).append(d)
    for group in children.values():
        group.sort(key=lambda d: name_of(d).lower())
    out: list[_Department] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        d = stack.pop()
        out.append(d)
        stack.extend(reversed(children.get(id_of(d), [])))
    return out


SortKey = Literal["name", "department", "coefficient", "raters", "nps", "delta", "rank"]
SORT_KEYS: tuple[str, ...] = ("name", "department", "coefficient", "raters", "nps", "delta", "rank")


class EmployeeQuery(TypedDict, total=False):
    """The employee table's filters, order and page (defaults: :func:`employee_rows`)."""

    department_id: int | None
    employee_ids: Iterable[int] | None
    sort: str
    descending: bool
    limit: int | None
    offset: int
    only_included: bool
    declined_only: bool
    with_competencies: bool


def employee_results(
    session: Session, *, cycle_id: int, **query: Unpack[EmployeeQuery]
) -> tuple[int, list[EmployeeResultRead]]:
    """(total, one page) of the employee table; department_id filters its whole subtree."""
    total, rows = employee_rows(session, cycle_id=cycle_id, **query)
    return total, _EMPLOYEE_LIST.validate_python(rows)


_EMPLOYEE_LIST = TypeAdapter(list[EmployeeResultRead])


def employee_rows(
    session: Session,
    *,
    cycle_id: int,
    department_id: int | None = None,
    employee_ids: Iterable[int] | None = None,
    sort: str = "name",
    descending: bool = False,
    limit: int | None = 100,
    offset: int = 0,
    only_included: bool = False,
    declined_only: bool = False,
    with_competencies: bool = True,
) -> tuple[int, list[dict[str, Any]]]:
    """:func:`employee_results` as plain dicts in the shape of ``EmployeeResultRead``
    (every field, JSON-ready): the API serialises a page of 500 of them without
    building a model per row, which was most of the request's time."""
    results_cycle(session, cycle_id=cycle_id)
    er = EmployeeResult
    filters: list[Any] = [er.cycle_id == cycle_id]
    if department_id is not None:
        filters.append(
            er.department_id.in_(
                select(DepartmentClosure.descendant_id).where(
                    DepartmentClosure.cycle_id == cycle_id,
                    DepartmentClosure.ancestor_id == department_id,
                )
            )
        )
    if employee_ids is not None:
        filters.append(er.employee_id.in_(list(employee_ids)))
    if only_included:
        filters.append(er.coefficient.is_not(None))
    if declined_only:
        filters.append(er.delta < 0)
    # Counted on the result table alone: the joins below only add names.
    total = session.scalar(select(func.count()).select_from(er).where(*filters)) or 0
    figures = [getattr(er, name) for name in EMPLOYEE_FIGURES]
    query = (
        select(
            er.employee_id,
            CycleEmployee.external_id,
            CycleEmployee.full_name,
            er.department_id,
            CycleDepartment.external_id,
            CycleDepartment.name,
            er.meets_k,
            *figures,
            *([er.competency_means] if with_competencies else []),
        )
        .join(
            CycleEmployee,
            and_(
                CycleEmployee.cycle_id == er.cycle_id, CycleEmployee.employee_id == er.employee_id
            ),
        )
        .outerjoin(
            CycleDepartment,
            and_(
                CycleDepartment.cycle_id == er.cycle_id,
                CycleDepartment.department_id == er.department_id,
            ),
        )
        .where(*filters)
    )

    columns: dict[str, Any] = {
        "name": er.name_order,
        "department": CycleDepartment.name,
        "coefficient": er.coefficient,
        "raters": er.raters,
        "nps": er.nps,
        "delta": er.delta,
        "rank": er.company_rank,
    }
    column = columns.get(sort, er.name_order)
    # Suppressed rows (NULL) always sort last, whichever the direction. Where the column
    # cannot be NULL the term is left out, so that an index gives the order without a
    # sort of the whole cycle (names; the leaderboard; the decliners).
    never_null = (
        column is er.name_order
        or (only_included and column is er.coefficient)
        or (declined_only and column is er.delta)
    )
    order: list[Any] = [] if never_null else [column.is_(None)]
    order.append(column.desc() if descending else column.asc())
    if column is not er.name_order:
        order.append(er.name_order)
    order.append(er.employee_id)
    query = query.order_by(*order)
    if column is er.name_order and not descending and len(filters) == 1:
        # The whole cycle in name order: positions run 0, 1, 2, ... so the page starts
        # at its offset in the index, without stepping over the rows before it.
        query = query.where(er.name_order >= max(offset, 0))
    else:
        query = query.offset(max(offset, 0))
    if limit is not None:
        query = query.limit(limit)
    # Plain rows, not ORM entities: a page of 500 employees is read on every request of
    # the HRIS and the HR table, and entity loading was a third of its cost.
    rows = session.connection().execute(query).all()
    labels = (
        {c.id: (c.code, c.name) for c in competencies(session, cycle_id=cycle_id)}
        if with_competencies
        else None
    )
    return total, [_employee_dict(row, labels) for row in rows]


# The stored figures of an employee, in the order employee_results selects them (and
# the exports' columns).
EMPLOYEE_FIGURES = (
    "raters",
    "coefficient",
    "sd",
    "ci_low",
    "ci_high",
    "nps",
    "nps_answers",
    "delta",
    "delta_significant",
    "company_rank",
    "company_percentile",
    "department_rank",
    "department_percentile",
    "se",
    "reliability",
    "company_band",
    "department_band",
)

# The columns of the close's employee result rows, in the order it makes them.
EMPLOYEE_RESULT_COLUMNS = (
    "cycle_id",
    "employee_id",
    "department_id",
    "meets_k",
    "scored_raters",
    *EMPLOYEE_FIGURES,
    "name_order",
    "competency_means",
)


_NO_FIGURES = dict.fromkeys(EMPLOYEE_FIGURES)


def _employee_dict(row: Sequence[Any], labels: dict[int, tuple[str, str]] | None) -> dict[str, Any]:
    """One row of :func:`employee_rows`'s query as a dict in EmployeeResultRead's shape;
    ``labels`` None: the query left the competency means out."""
    employee_id, external_id, full_name, dept_id, dept_ext, dept_name, meets_k = row[:7]
    base: dict[str, Any] = {
        "employee_id": employee_id,
        "external_id": external_id,
        "full_name": full_name,
        "department_id": dept_id,
        "department_external_id": dept_ext,
        "department_name": dept_name,
        "status": "ok" if meets_k else NOT_ENOUGH,
    }
    end = 7 + len(EMPLOYEE_FIGURES)
    if meets_k:
        # Typed columns: the driver's values are already bool, int, float or None.
        base.update(zip(EMPLOYEE_FIGURES, row[7:end], strict=True))
        stored = row[end] if labels is not None else None
        base["competencies"] = (
            [
                {"code": labels[cid][0], "name": labels[cid][1], "mean": mean, "count": answers}
                for cid, mean, answers in json.loads(stored)
            ]
            if labels is not None and stored
            else []
        )
    else:
        # Below k raters every figure stays null, whatever the row holds.
        base.update(_NO_FIGURES)
        base["competencies"] = []
    return base


def employee_result(session: Session, *, cycle_id: int, employee_id: int) -> EmployeeResultRead:
    """One employee's result in a closed cycle (404 when they were not rated in it)."""
    _total, rows = employee_results(session, cycle_id=cycle_id, employee_ids=[employee_id], limit=1)
    if not rows:
        raise NotFound("This employee has no results in this cycle.")
    return rows[0]


def leaderboard(
    session: Session, *, cycle_id: int, limit: int = 10, employee_ids: Iterable[int] | None = None
) -> list[EmployeeResultRead]:
    """The best coefficients, among employees who meet k only."""
    _total, rows = employee_results(
        session,
        cycle_id=cycle_id,
        employee_ids=employee_ids,
        sort="coefficient",
        descending=True,
        limit=limit,
        only_included=True,
        with_competencies=False,
    )
    return rows


def decliners(
    session: Session, *, cycle_id: int, limit: int = 10, employee_ids: Iterable[int] | None = None
) -> list[EmployeeResultRead]:
    """The employees whose coefficient fell the most since the previous cycle."""
    _total, rows = employee_results(
        session,
        cycle_id=cycle_id,
        employee_ids=employee_ids,
        sort="delta",
        descending=False,
        limit=limit,
        only_included=True,
        declined_only=True,
        with_competencies=False,
    )
    return rows


def comments(session: Session, *, cycle_id: int, employee_id: int) -> list[str]:
    """An employee's comments in random order (stored only when they meet k)."""
    results_cycle(session, cycle_id=cycle_id)
    return list(
        session.scalars(
            select(EmployeeComment.text)
            .where(EmployeeComment.cycle_id == cycle_id, EmployeeComment.employee_id == employee_id)
            .order_by(EmployeeComment.sort_key, EmployeeComment.id)
        )
    )


def heatmap(
    session: Session, *, cycle_id: int, department_ids: Sequence[int] | None = None
) -> tuple[list[DepartmentResultRead], list[CompetencyRef]]:
    """Departments (rows) x competencies (columns); each cell a rolled-up competency mean."""
    return (
        department_results(session, cycle_id=cycle_id, department_ids=department_ids),
        competencies(session, cycle_id=cycle_id),
    )


# --- trends --------------------------------------------------------------------------------


def _index(value: float | None, scale_min: int, scale_max: int) -> float | None:
    if value is None:
        return None
    return 100.0 * (value - scale_min) / (scale_max - scale_min)


def _trend_cycles(session: Session, *, up_to: Cycle | None) -> list[Cycle]:
    cycles = list(reversed(closed_cycles(session)))
    if up_to is not None:
        cycles = [c for c in cycles if (c.period_start, c.id) <= (up_to.period_start, up_to.id)]
    return cycles


def _trend_point(
    ref: CycleRef, cycle: Cycle, figures: Any, *, status: str, **extra: Any
) -> TrendPoint:
    """One cycle's point from its stored figures (company, department or employee)."""
    return TrendPoint(
        cycle=ref,
        status=status,
        coefficient=figures.coefficient,
        nps=figures.nps,
        delta=figures.delta,
        delta_significant=figures.delta_significant,
        index=_index(figures.coefficient, cycle.scale_min, cycle.scale_max),
        competencies=figures.competencies,
        **extra,
    )


def _status(coefficient: float | None) -> str:
    return "ok" if coefficient is not None else NOT_ENOUGH


def company_trend(session: Session, *, up_to: Cycle | None = None) -> list[TrendPoint]:
    """The company's figures over every closed cycle, oldest first."""
    points = []
    for cycle in _trend_cycles(session, up_to=up_to):
        c = company_results(session, cycle_id=cycle.id)
        points.append(
            _trend_point(
                c.cycle,
                cycle,
                c,
                status=_status(c.coefficient),
                ci_low=c.ci_low,
                ci_high=c.ci_high,
                employees_included=c.employees_included,
            )
        )
    return points


def department_trend(
    session: Session, *, department_id: int, up_to: Cycle | None = None
) -> list[TrendPoint]:
    """A department's rolled-up figures over every closed cycle it existed in."""
    points = []
    for cycle in _trend_cycles(session, up_to=up_to):
        found = department_results(session, cycle_id=cycle.id, department_ids=[department_id])
        if found:
            d = found[0]
            points.append(
                _trend_point(
                    cycle_ref(session, cycle=cycle),
                    cycle,
                    d,
                    status=_status(d.coefficient),
                    employees_included=d.employees_included,
                )
            )
    return points


def employee_trend(
    session: Session, *, employee_id: int, up_to: Cycle | None = None
) -> list[TrendPoint]:
    """An employee's figures over every closed cycle they were rated in."""
    points = []
    for cycle in _trend_cycles(session, up_to=up_to):
        _total, rows = employee_results(
            session, cycle_id=cycle.id, employee_ids=[employee_id], limit=1
        )
        if rows:
            e = rows[0]
            points.append(
                _trend_point(
                    cycle_ref(session, cycle=cycle),
                    cycle,
                    e,
                    status=e.status,
                    ci_low=e.ci_low,
                    ci_high=e.ci_high,
                    raters=e.raters,
                )
            )
    return points


def employee_by_external_id(session: Session, *, external_id: str) -> Employee:
    employee = session.scalar(select(Employee).where(Employee.external_id == external_id))
    if employee is None:
        raise NotFound(f"There is no employee with external id {external_id!r}.")
    return employee


def department_in_cycle(session: Session, *, cycle_id: int, department: str) -> CycleDepartment:
    """A department of the cycle's snapshot, by id or external id (404 when unknown)."""
    conditions = [CycleDepartment.external_id == department]
    # ASCII digits only ("²".isdigit() is true, int("²") fails), and at most nine, so the
    # number fits the 32-bit column (PostgreSQL refuses a bigger parameter outright).
    if department.isascii() and department.isdigit() and len(department) <= 9:
        conditions.append(CycleDepartment.department_id == int(department))
    found = session.scalars(
        select(CycleDepartment).where(CycleDepartment.cycle_id == cycle_id, or_(*conditions))
    ).first()
    if found is None:
        raise NotFound(f"There is no department {department!r} in this cycle.")
    return found


def trend_date(point: TrendPoint) -> date:
    return point.cycle.period_start
