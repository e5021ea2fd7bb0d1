"""The public rating page: private link -> short-lived cookie -> form -> anonymous ballots.

``GET /r/{token}`` swaps the token for a signed, HttpOnly cookie and redirects to
``/rate``, so the token never stays in the address bar, the history or a Referer. Every
invalid link gets the same page with the same status, whatever the reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from datetime import timedelta
from typing import Annotated, Any, NamedTuple

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.responses import RedirectResponse, Response

from app import crypto, i18n
from app.auth import service as auth_service
from app.auth.deps import SettingsDep
from app.config import Settings
from app.cycles import service as cycles_service
from app.db import SessionDep, read_before_writing, start_writing
from app.errors import Invalid, NotFound
from app.ratings import rendering
from app.ratings import service as ratings_service
from app.ratings.schemas import COMMENT_MAX_LENGTH, NPS_RANGE, ParsedForm, RatingForm
from app.templating import render
from app.web import form_fields, page_router, read_form, run_in_lane

log = logging.getLogger(__name__)
router = page_router()

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_DIGITS = re.compile(r"[0-9]{1,15}")
MAX_FORM_FIELDS = 20_000
# No Referer from these pages, no caching of a page that holds someone's answers.
PRIVATE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}


# --- the rating cookie ------------------------------------------------------------------


def cookie_name(settings: Settings) -> str:
    return "__Host-p360_rating" if settings.https else "p360_rating"


def _mac(settings: Settings, purpose: str, value: str) -> str:
    digest = hmac.new(
        settings.secret_key.encode(), f"{purpose}:{value}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _cookie_key(settings: Settings) -> bytes:
    return crypto.derive_key(settings.secret_key, "rating-cookie")


class RatingSession(NamedTuple):
    invitation_id: int
    # Opened with a paper letter's code, perhaps on a shared kiosk: shorter-lived, no
    # progress kept in the browser, and the thank-you page leads back to /code.
    kiosk: bool = False


def session_minutes(settings: Settings, *, kiosk: bool) -> int:
    return settings.kiosk_session_minutes if kiosk else settings.rating_session_minutes


def sign_rating_cookie(
    settings: Settings, invitation_id: int, *, now: float | None = None, kiosk: bool = False
) -> str:
    """An opaque session value: the invitation and an expiry, encrypted (AES-GCM).

    Random-looking and different on every page load, so a cookie seen in a proxy's or
    browser's logs names no invitation; only the server (with SECRET_KEY) reads it.
    """
    expires = int((now or time.time()) + session_minutes(settings, kiosk=kiosk) * 60)
    payload = f"{invitation_id}.{expires}" + (".0" if kiosk else "")
    return crypto.encrypt_text(_cookie_key(settings), payload, context=b"rating-cookie")


def read_rating_session(settings: Settings, value: str | None) -> RatingSession | None:
    """The session in a valid, unexpired cookie; None for anything else."""
    if not value or len(value) > 200:
        return None
    try:
        payload = crypto.decrypt_text(_cookie_key(settings), value, context=b"rating-cookie")
    except crypto.DecryptionFailed:
        return None
    parts = payload.split(".")
    if len(parts) not in (2, 3) or not all(_DIGITS.fullmatch(part) for part in parts):
        return None
    if int(parts[1]) < time.time():
        return None
    return RatingSession(int(parts[0]), kiosk=len(parts) == 3)


def read_rating_cookie(settings: Settings, value: str | None) -> int | None:
    """The invitation id in a valid, unexpired cookie; None for anything else."""
    found = read_rating_session(settings, value)
    return found.invitation_id if found else None


def form_token(settings: Settings, invitation_id: int) -> str:
    """The rating form's CSRF token: an HMAC of the invitation the cookie names.

    Stable across page loads, so a second tab does not invalidate the first one's form.
    """
    return _mac(settings, "rating-form", str(invitation_id))


def progress_key(settings: Settings, invitation_id: int) -> str:
    """Names the browser's saved progress without revealing the invitation id."""
    return _mac(settings, "rating-progress", str(invitation_id))[:22]


def _set_cookie(response: Response, settings: Settings, value: str, *, kiosk: bool = False) -> None:
    response.set_cookie(
        cookie_name(settings),
        value,
        max_age=session_minutes(settings, kiosk=kiosk) * 60,
        httponly=True,
        samesite="lax",
        secure=settings.https,
        path="/",
    )


