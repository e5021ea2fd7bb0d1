"""Stored results of closed cycles.

Everything here is written once, when a cycle closes (``service.compute_cycle_results``),
and only read afterwards, so reading a result page is a cheap indexed lookup.

The anonymity threshold k is applied *before* anything is stored: a figure that must
not be shown (an employee with fewer than k raters, a competency with fewer than k
answers, an NPS with fewer than k answers) is never written, not even hidden behind a
flag, so no route, export or chart can leak it by mistake.

The large per-employee tables carry no foreign keys on purpose: they are derived data
written in one statement from the cycle's snapshots, and PostgreSQL's per-row
referential checks made closing a 50,000-employee cycle several times slower (about
11 s of RI triggers for 400,000 competency rows). They are deleted with their cycle's
results by ``compute_cycle_results`` itself.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import FILTERED, Base, utcnow


class CompanyResult(Base):
    """The company's figures for one closed cycle (and the k they were computed with)."""

    __tablename__ = "company_result"

    cycle_id: Mapped[int] = mapped_column(
        ForeignKey("cycle.id", ondelete="CASCADE"), primary_key=True
    )
    min_raters: Mapped[int] = mapped_column(Integer)
    scale_min: Mapped[int] = mapped_column(Integer)
    scale_max: Mapped[int] = mapped_column(Integer)
    suppliers: Mapped[int] = mapped_column(Integer)
    employees_included: Mapped[int] = mapped_column(Integer)
    coefficient: Mapped[float | None] = mapped_column(Float)
    sd: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    nps: Mapped[float | None] = mapped_column(Float)
    nps_employees: Mapped[int] = mapped_column(Integer, default=0)
    delta: Mapped[float | None] = mapped_column(Float)
    delta_significant: Mapped[bool | None] = mapped_column(Boolean)
    previous_cycle_id: Mapped[int | None] = mapped_column(Integer)
    invited: Mapped[int] = mapped_column(Integer, default=0)
    responded: Mapped[int] = mapped_column(Integer, default=0)
    response_rate: Mapped[float | None] = mapped_column(Float)
    # Histogram of the included employees' coefficients: {"edges": [...], "counts": [...]}.
    distribution: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # ICC(1): the share of the spread of single ratings that lies between employees
    # (rater agreement), over the included employees; the base of their reliabilities.
    icc: Mapped[float | None] = mapped_column(Float)
    computed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class CompanyCompetencyResult(Base):
    __tablename__ = "company_competency_result"

    cycle_id: Mapped[int] = mapped_column(
        ForeignKey("cycle.id", ondelete="CASCADE"), primary_key=True
    )
    cycle_competency_id: Mapped[int] = mapped_column(
        ForeignKey("cycle_competency.id", ondelete="CASCADE"), primary_key=True
    )
    employees: Mapped[int] = mapped_column(Integer)
    mean: Mapped[float] = mapped_column(Float)


class DepartmentClosure(Base):
    """The launch-time department tree as (ancestor, descendant) pairs, self included.

    It lets one GROUP BY roll every figure up the whole tree (a department includes its
    sub-departments) instead of walking the tree in Python.
    """

    __tablename__ = "department_closure"
    __table_args__ = (
        # Covering (ancestor last): the rollup joins on descendant and reads ancestor.
        Index(
            "ix_department_closure_cycle_id_descendant_id",
            "cycle_id",
            "descendant_id",
            "ancestor_id",
        ),
    )

    cycle_id: Mapped[int] = mapped_column(
        ForeignKey("cycle.id", ondelete="CASCADE"), primary_key=True
    )
    ancestor_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    descendant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    depth: Mapped[int] = mapped_column(Integer)


class DepartmentResult(Base):
    """A department's figures, rolled up over itself and all its sub-departments."""

    __tablename__ = "department_result"

    cycle_id: Mapped[int] = mapped_column(
        ForeignKey("cycle.id", ondelete="CASCADE"), primary_key=True
    )
    department_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Pages filter on both: the planner needs their statistics (app.db.FILTERED).
    parent_id: Mapped[int | None] = mapped_column(Integer, info=FILTERED)
    level: Mapped[int] = mapped_column(Integer, default=0, info=FILTERED)
    suppliers: Mapped[int] = mapped_column(Integer, default=0)
    employees_included: Mapped[int] = mapped_column(Integer, default=0)
    coefficient: Mapped[float | None] = mapped_column(Float)
    sd: Mapped[float | None] = mapped_column(Float)
    nps: Mapped[float | None] = mapped_column(Float)
    nps_employees: Mapped[int] = mapped_column(Integer, default=0)
    delta: Mapped[float | None] = mapped_column(Float)
    delta_significant: Mapped[bool | None] = mapped_column(Boolean)


