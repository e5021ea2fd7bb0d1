"""Pages for results that reach the rated person, and the focus areas around them.

``GET /my-results/{token}`` swaps the emailed token for a short-lived, encrypted cookie
and redirects to ``/my-results``, as the rating links do, so the token leaves the
address bar. The person sees their own figures there and chooses focus areas; their
manager confirms them on the HR app's employee page; HR sees the counts.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Form, Path, Request
from starlette.responses import RedirectResponse, Response

from app import crypto
from app.auth import service as auth_service
from app.auth.deps import CsrfProtect, HrOnly, SettingsDep
from app.auth.models import Role
from app.config import Settings
from app.cycles import service as cycles_service
from app.db import SessionDep
from app.errors import DomainError, Forbidden, NotFound
from app.fields import RowId
from app.ratings.pages import PRIVATE_HEADERS, request_language
from app.reports import personal
from app.reports import service as reports_service
from app.reports.api import chart_response
from app.reports.pages import ResultsReader, _check_employee
from app.templating import render
from app.web import form_fields, page, page_router, see_other

router = page_router()
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
SESSION_MINUTES = 60
PERSONAL_CHARTS = {"employee", "trend-employee"}
FocusCodes = Annotated[list[str], Form(max_length=personal.FOCUS_MAX + 5)]


# --- the person's session ---------------------------------------------------------------


def cookie_name(settings: Settings) -> str:
    return "__Host-p360_results" if settings.https else "p360_results"


def _key(settings: Settings) -> bytes:
    return crypto.derive_key(settings.secret_key, "results-cookie")


def _sign(settings: Settings, link_id: int) -> str:
    expires = int(time.time() + SESSION_MINUTES * 60)
    return crypto.encrypt_text(_key(settings), f"{link_id}.{expires}", context=b"results")


def _read(settings: Settings, value: str | None) -> int | None:
    if not value or len(value) > 200:
        return None
    try:
        payload = crypto.decrypt_text(_key(settings), value, context=b"results")
    except crypto.DecryptionFailed:
        return None
    link_id, _, expires = payload.partition(".")
    if not (link_id.isdigit() and expires.isdigit()) or int(expires) < time.time():
        return None
    return int(link_id)


def _form_token(settings: Settings, link_id: int) -> str:
    key = settings.secret_key.encode()
    return hmac.new(key, f"results-focus:{link_id}".encode(), hashlib.sha256).hexdigest()


def _invalid(request: Request, *, status_code: int = 404) -> Response:
    response = render(
        request,
        "reports/personal_invalid.html",
        {"too_many": status_code == 429},
        lang=request_language(request),
        status_code=status_code,
        headers={**PRIVATE_HEADERS, **({"Retry-After": "60"} if status_code == 429 else {})},
    )
    response.delete_cookie(cookie_name(request.app.state.settings), path="/")
    return response


def _link_of(request: Request, session: Any, settings: Settings) -> Any:
    link_id = _read(settings, request.cookies.get(cookie_name(settings)))
    if link_id is None:
        return None
    try:
        return personal.get_link(session, link_id=link_id)
    except NotFound:
        return None


@router.get("/my-results/{token}")
def open_results_link(
    token: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Swap the emailed token for the session cookie."""
    link = personal.find_link(session, token=token) if TOKEN_PATTERN.fullmatch(token) else None
    if link is None:
        host = request.client.host if request.client else "unknown"
        over = auth_service.note_failure(
            session,
            key=f"bad-results-link:{host}",
            limit=settings.bad_token_limit_per_minute,
            window=timedelta(minutes=1),
        )
        return _invalid(request, status_code=429 if over else 404)
    response = RedirectResponse("/my-results", status_code=303, headers=PRIVATE_HEADERS)
    response.set_cookie(
        cookie_name(settings),
        _sign(settings, link.id),
        max_age=SESSION_MINUTES * 60,
        httponly=True,
        samesite="lax",
        secure=settings.https,
        path="/",
    )
    return response


def _trend_rows(trend: list[Any], codes: list[str]) -> list[tuple[str, list[float | None]]]:
    """(cycle name, the focus competencies' means) for each point of the trend."""
    return [
        (p.cycle.name, [next((m.mean for m in p.competencies if m.code == c), None) for c in codes])
        for p in trend
    ]


def personal_context(session: Any, *, cycle_id: int, employee_id: int) -> dict[str, Any]:
    """Everything the person's page shows, from the stored results."""
    result = reports_service.employee_result(session, cycle_id=cycle_id, employee_id=employee_id)
    if result.status != "ok":
        raise NotFound("These results are not shown")
    company = reports_service.company_results(session, cycle_id=cycle_id)
    department: dict[str, float] = {}
    if result.department_id is not None:
        for d in reports_service.department_results(
            session, cycle_id=cycle_id, department_ids=[result.department_id]
        ):
            department = {m.code: m.mean for m in d.competencies}
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    trend = reports_service.employee_trend(session, employee_id=employee_id, up_to=cycle)
    focus = personal.focus_view(session, cycle_id=cycle_id, employee_id=employee_id, result=result)
    focus_codes = focus.first_codes
    names = dict(focus.choices)
    result = result.model_copy(
        update={"competencies": personal.focus_first(result.competencies, focus_codes)}
    )
    return {
        "cycle": company.cycle,
        "employee": result,
        "focus_codes": focus_codes,
        "company_means": {m.code: m.mean for m in company.competencies},
        "department_means": department,
        "trend": trend,
        "focus": focus,
        "focus_names": [names.get(c, c) for c in focus_codes],
        "focus_trend": _trend_rows(trend, focus_codes),
        "comments": reports_service.comments(session, cycle_id=cycle_id, employee_id=employee_id),
    }