# --- helpers ---------------------------------------------------------------------------


def request_language(request: Request, preferred: str | None = None) -> str:
    """The employee's language when we have its catalog, else the browser's, else en."""
    available = i18n.available_languages()
    if preferred and preferred.split("-")[0].lower() in available:
        return i18n.normalize_language(preferred)
    header = request.headers.get("accept-language", "")
    for part in header.split(",")[:10]:
        tag = part.split(";")[0].strip()
        if tag and tag.replace("_", "-").split("-")[0].lower() in available:
            return i18n.normalize_language(tag)
    return i18n.DEFAULT_LANGUAGE


def _client_key(request: Request) -> str:
    host = request.client.host if request.client else "unknown"
    return f"bad-rating-link:{host}"


def _page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    lang: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        name,
        context,
        lang=lang,
        status_code=status_code,
        headers={**PRIVATE_HEADERS, **(headers or {})},
    )


def invalid_link_page(request: Request, *, status_code: int = 404) -> Response:
    """The one page for every bad link: unknown, altered, expired, closed."""
    lang = request_language(request)
    headers = {"Retry-After": "60"} if status_code == 429 else None
    response = _page(
        request,
        "rating/invalid.html",
        {"too_many": status_code == 429},
        lang=lang,
        status_code=status_code,
        headers=headers,
    )
    response.delete_cookie(cookie_name(request.app.state.settings), path="/")
    return response


def _submitted_page(request: Request, settings: Settings, lang: str) -> Response:
    response = _page(request, "rating/submitted.html", {}, lang=lang)
    response.delete_cookie(cookie_name(settings), path="/")
    return response


async def posted_form(request: Request) -> dict[str, str]:
    """The posted fields as strings (files ignored); parsed once, with a field cap."""
    form = await read_form(request, max_fields=MAX_FORM_FIELDS, max_files=0)
    return {key: value for key, value in form.items() if not isinstance(value, UploadFile)}


PostedForm = Annotated[dict[str, str], Depends(posted_form)]


# --- routes ----------------------------------------------------------------------------


