"""Quarterly rating cycles, their launch-time snapshots and the invitations."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import FILTERED, Base, utcnow


class CycleState(enum.StrEnum):
    draft = "draft"
    # The confirmation round: suppliers check their customer lists before the launch.
    nominating = "nominating"
    open = "open"
    closed = "closed"


class NominationLinksTo(enum.StrEnum):
    """Who gets the private link to a supplier's list in a confirmation round."""

    supplier = "supplier"
    # The supplier's line manager, on their team page; suppliers without a reachable
    # manager (none, inactive, or on the paper channel) get their own link instead.
    line_manager = "line_manager"


class Cycle(Base):
    __tablename__ = "cycle"
    __table_args__ = (
        CheckConstraint("scale_min < scale_max", name="scale_range"),
        CheckConstraint("period_start <= period_end", name="period_range"),
        CheckConstraint("opens_at < closes_at", name="open_before_close"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    opens_at: Mapped[datetime] = mapped_column(DateTime)
    closes_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    state: Mapped[CycleState] = mapped_column(
        Enum(CycleState, native_enum=False, length=10, validate_strings=True),
        default=CycleState.draft,
        index=True,
    )
    scale_min: Mapped[int] = mapped_column(Integer, default=1)
    scale_max: Mapped[int] = mapped_column(Integer, default=10)
    ask_nps: Mapped[bool] = mapped_column(Boolean, default=True)
    ask_comment: Mapped[bool] = mapped_column(Boolean, default=True)
    # The rater-load governor (see cycles.governor): a customer with more suppliers
    # rates a seeded random subset of this many, chosen to keep every supplier covered.
    max_suppliers_per_customer: Mapped[int] = mapped_column(
        Integer, default=12, server_default="12"
    )
    # Chosen at creation, so the launch preview and the launch pick the same subset.
    rater_sample_seed: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    launched_at: Mapped[datetime | None] = mapped_column(DateTime)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Set once the pool was released into ballot boxes (see ratings.service.release_pool).
    sealed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Set once the reports for this cycle are computed and stored.
    results_ready_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Set once a VACUUM really purged the pre-seal row versions (see lifecycle); NULL on
    # a closed cycle means the worker still has to retry it.
    vacuumed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The mixing pool's key is derived from SECRET_KEY and this salt (set at launch);
    # the check tells at start-up whether SECRET_KEY is still the one that sealed it.
    pool_salt: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    pool_key_check: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    # After close, each supplier who reached k gets a private link to their own results
    # (see app.reports.personal); HR can switch it off per cycle until they are sent.
    send_personal_results: Mapped[bool] = mapped_column(Boolean, default=True)
    personal_results_sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Launched by the worker at opens_at (the quarterly rhythm) unless HR pauses it.
    auto_launch: Mapped[bool] = mapped_column(Boolean, default=False)
    # Reminder days counted from the opening (the rhythm's), instead of
    # REMINDER_DAYS_BEFORE_CLOSE; NULL for cycles HR made by hand.
    reminder_days_after_open: Mapped[list[int] | None] = mapped_column(JSON)
    # Who got the links of the confirmation round, set when it starts (NULL: no round).
    nomination_links_to: Mapped[NominationLinksTo | None] = mapped_column(
        Enum(NominationLinksTo, native_enum=False, length=20, validate_strings=True)
    )
    # When the rhythm starts this draft's confirmation round by itself (its
    # ``nomination_days``); NULL: no round planned.
    nomination_starts_at: Mapped[datetime | None] = mapped_column(DateTime)


class CycleCompetency(Base):
    """A competency as it was when the cycle launched (HR edits never rewrite history)."""

    __tablename__ = "cycle_competency"
    __table_args__ = (UniqueConstraint("cycle_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"), index=True)
    competency_id: Mapped[int | None] = mapped_column(
        ForeignKey("competency.id", ondelete="SET NULL")
    )
    code: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    indicators: Mapped[list[Any]] = mapped_column(JSON, default=list)
    translations: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    display_order: Mapped[int] = mapped_column(Integer, default=0)


class CycleDepartment(Base):
    """The department tree as it was at launch; parent_id names another snapshot row."""

    __tablename__ = "cycle_department"

    cycle_id: Mapped[int] = mapped_column(
        ForeignKey("cycle.id", ondelete="CASCADE"), primary_key=True
    )
    department_id: Mapped[int] = mapped_column(
        ForeignKey("department.id", ondelete="RESTRICT"), primary_key=True
    )
    parent_id: Mapped[int | None] = mapped_column(Integer, info=FILTERED)
    external_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))


