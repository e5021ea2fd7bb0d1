"""The supplier's page in a confirmation round: who should rate me this cycle?

``GET /n/{token}`` swaps the emailed token for a short-lived, encrypted cookie and
redirects to ``/nominate``, as the rating links do, so the token leaves the address
bar, the history and any Referer; bad tokens are throttled per address like theirs.
The page lists the supplier's customers with suggestions, searches the directory, and
records additions, removals (with a reason) and the confirmation as proposals.

The same ``/n/{token}`` opens a line manager's team link (its own cookie, then
``/nominate/team``, see team_pages): one path, one throttle, one redaction rule.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from app import crypto
from app.auth import service as auth_service
from app.auth.deps import SettingsDep
from app.config import Settings
from app.cycles import nomination, nomination_approval
from app.cycles import service as cycles_service
from app.cycles.models import NominationList
from app.db import SessionDep
from app.errors import DomainError, NotFound
from app.fields import RowId
from app.nominations import suggestions
from app.org.models import Employee
from app.ratings.pages import PRIVATE_HEADERS, request_language
from app.templating import render
from app.web import page_router

router = page_router()
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
SESSION_MINUTES = 60
SUGGESTIONS_SHOWN = 20


@dataclass(frozen=True)
class LinkSession:
    """What an opened link leaves behind: a short-lived encrypted cookie naming one row
    (a supplier's list, or a manager's team link), and the token its forms carry."""

    cookie: str
    purpose: str

    def name(self, settings: Settings) -> str:
        return f"__Host-{self.cookie}" if settings.https else self.cookie

    def _key(self, settings: Settings) -> bytes:
        return crypto.derive_key(settings.secret_key, f"{self.purpose}-cookie")

    def read(self, request: Request, settings: Settings) -> int | None:
        value = request.cookies.get(self.name(settings))
        if not value or len(value) > 200:
            return None
        try:
            payload = crypto.decrypt_text(self._key(settings), value, context=self.purpose.encode())
        except crypto.DecryptionFailed:
            return None
        row_id, _, expires = payload.partition(".")
        if not (row_id.isdigit() and expires.isdigit()) or int(expires) < time.time():
            return None
        return int(row_id)

    def form_token(self, settings: Settings, row_id: int) -> str:
        key = settings.secret_key.encode()
        return hmac.new(key, f"{self.purpose}-form:{row_id}".encode(), hashlib.sha256).hexdigest()

    def set(self, response: Response, settings: Settings, row_id: int) -> None:
        expires = int(time.time() + SESSION_MINUTES * 60)
        response.set_cookie(
            self.name(settings),
            crypto.encrypt_text(
                self._key(settings), f"{row_id}.{expires}", context=self.purpose.encode()
            ),
            max_age=SESSION_MINUTES * 60,
            httponly=True,
            samesite="lax",
            secure=settings.https,
            path="/",
        )


SUPPLIER_SESSION = LinkSession("p360_nomination", "nomination")
TEAM_SESSION = LinkSession("p360_nomination_team", "nomination-team")


def invalid_link(
    request: Request,
    *,
    status_code: int = 404,
    forget: LinkSession | None = SUPPLIER_SESSION,
) -> Response:
    """The one page for every bad link: unknown, altered, expired, round over."""
    response = render(
        request,
        "nominations/invalid.html",
        {"too_many": status_code == 429},
        lang=request_language(request),
        status_code=status_code,
        headers={**PRIVATE_HEADERS, **({"Retry-After": "60"} if status_code == 429 else {})},
    )
    if forget is not None:
        response.delete_cookie(forget.name(request.app.state.settings), path="/")
    return response


def _list_of(request: Request, session: Session, settings: Settings) -> NominationList | None:
    list_id = SUPPLIER_SESSION.read(request, settings)
    if list_id is None:
        return None
    try:
        return nomination.get_list(session, list_id=list_id)
    except NotFound:
        return None


@router.get("/n/{token}")
def open_nomination_link(
    token: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Swap the emailed token for the session cookie (a supplier's list or a team)."""
    well_formed = TOKEN_PATTERN.fullmatch(token) is not None
    found = nomination.find_list(session, token=token) if well_formed else None
    team = None
    if found is None and well_formed:
        team = nomination_approval.find_team(session, token=token)
    if team is not None:
        response = RedirectResponse("/nominate/team", status_code=303, headers=PRIVATE_HEADERS)
        TEAM_SESSION.set(response, settings, team.id)
        return response
    if found is None:
        host = request.client.host if request.client else "unknown"
        over = auth_service.note_failure(
            session,
            key=f"bad-nomination-link:{host}",
            limit=settings.bad_token_limit_per_minute,
            window=timedelta(minutes=1),
        )
        return invalid_link(request, status_code=429 if over else 404)
    response = RedirectResponse("/nominate", status_code=303, headers=PRIVATE_HEADERS)
    SUPPLIER_SESSION.set(response, settings, found.id)
    return response


