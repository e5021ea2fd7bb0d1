"""The cycles API contract."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.cycles.models import CloseJobState, CycleState, NominationLinksTo
from app.fields import UtcDatetime


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


class CycleCreate(BaseModel):
    """Either ``quarter`` alone (dates follow from it) or name, period and dates."""

    model_config = ConfigDict(extra="forbid")

    quarter: str | None = Field(
        default=None, max_length=20, description="A quarter such as `2026Q4` or `2026-Q4`."
    )
    name: str | None = Field(default=None, max_length=50, examples=["2026-Q4"])
    period_start: date | None = None
    period_end: date | None = None
    opens_at: datetime | None = Field(
        default=None, description="ISO 8601; without a zone it is read as UTC."
    )
    closes_at: datetime | None = Field(
        default=None, description="ISO 8601; without a zone it is read as UTC."
    )
    scale_min: int = Field(default=1, ge=0, le=100)
    scale_max: int = Field(default=10, ge=1, le=100)
    ask_nps: bool = True
    ask_comment: bool = True
    max_suppliers_per_customer: int = Field(
        default=12,
        ge=1,
        le=100,
        description="The rater-load governor: a customer with more suppliers rates a "
        "seeded random subset of this many, chosen so every supplier keeps as many raters "
        "as possible and at least k + 2 where the matrix allows.",
    )

    @field_validator("opens_at", "closes_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return _naive_utc(value)

    @model_validator(mode="after")
    def _one_shape(self) -> CycleCreate:
        explicit = ("name", "period_start", "period_end", "opens_at", "closes_at")
        if self.quarter is not None:
            given = [f for f in explicit if getattr(self, f) is not None]
            if given:
                raise ValueError(
                    f"give either quarter or name and dates, not both (got {', '.join(given)})"
                )
        else:
            missing = [f for f in explicit if getattr(self, f) is None]
            if missing:
                raise ValueError(f"without quarter, these are required: {', '.join(missing)}")
        return self


class DepartmentProgressRead(BaseModel):
    department_id: int | None
    name: str
    invited: int
    responded: int
    response_rate: float


class CycleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    state: CycleState
    period_start: date
    period_end: date
    opens_at: UtcDatetime
    closes_at: UtcDatetime
    scale_min: int
    scale_max: int
    ask_nps: bool
    ask_comment: bool
    max_suppliers_per_customer: int
    launched_at: UtcDatetime | None
    closed_at: UtcDatetime | None
    results_ready_at: UtcDatetime | None
    invited: int = Field(description="Customers invited (one link each).")
    responded: int = Field(description="Customers who submitted (counts only, never who).")
    response_rate: float


class CycleDetail(CycleRead):
    undeliverable: int = Field(description="Invitation or reminder emails the server refused.")
    departments: list[DepartmentProgressRead] = Field(
        description="Invited and responded per department at launch (counts only)."
    )


class RemindersQueued(BaseModel):
    queued: int = Field(description="Reminder emails queued in the outbox.")


class CloseJobRead(BaseModel):
    """A cycle's close, run by the worker: poll ``href`` until ``state`` is done or failed."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    cycle_id: int
    state: CloseJobState = Field(description="queued, running, done or failed.")
    step: str = Field(
        description="queued, starting, releasing answers, computing results, results ready "
        "or failed."
    )
    percent: int = Field(ge=0, le=100, description="Done so far (estimate by step).")
    attempts: int
    error: str | None = Field(
        description="Why the last attempt failed; the cycle then stays open and can be "
        "closed again."
    )
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    href: str = Field(description="This job's URL.")


class RaterLoadRead(BaseModel):
    """Questions per rater over the customers of a launch (an estimate in minutes)."""

    raters: int
    mean: float
    median: float
    p90: int = Field(description="90th percentile of questions per rater.")
    max: int
    mean_minutes: float = Field(description="Expected minutes per rater, on average.")
    max_minutes: float
    histogram: list[tuple[int, int]] = Field(
        description="(questions, raters asked that many), by questions ascending."
    )