class CycleEmployee(Base):
    """Every employee who takes part (as supplier or customer), with the department at launch."""

    __tablename__ = "cycle_employee"
    __table_args__ = (
        Index("ix_cycle_employee_cycle_id_department_id", "cycle_id", "department_id"),
        # The results table in name order, a page at a time, without sorting the cycle.
        Index("ix_cycle_employee_cycle_id_full_name", "cycle_id", "full_name", "employee_id"),
    )

    cycle_id: Mapped[int] = mapped_column(
        ForeignKey("cycle.id", ondelete="CASCADE"), primary_key=True
    )
    employee_id: Mapped[int] = mapped_column(
        ForeignKey("employee.id", ondelete="RESTRICT"), primary_key=True
    )
    department_id: Mapped[int | None] = mapped_column(Integer)
    manager_id: Mapped[int | None] = mapped_column(Integer)
    full_name: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str] = mapped_column(String(100))
    # Whether this person, as a rater, counts toward a supplier's k (decided at launch,
    # see cycles.service.rater_eligibility): a record HR created or re-addressed
    # shortly before the launch could be a mailbox HR reads, so it never makes up k.
    counts_toward_k: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why not: "new", "email_changed" or "email_domain" (None when counting).
    not_counting_reason: Mapped[str | None] = mapped_column(String(20))


