"""``/code``: the paper channel's way in, on any device or a shared kiosk.

A letter's one-time code opens the same rating page as a private link (same cookie,
same form, same pool), marked as a kiosk session: shorter, with no progress kept in
the browser, and a thank-you page that forgets the session and leads back here.

A code has 60 bits, but unlike a link it is short enough to try by hand: a client that
typed more than ``BAD_CODE_LIMIT_PER_MINUTE`` wrong codes in a minute gets 429 for
every code, right or wrong, until the minute is over (otherwise the answer to a right
code would still tell it apart).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Form, Request
from starlette.responses import RedirectResponse, Response

from app.auth import service as auth_service
from app.auth.deps import SettingsDep
from app.cycles import paper
from app.db import SessionDep
from app.errors import NotFound
from app.ratings import service as ratings_service
from app.ratings.pages import (
    PRIVATE_HEADERS,
    _page,
    _set_cookie,
    _submitted_page,
    cookie_name,
    request_language,
    sign_rating_cookie,
)
from app.web import page_router

router = page_router()
WINDOW = timedelta(minutes=1)


def _client_key(request: Request) -> str:
    host = request.client.host if request.client else "unknown"
    return f"bad-rating-code:{host}"


def _code_page(request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
    headers = {"Retry-After": "60"} if status_code == 429 else None
    response = _page(
        request,
        "rating/code.html",
        {"error": error, "max_length": paper.TYPED_MAX},
        lang=request_language(request),
        status_code=status_code,
        headers=headers,
    )
    # Whoever used this device before is forgotten before the next person types.
    response.delete_cookie(cookie_name(request.app.state.settings), path="/")
    return response


@router.get("/code")
def code_page(request: Request) -> Response:
    """Where a letter's code is typed."""
    return _code_page(request)


@router.post("/code")
def enter_code(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    code: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """A right code opens the rating page; anything else says so, and is counted."""
    key = _client_key(request)
    limit = settings.bad_code_limit_per_minute
    if auth_service.rate_limited(session, key=key, limit=limit, window=WINDOW):
        return _code_page(request, error="too_many", status_code=429)
    canonical = paper.normalize_code(code)
    invitation = None
    if canonical is not None:
        invitation = paper.find_invitation_by_code(
            session, code=canonical, secret_key=settings.secret_key
        )
    if invitation is not None:
        try:
            ratings_service.open_invitation(session, invitation_id=invitation.id)
        except ratings_service.AlreadySubmitted:
            return _submitted_page(request, settings, request_language(request))
        except NotFound:
            invitation = None
    if invitation is None:
        over = auth_service.note_failure(session, key=key, limit=limit, window=WINDOW)
        if over:
            return _code_page(request, error="too_many", status_code=429)
        return _code_page(request, error="unknown", status_code=404)
    response = RedirectResponse("/rate", status_code=303, headers=PRIVATE_HEADERS)
    value = sign_rating_cookie(settings, invitation.id, kiosk=True)
    _set_cookie(response, settings, value, kiosk=True)
    return response
