"""Dependencies that guard routes: API keys with scopes, HR users with roles, CSRF."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request, Response, params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from app.auth import service as auth_service
from app.auth.models import ApiKey, Role, User, UserSession
from app.config import Settings
from app.db import SessionDep
from app.errors import DomainError, Forbidden, Unauthorized

QUERY_KEY_PARAMS = {"api_key", "apikey", "key", "token", "access_token"}


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` in a
# worker thread, and each trip there and back costs about a quarter of a millisecond of
# CPU on every request that uses it.


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def api_key(request: Request, session: SessionDep) -> ApiKey:
    """The caller's API key, from ``Authorization: Bearer``; 401 when missing or bad."""
    if QUERY_KEY_PARAMS & set(request.query_params.keys()):
        # Keys in URLs end up in proxy logs and browser history: refuse them outright.
        raise Unauthorized(
            "API keys are accepted only in the Authorization header, never in the URL",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = _bearer(request)
    key = auth_service.authenticate_api_key(session, token) if token else None
    if key is None:
        raise Unauthorized(
            "A valid API key is required: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key


ApiKeyDep = Annotated[ApiKey, Depends(api_key)]


class ApiRoute(APIRoute):
    """A route of the API, which every caller reaches with an API key.

    FastAPI reads a JSON body before it runs any dependency and answers a body it cannot
    parse (not JSON, not UTF-8, nested too deep) at once, so a caller with no key would
    learn what a route reads. Here such a body reaches FastAPI as a stand-in, and a last
    route dependency refuses it (422) once the key has been checked: the route's own
    parameters and body are never looked at, and the route never runs. Scope checks go in
    ``dependencies=`` (route or router), which run before it, so a key without the scope
    hears 403 first.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        dependencies: Sequence[params.Depends] | None = None,
        **kwargs: Any,
    ) -> None:
        guarded = list(dependencies or ())
        # Reads carry no body: they keep their dependencies as they are. FastAPI 0.121
        # builds an included route again through this class: guard it once.
        takes_body = _BODY_METHODS & {m.upper() for m in kwargs.get("methods") or ()}
        if takes_body and not any(d.dependency is _refuse_unreadable_body for d in guarded):
            guarded.append(Depends(_refuse_unreadable_body))
        super().__init__(path, endpoint, dependencies=guarded, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler  # no body for FastAPI to parse before the guards

        async def json_later(request: Request) -> Response:
            return await handler(_JsonLaterRequest(request.scope, request.receive))

        return json_later


_BODY_METHODS = {"POST", "PUT", "PATCH"}


class _UnreadableBody:
    """What a body that does not parse stands for, until :func:`_refuse_unreadable_body`."""


class _JsonLaterRequest(Request):
    # (character offset, reason) when the body did not parse.
    body_problem: tuple[int, str] | None = None

    async def json(self) -> Any:
        try:
            return await super().json()
        except json.JSONDecodeError as error:
            self.body_problem = (error.pos, error.msg)
        except UnicodeDecodeError as error:
            self.body_problem = (error.start, "not UTF-8")
        except RecursionError:
            self.body_problem = (0, "nested too deeply")
        return _UnreadableBody()


async def _refuse_unreadable_body(request: Request, _key: ApiKeyDep) -> None:
    problem = getattr(request, "body_problem", None)
    if problem is not None:
        position, reason = problem
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", position),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": reason},
                }
            ]
        )


def require_scopes(*scopes: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that admits only API keys carrying every scope named."""

    async def _check(key: ApiKeyDep) -> ApiKey:
        missing = [s for s in scopes if s not in (key.scopes or [])]
        if missing:
            raise Forbidden(f"This API key lacks the scope(s): {', '.join(missing)}")
        return key

    return _check


# --- HR users -------------------------------------------------------------------------


def session_cookie_name(settings: Settings) -> str:
    # The __Host- prefix pins the cookie to this host, path / and HTTPS.
    return "__Host-p360_session" if settings.https else "p360_session"


@dataclass
class Principal:
    user: User
    user_session: UserSession
    # Plain copies taken when the session is resolved: an error page renders after the
    # request's transaction rolled back, when the ORM objects above are expired.
    user_id: int = field(init=False)
    email: str = field(init=False)
    display_name: str = field(init=False)
    employee_id: int | None = field(init=False)
    _role: Role = field(init=False, repr=False)
    _csrf_token: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.user_id = self.user.id
        self.email = self.user.email
        self.display_name = self.user.full_name or self.user.email
        self.employee_id = self.user.employee_id
        self._role = self.user.role
        self._csrf_token = self.user_session.csrf_token

    @property
    def role(self) -> Role:
        return self._role

    @property
    def csrf_token(self) -> str:
        return self._csrf_token


class LoginRequired(DomainError):
    """Raised on pages when nobody is logged in; pages redirect to the login form."""

    status = 401
    title = "Please log in"


def optional_principal(
    request: Request, session: SessionDep, settings: SettingsDep
) -> Principal | None:
    token = request.cookies.get(session_cookie_name(settings))
    if not token:
        return None
    found = auth_service.resolve_user_session(
        session, token=token, idle=timedelta(minutes=settings.hr_session_idle_minutes)
    )
    if found is None:
        return None
    principal = Principal(user=found[0], user_session=found[1])
    request.state.principal = principal
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


async def current_principal(principal: OptionalPrincipal) -> Principal:
    if principal is None:
        raise LoginRequired("Please log in to continue.")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """Admit logged-in users whose role is listed (admin also passes where hr does)."""

    async def _check(principal: CurrentPrincipal) -> Principal:
        if not auth_service.role_allows(principal.role, roles):
            raise Forbidden("Your role does not give access to this page.")
        return principal

    return _check


async def csrf_protect(request: Request, principal: CurrentPrincipal) -> None:
    """Every state-changing form posts the session's CSRF token as ``csrf_token``."""
    given: Any = request.headers.get("x-csrf-token")
    if given is None:
        form = await request.form()
        given = form.get("csrf_token")
    if not auth_service.check_csrf(principal.csrf_token, given if isinstance(given, str) else None):
        raise Forbidden("The form has expired. Go back, reload the page and try again.")


CsrfProtect = Depends(csrf_protect)
HrOnly = Depends(require_role(Role.hr))
AdminOnly = Depends(require_role(Role.admin))
