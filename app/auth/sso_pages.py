"""Single sign-on pages: off to the identity provider, and back (OpenID Connect).

Kept apart from the password login (``app.auth.pages``); the rules live in
``app.auth.sso``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Query, Request
from starlette.responses import RedirectResponse, Response

from app.auth import service as auth_service
from app.auth import sso
from app.auth.deps import SettingsDep, session_cookie_name
from app.config import Settings
from app.db import SessionDep
from app.errors import Forbidden, NotFound
from app.web import page_router, safe_next

router = page_router()
CALLBACK_PATH = "/login/sso/callback"


def flow_cookie_name(settings: Settings) -> str:
    return "__Host-p360_sso" if settings.https else "p360_sso"


def callback_url(settings: Settings) -> str:
    # Registered at the provider as the redirect URI, so it comes from BASE_URL rather
    # than from the Host header a client chose.
    return settings.base_url.rstrip("/") + CALLBACK_PATH


def _require_sso(settings: Settings) -> None:
    if not settings.sso_enabled:
        raise NotFound("Single sign-on is not configured.")


@router.get("/login/sso", name="login_sso")
def login_sso(settings: SettingsDep, next: Annotated[str, Query(max_length=2000)] = "") -> Response:
    """Send the browser to the identity provider."""
    _require_sso(settings)
    started = sso.start(settings, redirect_uri=callback_url(settings), next_url=safe_next(next, ""))
    response = RedirectResponse(started.url, status_code=303)
    # Lax: the provider sends the browser back with a top-level GET, which carries it.
    response.set_cookie(
        flow_cookie_name(settings),
        started.cookie,
        max_age=sso.FLOW_SECONDS,
        httponly=True,
        samesite="lax",
        secure=settings.https,
        path="/",
    )
    return response


@router.get(CALLBACK_PATH)
def login_sso_callback(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    state: Annotated[str, Query(max_length=500)] = "",
    code: Annotated[str, Query(max_length=4000)] = "",
    error: Annotated[str, Query(max_length=200)] = "",
    error_description: Annotated[str, Query(max_length=2000)] = "",
    iss: Annotated[str, Query(max_length=2000)] = "",
    session_state: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    """The provider's answer: check it, find or create the account, start a session."""
    _require_sso(settings)
    if iss and not sso._same_issuer(iss, str(settings.oidc_issuer)):
        # RFC 9207: an answer from another issuer is a mix-up attack or a misconfiguration.
        raise sso.SsoFailed("The answer came from another identity provider.")
    claims, next_url = sso.finish(
        settings,
        cookie=request.cookies.get(flow_cookie_name(settings), ""),
        state=state,
        code=code,
        error=error,
        redirect_uri=callback_url(settings),
    )
    user = sso.sign_in(session, claims=claims, settings=settings)
    old = request.cookies.get(session_cookie_name(settings))
    if old:
        auth_service.end_user_session(session, token=old)
    auth_service.purge_idle_sessions(
        session, idle=timedelta(minutes=settings.hr_session_idle_minutes)
    )
    token, _row = auth_service.start_user_session(session, user=user)
    auth_service.record_audit(
        session, actor=user.email, action="login (single sign-on)", entity="session"
    )
    response = RedirectResponse(safe_next(next_url), status_code=303)
    response.set_cookie(
        session_cookie_name(settings),
        token,
        httponly=True,
        samesite="lax",
        secure=settings.https,
        path="/",
    )
    response.delete_cookie(flow_cookie_name(settings), path="/", secure=settings.https)
    return response


async def refuse_password_login(request: Request, settings: SettingsDep) -> None:
    """With LOCAL_PASSWORD_LOGIN=false the password form is refused: single sign-on only."""
    if (
        not settings.local_password_login
        and request.method == "POST"
        and request.url.path == "/login"
    ):
        raise Forbidden("Passwords are switched off here: sign in with single sign-on.")
