"""Logging in and out, and the admin screens: users, API keys, audit log, settings."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import Form, Request
from starlette.responses import RedirectResponse, Response

from app.auth import service as auth_service
from app.auth.deps import (
    AdminOnly,
    CsrfProtect,
    CurrentPrincipal,
    OptionalPrincipal,
    SettingsDep,
    session_cookie_name,
)
from app.auth.models import Role
from app.config import Settings
from app.db import SessionDep
from app.errors import DomainError, Invalid, problem_response
from app.fields import RowId
from app.web import (
    confirm_page,
    field_errors,
    form_fields,
    make_pager,
    page,
    page_router,
    safe_next,
    see_other,
)

router = page_router()

NO_STORE = {"Cache-Control": "no-store"}
BAD_LOGIN = "The email or password is not correct."


# --- login CSRF: the form has no session yet, so a pre-session cookie carries a nonce ---


def login_cookie_name(settings: Settings) -> str:
    return "__Host-p360_login" if settings.https else "p360_login"


def _login_token(settings: Settings, nonce: str) -> str:
    # The form carries an HMAC of the cookie's nonce: a forged request cannot know the
    # nonce, and a cookie planted by a sibling host cannot produce the matching HMAC.
    mac = hmac.new(settings.secret_key.encode(), b"login-csrf:" + nonce.encode(), hashlib.sha256)
    return mac.hexdigest()


def _set_cookie(response: Response, settings: Settings, name: str, value: str, **kw: int) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="lax",
        secure=settings.https,
        path="/",
        **kw,  # type: ignore[arg-type]
    )


def _login_page(
    request: Request,
    settings: Settings,
    *,
    email: str = "",
    next_url: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    nonce = auth_service.new_secret(24)
    response = page(
        request,
        "auth/login.html",
        {
            "email": email,
            "next": safe_next(next_url, ""),
            "error": error,
            "login_token": _login_token(settings, nonce),
        },
        status_code=status_code,
        headers=NO_STORE,
    )
    _set_cookie(response, settings, login_cookie_name(settings), nonce, max_age=2 * 3600)
    return response


async def login_redirect(request: Request, exc: Exception) -> Response:
    """Pages send a visitor who is not logged in to the login form, then back."""
    if request.url.path.startswith("/api"):
        return problem_response(401, "Unauthorized", "Log in or use an API key.")
    if request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:
        # A form post cannot be replayed after login: go back to the page it came from.
        referer = urlsplit(request.headers.get("referer", ""))
        same_site = referer.netloc == request.url.netloc
        target = referer.path + (f"?{referer.query}" if referer.query else "") if same_site else ""
    target = safe_next(target, "")
    url = "/login" + (f"?{urlencode({'next': target})}" if target and target != "/" else "")
    return RedirectResponse(url, status_code=303)


@router.get("/login", name="login")
def login_form(
    request: Request, principal: OptionalPrincipal, settings: SettingsDep, next: str = ""
) -> Response:
    if principal is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, settings, next_url=next)


@router.post("/login")
def login_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    nonce = request.cookies.get(login_cookie_name(settings), "")
    if not nonce or not auth_service.check_csrf(_login_token(settings, nonce), csrf_token):
        return _login_page(
            request,
            settings,
            email=email,
            next_url=next,
            error="The login form expired. Please try again.",
            status_code=403,
        )
    outcome = auth_service.log_in(
        session,
        email=email,
        password=password,
        ip=request.client.host if request.client else "unknown",
        previous_token=request.cookies.get(session_cookie_name(settings)),
        max_failures=settings.login_max_failures,
        window=timedelta(minutes=settings.login_lockout_minutes),
        idle=timedelta(minutes=settings.hr_session_idle_minutes),
    )
    if outcome is auth_service.LoginRefused.throttled:
        return _login_page(
            request,
            settings,
            email=email,
            next_url=next,
            error=(
                "Too many failed attempts. Please wait "
                f"{settings.login_lockout_minutes} minutes and try again."
            ),
            status_code=429,
        )
    if outcome is auth_service.LoginRefused.bad_credentials:
        # The page is returned (not raised) so the failure count commits.
        return _login_page(
            request, settings, email=email, next_url=next, error=BAD_LOGIN, status_code=400
        )
    token = outcome.token
    response = RedirectResponse(safe_next(next), status_code=303)
    _set_cookie(response, settings, session_cookie_name(settings), token)
    response.delete_cookie(login_cookie_name(settings), path="/", secure=settings.https)
    return response


@router.get("/logout")
def logout_form(request: Request, principal: CurrentPrincipal) -> Response:
    return page(request, "auth/logout.html")


@router.post("/logout", dependencies=[CsrfProtect])
def logout(
    request: Request, session: SessionDep, settings: SettingsDep, principal: CurrentPrincipal
) -> Response:
    token = request.cookies.get(session_cookie_name(settings), "")
    auth_service.end_user_session(session, token=token)
    auth_service.record_audit(session, actor=principal.email, action="logout", entity="session")
    response = see_other("/login", notice="logged-out")
    response.delete_cookie(
        session_cookie_name(settings), path="/", secure=settings.https, httponly=True
    )
    return response


# --- admin: users -----------------------------------------------------------------------

ROLE_LABELS = {
    Role.hr: "HR",
    Role.manager: "Manager",
    Role.admin: "Admin",
}
ROLE_HINT = (
    "HR: organisation, matrix, cycles, all results, outbox. Manager: the results of their "
    "own reporting line only. Admin: users, API keys, settings, and everything HR can do."
)


def _parse_role(value: str) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        return None


def _role_and_employee(
    session: SessionDep, *, role: str, employee_email: str, errors: dict[str, str]
) -> tuple[Role | None, int | None]:
    """The user form's role and linked employee (by email); problems go into ``errors``."""
    role_value = _parse_role(role)
    if role_value is None:
        errors["role"] = "Choose a role"
    employee_id = None
    if employee_email.strip():
        ref = auth_service.find_employee_ref(session, email=employee_email)
        if ref is None:
            errors["employee_email"] = "No active employee has this email"
        else:
            employee_id = ref.id
    return role_value, employee_id


