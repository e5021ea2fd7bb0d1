"""Results that reach the rated person: a private link after close, and focus areas.

After a cycle closes, each supplier whose results are shown (k raters who count or
more) gets an email with a private link to their own results page, unless HR switched
that off for the cycle. Figures come from the stored, already suppressed results
(``reports.service``); a supplier below k gets no email and no link.

On that page the person, and their manager in the HR app, choose 2–3 **focus
competencies**; the manager's confirmation makes them agreed. The next cycle's pages
show the change on those competencies first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, select
from sqlalchemy.orm import Session

from app import dates, i18n
from app.config import Settings
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CycleDepartment, CycleEmployee, CycleState
from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.mail import service as mail_service
from app.org.models import Employee
from app.reports import coefficients as calc
from app.reports import service as reports_service
from app.reports.personal_models import FocusArea, FocusPlan, ResultsLink
from app.reports.schemas import CompetencyMean, EmployeeResultRead
from app.templating import render_string

FOCUS_MIN, FOCUS_MAX = 2, 3
EMPLOYEE_CHOICE = "employee"


def mail_tag(cycle_id: int) -> str:
    # Not the cycle's own tag: closed cycles' mail under that one is purged (dead links).
    return f"results:{cycle_id}"


def personal_link(settings: Settings, token: str) -> str:
    return f"{settings.base_url.rstrip('/')}/my-results/{token}"


# --- the switch and the mailing -------------------------------------------------------


def set_sending(session: Session, *, cycle_id: int, send: bool) -> Cycle:
    """Switch the personal results emails of a cycle on or off (until they are sent)."""
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id, for_update=True)
    if cycle.personal_results_sent_at is not None:
        raise Conflict(f"The personal results of {cycle.name} were already sent")
    cycle.send_personal_results = send
    session.flush()
    return cycle


def cycles_to_mail(session: Session) -> list[int]:
    """Closed cycles with results whose personal results emails are still due."""
    return list(
        session.scalars(
            select(Cycle.id)
            .where(
                Cycle.state == CycleState.closed,
                Cycle.results_ready_at.is_not(None),
                Cycle.send_personal_results.is_(True),
                Cycle.personal_results_sent_at.is_(None),
            )
            .order_by(Cycle.closed_at)
        )
    )


def send_personal_results(
    session: Session, *, cycle_id: int, settings: Settings, now: datetime | None = None
) -> int:
    """Queue one email with a private link for each supplier shown in the results.

    Once per cycle (the cycle is marked in the same transaction). Suppliers below k,
    leavers and people on the paper channel get nothing. Returns how many were queued.
    """
    now = now or utcnow()
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id, for_update=True)
    if (
        cycle.state != CycleState.closed
        or cycle.results_ready_at is None
        or not cycle.send_personal_results
        or cycle.personal_results_sent_at is not None
    ):
        return 0
    _total, shown = reports_service.employee_results(
        session, cycle_id=cycle.id, limit=None, only_included=True, with_competencies=False
    )
    ids = [row.employee_id for row in shown if row.status == "ok"]
    people = session.execute(
        select(Employee.id, Employee.email, Employee.full_name, Employee.language)
        .where(
            Employee.id.in_(ids),
            Employee.active.is_(True),
            Employee.paper_channel.is_(False),
        )
        .order_by(Employee.id)
    ).all()
    expires = now + timedelta(days=settings.personal_results_link_days)
    links: list[ResultsLink] = []
    messages: list[dict[str, Any]] = []
    renderer = _results_mail(cycle, expires=expires, tz=settings.org_time_zone)
    session.execute(delete(ResultsLink).where(ResultsLink.cycle_id == cycle.id))
    for employee_id, email, full_name, language in people:
        token = cycles_service.new_link_token()
        links.append(
            ResultsLink(
                cycle_id=cycle.id,
                employee_id=employee_id,
                token_hash=cycles_service.hash_link_token(token),
                created_at=now,
                expires_at=expires,
            )
        )
        messages.append(
            renderer.message(
                to_address=email,
                to_name=full_name,
                language=language,
                link=personal_link(settings, token),
            )
        )
    session.add_all(links)
    mail_service.enqueue_messages(session, messages=messages, secret_key=settings.secret_key)
    cycle.personal_results_sent_at = now
    session.flush()
    return len(messages)


def _results_mail(cycle: Cycle, *, expires: datetime, tz: str) -> mail_service.MassMail:
    def render(language: str, _variant: Any) -> mail_service.Texts:
        _ = i18n.gettext_for(language)
        context = {
            "name": mail_service.NAME_PLACEHOLDER,
            "cycle_name": cycle.name,
            "link": mail_service.LINK_PLACEHOLDER,
            "expires": dates.format_date(expires, language, tz),
        }
        return (
            _("Your results: %(cycle)s") % {"cycle": cycle.name},
            render_string("email/results.txt", context, lang=language, tz=tz),
            render_string("email/results.html", context, lang=language, tz=tz),
        )

    return mail_service.MassMail(kind="results", tag=mail_tag(cycle.id), render=render)


# --- opening the page -----------------------------------------------------------------


def find_link(session: Session, *, token: str, now: datetime | None = None) -> ResultsLink | None:
    """The unexpired results link with this token."""
    link = session.scalar(
        select(ResultsLink).where(ResultsLink.token_hash == cycles_service.hash_link_token(token))
    )
    if link is None or link.expires_at <= (now or utcnow()):
        return None
    return link


def get_link(session: Session, *, link_id: int, now: datetime | None = None) -> ResultsLink:
    link = session.get(ResultsLink, link_id)
    if link is None or link.expires_at <= (now or utcnow()):
        raise NotFound("This results link is not valid any more")
    return link


@dataclass
class FocusChange:
    """A focus competency of an earlier cycle, then and now (None: not shown)."""

    code: str
    name: str
    before: float | None
    now: float | None

    @property
    def change(self) -> float | None:
        if self.before is None or self.now is None:
            return None
        return self.now - self.before


@dataclass
class FocusView:
    """The focus plan chosen on a cycle's results, and the change since the last one."""

    choices: list[tuple[str, str]] = field(default_factory=list)  # (code, name)
    chosen: list[str] = field(default_factory=list)
    chosen_by: str | None = None
    agreed_by: str | None = None
    agreed_at: datetime | None = None
    earlier_cycle: str | None = None
    earlier_cycle_id: int | None = None
    earlier_agreed: bool = False
    # The earlier cycle was on another scale: its means are mapped onto this one.
    rescaled: bool = False
    changes: list[FocusChange] = field(default_factory=list)

    @property
    def first_codes(self) -> list[str]:
        """The competencies the pages list first: those agreed after the earlier cycle,
        or, before there is one, those chosen on this cycle's results."""
        return [code for code, _name in self.first_areas]

    @property
    def first_areas(self) -> list[tuple[str, str]]:
        """(code, name) of :attr:`first_codes`."""
        if self.changes:
            return [(c.code, c.name) for c in self.changes]
        names = dict(self.choices)
        return [(code, names.get(code, code)) for code in self.chosen]


