"""HR screens for rating cycles, and the start page every role lands on.

The start page lives here because cycles is the highest domain it reads (org counts,
the matrix, the current cycle's progress); reports only receive a link.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Form, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from app import dates
from app.auth import service as auth_service
from app.auth.deps import CsrfProtect, CurrentPrincipal, HrOnly, SettingsDep
from app.auth.models import Role
from app.cycles import governor, nomination, rater_load, rhythm
from app.cycles import service as cycles_service
from app.cycles.models import CloseJobState, Cycle, CycleState, NominationLinksTo
from app.db import SessionDep, utcnow
from app.errors import Conflict, DomainError, Invalid
from app.fields import RowId
from app.matrix.models import MatrixLink
from app.org.models import Competency, Department, Employee
from app.web import confirm_page, field_errors, page, page_router, parse_int, see_other

router = page_router()


@router.get("/")
def dashboard(request: Request, session: SessionDep, principal: CurrentPrincipal) -> Response:
    if principal.role == Role.manager:
        team = None
        if principal.employee_id is not None:
            team = session.scalar(
                select(func.count())
                .select_from(Employee)
                .where(Employee.manager_id == principal.employee_id, Employee.active)
            )
        return page(request, "hr/dashboard_manager.html", {"direct_reports": team})

    def count(query: object) -> int:
        return int(session.scalar(query) or 0)  # type: ignore[call-overload]

    stats = {
        "employees": count(select(func.count()).select_from(Employee).where(Employee.active)),
        "departments": count(select(func.count()).select_from(Department)),
        "links": count(select(func.count()).select_from(MatrixLink)),
        "competencies": count(
            select(func.count()).select_from(Competency).where(Competency.active)
        ),
    }
    cycles = list(session.scalars(select(Cycle).order_by(Cycle.opens_at.desc()).limit(4)))
    counts = cycles_service.response_counts(session, cycle_ids=[c.id for c in cycles])
    return page(
        request,
        "hr/dashboard.html",
        {
            "stats": stats,
            "cycles": cycles,
            "counts": counts,
            "next_step": rhythm.next_step(session, settings=request.app.state.settings),
        },
    )


# --- cycles -------------------------------------------------------------------------------


def next_quarter(session: Session, *, today: date) -> str:
    """The quarter the one-click button creates: this one, or the one after the newest."""
    year, quarter = cycles_service.quarter_of(today)
    newest = session.scalar(select(func.max(Cycle.period_start)))
    if newest is not None and cycles_service.quarter_of(newest) >= (year, quarter):
        year, quarter = cycles_service.quarter_of(newest)
        year, quarter = (year + 1, 1) if quarter == 4 else (year, quarter + 1)
    return f"{year}Q{quarter}"


def _audit(request: Request, session: Session, action: str, cycle: Cycle, detail: str = "") -> None:
    auth_service.record_audit(
        session,
        actor=request.state.principal.email,
        action=action,
        entity="cycle",
        entity_id=cycle.id,
        detail=f"{cycle.name}{': ' + detail if detail else ''}",
    )


@router.get("/cycles", dependencies=[HrOnly])
def cycles_list(request: Request, session: SessionDep) -> Response:
    cycles = cycles_service.list_cycles(session)
    quarter = next_quarter(session, today=utcnow().date())
    year, number = cycles_service.parse_quarter(quarter)
    return page(
        request,
        "hr/cycles/list.html",
        {
            "cycles": cycles,
            "counts": cycles_service.response_counts(session, cycle_ids=[c.id for c in cycles]),
            "next_quarter": quarter,
            "next_name": cycles_service.quarter_name(year, number),
        },
    )


@router.post("/cycles/next", dependencies=[HrOnly, CsrfProtect])
def cycles_create_next(request: Request, session: SessionDep) -> Response:
    quarter = next_quarter(session, today=utcnow().date())
    cycle = cycles_service.create_quarter_cycle(session, quarter=quarter)
    _audit(request, session, "create", cycle, "next quarter, one click")
    return see_other(f"/cycles/{cycle.id}", notice="cycle-created")


def _default_form(session: Session, tz: str) -> dict[str, Any]:
    year, number = cycles_service.parse_quarter(next_quarter(session, today=utcnow().date()))
    start, end = cycles_service.quarter_period(year, number)
    now = utcnow().replace(second=0, microsecond=0)
    opens = max(now, datetime.combine(end, datetime.min.time()) - timedelta(days=14))
    return {
        "name": cycles_service.quarter_name(year, number),
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        # Shown and typed in the organisation's zone; stored as UTC.
        "opens_at": dates.input_value(opens, tz),
        "closes_at": dates.input_value(opens + timedelta(days=21), tz),
        "scale_min": "1",
        "scale_max": "10",
        "ask_nps": True,
        "ask_comment": True,
        "max_suppliers_per_customer": str(governor.DEFAULT_CAP),
    }


def _cycle_form(
    request: Request,
    form: dict[str, Any],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "hr/cycles/new.html",
        {"form": form, "errors": errors or {}},
        status_code=status_code,
    )


@router.get("/cycles/new", dependencies=[HrOnly])
def cycle_new_form(request: Request, session: SessionDep) -> Response:
    return _cycle_form(request, _default_form(session, request.app.state.settings.org_time_zone))


def _parse_date(value: str, field: str, errors: dict[str, str]) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        errors[field] = "Enter a date as YYYY-MM-DD"
        return None


def _parse_datetime(value: str, field: str, errors: dict[str, str], tz: str) -> datetime | None:
    """A wall-clock time in the organisation's zone, as naive UTC for the database."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        errors[field] = "Enter a date and time as YYYY-MM-DD HH:MM"
        return None
    return dates.to_utc(parsed.replace(second=0, microsecond=0), tz)