class ShortSupplierRead(BaseModel):
    external_id: str
    full_name: str
    kept: int = Field(description="Raters this supplier keeps after the cap.")
    in_matrix: int = Field(description="Raters this supplier has in the matrix.")


class LaunchPreviewRead(BaseModel):
    """What the rater-load governor would do if the cycle launched now."""

    max_suppliers_per_customer: int
    target_raters: int = Field(description="k + 2: the coverage each supplier should keep.")
    before: RaterLoadRead = Field(description="Questions per rater as the matrix stands.")
    after: RaterLoadRead = Field(description="Questions per rater after the cap.")
    capped_customers: int = Field(description="Customers with more suppliers than the cap.")
    dropped_pairs: int = Field(description="Pairs left out of this cycle by the cap.")
    short_suppliers: list[ShortSupplierRead] = Field(
        description="Suppliers left with fewer than k + 2 raters although the matrix has "
        "more (the first 50, fewest raters first)."
    )
    short_suppliers_total: int


class NominationRoundStart(BaseModel):
    """Options of a confirmation round (the body may be omitted)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"links_to": "line_manager"}]}
    )

    links_to: NominationLinksTo | None = Field(
        default=None,
        description="Who gets the link to each supplier's list: `supplier` (each their "
        "own) or `line_manager` (the manager's team link only; suppliers without an "
        "active manager on email get their own). Default: the `NOMINATION_LINKS_TO` "
        "setting. Line managers get a team link to approve their reports' lists either way.",
    )


class NominationRoundStarted(BaseModel):
    state: CycleState
    links_to: NominationLinksTo
    emailed: int = Field(description="Suppliers emailed a private link to their list.")
    managers_emailed: int = Field(
        description="Line managers emailed one private link to their team's lists."
    )


class NominationListRead(BaseModel):
    supplier_external_id: str
    full_name: str
    confirmed_at: UtcDatetime | None
    customers: int = Field(
        description="Customers at launch: the matrix, with the proposals if confirmed."
    )
    added: int = Field(description="Colleagues proposed for the list (by the supplier or manager).")
    removed: int = Field(description="Customers proposed for removal.")
    link_to: str = Field(
        description="Who holds a link to this list: `supplier`, `line_manager` (the team "
        "page only) or `none` (paper channel and no manager on email)."
    )
    line_manager_external_id: str | None = Field(description="The supplier's manager now.")
    approved_at: UtcDatetime | None = Field(
        description="When the line manager approved the list as it stands; a later "
        "change withdraws it."
    )
    approved_by_external_id: str | None = Field(description="The manager who approved it.")


class ManagerApprovalRead(BaseModel):
    external_id: str
    full_name: str
    lists: int = Field(description="Direct reports' lists in the round.")
    approved: int
    has_link: bool = Field(
        description="Whether the manager has a team link (false: inactive or on the paper "
        "channel at the start, or became a manager since)."
    )


class NominationCoverageRead(BaseModel):
    state: CycleState
    links_to: NominationLinksTo | None = Field(
        description="Who got the lists' links (null: no round was started)."
    )
    suppliers: int
    confirmed: int
    approved: int = Field(description="Lists approved by the supplier's line manager.")
    unapproved: int = Field(description="Lists not approved: they launch as they are.")
    short_of: int = Field(description="k + 2: suppliers below this many customers are listed.")
    confirmed_lists: list[NominationListRead]
    short_suppliers: list[NominationListRead]
    managers_waiting: list[ManagerApprovalRead] = Field(
        description="Line managers with lists they have not approved (yet)."
    )
    lists: list[NominationListRead] = Field(
        description="Every list with its confirmation and approval, by supplier name, "
        "paged with `offset` and `limit`."
    )
    offset: int
    limit: int
