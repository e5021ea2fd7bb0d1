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
from bisect import bisect_right
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeVar

from scipy.special import stdtrit

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


@lru_cache(maxsize=1024)
def t_quantile_975(df: float) -> float:
    """The 97.5% quantile of Student's t (the multiplier of a two-sided 95% interval).

    ``df`` may be fractional (Welch-Satterthwaite); scipy's ``stdtrit`` is a ufunc, so a
    scalar call costs microseconds even for every employee of a large cycle.
    """
    if not df >= 1:
        raise ValueError("df must be at least 1")
    return float(stdtrit(df, 0.975))


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


def welch_df(se_a: float, n_a: int, se_b: float, n_b: int) -> float | None:
    """Welch-Satterthwaite degrees of freedom of the difference of two means.

    (se_a² + se_b²)² / (se_a⁴ / (n_a - 1) + se_b⁴ / (n_b - 1)); None when a side has
    fewer than two values or neither side varies.
    """
    if n_a < 2 or n_b < 2:
        return None
    va, vb = se_a**2, se_b**2
    denominator = va**2 / (n_a - 1) + vb**2 / (n_b - 1)
    if denominator <= 0:
        return None
    return (va + vb) ** 2 / denominator


def compare(
    current: float | None,
    current_se: float | None,
    previous: float | None,
    previous_se: float | None,
    *,
    scale: Scale,
    previous_scale: Scale,
    current_n: int | None = None,
    previous_n: int | None = None,
) -> tuple[float | None, bool | None]:
    """(delta, significant): the change on the current scale, and whether Welch's t test
    says it is real at the 5% level (two-sided).

    |delta| > t(0.975, df) · sqrt(se_now² + se_before²), df by Welch-Satterthwaite from
    the n behind each standard error. With 3 to 8 raters a side the t multiplier is far
    above 1.96 (4.3 at df = 2): the normal z test it replaces called 12% of changes
    "significant" at 3 vs 3 raters when nothing had changed (tests/reports/
    test_coefficients.py simulates this).

    With no previous value (a first cycle, or suppressed then) there is no delta.
    Without standard errors or their n the delta is reported but its significance is
    unknown. When neither side varies at all, any change is real.
    """
    if current is None or previous is None:
        return None, None
    factor = (scale.high - scale.low) / (previous_scale.high - previous_scale.low)
    delta = current - rescale(previous, previous_scale, scale)
    if current_se is None or previous_se is None or current_n is None or previous_n is None:
        return delta, None
    before_se = previous_se * factor
    combined = math.sqrt(current_se**2 + before_se**2)
    if combined == 0:
        return delta, delta != 0
    df = welch_df(current_se, current_n, before_se, previous_n)
    if df is None:
        return delta, None
    return delta, abs(delta) > t_quantile_975(df) * combined


# --- reliability ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RaterSample:
    """One employee's per-rater scores, as moments: count, mean and sample SD."""

    n: int
    mean: float
    sd: float | None


def icc1(samples: Iterable[RaterSample]) -> float | None:
    """ICC(1): how much of the spread of single ratings lies between employees.

    One-way random-effects ANOVA (Shrout & Fleiss 1979, case 1: every employee has their
    own raters), for unequal rater counts with the average group size
    n0 = (N - Σn²/N) / (g - 1):  ICC(1) = (MSB - MSW) / (MSB + (n0 - 1) · MSW).
    It can come out negative (raters agree less than chance would make them); None
    without two employees and some spread to measure.
    """
    groups = [s for s in samples if s.n >= 1]
    g = len(groups)
    total = sum(s.n for s in groups)
    if g < 2 or total <= g:
        return None
    grand = sum(s.n * s.mean for s in groups) / total
    between = sum(s.n * (s.mean - grand) ** 2 for s in groups) / (g - 1)
    within = sum((s.n - 1) * (s.sd or 0.0) ** 2 for s in groups) / (total - g)
    n0 = (total - sum(s.n * s.n for s in groups) / total) / (g - 1)
    denominator = between + (n0 - 1) * within
    if denominator <= 0:
        return None
    return (between - within) / denominator