def _suggested(
    session: Session, found: NominationList, listed: set[int]
) -> list[tuple[suggestions.Person, str]]:
    """Suggestions for this supplier not on the list yet, with their first reason."""
    shown = [
        s
        for s in suggestions.suggest(
            session, suggestions.SuggestionFilter(supplier_ids=frozenset({found.supplier_id}))
        )
        if s.customer_id not in listed
    ][:SUGGESTIONS_SHOWN]
    names = suggestions.people(session, {s.customer_id for s in shown} | {found.supplier_id})
    texts = suggestions.describe(session, shown, names)
    return [(names[s.customer_id], texts[(s.supplier_id, s.customer_id)][0].text) for s in shown]


def _page(
    request: Request,
    session: Session,
    settings: Settings,
    found: NominationList,
    *,
    query: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    cycle = cycles_service.get_cycle(session, cycle_id=found.cycle_id)
    supplier = session.get(Employee, found.supplier_id)
    listed = nomination.customer_list(session, nomination=found)
    on_list = {c.id for c in listed if c.status != "removed"}
    results: list[nomination.Colleague] | None = None
    if query:
        try:
            results = nomination.search_directory(
                session, query=query, exclude=on_list | {found.supplier_id}
            )
        except DomainError as exc:
            error = error or exc.detail
    context: dict[str, Any] = {
        "cycle": cycle,
        "supplier": supplier,
        "listed": listed,
        "count": len(on_list),
        "short_of": settings.anonymity_min_raters + 2,
        "suggested": _suggested(session, found, {c.id for c in listed}),
        "query": query,
        "results": results,
        "search_limit": nomination.SEARCH_LIMIT,
        "reason_max": nomination.REASON_MAX,
        "confirmed_at": found.confirmed_at,
        "form_token": SUPPLIER_SESSION.form_token(settings, found.id),
        "approved_at": found.approved_at,
        "error": error,
        "done": request.query_params.get("notice"),
    }
    response = render(
        request,
        "nominations/round.html",
        context,
        lang=request_language(request, supplier.language if supplier else None),
        status_code=status_code,
        headers=PRIVATE_HEADERS,
    )
    # The session lasts from the last page load.
    SUPPLIER_SESSION.set(response, settings, found.id)
    return response


@router.get("/nominate")
def nomination_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    q: Annotated[str, Query(max_length=nomination.SEARCH_MAX)] = "",
) -> Response:
    """The supplier's customer list, suggestions and a directory search."""
    found = _list_of(request, session, settings)
    if found is None:
        return invalid_link(request)
    return _page(request, session, settings, found, query=q)


FormToken = Annotated[str, Form(max_length=100)]


def _change(
    request: Request,
    session: Session,
    settings: Settings,
    form_token: str,
    apply: Any,
    notice: str,
) -> Response:
    found = _list_of(request, session, settings)
    if found is None:
        return invalid_link(request)
    if not hmac.compare_digest(SUPPLIER_SESSION.form_token(settings, found.id), form_token):
        # A stale or forged form: refused, but the supplier's own session stays.
        return invalid_link(request, status_code=403, forget=None)
    try:
        apply(found)
    except DomainError as exc:
        return _page(request, session, settings, found, error=exc.detail, status_code=422)
    return RedirectResponse(f"/nominate?notice={notice}", status_code=303, headers=PRIVATE_HEADERS)


@router.post("/nominate/add")
def nomination_add(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    employee_id: Annotated[RowId, Form()],
    form_token: FormToken = "",
) -> Response:
    """Propose a colleague as a customer."""
    return _change(
        request,
        session,
        settings,
        form_token,
        lambda found: nomination.propose_add(session, nomination=found, customer_id=employee_id),
        "added",
    )


@router.post("/nominate/remove")
def nomination_remove(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    employee_id: Annotated[RowId, Form()],
    form_token: FormToken = "",
    reason: Annotated[str, Form(max_length=nomination.REASON_MAX * 2)] = "",
) -> Response:
    """Propose removing a customer, with a reason."""
    return _change(
        request,
        session,
        settings,
        form_token,
        lambda found: nomination.propose_remove(
            session, nomination=found, customer_id=employee_id, reason=reason
        ),
        "removed",
    )


@router.post("/nominate/confirm")
def nomination_confirm(
    request: Request, session: SessionDep, settings: SettingsDep, form_token: FormToken = ""
) -> Response:
    """Confirm the list as it now stands."""
    return _change(
        request,
        session,
        settings,
        form_token,
        lambda found: nomination.confirm(session, nomination=found),
        "confirmed",
    )