def _plan(session: Session, *, cycle_id: int, employee_id: int) -> FocusPlan | None:
    return session.scalar(
        select(FocusPlan).where(
            FocusPlan.cycle_id == cycle_id, FocusPlan.employee_id == employee_id
        )
    )


def _codes(session: Session, plan: FocusPlan) -> list[tuple[str, str]]:
    return [
        (code, name)
        for code, name in session.execute(
            select(FocusArea.code, FocusArea.name)
            .where(FocusArea.plan_id == plan.id)
            .order_by(FocusArea.name)
        )
    ]


def _earlier_plan(
    session: Session, *, cycle: Cycle, employee_id: int
) -> tuple[FocusPlan, int, str] | None:
    """The person's focus plan of the latest closed cycle before this one, if any."""
    row = session.execute(
        select(FocusPlan, Cycle.id, Cycle.name)
        .join(Cycle, Cycle.id == FocusPlan.cycle_id)
        .where(
            FocusPlan.employee_id == employee_id,
            Cycle.state == CycleState.closed,
            Cycle.period_start < cycle.period_start,
        )
        .order_by(Cycle.period_start.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1], row[2])


def _means(result: EmployeeResultRead) -> dict[str, float]:
    return {m.code: m.mean for m in result.competencies}


def focus_view(
    session: Session, *, cycle_id: int, employee_id: int, result: EmployeeResultRead
) -> FocusView:
    """What the results pages show about focus areas for this person and cycle."""
    view = FocusView(
        choices=[(c.code, c.name) for c in reports_service.competencies(session, cycle_id=cycle_id)]
    )
    plan = _plan(session, cycle_id=cycle_id, employee_id=employee_id)
    if plan is not None:
        view.chosen = [code for code, _name in _codes(session, plan)]
        view.chosen_by, view.agreed_by = plan.chosen_by, plan.agreed_by
        view.agreed_at = plan.agreed_at
    this_cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    earlier = _earlier_plan(session, cycle=this_cycle, employee_id=employee_id)
    if earlier is not None:
        earlier_plan, earlier_id, earlier_name = earlier
        view.earlier_cycle, view.earlier_cycle_id = earlier_name, earlier_id
        view.earlier_agreed = earlier_plan.agreed_at is not None
        # The earlier figures as stored: below k there are none (the change stays empty).
        before = _means(
            reports_service.employee_result(session, cycle_id=earlier_id, employee_id=employee_id)
        )
        earlier_cycle = cycles_service.get_cycle(session, cycle_id=earlier_id)
        source = calc.Scale(earlier_cycle.scale_min, earlier_cycle.scale_max)
        target = calc.Scale(this_cycle.scale_min, this_cycle.scale_max)
        if source != target:
            view.rescaled = True
            before = {code: calc.rescale(mean, source, target) for code, mean in before.items()}
        now_means = _means(result)
        view.changes = [
            FocusChange(code, name, before.get(code), now_means.get(code))
            for code, name in _codes(session, earlier_plan)
        ]
    return view


