"""The close's array ranking against the plain reference (``calc.assign_ranks``)."""

from __future__ import annotations

import copy
import random

import pytest

from app.reports import coefficients as calc
from app.reports import ranking

RANKED = (
    "company_rank",
    "company_percentile",
    "company_band",
    "department_rank",
    "department_percentile",
    "department_band",
)


def _cycle(rng: random.Random, size: int) -> dict[int, calc.EmployeeFigures]:
    """Employees with many ties, some without a department, interval or k."""
    figures = {}
    for emp in rng.sample(range(1, 10 * size), size):
        # Few distinct values, some equal only after rounding to RANK_DECIMALS.
        coefficient = rng.choice([None, 1.0, 2.5, 3.0, 4.0, 4.25]) if rng.random() < 0.9 else None
        if coefficient is not None and rng.random() < 0.2:
            coefficient += rng.choice([1e-12, -1e-12, 0.1 + 0.2 - 0.3])
        spread = rng.choice([None, 0.1, 0.4, 1.0])
        figures[emp] = calc.EmployeeFigures(
            employee_id=emp,
            department_id=rng.choice([None, 1, 2, 3, 4, 5]),
            meets_k=rng.random() < 0.9,
            coefficient=coefficient,
            ci_low=None if spread is None or coefficient is None else coefficient - spread,
            ci_high=None if spread is None or coefficient is None else coefficient + spread,
        )
    return figures


@pytest.mark.parametrize("seed", range(40))
def test_array_ranking_equals_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    want = _cycle(rng, rng.choice([1, 2, 5, 30, 200]))
    got = copy.deepcopy(want)
    calc.assign_ranks(want, {e: f.coefficient for e, f in want.items() if f.included})
    ranking.assign_ranks(got)
    for emp, fig in want.items():
        assert {name: getattr(got[emp], name) for name in RANKED} == {
            name: getattr(fig, name) for name in RANKED
        }, emp
    assert any(f.company_rank for f in want.values()) or not any(f.included for f in want.values())


def test_nobody_included_ranks_nobody() -> None:
    figures = {1: calc.EmployeeFigures(1, 1, meets_k=False)}
    ranking.assign_ranks(figures)
    assert figures[1].company_rank is None and figures[1].department_band is None
