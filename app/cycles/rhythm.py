"""The quarterly rhythm: cycles that create, launch, remind and close themselves.

HR sets the rhythm once (e.g. open 14 days before each quarter ends, for 10 days,
reminders on day 7 and 9). The worker then creates each quarter's cycle
``prepare_days`` before its opening and emails HR; with ``nomination_days`` it starts
the cycle's confirmation round that many days before the opening
(``cycles.nomination.start_round``), otherwise HR reviews the matrix. It launches the
cycle at its opening unless HR paused it (a paused draft also waits for its round), and
reminds on the rhythm's days; the close at ``closes_at`` is the worker's usual job.
Nobody has to press a button.

Each pass of the worker also stores what the next automatic launch would give
(``LaunchPreview``, at most hourly), so the dashboard's "what happens next" line reads
one row instead of the whole matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, aliased

from app import dates, i18n
from app.config import Settings
from app.cycles import nomination
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CycleRhythm, CycleState, LaunchPreview
from app.db import utcnow
from app.errors import Conflict, DomainError
from app.mail import service as mail_service
from app.matrix.models import MatrixLink
from app.org.models import Employee
from app.templating import render_string

log = logging.getLogger(__name__)
ACTOR = "quarterly rhythm"
# The launch preview is recomputed at most this often (the matrix changes slowly, and
# coverage reads all of it).
PREVIEW_MAX_AGE = timedelta(hours=1)


class RhythmFields(BaseModel):
    """The rhythm as HR edits it (the API body and the HR form)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(description="Create, launch and remind on its own.")
    opens_days_before_quarter_end: int = Field(
        default=14,
        ge=0,
        le=80,
        description="The cycle opens this many days before its quarter ends.",
    )
    open_days: int = Field(default=10, ge=1, le=60, description="It stays open this many days.")
    reminder_days: list[int] = Field(
        default_factory=lambda: [7, 9],
        max_length=5,
        description="Reminder days, counted from the opening (day 0); each before the close.",
    )
    prepare_days: int = Field(
        default=14,
        ge=0,
        le=60,
        description="The cycle is created this many days before it opens, and HR is emailed to "
        "review the matrix.",
    )
    nomination_days: int = Field(
        default=0,
        ge=0,
        le=60,
        description="0: no confirmation round, HR reviews the matrix. N: the cycle's "
        "confirmation round starts N days before it opens (each supplier gets a link to check "
        "who should rate them); at most `prepare_days`, as the cycle must exist by then.",
    )

    @model_validator(mode="after")
    def _reminders_while_open(self) -> RhythmFields:
        wrong = [d for d in self.reminder_days if not 1 <= d < self.open_days]
        if wrong:
            raise ValueError(
                f"reminder days must be between 1 and {self.open_days - 1} (the cycle is open "
                f"{self.open_days} days): {', '.join(map(str, wrong))}"
            )
        self.reminder_days = sorted(set(self.reminder_days))
        if self.nomination_days > self.prepare_days:
            raise ValueError(
                f"{NOMINATION_RULE} ({self.prepare_days} days before it opens): the round "
                f"cannot start {self.nomination_days} days before"
            )
        return self


# The start of the one cross-field message about the round (the HR form files it there).
NOMINATION_RULE = "the confirmation round starts once the cycle exists"


def get_rhythm(session: Session) -> CycleRhythm:
    """The organisation's rhythm (its defaults, off, until HR saves one)."""
    row = session.get(CycleRhythm, 1)
    if row is None:
        defaults = RhythmFields(enabled=False)
        return CycleRhythm(id=1, updated_by="", **defaults.model_dump())
    return row


def update_rhythm(session: Session, *, fields: RhythmFields, actor: str) -> CycleRhythm:
    row = session.get(CycleRhythm, 1)
    if row is None:
        row = CycleRhythm(id=1)
        session.add(row)
    for key, value in fields.model_dump().items():
        setattr(row, key, value)
    row.updated_at, row.updated_by = utcnow(), actor
    session.flush()
    return row


# --- the plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class QuarterPlan:
    name: str
    period_start: date
    period_end: date
    opens_at: datetime
    closes_at: datetime
    create_at: datetime
    round_starts_at: datetime | None = None  # None: no confirmation round


