"""The formulas behind every result, as plain functions over plain numbers.

No database, no web: the SQL aggregation in ``service.py`` is tested against this
module (``compute_cycle`` is the reference implementation of a whole cycle), and the
README's worked examples are computed with it. See
README.md ("Results, formulas and reports") for the formulas in prose.

Conventions
* A score of ``None`` is "can't judge": it is left out of every mean and count.
* ``k`` is the anonymity threshold: a figure built from fewer than k answers is not
  returned at all (``None`` or left out of the mapping), never returned and hidden later.
* Values are on the cycle's own scale (``scale_min``..``scale_max``). To compare two
  cycles whose scales differ, the previous value is mapped linearly onto the current
  scale (``rescale``), i.e. both are compared as positions within their scale.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

Z_95 = 1.959963984540054
# Scores are rounded to this many decimals before ranking, so that two employees with
# mathematically equal coefficients tie even if the database summed in another order.
RANK_DECIMALS = 9
HISTOGRAM_BINS = 10


# --- one employee ------------------------------------------------------------------------


@dataclass(frozen=True)
class BallotAnswers:
    """One rater's answers about one supplier: competency -> score (None = can't judge)."""

    scores: Mapping[Hashable, int | None]
    nps: int | None = None
    comment: str | None = None


def competency_means(
    ballots: Sequence[BallotAnswers], competencies: Iterable[K], *, k: int
) -> dict[K, tuple[int, float]]:
    """Each competency's (answers, mean) over raters, kept only with >= k real answers."""
    out: dict[K, tuple[int, float]] = {}
    for code in competencies:
        values = [b.scores[code] for b in ballots if b.scores.get(code) is not None]
        if len(values) >= k:
            out[code] = (len(values), sum(v for v in values if v is not None) / len(values))
    return out


def weighted_coefficient(means: Mapping[K, float], weights: Mapping[K, float]) -> float | None:
    """Weighted mean of the shown competency means; weights renormalise over those shown."""
    total_weight = sum(weights[c] for c in means if weights.get(c, 0) > 0)
    if total_weight <= 0:
        return None
    return sum(weights[c] * m for c, m in means.items() if weights.get(c, 0) > 0) / total_weight


def rater_scores(
    ballots: Sequence[BallotAnswers], shown: Iterable[K], weights: Mapping[K, float]
) -> list[float]:
    """Each rater's own weighted score over the shown competencies they could judge.

    These per-rater scores are the sample behind the standard deviation and the
    confidence interval of the coefficient. A rater who judged none of them drops out.
    """
    shown = [c for c in shown if weights.get(c, 0) > 0]
    out = []
    for ballot in ballots:
        answered = [
            (weights[c], ballot.scores[c]) for c in shown if ballot.scores.get(c) is not None
        ]
        total_weight = sum(w for w, _ in answered)
        if total_weight > 0:
            out.append(sum(w * s for w, s in answered if s is not None) / total_weight)
    return out


def mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); the SD needs two values."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def sd_from_moments(n: int, mean: float | None, mean_of_squares: float | None) -> float | None:
    """Sample SD from n, avg(x) and avg(x*x): what one SQL GROUP BY pass can give."""
    if n < 2 or mean is None or mean_of_squares is None:
        return None
    variance = (mean_of_squares - mean * mean) * n / (n - 1)
    # Rounding can make a zero variance slightly negative.
    return math.sqrt(max(variance, 0.0))