@router.get("/my-results")
def my_results(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The person's own results of one cycle, with their focus areas."""
    link = _link_of(request, session, settings)
    if link is None:
        return _invalid(request)
    try:
        context = personal_context(session, cycle_id=link.cycle_id, employee_id=link.employee_id)
    except NotFound:
        return _invalid(request)
    context.update(
        form_token=_form_token(settings, link.id),
        saved=request.query_params.get("saved") == "1",
        error=None,
    )
    return render(
        request,
        "reports/personal.html",
        context,
        lang=request_language(request),
        headers=PRIVATE_HEADERS,
    )


@router.post("/my-results/focus")
@form_fields("form_token", "focus", repeated=("focus",))
def my_focus(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    form_token: Annotated[str, Form(max_length=100)] = "",
    focus: FocusCodes = [],  # noqa: B006 (FastAPI copies the default)
) -> Response:
    """The person chooses their focus areas (their manager then confirms them)."""
    link = _link_of(request, session, settings)
    if link is None:
        return _invalid(request)
    if not hmac.compare_digest(_form_token(settings, link.id), form_token):
        return _invalid(request, status_code=403)
    try:
        personal.choose_focus(
            session,
            cycle_id=link.cycle_id,
            employee_id=link.employee_id,
            codes=focus,
            chosen_by=personal.EMPLOYEE_CHOICE,
        )
    except DomainError as exc:
        context = personal_context(session, cycle_id=link.cycle_id, employee_id=link.employee_id)
        context.update(form_token=form_token, saved=False, error=exc.detail)
        return render(
            request,
            "reports/personal.html",
            context,
            lang=request_language(request),
            status_code=422,
            headers=PRIVATE_HEADERS,
        )
    return RedirectResponse("/my-results?saved=1", status_code=303, headers=PRIVATE_HEADERS)


@router.get("/my-results/charts/{name}.png")
def my_chart(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    name: Annotated[str, Path(max_length=30)],
) -> Response:
    """The person's own profile and trend charts."""
    link = _link_of(request, session, settings)
    if link is None or name not in PERSONAL_CHARTS:
        raise NotFound("No such chart")
    employee = reports_service.employee_result(
        session, cycle_id=link.cycle_id, employee_id=link.employee_id
    )
    response = chart_response(
        request,
        session,
        cycle_id=link.cycle_id,
        name=name,
        fmt="png",
        department=None,
        employee=employee.external_id,
        disposition="inline",
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


# --- the manager and HR -----------------------------------------------------------------


@router.post(
    "/results/{cycle_id}/employees/{employee_id}/focus",
    dependencies=[CsrfProtect],
)
@form_fields("csrf_token", "focus", repeated=("focus",))
def manager_focus(
    request: Request,
    session: SessionDep,
    principal: ResultsReader,
    cycle_id: RowId,
    employee_id: RowId,
    focus: FocusCodes = [],  # noqa: B006
) -> Response:
    """The manager chooses or confirms the focus areas: they are then agreed (HR only
    reads them: they are agreed between the person and their manager)."""
    if principal.role != Role.manager:
        raise Forbidden("Focus areas are agreed between the person and their manager")
    _check_employee(session, principal, employee_id)
    personal.choose_focus(
        session,
        cycle_id=cycle_id,
        employee_id=employee_id,
        codes=focus,
        chosen_by=principal.user.email,
        agree=True,
    )
    auth_service.record_audit(
        session,
        actor=principal.user.email,
        action="agree focus areas",
        entity="employee",
        entity_id=employee_id,
        detail=f"cycle {cycle_id}: {', '.join(focus)}"[:400],
    )
    return see_other(f"/results/{cycle_id}/employees/{employee_id}", notice="saved")


@router.get("/results/{cycle_id}/focus", dependencies=[HrOnly])
def focus_overview(request: Request, session: SessionDep, cycle_id: RowId) -> Response:
    """Per department, how many focus plans were chosen and agreed."""
    reports_service.results_cycle(session, cycle_id=cycle_id)
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    return page(
        request,
        "reports/focus.html",
        {"cycle": cycle, "departments": personal.focus_by_department(session, cycle_id=cycle_id)},
    )


@router.post("/cycles/{cycle_id}/personal-results", dependencies=[HrOnly, CsrfProtect])
def switch_personal_results(
    request: Request,
    session: SessionDep,
    cycle_id: RowId,
    send: Annotated[bool, Form()],
) -> Response:
    """Switch the personal results emails of a cycle on or off."""
    cycle = personal.set_sending(session, cycle_id=cycle_id, send=send)
    auth_service.record_audit(
        session,
        actor=request.state.principal.email,
        action="personal results on" if send else "personal results off",
        entity="cycle",
        entity_id=cycle.id,
        detail=cycle.name,
    )
    return see_other(f"/cycles/{cycle.id}", notice="saved")