def plan_for(rhythm: CycleRhythm, year: int, quarter: int) -> QuarterPlan:
    start, end = cycles_service.quarter_period(year, quarter)
    opens = datetime.combine(end, datetime.min.time()) - timedelta(
        days=rhythm.opens_days_before_quarter_end
    )
    days = rhythm.nomination_days or 0
    return QuarterPlan(
        name=cycles_service.quarter_name(year, quarter),
        period_start=start,
        period_end=end,
        opens_at=opens,
        closes_at=opens + timedelta(days=rhythm.open_days),
        create_at=opens - timedelta(days=rhythm.prepare_days),
        round_starts_at=opens - timedelta(days=days) if days > 0 else None,
    )


def _next_quarters(day: date) -> Any:
    year, quarter = cycles_service.quarter_of(day)
    while True:
        yield year, quarter
        year, quarter = (year + 1, 1) if quarter == 4 else (year, quarter + 1)


def next_plan(session: Session, *, rhythm: CycleRhythm, now: datetime) -> QuarterPlan:
    """The first quarter from now on that has no cycle yet and is not over."""
    existing = set(session.scalars(select(Cycle.name)))
    for year, quarter in _next_quarters(now.date()):
        plan = plan_for(rhythm, year, quarter)
        if plan.name not in existing and plan.closes_at > now:
            return plan
    raise AssertionError("unreachable")  # pragma: no cover


# --- what the worker does ----------------------------------------------------------------


@dataclass(frozen=True)
class RhythmEvent:
    action: str  # "create", "start round", "round not started", "launch", "not launched"
    cycle_id: int
    detail: str


def run_rhythm(
    session: Session,
    *,
    settings: Settings,
    now: datetime | None = None,
    hr_recipients: Sequence[tuple[str, str]] = (),
) -> list[RhythmEvent]:
    """One pass: create the next quarter's cycle when its time has come, start the
    confirmation rounds and launch the automatic cycles whose time has come. Reminders
    and the close are the worker's usual jobs (the cycle carries the rhythm's reminder
    days); the launch preview is the job's second step (:func:`compute_preview`)."""
    now = now or utcnow()
    events: list[RhythmEvent] = []
    rhythm = get_rhythm(session)
    if rhythm.enabled:
        plan = next_plan(session, rhythm=rhythm, now=now)
        if plan.create_at <= now:
            events.append(
                _create(
                    session,
                    plan=plan,
                    rhythm=rhythm,
                    now=now,
                    hr=hr_recipients,
                    tz=settings.org_time_zone,
                )
            )
    events += start_rounds_due(session, settings=settings, now=now)
    events += launch_due(session, settings=settings, now=now)
    drop_stale_previews(session)
    return events


def _create(
    session: Session,
    *,
    plan: QuarterPlan,
    rhythm: CycleRhythm,
    now: datetime,
    hr: Sequence[tuple[str, str]],
    tz: str = "UTC",
) -> RhythmEvent:
    opens_at = max(plan.opens_at, now.replace(second=0, microsecond=0))
    cycle = cycles_service.create_cycle(
        session,
        name=plan.name,
        period_start=plan.period_start,
        period_end=plan.period_end,
        opens_at=opens_at,
        closes_at=plan.closes_at,
    )
    cycle.auto_launch = True
    cycle.reminder_days_after_open = list(rhythm.reminder_days)
    if plan.round_starts_at is not None:
        # Created late (the worker was down): the round starts now, still before opening.
        cycle.nomination_starts_at = min(max(plan.round_starts_at, now), opens_at)
    session.flush()
    _email_hr(session, cycle=cycle, recipients=hr, tz=tz)
    detail = f"{cycle.name}, opens {opens_at:%Y-%m-%d %H:%M} UTC"
    if cycle.nomination_starts_at is not None:
        detail += f", confirmation round from {cycle.nomination_starts_at:%Y-%m-%d %H:%M} UTC"
    return RhythmEvent("create", cycle.id, detail)


def _email_hr(
    session: Session, *, cycle: Cycle, recipients: Sequence[tuple[str, str]], tz: str
) -> None:
    """Ask HR to review the matrix before the cycle opens on its own (and say when its
    confirmation round starts, if the rhythm starts one)."""
    if not recipients:
        return
    context = {
        "cycle_name": cycle.name,
        "opens": dates.format_date(cycle.opens_at, "en", tz),
        "closes": dates.format_date(cycle.closes_at, "en", tz),
        "round_starts": dates.format_date(cycle.nomination_starts_at, "en", tz)
        if cycle.nomination_starts_at is not None
        else None,
    }
    _ = i18n.gettext_for("en")
    subject = _("%(cycle)s opens on %(date)s: please review the matrix") % {
        "cycle": cycle.name,
        "date": context["opens"],
    }
    text = render_string("email/rhythm_review.txt", context, lang="en", tz=tz)
    body = render_string("email/rhythm_review.html", context, lang="en", tz=tz)
    mail_service.enqueue_messages(
        session,
        messages=[
            {
                "kind": "rhythm",
                "tag": f"rhythm:{cycle.id}",
                "to_address": email,
                "to_name": name,
                "subject": subject,
                "body_text": text,
                "body_html": body,
                "secret_link": None,
            }
            for email, name in recipients
        ],
        secret_key="",
    )