def _parse_scale(value: str, field: str, errors: dict[str, str]) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        errors[field] = "Enter a whole number"
        return None


@router.post("/cycles/new", dependencies=[HrOnly, CsrfProtect])
def cycle_new(
    request: Request,
    session: SessionDep,
    name: Annotated[str, Form(max_length=200)] = "",
    period_start: Annotated[str, Form(max_length=40)] = "",
    period_end: Annotated[str, Form(max_length=40)] = "",
    opens_at: Annotated[str, Form(max_length=40)] = "",
    closes_at: Annotated[str, Form(max_length=40)] = "",
    scale_min: Annotated[str, Form(max_length=10)] = "",
    scale_max: Annotated[str, Form(max_length=10)] = "",
    ask_nps: Annotated[str, Form(max_length=10)] = "",
    ask_comment: Annotated[str, Form(max_length=10)] = "",
    max_suppliers_per_customer: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    form: dict[str, Any] = {
        "name": name,
        "period_start": period_start,
        "period_end": period_end,
        "opens_at": opens_at,
        "closes_at": closes_at,
        "scale_min": scale_min,
        "scale_max": scale_max,
        "ask_nps": bool(ask_nps),
        "ask_comment": bool(ask_comment),
        "max_suppliers_per_customer": max_suppliers_per_customer,
    }
    errors: dict[str, str] = {}
    if not name.strip():
        errors["name"] = "Give the cycle a name, e.g. 2026-Q4"
    start = _parse_date(period_start, "period_start", errors)
    end = _parse_date(period_end, "period_end", errors)
    zone = request.app.state.settings.org_time_zone
    opens = _parse_datetime(opens_at, "opens_at", errors, zone)
    closes = _parse_datetime(closes_at, "closes_at", errors, zone)
    low = _parse_scale(scale_min, "scale_min", errors)
    high = _parse_scale(scale_max, "scale_max", errors)
    cap = _parse_scale(
        max_suppliers_per_customer or str(governor.DEFAULT_CAP),
        "max_suppliers_per_customer",
        errors,
    )
    if errors or None in (start, end, opens, closes, low, high, cap):
        return _cycle_form(request, form, errors, status_code=422)
    assert start and end and opens and closes and low is not None and high is not None
    assert cap is not None
    try:
        cycle = cycles_service.create_cycle(
            session,
            name=name,
            period_start=start,
            period_end=end,
            opens_at=opens,
            closes_at=closes,
            scale_min=low,
            scale_max=high,
            ask_nps=bool(ask_nps),
            ask_comment=bool(ask_comment),
            max_suppliers_per_customer=cap,
        )
    except DomainError as exc:
        errors = field_errors(exc)
        if exc.status == 409:
            errors = {"name": exc.detail}
        return _cycle_form(request, form, errors, status_code=422)
    _audit(request, session, "create", cycle, f"{start} to {end}, scale {low}-{high}")
    return see_other(f"/cycles/{cycle.id}", notice="cycle-created")


@router.get("/cycles/{cycle_id}", dependencies=[HrOnly])
def cycle_detail(request: Request, session: SessionDep, cycle_id: RowId) -> Response:
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    progress = None
    coverage: list[str] = []
    settings = request.app.state.settings
    round_coverage = None
    if cycle.state == CycleState.nominating:
        round_coverage = nomination.coverage(
            session, cycle_id=cycle.id, k=settings.anonymity_min_raters
        )
    if cycle.state not in cycles_service.LAUNCHABLE:
        coverage = cycles_service.describe_coverage(
            cycles_service.cycle_coverage(
                session, cycle_id=cycle.id, k=settings.anonymity_min_raters
            ),
            k=settings.anonymity_min_raters,
            min_age_days=settings.anonymity_rater_min_age_days,
        )
        progress = cycles_service.cycle_progress(
            session,
            cycle_id=cycle.id,
            min_invited=request.app.state.settings.anonymity_min_raters,
        )
    reminded = parse_int(request.query_params.get("count"), minimum=0)
    close_job = cycles_service.latest_close_job(session, cycle_id=cycle.id)
    closing = close_job is not None and close_job.state in (
        CloseJobState.queued,
        CloseJobState.running,
    )
    return page(
        request,
        "hr/cycles/detail.html",
        {
            "cycle": cycle,
            "progress": progress,
            "reminded": reminded,
            "coverage": coverage,
            "close_job": close_job,
            "closing": closing,
            "round": round_coverage,
            "links_to_default": settings.nomination_links_to,
        },
    )


@router.get("/cycles/{cycle_id}/launch", dependencies=[HrOnly])
def cycle_launch_confirm(request: Request, session: SessionDep, cycle_id: RowId) -> Response:
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    if cycle.state not in cycles_service.LAUNCHABLE:
        return see_other(f"/cycles/{cycle.id}")
    customers, pairs, competencies = cycles_service.launch_size(session)
    settings = request.app.state.settings
    coverage = cycles_service.describe_coverage(
        cycles_service.launch_coverage(session, settings=settings),
        k=settings.anonymity_min_raters,
        min_age_days=settings.anonymity_rater_min_age_days,
    )
    round_lines: list[str] = []
    if cycle.state == CycleState.nominating:
        found = nomination.coverage(session, cycle_id=cycle.id, k=settings.anonymity_min_raters)
        round_lines.append(
            f"Confirmation round: {found.confirmed} of {len(found.lists)} suppliers confirmed; "
            "their changes are written to the matrix first (the figures here are before them), "
            "unconfirmed lists launch as they are"
        )
        round_lines.append(
            f"Line managers approved {found.approved} of {len(found.lists)} lists; "
            f"{found.unapproved} unapproved lists launch as they are (with their changes "
            "if the supplier confirmed them)"
        )
    return confirm_page(
        request,
        title=f"Launch {cycle.name}?",
        crumbs=[
            ("Cycles", "/cycles"),
            (cycle.name, f"/cycles/{cycle.id}"),
            ("Launch", None),
        ],
        message="Launching takes a snapshot of the matrix, the departments and the "
        "competencies as they are now, and emails every internal customer their private "
        "link. It cannot be undone.",
        details=[
            f"{customers} customers will be invited to rate {pairs} supplier relations",
            f"{competencies} active competencies, scale {cycle.scale_min} to {cycle.scale_max}",
            "Open until "
            + dates.format_datetime(cycle.closes_at, "en", settings.org_time_zone)
            + f" ({settings.org_time_zone})",
            *round_lines,
            *coverage,
            *rater_load.describe_preview(
                rater_load.launch_preview(session, cycle=cycle, k=settings.anonymity_min_raters)
            ),
        ],
        action=f"/cycles/{cycle.id}/launch",
        button="Launch and send invitations",
        safe_action=True,
        cancel=f"/cycles/{cycle.id}",
    )


@router.post("/cycles/{cycle_id}/launch", dependencies=[HrOnly, CsrfProtect])
def cycle_launch(
    request: Request, session: SessionDep, settings: SettingsDep, cycle_id: RowId
) -> Response:
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    was_draft = cycle.state in cycles_service.LAUNCHABLE
    cycle = cycles_service.launch_cycle(session, cycle_id=cycle_id, settings=settings)
    if was_draft:
        invited = cycles_service.response_counts(session, cycle_ids=[cycle.id])[cycle.id][0]
        coverage = cycles_service.launch_audit_detail(session, cycle=cycle, settings=settings)
        _audit(request, session, "launch", cycle, f"{invited} invitations. {coverage}")
    return see_other(f"/cycles/{cycle.id}", notice="launched")


@router.post("/cycles/{cycle_id}/nominations/start", dependencies=[HrOnly, CsrfProtect])
def cycle_start_nominations(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    cycle_id: RowId,
    links_to: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Start the confirmation round: each list's link goes to the supplier or their manager."""
    if links_to and links_to not in set(NominationLinksTo):
        raise Invalid("Choose who gets the links: the suppliers or their line managers")
    emailed = nomination.start_round(
        session,
        cycle_id=cycle_id,
        settings=settings,
        links_to=NominationLinksTo(links_to) if links_to else None,
    )
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    detail = nomination.start_audit_detail(session, cycle=cycle, emailed=emailed)
    _audit(request, session, "start nominations", cycle, detail)
    return see_other(f"/cycles/{cycle.id}", notice="nominating")


@router.post("/cycles/{cycle_id}/remind", dependencies=[HrOnly, CsrfProtect])
def cycle_remind(
    request: Request, session: SessionDep, settings: SettingsDep, cycle_id: RowId
) -> Response:
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    count = cycles_service.send_reminders(session, cycle_id=cycle.id, settings=settings)
    _audit(request, session, "remind", cycle, f"{count} reminders queued")
    return see_other(f"/cycles/{cycle.id}?count={count}", notice="reminded")


@router.get("/cycles/{cycle_id}/close", dependencies=[HrOnly])
def cycle_close_confirm(request: Request, session: SessionDep, cycle_id: RowId) -> Response:
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    if cycle.state != CycleState.open:
        return see_other(f"/cycles/{cycle.id}")
    invited, responded = cycles_service.response_counts(session, cycle_ids=[cycle.id])[cycle.id]
    zone = request.app.state.settings.org_time_zone
    return confirm_page(
        request,
        title=f"Close {cycle.name} now?",
        crumbs=[("Cycles", "/cycles"), (cycle.name, f"/cycles/{cycle.id}"), ("Close", None)],
        message="Every private link stops working at once; customers who have not "
        "answered can no longer do so. The answers are sealed and the results computed. "
        "This cannot be undone.",
        details=[
            f"{responded} of {invited} customers have answered",
            "Scheduled close: " + dates.format_datetime(cycle.closes_at, "en", zone) + f" ({zone})",
        ],
        action=f"/cycles/{cycle.id}/close",
        button="Close the cycle",
        cancel=f"/cycles/{cycle.id}",
    )


@router.post("/cycles/{cycle_id}/close", dependencies=[HrOnly, CsrfProtect])
def cycle_close(request: Request, session: SessionDep, cycle_id: RowId) -> Response:
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    if cycle.state != CycleState.open:
        raise Conflict(f"Cycle {cycle.name} is {cycle.state}; only an open cycle can be closed.")
    # The worker runs the close; the cycle page shows its progress until results are ready.
    _job, queued = cycles_service.request_close(
        session, cycle_id=cycle.id, requested_by=request.state.principal.email
    )
    if queued:
        _audit(request, session, "close", cycle, "queued")
    return see_other(f"/cycles/{cycle.id}", notice="closing")
