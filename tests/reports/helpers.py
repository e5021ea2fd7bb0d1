"""Constants shared by the results tests."""

from __future__ import annotations

# Every figure of an employee's result: all of them must be empty below k raters.
FIGURES = (
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