def _users_page(
    request: Request,
    session: SessionDep,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    created: tuple[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    users = auth_service.list_users(session)
    labels = auth_service.employee_labels(
        session, ids=[u.employee_id for u in users if u.employee_id]
    )
    return page(
        request,
        "hr/admin/users.html",
        {
            "users": users,
            "employees": labels,
            "roles": ROLE_LABELS,
            "role_hint": ROLE_HINT,
            "form": form or {"role": "hr"},
            "errors": errors or {},
            "created": created,
        },
        status_code=status_code,
        headers=NO_STORE if created else None,
    )


@router.get("/admin/users", dependencies=[AdminOnly])
def users_list(request: Request, session: SessionDep) -> Response:
    return _users_page(request, session)


@router.post("/admin/users", dependencies=[AdminOnly, CsrfProtect])
def users_create(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    full_name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    employee_email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    actor = request.state.principal.email
    form = {"email": email, "full_name": full_name, "role": role, "employee_email": employee_email}
    errors: dict[str, str] = {}
    role_value, employee_id = _role_and_employee(
        session, role=role, employee_email=employee_email, errors=errors
    )
    if role_value == Role.manager and not employee_email.strip():
        errors["employee_email"] = "A manager must be linked to the employee they are"
    generated = not password
    plain = password or auth_service.new_secret(12)
    if not errors and role_value is not None:
        try:
            user = auth_service.create_user(
                session,
                email=email,
                password=plain,
                role=role_value,
                full_name=full_name.strip(),
                employee_id=employee_id,
            )
        except DomainError as exc:
            errors = field_errors(exc)
            if exc.status == 409:
                errors = {"email": exc.detail}
        else:
            auth_service.record_audit(
                session,
                actor=actor,
                action="create",
                entity="user",
                entity_id=user.id,
                detail=f"{user.email} as {user.role}",
            )
            if generated:
                return _users_page(request, session, created=(user.email, plain))
            return see_other("/admin/users", notice="created")
    return _users_page(request, session, form=form, errors=errors, status_code=422)


def _user_form_page(
    request: Request,
    session: SessionDep,
    user_id: int,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    user = auth_service.get_user(session, user_id=user_id)
    if form is None:
        form = {
            "full_name": user.full_name,
            "role": str(user.role),
            "employee_email": auth_service.employee_email(session, employee_id=user.employee_id),
        }
    return page(
        request,
        "hr/admin/user_edit.html",
        {
            "user": user,
            "form": form,
            "errors": errors or {},
            "roles": ROLE_LABELS,
            "role_hint": ROLE_HINT,
        },
        status_code=status_code,
    )


@router.get("/admin/users/{user_id}", dependencies=[AdminOnly])
def user_edit_form(request: Request, session: SessionDep, user_id: RowId) -> Response:
    return _user_form_page(request, session, user_id)


@router.post("/admin/users/{user_id}", dependencies=[AdminOnly, CsrfProtect])
def user_edit(
    request: Request,
    session: SessionDep,
    user_id: RowId,
    full_name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    employee_email: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    user = auth_service.get_user(session, user_id=user_id)
    form = {"full_name": full_name, "role": role, "employee_email": employee_email}
    errors: dict[str, str] = {}
    role_value, employee_id = _role_and_employee(
        session, role=role, employee_email=employee_email, errors=errors
    )
    if not errors and role_value is not None:
        try:
            changes = auth_service.update_user(
                session, user=user, role=role_value, full_name=full_name, employee_id=employee_id
            )
        except DomainError as exc:
            errors = field_errors(exc)
        else:
            if changes:
                auth_service.record_audit(
                    session,
                    actor=request.state.principal.email,
                    action="update",
                    entity="user",
                    entity_id=user.id,
                    detail=f"{user.email}: " + "; ".join(changes),
                )
            return see_other("/admin/users", notice="saved")
    return _user_form_page(request, session, user_id, form=form, errors=errors, status_code=422)


@router.get("/admin/users/{user_id}/deactivate", dependencies=[AdminOnly])
def user_deactivate_confirm(request: Request, session: SessionDep, user_id: RowId) -> Response:
    user = auth_service.get_user(session, user_id=user_id)
    return confirm_page(
        request,
        title=f"Deactivate {user.email}?",
        crumbs=[("Admin", "/admin/users"), ("Users", "/admin/users"), ("Deactivate", None)],
        message="They are logged out at once and can no longer log in. "
        "You can reactivate the account later.",
        action=f"/admin/users/{user.id}/deactivate",
        button="Deactivate user",
        cancel="/admin/users",
    )


@router.post("/admin/users/{user_id}/deactivate", dependencies=[AdminOnly, CsrfProtect])
def user_deactivate(request: Request, session: SessionDep, user_id: RowId) -> Response:
    user = auth_service.get_user(session, user_id=user_id)
    principal = request.state.principal
    if user.id == principal.user_id:
        raise Invalid("You cannot deactivate your own account.")
    auth_service.set_user_active(session, user=user, active=False)
    auth_service.record_audit(
        session,
        actor=principal.email,
        action="deactivate",
        entity="user",
        entity_id=user.id,
        detail=user.email,
    )
    return see_other("/admin/users", notice="deactivated")


@router.post("/admin/users/{user_id}/reactivate", dependencies=[AdminOnly, CsrfProtect])
def user_reactivate(request: Request, session: SessionDep, user_id: RowId) -> Response:
    user = auth_service.get_user(session, user_id=user_id)
    auth_service.set_user_active(session, user=user, active=True)
    auth_service.record_audit(
        session,
        actor=request.state.principal.email,
        action="reactivate",
        entity="user",
        entity_id=user.id,
        detail=user.email,
    )
    return see_other("/admin/users", notice="reactivated")


# --- admin: API keys ----------------------------------------------------------------------


def _keys_page(
    request: Request,
    session: SessionDep,
    *,
    form: dict[str, object] | None = None,
    errors: dict[str, str] | None = None,
    created: tuple[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "hr/admin/api_keys.html",
        {
            "keys": auth_service.list_api_keys(session),
            "scopes": auth_service.SCOPES,
            "form": form or {"name": "", "scopes": []},
            "errors": errors or {},
            "created": created,
        },
        status_code=status_code,
        # The plaintext key must not stay in a browser or proxy cache.
        headers=NO_STORE,
    )


@router.get("/admin/api-keys", dependencies=[AdminOnly])
def api_keys_list(request: Request, session: SessionDep) -> Response:
    return _keys_page(request, session)


@router.post("/admin/api-keys", dependencies=[AdminOnly, CsrfProtect])
@form_fields("name", "scopes", repeated=("scopes",))
def api_keys_create(
    request: Request,
    session: SessionDep,
    name: Annotated[str, Form(max_length=1000)] = "",
    scopes: Annotated[list[str] | None, Form()] = None,
) -> Response:
    # A plain def: its queries and the key's writes run in the thread pool, not on the
    # event loop.
    name = name[:100]
    scopes = (scopes or [])[:20]
    if not scopes:
        errors = {"scopes": "Choose at least one scope"}
        if not name.strip():
            errors["name"] = "required"
        return _keys_page(
            request, session, form={"name": name, "scopes": scopes}, errors=errors, status_code=422
        )
    try:
        key, plaintext = auth_service.create_api_key(
            session, name=name, scopes=scopes, created_by=request.state.principal.email
        )
    except DomainError as exc:
        return _keys_page(
            request,
            session,
            form={"name": name, "scopes": scopes},
            errors=field_errors(exc),
            status_code=422,
        )
    auth_service.record_audit(
        session,
        actor=request.state.principal.email,
        action="create",
        entity="api_key",
        entity_id=key.id,
        detail=f"{key.name} ({key.prefix}…) scopes: {', '.join(key.scopes)}",
    )
    return _keys_page(request, session, created=(key.name, plaintext))


@router.get("/admin/api-keys/{key_id}/revoke", dependencies=[AdminOnly])
def api_key_revoke_confirm(request: Request, session: SessionDep, key_id: RowId) -> Response:
    key = next((k for k in auth_service.list_api_keys(session) if k.id == key_id), None)
    if key is None or key.revoked_at is not None:
        return see_other("/admin/api-keys")
    return confirm_page(
        request,
        title=f"Revoke the API key “{key.name}”?",
        crumbs=[
            ("Admin", "/admin/users"),
            ("API keys", "/admin/api-keys"),
            ("Revoke", None),
        ],
        message=f"Every system using the key {key.prefix}… loses access at once. "
        "This cannot be undone.",
        action=f"/admin/api-keys/{key.id}/revoke",
        button="Revoke key",
        cancel="/admin/api-keys",
    )


@router.post("/admin/api-keys/{key_id}/revoke", dependencies=[AdminOnly, CsrfProtect])
def api_key_revoke(request: Request, session: SessionDep, key_id: RowId) -> Response:
    key = auth_service.revoke_api_key(session, key_id=key_id)
    if key is None:
        raise Invalid("No such API key.")
    auth_service.record_audit(
        session,
        actor=request.state.principal.email,
        action="revoke",
        entity="api_key",
        entity_id=key.id,
        detail=f"{key.name} ({key.prefix}…)",
    )
    return see_other("/admin/api-keys", notice="revoked")


# --- admin: audit log and settings ----------------------------------------------------------


@router.get("/admin/audit", dependencies=[AdminOnly])
def audit_log(
    request: Request,
    session: SessionDep,
    actor: str = "",
    entity: str = "",
) -> Response:
    actor = actor[:320]
    entity = entity[:50]
    _rows, total = auth_service.list_audit(
        session, actor=actor or None, entity=entity or None, limit=1
    )
    pager = make_pager(request, total, per_page=50)
    rows, _total = auth_service.list_audit(
        session,
        actor=actor or None,
        entity=entity or None,
        limit=pager.per_page,
        offset=pager.offset,
    )
    return page(
        request,
        "hr/admin/audit.html",
        {
            "rows": rows,
            "pager": pager,
            "actor": actor,
            "entity": entity,
            "entities": auth_service.audit_entities(session),
        },
    )


@router.get("/admin/settings", dependencies=[AdminOnly])
def settings_page(request: Request, settings: SettingsDep) -> Response:
    rows = [
        ("Base URL", settings.base_url),
        ("Environment", settings.environment),
        ("Database", "SQLite" if settings.is_sqlite else "PostgreSQL"),
        (
            "Mail",
            f"SMTP {settings.smtp_host}:{settings.smtp_port}"
            if settings.smtp_host
            else "no SMTP: messages stay in the local outbox",
        ),
        ("Sender address", settings.mail_from),
        ("Minimum raters before results are shown", str(settings.anonymity_min_raters)),
        (
            "Reminders (days before close)",
            ", ".join(str(d) for d in settings.reminder_days_before_close) or "none",
        ),
        (
            "Confirmation round links go to (default)",
            "each supplier"
            if settings.nomination_links_to == "supplier"
            else "the suppliers' line managers",
        ),
        ("HR session idle timeout", f"{settings.hr_session_idle_minutes} minutes"),
        (
            "Login throttling",
            f"{settings.login_max_failures} failures per email "
            f"({settings.login_max_failures * auth_service.IP_FAILURE_FACTOR} per address) "
            f"lock for {settings.login_lockout_minutes} minutes",
        ),
        ("Results webhook", settings.results_webhook_url or "not configured"),
    ]
    return page(request, "hr/admin/settings.html", {"rows": rows})