def spearman_brown(icc: float | None, raters: int | None) -> float | None:
    """Reliability of a mean of ``raters`` ratings: n·ICC / (1 + (n - 1)·ICC).

    It is the expected correlation of this mean with the mean of another, equally large
    set of raters. A negative ICC counts as 0 (such a mean tells nothing).
    """
    if icc is None or raters is None or raters < 1:
        return None
    icc = min(max(icc, 0.0), 1.0)
    return raters * icc / (1 + (raters - 1) * icc)


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
    """Counts in equal-width bins over [low, high]; each bin is [a, b) except the last [a, b].

    Edges and values are compared rounded to RANK_DECIMALS: in floating point 2.8 - 1
    is 1.7999999999999998, so dividing by the width put a value lying on an inner edge
    into the bin below it.
    """
    width = (high - low) / bins
    edges = [round(low + i * width, RANK_DECIMALS) for i in range(bins)] + [float(high)]
    counts = [0] * bins
    for v in values:
        # Values outside [low, high] cannot occur (scores lie on the scale); clip anyway.
        index = bisect_right(edges, round(v, RANK_DECIMALS)) - 1
        counts[min(max(index, 0), bins - 1)] += 1
    return {"edges": edges, "counts": counts}


def bands(intervals: Mapping[K, tuple[float, float | None, float | None]]) -> dict[K, int]:
    """Band 1 = best; employees whose 95% intervals overlap share a band.

    ``intervals``: key -> (coefficient, ci_low, ci_high); a missing interval counts as
    the point itself. Walking down from the highest coefficient, an employee joins the
    current band when their interval overlaps the interval of the band's first member,
    and opens the next band otherwise. Anchoring on the first member keeps bands from
    chaining (overlap is not transitive: A ~ B and B ~ C does not make A ~ C), and
    everyone in a band is then statistically indistinguishable from its top.
    """
    ordered = sorted(intervals.items(), key=lambda item: -round(item[1][0], RANK_DECIMALS))
    out: dict[K, int] = {}
    band = 0
    top_low = top_high = 0.0
    for key, (value, low, high) in ordered:
        low = value if low is None else low
        high = value if high is None else high
        if band == 0 or high < top_low or low > top_high:
            band += 1
            top_low, top_high = low, high
        out[key] = band
    return out


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
    # Mean of the per-rater scores (equals the coefficient unless raters skipped
    # competencies): the employee's group mean in the cycle's ICC.
    rater_mean: float | None = None
    reliability: float | None = None
    company_band: int | None = None
    department_band: int | None = None

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
    icc: float | None = None


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
    rater_mean, sd = mean_sd(scores)
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
        rater_mean=rater_mean,
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
    icc = assign_reliability(employees)
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
                current_n=emp.scored_raters,
                previous_n=before.scored_raters if before else None,
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
                current_n=fig.employees_included,
                previous_n=dept_before.employees_included if dept_before else None,
            )
        company.delta, company.delta_significant = compare(
            company.coefficient,
            company.se,
            previous.company.coefficient,
            previous.company.se,
            scale=data.scale,
            previous_scale=previous.scale,
            current_n=company.employees_included,
            previous_n=previous.company.employees_included,
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
        icc=icc,
    )


def assign_reliability(employees: Mapping[int, EmployeeFigures]) -> float | None:
    """The cycle's ICC(1) over the included employees' per-rater scores, and each
    included employee's reliability (Spearman-Brown for their scored raters); returns
    the ICC. Only employees who meet k take part, like every other stored figure."""
    samples = [
        RaterSample(e.scored_raters, e.rater_mean, e.sd)
        for e in employees.values()
        if e.included and e.scored_raters and e.rater_mean is not None
    ]
    icc = icc1(samples)
    for e in employees.values():
        if e.included:
            e.reliability = spearman_brown(icc, e.scored_raters)
    return icc


def assign_ranks(
    employees: Mapping[int, EmployeeFigures], included: Mapping[int, float | None]
) -> None:
    """Company and department ranks, percentiles and bands of the included employees
    (bands need the intervals set first)."""
    scored = {emp: c for emp, c in included.items() if c is not None}
    company_ranks = competition_ranks(scored)
    company_pct = percentiles(scored)
    by_department: dict[int | None, dict[int, float]] = {}
    for emp, c in scored.items():
        by_department.setdefault(employees[emp].department_id, {})[emp] = c
    company_bands = bands({emp: _interval(employees[emp], c) for emp, c in scored.items()})
    for emp in scored:
        employees[emp].company_rank = company_ranks[emp]
        employees[emp].company_percentile = company_pct[emp]
        employees[emp].company_band = company_bands[emp]
    for dept, members in by_department.items():
        if dept is None:
            continue  # no department at launch: ranked in the company only
        ranks, pct = competition_ranks(members), percentiles(members)
        dept_bands = bands({emp: _interval(employees[emp], c) for emp, c in members.items()})
        for emp in members:
            employees[emp].department_rank = ranks[emp]
            employees[emp].department_percentile = pct[emp]
            employees[emp].department_band = dept_bands[emp]


def _interval(e: EmployeeFigures, coefficient: float) -> tuple[float, float | None, float | None]:
    return coefficient, e.ci_low, e.ci_high