class CyclePair(Base):
    """The matrix as it was at launch: customer_id rates supplier_id in this cycle."""

    __tablename__ = "cycle_pair"
    # Covers "whom does this customer rate" (every rating page and submit) without a
    # trip to the table; SQLite otherwise scans the cycle's whole matrix.
    __table_args__ = (
        Index("ix_cycle_pair_cycle_id_customer_id", "cycle_id", "customer_id", "supplier_id"),
    )

    cycle_id: Mapped[int] = mapped_column(
        ForeignKey("cycle.id", ondelete="CASCADE"), primary_key=True
    )
    supplier_id: Mapped[int] = mapped_column(
        ForeignKey("employee.id", ondelete="RESTRICT"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("employee.id", ondelete="RESTRICT"), primary_key=True
    )


class Invitation(Base):
    """One customer's private link for one cycle.

    Only the SHA-256 of the token is kept. ``used`` records that the customer answered,
    never when. The whole row is deleted when the cycle closes (after its counts are
    kept in :class:`CycleResponse`): a closed cycle no longer knows who answered.
    """

    __tablename__ = "invitation"
    __table_args__ = (UniqueConstraint("cycle_id", "customer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("employee.id", ondelete="RESTRICT"))
    # Erased (NULL) when the cycle closes: every link dies with it.
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The link in the latest reminder. Only the hash is stored, so a reminder cannot repeat
    # the original link; it carries a second one and both keep working until close.
    reminder_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    # A paper-channel customer: no email; HR prints a letter with a one-time code, whose
    # keyed hash (HMAC under SECRET_KEY, see app.cycles.paper) is kept here. Printing
    # again replaces it, so only the newest letter works. Erased at close with the row.
    by_paper: Mapped[bool] = mapped_column(Boolean, default=False)
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Erased at close too: "not yet answered on that date" is a hint about when they did.
    last_reminded_on: Mapped[date | None] = mapped_column(Date, info=FILTERED)


class CycleResponse(Base):
    """How many customers of a department were invited and answered (kept at close).

    It replaces the per-invitation ``used`` marks, which are deleted at close.
    ``department_id`` is the customer's department at launch (NULL: none).
    """

    __tablename__ = "cycle_response"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[int | None] = mapped_column(Integer)
    invited: Mapped[int] = mapped_column(Integer)
    responded: Mapped[int] = mapped_column(Integer)


class CloseJobState(enum.StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class CloseJob(Base):
    """A cycle's close, queued by HR, the API or the close date, and run by the worker.

    The close itself is one transaction (links die, the pool is released, results are
    computed): a job that fails leaves the cycle open and can be queued again. ``step``
    and ``percent`` are written in short transactions of their own while it runs.
    """

    __tablename__ = "close_job"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"), index=True)
    state: Mapped[CloseJobState] = mapped_column(
        Enum(CloseJobState, native_enum=False, length=10, validate_strings=True),
        default=CloseJobState.queued,
        index=True,
    )
    step: Mapped[str] = mapped_column(String(40), default="queued")
    percent: Mapped[int] = mapped_column(Integer, default=0)
    # Who asked: an HR user's email, "api key <name>" or "close date".
    requested_by: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # What went wrong, for HR (never answers: the close's errors carry no row values).
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # A worker's lease while it runs the job; if the worker dies, another takes it over.
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)


class CycleRhythm(Base):
    """The organisation's quarterly rhythm (one row), edited by HR.

    With it enabled the worker creates each quarter's cycle ``prepare_days`` before it
    opens (and asks HR to review the matrix), launches it at its opening unless HR
    paused it, reminds on the given days and closes it after ``open_days``.
    """

    __tablename__ = "cycle_rhythm"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    opens_days_before_quarter_end: Mapped[int] = mapped_column(Integer, default=14)
    open_days: Mapped[int] = mapped_column(Integer, default=10)
    reminder_days: Mapped[list[int]] = mapped_column(JSON, default=lambda: [7, 9])
    prepare_days: Mapped[int] = mapped_column(Integer, default=14)
    # 0: no confirmation round (HR reviews the matrix); N: the round starts N days before
    # the opening, by itself.
    nomination_days: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(320), default="")


class LaunchPreview(Base):
    """What the launch of an automatic draft would give, as of ``computed_at``.

    Computed by the rhythm job (coverage reads the whole matrix: seconds at 50,000
    employees), so the dashboard reads one row instead of computing it on every load.
    """

    __tablename__ = "launch_preview"

    cycle_id: Mapped[int] = mapped_column(
        ForeignKey("cycle.id", ondelete="CASCADE"), primary_key=True
    )
    computed_at: Mapped[datetime] = mapped_column(DateTime)
    customers: Mapped[int] = mapped_column(Integer)
    # Suppliers who would have fewer than ``short_of`` (k + 2) raters who count.
    suppliers_short: Mapped[int] = mapped_column(Integer)
    short_of: Mapped[int] = mapped_column(Integer)


class NominationList(Base):
    """One supplier's customer list in a cycle's confirmation round (see cycles.nomination).

    The supplier's private link is kept as its SHA-256 only and erased at launch. What
    they change is kept as :class:`NominationChange` proposals; the launch writes the
    proposals of confirmed lists to the matrix. Nothing here touches answers: it is who
    should rate whom, which HR sees anyway.
    """

    __tablename__ = "nomination_list"
    __table_args__ = (UniqueConstraint("cycle_id", "supplier_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"), index=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("employee.id", ondelete="CASCADE"))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The line manager's approval (see cycles.nomination_approval). Any later change to
    # the list withdraws it, so an approval always covers the list as it stands.
    approved_at: Mapped[datetime | None] = mapped_column(DateTime)
    approved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("employee.id", ondelete="SET NULL")
    )


class NominationChange(Base):
    """A supplier's proposal: add this colleague as a customer, or remove them (why)."""

    __tablename__ = "nomination_change"
    __table_args__ = (UniqueConstraint("list_id", "customer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(
        ForeignKey("nomination_list.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int] = mapped_column(ForeignKey("employee.id", ondelete="CASCADE"))
    # "add" or "remove"
    action: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Who proposed it when not the supplier: their line manager, on the team page.
    proposed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("employee.id", ondelete="SET NULL")
    )


class NominationTeam(Base):
    """A line manager's one link to their direct reports' lists in a confirmation round.

    Like the suppliers' links, only the SHA-256 of the token is kept, and it is erased
    at launch. The team is read live (employees whose manager this is), so a report who
    moves team during the round moves with their list.
    """

    __tablename__ = "nomination_team"
    __table_args__ = (UniqueConstraint("cycle_id", "manager_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"), index=True)
    manager_id: Mapped[int] = mapped_column(ForeignKey("employee.id", ondelete="CASCADE"))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