class DepartmentCompetencyResult(Base):
    __tablename__ = "department_competency_result"

    cycle_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    department_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cycle_competency_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    employees: Mapped[int] = mapped_column(Integer)
    mean: Mapped[float] = mapped_column(Float)


class EmployeeResult(Base):
    """One supplier's result. Below k raters only ``meets_k = False`` is stored."""

    __tablename__ = "employee_result"
    __table_args__ = (
        Index("ix_employee_result_employee_id", "employee_id"),
        Index("ix_employee_result_cycle_id_department_id", "cycle_id", "department_id"),
        # The leaderboard and the decliners on every results page: the top ten without
        # sorting every employee of the cycle.
        Index("ix_employee_result_cycle_id_coefficient", "cycle_id", "coefficient"),
        Index("ix_employee_result_cycle_id_delta", "cycle_id", "delta"),
        Index("ix_employee_result_cycle_id_name_order", "cycle_id", "name_order"),
    )

    cycle_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    employee_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    department_id: Mapped[int | None] = mapped_column(Integer)
    meets_k: Mapped[bool] = mapped_column(Boolean)
    raters: Mapped[int | None] = mapped_column(Integer)
    # Raters who scored at least one shown competency: the n behind sd and the interval.
    scored_raters: Mapped[int | None] = mapped_column(Integer)
    coefficient: Mapped[float | None] = mapped_column(Float)
    sd: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    nps: Mapped[float | None] = mapped_column(Float)
    nps_answers: Mapped[int | None] = mapped_column(Integer)
    delta: Mapped[float | None] = mapped_column(Float)
    delta_significant: Mapped[bool | None] = mapped_column(Boolean)
    company_rank: Mapped[int | None] = mapped_column(Integer)
    company_percentile: Mapped[float | None] = mapped_column(Float)
    department_rank: Mapped[int | None] = mapped_column(Integer)
    department_percentile: Mapped[float | None] = mapped_column(Float)
    # How far the figures can be trusted: the standard error of the coefficient, the
    # reliability of the mean of this many raters (the cycle's ICC(1) stepped up by
    # Spearman-Brown), and the band on the leaderboard (overlapping 95% intervals share
    # one), which replaces reading exact ranks as real differences.
    se: Mapped[float | None] = mapped_column(Float)
    reliability: Mapped[float | None] = mapped_column(Float)
    company_band: Mapped[int | None] = mapped_column(Integer)
    department_band: Mapped[int | None] = mapped_column(Integer)
    # Position in the cycle's name order (full name, then id; 0, 1, 2, ... without
    # gaps), stored at close: a page of the employee table is then a range of an index
    # instead of a sort of every employee (see reports.service.employee_rows).
    name_order: Mapped[int | None] = mapped_column(Integer)
    # The competency means shown (each with >= k real answers), in display order, as
    # JSON ``[[cycle competency id, mean, answers], ...]``; NULL below k. In the row, so
    # a page of the employee table is one read of 500 rows (see
    # ``reports.service.employee_rows``), not 4,000 more from a table of their own.
    competency_means: Mapped[str | None] = mapped_column(Text)


class EmployeeComment(Base):
    """A comment copied for an employee who meets k, without date or ballot reference.

    ``sort_key`` is random: comments are read in that order, never in submission order.
    """

    __tablename__ = "employee_comment"
    __table_args__ = (Index("ix_employee_comment_cycle_id_employee_id", "cycle_id", "employee_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(Integer)
    employee_id: Mapped[int] = mapped_column(Integer)
    sort_key: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)


class WebhookStatus(enum.StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"
    skipped = "skipped"


class WebhookDelivery(Base):
    """A "results ready" notification for the HRIS, queued in the closing transaction."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event: Mapped[str] = mapped_column(String(50))
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[WebhookStatus] = mapped_column(
        Enum(WebhookStatus, native_enum=False, length=10, validate_strings=True),
        default=WebhookStatus.pending,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # A worker's lease while it posts; if it dies the lease runs out and another retries.
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