def _t_coverage(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer df (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c, s = math.cos(theta), math.sin(theta)
    if df % 2 == 1:
        if df == 1:
            return 2 * theta / math.pi
        term = total = c
        for j in range(3, df - 1, 2):
            term *= c * c * (j - 1) / j
            total += term
        return 2 / math.pi * (theta + s * total)
    term = total = 1.0
    for j in range(2, df - 1, 2):
        term *= c * c * (j - 1) / j
        total += term
    return s * total


@lru_cache(maxsize=512)
def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t (the multiplier of a two-sided 95% interval)."""
    if df < 1:
        raise ValueError("df must be at least 1")
    if df > 200:
        # Cornish-Fisher expansion around the normal quantile; error < 1e-6 here.
        z = Z_95
        return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    lo, hi = 0.0, 1000.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if _t_coverage(mid, df) < 0.95:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def confidence_interval(
    center: float | None, sd: float | None, n: int | None, *, scale: Scale | None = None
) -> tuple[float | None, float | None]:
    """Two-sided 95% interval center ± t(0.975, n-1) · sd / sqrt(n), clipped to the scale
    when one is given (no score lies outside it, so neither can the true mean)."""
    if center is None or sd is None or n is None or n < 2:
        return None, None
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    low, high = center - half, center + half
    if scale is not None:
        low, high = max(low, scale.low), min(high, scale.high)
    return low, high


def standard_error(sd: float | None, n: int | None) -> float | None:
    if sd is None or n is None or n < 2:
        return None
    return sd / math.sqrt(n)


def net_promoter_score(answers: Iterable[int | None], *, k: int) -> tuple[int, float | None]:
    """(answers, NPS): % promoters (9-10) minus % detractors (0-6); needs k answers."""
    given = [a for a in answers if a is not None]
    promoters = sum(1 for a in given if a >= 9)
    detractors = sum(1 for a in given if a <= 6)
    return len(given), nps_from_counts(len(given), promoters, detractors, k=k)


def nps_from_counts(answers: int, promoters: int, detractors: int, *, k: int) -> float | None:
    if answers < k or answers == 0:
        return None
    return 100.0 * (promoters - detractors) / answers


# --- comparing cycles ----------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    low: int
    high: int


def rescale(value: float, source: Scale, target: Scale) -> float:
    """Map a value linearly from one scale onto another (same relative position)."""
    if source == target:
        return value
    return target.low + (value - source.low) * (target.high - target.low) / (
        source.high - source.low
    )


def compare(
    current: float | None,
    current_se: float | None,
    previous: float | None,
    previous_se: float | None,
    *,
    scale: Scale,
    previous_scale: Scale,
) -> tuple[float | None, bool | None]:
    """(delta, significant): the change on the current scale, and whether it exceeds
    1.96 times its standard error sqrt(se_now² + se_before²).

    With no previous value (a first cycle, or suppressed then) there is no delta.
    Without standard errors the delta is reported but its significance is unknown.
    """
    if current is None or previous is None:
        return None, None
    factor = (scale.high - scale.low) / (previous_scale.high - previous_scale.low)
    delta = current - rescale(previous, previous_scale, scale)
    if current_se is None or previous_se is None:
        return delta, None
    combined = math.sqrt(current_se**2 + (previous_se * factor) ** 2)
    return delta, abs(delta) > Z_95 * combined


# --- ranking and distribution ----------------------------------------------------------


def competition_ranks(values: Mapping[K, float]) -> dict[K, int]:
    """Rank 1 = highest; ties share the best rank and the next rank is skipped (1, 2, 2, 4)."""
    keyed = {key: round(v, RANK_DECIMALS) for key, v in values.items()}
    ordered = sorted(keyed.values(), reverse=True)
    first_position: dict[float, int] = {}
    for position, v in enumerate(ordered, start=1):
        first_position.setdefault(v, position)
    return {key: first_position[v] for key, v in keyed.items()}


def percentiles(values: Mapping[K, float]) -> dict[K, float]:
    """Percent of the others scoring strictly lower: 100 = best, 0 = worst; ties share.

    (rank_from_bottom - 1) / (n - 1) · 100 with tied values taking the lowest position,
    like SQL's PERCENT_RANK. A group of one is at 100.
    """
    keyed = {key: round(v, RANK_DECIMALS) for key, v in values.items()}
    n = len(keyed)
    if n == 0:
        return {}
    if n == 1:
        return dict.fromkeys(keyed, 100.0)
    ordered = sorted(keyed.values())
    below: dict[float, int] = {}
    for position, v in enumerate(ordered):
        below.setdefault(v, position)
    return {key: 100.0 * below[v] / (n - 1) for key, v in keyed.items()}


def histogram(
    values: Iterable[float], *, low: float, high: float, bins: int = HISTOGRAM_BINS
) -> dict[str, list[float] | list[int]]:
    """Counts in equal-width bins over [low, high]; each bin is [a, b) except the last [a, b]."""
    width = (high - low) / bins
    edges = [low + i * width for i in range(bins + 1)]
    counts = [0] * bins
    for v in values:
        index = min(int((v - low) / width), bins - 1) if width > 0 else 0
        counts[max(index, 0)] += 1
    return {"edges": edges, "counts": counts}


# --- the whole cycle (reference implementation) --------------------------------------------


@dataclass
class CycleInput:
    """Everything the results of one cycle depend on, as plain data."""

    scale: Scale
    weights: Mapping[Hashable, float]
    # department -> parent department (None for a root), as snapshotted at launch
    departments: Mapping[int, int | None]
    # supplier -> department at launch (None: no department)
    suppliers: Mapping[int, int | None]
    ballots: Mapping[int, Sequence[BallotAnswers]]
    invited: int = 0
    responded: int = 0


@dataclass
class EmployeeFigures:
    employee_id: int
    department_id: int | None
    meets_k: bool
    raters: int | None = None
    scored_raters: int | None = None
    coefficient: float | None = None
    sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    nps: float | None = None
    nps_answers: int | None = None
    competencies: dict[Hashable, tuple[int, float]] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    delta: float | None = None
    delta_significant: bool | None = None
    company_rank: int | None = None
    company_percentile: float | None = None
    department_rank: int | None = None
    department_percentile: float | None = None

    @property
    def included(self) -> bool:
        """Counts in department and company figures: meets k and has a coefficient."""
        return self.meets_k and self.coefficient is not None

    @property
    def se(self) -> float | None:
        return standard_error(self.sd, self.scored_raters)


@dataclass
class GroupFigures:
    """A department (rolled up over its subtree) or the whole company."""

    suppliers: int = 0
    employees_included: int = 0
    coefficient: float | None = None
    sd: float | None = None
    nps: float | None = None
    nps_employees: int = 0
    competencies: dict[Hashable, tuple[int, float]] = field(default_factory=dict)
    delta: float | None = None
    delta_significant: bool | None = None

    @property
    def se(self) -> float | None:
        return standard_error(self.sd, self.employees_included)


@dataclass
class CycleFigures:
    scale: Scale
    employees: dict[int, EmployeeFigures]
    departments: dict[int, GroupFigures]
    company: GroupFigures
    ci_low: float | None = None
    ci_high: float | None = None
    invited: int = 0
    responded: int = 0
    response_rate: float | None = None
    distribution: dict[str, list[float] | list[int]] = field(default_factory=dict)


def employee_figures(
    employee_id: int,
    department_id: int | None,
    ballots: Sequence[BallotAnswers],
    weights: Mapping[Hashable, float],
    *,
    k: int,
    scale: Scale | None = None,
) -> EmployeeFigures:
    """One supplier's figures; below k raters only "not enough responses" (meets_k False)."""
    if len(ballots) < k:
        return EmployeeFigures(employee_id, department_id, meets_k=False)
    means = competency_means(ballots, weights.keys(), k=k)
    coefficient = weighted_coefficient({c: m for c, (_, m) in means.items()}, weights)
    scores = rater_scores(ballots, means.keys(), weights)
    _, sd = mean_sd(scores)
    ci_low, ci_high = confidence_interval(coefficient, sd, len(scores), scale=scale)
    nps_answers, nps = net_promoter_score((b.nps for b in ballots), k=k)
    return EmployeeFigures(
        employee_id,
        department_id,
        meets_k=True,
        raters=len(ballots),
        scored_raters=len(scores),
        coefficient=coefficient,
        sd=sd,
        ci_low=ci_low,
        ci_high=ci_high,
        nps=nps,
        nps_answers=nps_answers,
        competencies=means,
        comments=[b.comment for b in ballots if b.comment],
    )


def group_figures(members: Iterable[EmployeeFigures], *, suppliers: int) -> GroupFigures:
    """Mean of the included employees' figures: each person once, however many raters."""
    included = [e for e in members if e.included]
    coefficients = [e.coefficient for e in included if e.coefficient is not None]
    mean, sd = mean_sd(coefficients)
    npss = [e.nps for e in included if e.nps is not None]
    per_competency: dict[Hashable, list[float]] = {}
    for e in included:
        for code, (_, m) in e.competencies.items():
            per_competency.setdefault(code, []).append(m)
    return GroupFigures(
        suppliers=suppliers,
        employees_included=len(included),
        coefficient=mean,
        sd=sd,
        nps=sum(npss) / len(npss) if npss else None,
        nps_employees=len(npss),
        competencies={c: (len(v), sum(v) / len(v)) for c, v in per_competency.items()},
    )


def subtree(departments: Mapping[int, int | None]) -> dict[int, set[int]]:
    """Every department -> itself and all its descendants."""
    children: dict[int | None, list[int]] = {}
    for dept, parent in departments.items():
        children.setdefault(parent, []).append(dept)
    out: dict[int, set[int]] = {}
    for root in departments:
        seen = {root}
        stack = [root]
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        out[root] = seen
    return out


def compute_cycle(
    data: CycleInput,
    *,
    k: int,
    previous: CycleFigures | None = None,
) -> CycleFigures:
    """Every figure of one cycle from its raw ballots (the reference the SQL is tested on)."""
    employees = {
        emp: employee_figures(
            emp, dept, data.ballots.get(emp, ()), data.weights, k=k, scale=data.scale
        )
        for emp, dept in data.suppliers.items()
    }
    trees = subtree(data.departments)
    departments = {}
    for dept, members in trees.items():
        group = [e for e in employees.values() if e.department_id in members]
        departments[dept] = group_figures(group, suppliers=len(group))
    company = group_figures(employees.values(), suppliers=len(employees))
    ci_low, ci_high = confidence_interval(
        company.coefficient, company.sd, company.employees_included, scale=data.scale
    )

    included = {e.employee_id: e.coefficient for e in employees.values() if e.included}
    assign_ranks(employees, included)

    if previous is not None:
        for emp in employees.values():
            before = previous.employees.get(emp.employee_id)
            emp.delta, emp.delta_significant = compare(
                emp.coefficient,
                emp.se,
                before.coefficient if before else None,
                before.se if before else None,
                scale=data.scale,
                previous_scale=previous.scale,
            )
        for dept, fig in departments.items():
            dept_before = previous.departments.get(dept)
            fig.delta, fig.delta_significant = compare(
                fig.coefficient,
                fig.se,
                dept_before.coefficient if dept_before else None,
                dept_before.se if dept_before else None,
                scale=data.scale,
                previous_scale=previous.scale,
            )
        company.delta, company.delta_significant = compare(
            company.coefficient,
            company.se,
            previous.company.coefficient,
            previous.company.se,
            scale=data.scale,
            previous_scale=previous.scale,
        )

    return CycleFigures(
        scale=data.scale,
        employees=employees,
        departments=departments,
        company=company,
        ci_low=ci_low,
        ci_high=ci_high,
        invited=data.invited,
        responded=data.responded,
        response_rate=data.responded / data.invited if data.invited else None,
        distribution=histogram(
            [c for c in included.values() if c is not None],
            low=data.scale.low,
            high=data.scale.high,
        ),
    )


def assign_ranks(
    employees: Mapping[int, EmployeeFigures], included: Mapping[int, float | None]
) -> None:
    """Company and department ranks and percentiles of the included employees."""
    scored = {emp: c for emp, c in included.items() if c is not None}
    company_ranks = competition_ranks(scored)
    company_pct = percentiles(scored)
    by_department: dict[int | None, dict[int, float]] = {}
    for emp, c in scored.items():
        by_department.setdefault(employees[emp].department_id, {})[emp] = c
    for emp in scored:
        employees[emp].company_rank = company_ranks[emp]
        employees[emp].company_percentile = company_pct[emp]
    for dept, members in by_department.items():
        if dept is None:
            continue  # no department at launch: ranked in the company only
        ranks, pct = competition_ranks(members), percentiles(members)
        for emp in members:
            employees[emp].department_rank = ranks[emp]
            employees[emp].department_percentile = pct[emp]