def start_rounds_due(session: Session, *, settings: Settings, now: datetime) -> list[RhythmEvent]:
    """Start the confirmation round of every automatic draft whose round is due.

    A paused draft waits (HR resumes it or starts the round by hand); a draft whose
    opening has come already launches without a round. A round that cannot start (no
    supplier with a customer) is not retried: the cycle still launches at its opening.
    """
    events = []
    due = session.scalars(
        select(Cycle)
        .where(
            Cycle.state == CycleState.draft,
            Cycle.auto_launch.is_(True),
            Cycle.nomination_starts_at <= now,
            Cycle.opens_at > now,
        )
        .order_by(Cycle.nomination_starts_at)
    ).all()
    for cycle in due:
        try:
            with session.begin_nested():
                emailed = nomination.start_round(
                    session, cycle_id=cycle.id, settings=settings, now=now
                )
        except DomainError as exc:
            cycle.nomination_starts_at = None
            session.flush()
            log.warning("cycle %s: confirmation round not started: %s", cycle.id, exc.detail)
            events.append(RhythmEvent("round not started", cycle.id, f"{cycle.name}: {exc.detail}"))
            continue
        events.append(
            RhythmEvent("start round", cycle.id, f"{cycle.name}: {emailed} suppliers emailed")
        )
    return events


def launch_due(session: Session, *, settings: Settings, now: datetime) -> list[RhythmEvent]:
    """Launch every automatic draft whose opening has come (paused ones wait)."""
    events = []
    due = session.scalars(
        select(Cycle)
        .where(
            Cycle.state.in_(cycles_service.LAUNCHABLE),
            Cycle.auto_launch.is_(True),
            Cycle.opens_at <= now,
        )
        .order_by(Cycle.opens_at)
    ).all()
    for cycle in due:
        try:
            with session.begin_nested():
                cycles_service.launch_cycle(session, cycle_id=cycle.id, settings=settings, now=now)
        except DomainError as exc:
            # Not retried every pass: HR fixes the cause and launches, or resumes.
            cycle.auto_launch = False
            session.flush()
            log.warning("cycle %s was not launched automatically: %s", cycle.id, exc.detail)
            events.append(RhythmEvent("not launched", cycle.id, f"{cycle.name}: {exc.detail}"))
            continue
        events.append(RhythmEvent("launch", cycle.id, cycle.name))
    return events


def set_auto_launch(session: Session, *, cycle_id: int, on: bool) -> Cycle:
    """Pause (or resume) the automatic launch of a draft."""
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id, for_update=True)
    if cycle.state not in cycles_service.LAUNCHABLE:
        raise Conflict(f"Cycle {cycle.name} is {cycle.state}: only a draft launches on its own")
    cycle.auto_launch = on
    session.flush()
    return cycle


# --- what happens next, for the dashboard ------------------------------------------------


@dataclass(frozen=True)
class NextStep:
    """The next thing the rhythm will do, with the figures HR wants before it."""

    action: str  # "start round", "launch" or "create"
    cycle_name: str
    when: datetime
    opens_at: datetime
    cycle_id: int | None = None
    round_starts_at: datetime | None = None
    nominating: bool = False  # the confirmation round is running
    customers: int | None = None
    suppliers_short: int | None = None
    short_of: int | None = None
    figures_at: datetime | None = None  # when the preview's figures were computed