def focus_to_show(session: Session, *, cycle_id: int, employee_id: int) -> list[tuple[str, str]]:
    """(code, name) of the focus competencies a cycle's charts draw first: as
    :attr:`FocusView.first_codes`, without reading any figures."""
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    earlier = _earlier_plan(session, cycle=cycle, employee_id=employee_id)
    if earlier is not None:
        return _codes(session, earlier[0])
    plan = _plan(session, cycle_id=cycle_id, employee_id=employee_id)
    return _codes(session, plan) if plan is not None else []


def focus_first(
    competencies: Sequence[CompetencyMean], codes: Sequence[str]
) -> list[CompetencyMean]:
    """The focus competencies first, in the plan's order, then the others as they were."""
    rank = {code: i for i, code in enumerate(codes)}
    return sorted(competencies, key=lambda m: rank.get(m.code, len(rank)))


def choose_focus(
    session: Session,
    *,
    cycle_id: int,
    employee_id: int,
    codes: list[str],
    chosen_by: str,
    agree: bool = False,
) -> FocusPlan:
    """Record 2–3 focus competencies of the cycle's results. A manager's choice with
    ``agree`` is agreed; any change of the areas withdraws an earlier agreement."""
    wanted = list(dict.fromkeys(c for c in codes if c))
    if not FOCUS_MIN <= len(wanted) <= FOCUS_MAX:
        raise Invalid(
            f"Choose {FOCUS_MIN} or {FOCUS_MAX} focus competencies",
            errors=[{"field": "focus", "message": f"choose {FOCUS_MIN} to {FOCUS_MAX}"}],
        )
    result = reports_service.employee_result(session, cycle_id=cycle_id, employee_id=employee_id)
    if result.status != "ok":
        raise NotFound("These results are not shown, so no focus areas can be chosen")
    names = {c.code: c.name for c in reports_service.competencies(session, cycle_id=cycle_id)}
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise Invalid(
            "Not a competency of this cycle",
            errors=[{"field": "focus", "message": "not a competency of this cycle"}],
        )
    now = utcnow()
    plan = _plan(session, cycle_id=cycle_id, employee_id=employee_id)
    if plan is None:
        plan = FocusPlan(cycle_id=cycle_id, employee_id=employee_id, chosen_by=chosen_by)
        session.add(plan)
        session.flush()
        before: list[str] = []
    else:
        before = [code for code, _name in _codes(session, plan)]
    if sorted(before) != sorted(wanted):
        session.execute(delete(FocusArea).where(FocusArea.plan_id == plan.id))
        session.add_all(FocusArea(plan_id=plan.id, code=c, name=names[c]) for c in wanted)
        plan.chosen_by = chosen_by
        plan.agreed_by = plan.agreed_at = None
    plan.updated_at = now
    if agree:
        plan.agreed_by, plan.agreed_at = chosen_by, now
    session.flush()
    return plan


@dataclass(frozen=True)
class DepartmentFocus:
    department_id: int | None
    name: str
    plans: int
    agreed_plans: int
    agreed_areas: int


def focus_by_department(session: Session, *, cycle_id: int) -> list[DepartmentFocus]:
    """Per department (as at the cycle's launch): plans chosen, agreed, agreed areas."""
    areas = (
        select(FocusArea.plan_id, func.count().label("n")).group_by(FocusArea.plan_id).subquery()
    )
    agreed = case((FocusPlan.agreed_at.is_not(None), 1), else_=0)
    rows = session.execute(
        select(
            CycleEmployee.department_id,
            CycleDepartment.name,
            func.count(FocusPlan.id),
            func.coalesce(func.sum(agreed), 0),
            func.coalesce(func.sum(areas.c.n * agreed), 0),
        )
        .select_from(FocusPlan)
        .join(areas, areas.c.plan_id == FocusPlan.id)
        .join(
            CycleEmployee,
            and_(
                CycleEmployee.cycle_id == FocusPlan.cycle_id,
                CycleEmployee.employee_id == FocusPlan.employee_id,
            ),
        )
        .outerjoin(
            CycleDepartment,
            and_(
                CycleDepartment.cycle_id == FocusPlan.cycle_id,
                CycleDepartment.department_id == CycleEmployee.department_id,
            ),
        )
        .where(FocusPlan.cycle_id == cycle_id)
        .group_by(CycleEmployee.department_id, CycleDepartment.name)
    ).all()
    return sorted(
        (
            DepartmentFocus(dept_id, name or "", int(plans), int(agreed_plans or 0), int(n or 0))
            for dept_id, name, plans, agreed_plans, n in rows
        ),
        key=lambda d: (d.department_id is None, d.name.lower()),
    )
