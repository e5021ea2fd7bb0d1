"""The results API contract (and what the service hands to pages, charts and exports)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

NOT_ENOUGH = "not_enough_responses"
ResultStatus = Literal["ok", "not_enough_responses"]


class CycleRef(BaseModel):
    id: int
    name: str
    period_start: date
    period_end: date
    scale_min: int
    scale_max: int
    min_raters: int = Field(description="k: the anonymity threshold the results were computed with")


class CompetencyRef(BaseModel):
    id: int
    code: str
    name: str
    weight: float


class CompetencyMean(BaseModel):
    code: str
    name: str
    mean: float
    count: int = Field(description="answers (employee) or employees (department, company)")


class EmployeeResultRead(BaseModel):
    employee_id: int
    external_id: str
    full_name: str
    department_id: int | None
    department_external_id: str | None = None
    department_name: str | None = None
    status: ResultStatus = Field(
        description="'not_enough_responses' when fewer than k raters: every figure is then null"
    )
    raters: int | None = None
    coefficient: float | None = None
    sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    nps: float | None = None
    nps_answers: int | None = None
    delta: float | None = Field(
        default=None, description="change since the previous closed cycle, on this cycle's scale"
    )
    delta_significant: bool | None = None
    company_rank: int | None = None
    company_percentile: float | None = None
    department_rank: int | None = None
    department_percentile: float | None = None
    se: float | None = Field(default=None, description="standard error of the coefficient")
    reliability: float | None = Field(
        default=None,
        description="reliability of this mean (0-1): the cycle's ICC(1) stepped up by "
        "Spearman-Brown for this employee's number of raters",
    )
    company_band: int | None = Field(
        default=None,
        description="leaderboard band in the company (1 = top): employees whose 95% "
        "intervals overlap share a band, their order within it may be chance",
    )
    department_band: int | None = Field(
        default=None, description="the same band within the employee's own department"
    )
    competencies: list[CompetencyMean] = Field(default_factory=list)


class EmployeePage(BaseModel):
    cycle: CycleRef
    total: int
    limit: int
    offset: int
    items: list[EmployeeResultRead]


class DepartmentResultRead(BaseModel):
    department_id: int
    external_id: str
    name: str
    parent_id: int | None
    level: int
    suppliers: int
    employees_included: int
    coefficient: float | None = None
    sd: float | None = None
    nps: float | None = None
    nps_employees: int = 0
    delta: float | None = None
    delta_significant: bool | None = None
    competencies: list[CompetencyMean] = Field(default_factory=list)


class DepartmentList(BaseModel):
    cycle: CycleRef
    items: list[DepartmentResultRead]


class HistogramRead(BaseModel):
    edges: list[float]
    counts: list[int]


class CompanyResultRead(BaseModel):
    cycle: CycleRef
    suppliers: int
    employees_included: int
    coefficient: float | None = None
    sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    nps: float | None = None
    nps_employees: int = 0
    delta: float | None = None
    delta_significant: bool | None = None
    invited: int
    responded: int
    response_rate: float | None = None
    icc: float | None = Field(
        default=None,
        description="ICC(1): agreement between raters, the share of the spread of single "
        "ratings that lies between employees",
    )
    distribution: HistogramRead
    competencies: list[CompetencyMean] = Field(default_factory=list)


class TrendPoint(BaseModel):
    cycle: CycleRef
    status: ResultStatus
    coefficient: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    nps: float | None = None
    raters: int | None = None
    employees_included: int | None = None
    delta: float | None = None
    delta_significant: bool | None = None
    index: float | None = Field(
        default=None,
        description="the coefficient as a position on its scale, 0 (scale minimum) to 100",
    )
    competencies: list[CompetencyMean] = Field(default_factory=list)


class EmployeeTrend(BaseModel):
    external_id: str
    full_name: str
    points: list[TrendPoint]
