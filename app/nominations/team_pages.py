"""A line manager's team page in a confirmation round: their reports' lists, approved.

The emailed ``/n/{token}`` swaps a team token for its own short-lived cookie and lands
here (see round_pages: same link rules as the suppliers'). The manager sees each direct
report's list with its proposals, changes it on the report's behalf while the round is
open, and approves it. The rules live in cycles.nomination and nomination_approval.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from app.auth.deps import SettingsDep
from app.config import Settings
from app.cycles import nomination, nomination_approval
from app.cycles import service as cycles_service
from app.cycles.models import NominationList, NominationTeam
from app.db import SessionDep
from app.errors import DomainError, NotFound
from app.fields import RowId
from app.nominations.round_pages import TEAM_SESSION, invalid_link
from app.org.models import Employee
from app.ratings.pages import PRIVATE_HEADERS, request_language
from app.templating import render
from app.web import page_router

router = page_router()
NOTICES = {"approved", "added", "removed"}


def _team_of(request: Request, session: Session, settings: Settings) -> NominationTeam | None:
    team_id = TEAM_SESSION.read(request, settings)
    if team_id is None:
        return None
    try:
        return nomination_approval.get_team(session, team_id=team_id)
    except NotFound:
        return None


def _page(
    request: Request,
    session: Session,
    settings: Settings,
    team: NominationTeam,
    *,
    query: str = "",
    search_for: int | None = None,
    error: str | None = None,
    error_for: int | None = None,
    status_code: int = 200,
) -> Response:
    cycle = cycles_service.get_cycle(session, cycle_id=team.cycle_id)
    manager = session.get(Employee, team.manager_id)
    members = []
    for member in nomination_approval.team_lists(session, team=team):
        found = member.nomination
        listed = nomination.customer_list(session, nomination=found)
        on_list = {c.id for c in listed if c.status != "removed"}
        results: list[nomination.Colleague] | None = None
        if query and search_for == found.id:
            try:
                results = nomination.search_directory(
                    session, query=query, exclude=on_list | {found.supplier_id}
                )
            except DomainError as exc:
                error, error_for = error or exc.detail, found.id
        members.append(
            {
                "member": member,
                "list": found,
                "listed": listed,
                "count": len(on_list),
                "results": results,
                "error": error if error_for == found.id else None,
            }
        )
    notice = request.query_params.get("notice")
    context: dict[str, Any] = {
        "cycle": cycle,
        "manager": manager,
        "members": members,
        "short_of": settings.anonymity_min_raters + 2,
        "query": query,
        "search_for": search_for,
        "search_limit": nomination.SEARCH_LIMIT,
        "reason_max": nomination.REASON_MAX,
        "form_token": TEAM_SESSION.form_token(settings, team.id),
        "error": error if error_for is None else None,
        "done": notice if notice in NOTICES else None,
    }
    response = render(
        request,
        "nominations/team.html",
        context,
        lang=request_language(request, manager.language if manager else None),
        status_code=status_code,
        headers=PRIVATE_HEADERS,
    )
    TEAM_SESSION.set(response, settings, team.id)  # the session lasts from the last page load
    return response


@router.get("/nominate/team")
def team_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    q: Annotated[str, Query(max_length=nomination.SEARCH_MAX)] = "",
    search_for: Annotated[int | None, Query(alias="for", ge=1, le=2**31 - 1)] = None,
) -> Response:
    """The manager's direct reports' lists, each with approval and a directory search."""
    team = _team_of(request, session, settings)
    if team is None:
        return invalid_link(request, forget=TEAM_SESSION)
    return _page(request, session, settings, team, query=q, search_for=search_for)


FormToken = Annotated[str, Form(max_length=100)]


def _change(
    request: Request,
    session: Session,
    settings: Settings,
    form_token: str,
    list_id: int,
    apply: Callable[[NominationTeam, NominationList], None],
    notice: str,
) -> Response:
    team = _team_of(request, session, settings)
    if team is None:
        return invalid_link(request, forget=TEAM_SESSION)
    if not hmac.compare_digest(TEAM_SESSION.form_token(settings, team.id), form_token):
        # A stale or forged form: refused, but the manager's own session stays.
        return invalid_link(request, status_code=403, forget=None)
    try:
        found = nomination_approval.team_list(session, team=team, list_id=list_id)
        apply(team, found)
    except DomainError as exc:
        return _page(
            request,
            session,
            settings,
            team,
            error=exc.detail,
            error_for=list_id if exc.status != 404 else None,
            status_code=422 if exc.status != 404 else 404,
        )
    return RedirectResponse(
        f"/nominate/team?notice={notice}#list-{list_id}", status_code=303, headers=PRIVATE_HEADERS
    )


@router.post("/nominate/team/approve")
def team_approve(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    list_id: Annotated[RowId, Form()],
    form_token: FormToken = "",
) -> Response:
    """Approve a direct report's list as it stands."""
    return _change(
        request,
        session,
        settings,
        form_token,
        list_id,
        lambda team, found: nomination_approval.approve(session, team=team, nomination=found),
        "approved",
    )


@router.post("/nominate/team/add")
def team_add(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    list_id: Annotated[RowId, Form()],
    employee_id: Annotated[RowId, Form()],
    form_token: FormToken = "",
) -> Response:
    """Propose a colleague for a direct report's list (or take back a removal)."""
    return _change(
        request,
        session,
        settings,
        form_token,
        list_id,
        lambda team, found: nomination.propose_add(
            session, nomination=found, customer_id=employee_id, proposed_by=team.manager_id
        ),
        "added",
    )


@router.post("/nominate/team/remove")
def team_remove(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    list_id: Annotated[RowId, Form()],
    employee_id: Annotated[RowId, Form()],
    form_token: FormToken = "",
    reason: Annotated[str, Form(max_length=nomination.REASON_MAX * 2)] = "",
) -> Response:
    """Propose removing a customer from a direct report's list, with a reason."""
    return _change(
        request,
        session,
        settings,
        form_token,
        list_id,
        lambda team, found: nomination.propose_remove(
            session,
            nomination=found,
            customer_id=employee_id,
            reason=reason,
            proposed_by=team.manager_id,
        ),
        "removed",
    )