def next_step(
    session: Session, *, settings: Settings, now: datetime | None = None
) -> NextStep | None:
    """ "2026-Q1 opens on 17 March, 812 customers, 3 suppliers below k + 2".

    The figures are the stored preview (:func:`refresh_previews`); None until the
    worker's first pass after the cycle was created.
    """
    now = now or utcnow()
    draft = session.scalar(
        select(Cycle)
        .where(Cycle.state.in_(cycles_service.LAUNCHABLE), Cycle.auto_launch.is_(True))
        .order_by(Cycle.opens_at)
        .limit(1)
    )
    if draft is not None:
        preview = session.get(LaunchPreview, draft.id)
        round_at = draft.nomination_starts_at if draft.state == CycleState.draft else None
        return NextStep(
            action="start round" if round_at else "launch",
            cycle_name=draft.name,
            when=max(now, round_at or draft.opens_at),
            opens_at=draft.opens_at,
            cycle_id=draft.id,
            round_starts_at=draft.nomination_starts_at,
            nominating=draft.state == CycleState.nominating,
            customers=preview.customers if preview else None,
            suppliers_short=preview.suppliers_short if preview else None,
            short_of=preview.short_of if preview else None,
            figures_at=preview.computed_at if preview else None,
        )
    rhythm = get_rhythm(session)
    if not rhythm.enabled:
        return None
    plan = next_plan(session, rhythm=rhythm, now=now)
    return NextStep(
        action="create",
        cycle_name=plan.name,
        when=max(now, plan.create_at),
        opens_at=plan.opens_at,
        round_starts_at=plan.round_starts_at,
    )


@dataclass(frozen=True)
class PreviewFigures:
    """What an automatic draft's launch would give, to be stored as its LaunchPreview."""

    cycle_id: int
    computed_at: datetime
    customers: int
    suppliers_short: int
    short_of: int


def _automatic_drafts(session: Session) -> list[Cycle]:
    return list(
        session.scalars(
            select(Cycle).where(
                Cycle.state.in_(cycles_service.LAUNCHABLE), Cycle.auto_launch.is_(True)
            )
        )
    )


def previews_due(
    session: Session, *, now: datetime, max_age: timedelta = PREVIEW_MAX_AGE
) -> list[Cycle]:
    """The automatic drafts whose preview is missing or older than ``max_age``."""
    fresh = set(
        session.scalars(
            select(LaunchPreview.cycle_id).where(LaunchPreview.computed_at > now - max_age)
        )
    )
    return [c for c in _automatic_drafts(session) if c.id not in fresh]


def compute_preview(
    session: Session, *, settings: Settings, cycle: Cycle, now: datetime
) -> PreviewFigures:
    """Read only: the coverage of the whole live matrix (the slow part: seconds at 50,000
    employees), so the worker runs it outside its write transaction."""
    short_of = settings.anonymity_min_raters + 2
    coverage = cycles_service.launch_coverage(
        session,
        settings=settings.model_copy(update={"anonymity_min_raters": short_of}),
        now=max(now, cycle.opens_at),
    )
    return PreviewFigures(
        cycle_id=cycle.id,
        computed_at=now,
        customers=_customers(session),
        suppliers_short=len(coverage.below_k),
        short_of=short_of,
    )


def drop_stale_previews(session: Session) -> None:
    """Drop the previews of cycles that launched or were paused."""
    session.execute(
        delete(LaunchPreview).where(
            LaunchPreview.cycle_id.not_in([c.id for c in _automatic_drafts(session)])
        )
    )


def store_previews(session: Session, *, figures: Sequence[PreviewFigures]) -> None:
    """Write the figures of the cycles still automatic drafts (one may have launched
    while they were computed). Flush only."""
    wanted = {c.id for c in _automatic_drafts(session)}
    rows = {row.cycle_id: row for row in session.scalars(select(LaunchPreview))}
    for f in figures:
        if f.cycle_id not in wanted:
            continue
        values = {
            "computed_at": f.computed_at,
            "customers": f.customers,
            "suppliers_short": f.suppliers_short,
            "short_of": f.short_of,
        }
        row = rows.get(f.cycle_id)
        if row is None:
            session.add(LaunchPreview(cycle_id=f.cycle_id, **values))
        else:
            for key, value in values.items():
                setattr(row, key, value)
    session.flush()


def refresh_previews(
    session: Session, *, settings: Settings, now: datetime, max_age: timedelta = PREVIEW_MAX_AGE
) -> int:
    """Compute and store the due previews in one session (the worker splits the two
    steps); returns how many were computed."""
    figures = [
        compute_preview(session, settings=settings, cycle=cycle, now=now)
        for cycle in previews_due(session, now=now, max_age=max_age)
    ]
    store_previews(session, figures=figures)
    drop_stale_previews(session)
    return len(figures)


def _customers(session: Session) -> int:
    supplier, customer = aliased(Employee), aliased(Employee)
    return int(
        session.scalar(
            select(func.count(func.distinct(MatrixLink.customer_id)))
            .join(supplier, supplier.id == MatrixLink.supplier_id)
            .join(customer, customer.id == MatrixLink.customer_id)
            .where(supplier.active, customer.active)
        )
        or 0
    )