@router.get("/r/{token}")
def open_link(token: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Exchange a private link for the rating cookie, then leave the token behind."""
    invitation = None
    if TOKEN_PATTERN.fullmatch(token):
        invitation = cycles_service.find_invitation_by_token(session, token=token)
    if invitation is not None:
        try:
            ratings_service.open_invitation(session, invitation_id=invitation.id)
        except ratings_service.AlreadySubmitted:
            return _submitted_page(request, settings, request_language(request))
        except NotFound:
            invitation = None
    if invitation is None:
        # Only failed lookups count. A valid link always opens: a 256-bit token cannot be
        # guessed, so refusing it would only lock out every rater behind one NAT or proxy
        # because a few others mistyped theirs.
        over = auth_service.note_failure(
            session,
            key=_client_key(request),
            limit=settings.bad_token_limit_per_minute,
            window=timedelta(minutes=1),
        )
        return invalid_link_page(request, status_code=429 if over else 404)
    response = RedirectResponse("/rate", status_code=303, headers=PRIVATE_HEADERS)
    _set_cookie(response, settings, sign_rating_cookie(settings, invitation.id))
    return response


def _form_context(
    settings: Settings, form: RatingForm, parsed: ParsedForm | None = None, *, kiosk: bool = False
) -> dict[str, Any]:
    return {
        "form": form,
        "values": parsed.values if parsed else {},
        "errors": parsed.errors if parsed else {},
        "form_token": form_token(settings, form.invitation_id),
        # No key, no progress kept in the browser: a kiosk is shared (see rating.js).
        "progress_key": "" if kiosk else progress_key(settings, form.invitation_id),
        "cant_judge": ratings_service.CANT_JUDGE,
        "score_field": ratings_service.score_field,
        "nps_field": ratings_service.nps_field,
        "comment_field": ratings_service.comment_field,
        "score_group": rendering.score_group,
        "nps_group": rendering.nps_group,
        "nps_scale": list(range(NPS_RANGE[0], NPS_RANGE[1] + 1)),
        "comment_max": COMMENT_MAX_LENGTH,
    }


@router.get("/rate")
def rating_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The customer's personal page: every supplier, every competency."""
    rating_session = read_rating_session(settings, request.cookies.get(cookie_name(settings)))
    if rating_session is None:
        return invalid_link_page(request)
    invitation_id, kiosk = rating_session
    try:
        form = ratings_service.load_rating_form(session, invitation_id=invitation_id)
    except ratings_service.AlreadySubmitted:
        return _submitted_page(request, settings, request_language(request))
    except NotFound:
        return invalid_link_page(request)
    lang = request_language(request, form.language)
    # A fresh cookie on every view: the session lasts from the last page load.
    fresh = sign_rating_cookie(settings, invitation_id, kiosk=kiosk)
    response = _page(
        request, "rating/form.html", _form_context(settings, form, kiosk=kiosk), lang=lang
    )
    _set_cookie(response, settings, fresh, kiosk=kiosk)
    return response


@router.post("/rate")
@form_fields(
    "form_token", pattern=ratings_service.FIELD_PATTERN, max_fields=MAX_FORM_FIELDS, max_files=0
)
async def submit_rating(
    request: Request, session: SessionDep, settings: SettingsDep, data: PostedForm
) -> Response:
    """Validate everything, then store the ballots (all or nothing) and say thank you.

    Every customer posts here within days of a launch, many within the same minutes: a
    few submits run at once (``SUBMIT_CONCURRENCY``), the others wait their turn in
    order instead of all polling SQLite's write lock (see :func:`app.web.run_in_lane`).
    While a close runs, the submits in the lanes wait for it, and so do those queued.
    """
    return await run_in_lane(
        "rating-submit", settings.submit_concurrency, _submit, request, session, settings, data
    )


def _submit(
    request: Request, session: Session, settings: Settings, data: dict[str, str]
) -> Response:
    rating_session = read_rating_session(settings, request.cookies.get(cookie_name(settings)))
    if rating_session is None:
        return invalid_link_page(request)
    invitation_id, kiosk = rating_session
    # Read and check without SQLite's write lock: every other submit waits while it is
    # held, so it is taken only for the two writes and released before the page is drawn.
    read_before_writing(session)
    try:
        # Ids and rules only: the names and texts are loaded again only for a form
        # that has to be shown back with its errors.
        rules = ratings_service.load_form_rules(session, invitation_id=invitation_id)
    except ratings_service.AlreadySubmitted:
        return _submitted_page(request, settings, request_language(request))
    except NotFound:
        return invalid_link_page(request)
    lang = request_language(request, rules.language)
    given_token = data.get("form_token", "")
    expected = form_token(settings, invitation_id)
    if not hmac.compare_digest(expected.encode(), given_token.encode()):
        return _page(request, "rating/expired.html", {}, lang=lang, status_code=403)
    parsed = ratings_service.parse_form(rules, data)
    if parsed.foreign:
        return _page(request, "rating/tampered.html", {}, lang=lang, status_code=422)
    if parsed.errors:
        form = ratings_service.load_rating_form(session, invitation_id=invitation_id)
        return _page(
            request,
            "rating/form.html",
            _form_context(settings, form, parsed, kiosk=kiosk),
            lang=lang,
            status_code=422,
        )
    try:
        sealed = ratings_service.seal_answers(rules, parsed.answers, secret_key=settings.secret_key)
    except Invalid:
        return _page(request, "rating/tampered.html", {}, lang=lang, status_code=422)
    start_writing(session)
    try:
        ratings_service.pool_sealed(session, rules=rules, sealed=sealed)
    except ratings_service.AlreadySubmitted:
        session.commit()  # nothing kept; ends the write lock here, in the lane
        return _submitted_page(request, settings, lang)
    except NotFound:
        # The cycle closed while the form was being checked.
        session.commit()
        return invalid_link_page(request)
    session.commit()
    if kiosk:
        # The next person at a shared kiosk starts from the code page, with no session.
        response = _page(
            request,
            "rating/code_thanks.html",
            {"cycle_name": rules.cycle_name},
            lang=lang,
            headers={"Clear-Site-Data": '"cache", "storage"'},
        )
    else:
        response = _page(
            request,
            "rating/thanks.html",
            {"progress_key": progress_key(settings, invitation_id), "cycle_name": rules.cycle_name},
            lang=lang,
        )
    response.delete_cookie(cookie_name(settings), path="/")
    return response
