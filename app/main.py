"""The application factory: routers, static files, middleware, error handlers."""

from __future__ import annotations

import functools
import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from sqlalchemy.engine import Engine
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import app.models  # noqa: F401 - the one module that registers every table
from app.auth import pages as auth_pages
from app.auth import sso_pages
from app.auth.deps import QUERY_KEY_PARAMS, LoginRequired
from app.config import Settings, get_settings
from app.cycles import api as cycles_api
from app.cycles import letter_pages as cycles_letter_pages
from app.cycles import pages as cycles_pages
from app.cycles import rhythm_api as cycles_rhythm_api
from app.cycles import rhythm_pages as cycles_rhythm_pages
from app.db import make_engine, make_sessionmaker
from app.errors import (
    document_problems,
    error_response,
    install_error_handlers,
    server_error_response,
)
from app.fields import known_query_parameters
from app.mail import pages as mail_pages
from app.matrix import api as matrix_api
from app.matrix import pages as matrix_pages
from app.nominations import api as nominations_api
from app.nominations import pages as nominations_pages
from app.nominations import round_pages as nominations_round_pages
from app.nominations import team_pages as nominations_team_pages
from app.org import api as org_api
from app.org import pages as org_pages
from app.privacy import api as privacy_api
from app.ratings import codes as ratings_codes
from app.ratings import pages as ratings_pages
from app.redaction import redact_path
from app.reports import api as reports_api
from app.reports import pages as reports_pages
from app.reports import personal_api as reports_personal_api
from app.reports import personal_pages as reports_personal_pages
from app.scim import api as scim_api
from app.web import strict_form

STATIC_DIR = Path(__file__).resolve().parent / "static"
access_log = logging.getLogger("app.access")
log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# An id from the proxy in front (nginx's $request_id) is kept, so both logs agree;
# anything else is replaced, so a client cannot write arbitrary text into our log.
PROXY_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
# Swagger UI and ReDoc start with an inline script and style (served by us all the same).
DOCS_PATHS = ("/api/docs", "/api/redoc")


API_DESCRIPTION = """
The HRIS integration API of Peer360, the internal-customer 360° rating service.

Authenticate with `Authorization: Bearer <api key>` (keys are created by an admin and
carry scopes). Errors are RFC 9457 problem details (`application/problem+json`).
"""


class BodySizeLimit:
    """Refuse bodies over the configured size before any of it is parsed (413)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException, not a DomainError: FastAPI passes these through its
                    # body parsing instead of turning them into "400 error parsing the body".
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited_receive, send)

    def _detail(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes."

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(Request(scope), 413, "Request too large", self._detail())
        await response(scope, receive, send)


class RequestContext:
    """The outermost layer: a request id, security headers, the access log, and the
    last-resort 500.

    The 500 is answered here rather than by Starlette's catch-all handler, which sends
    it and then re-raises, so the server drops the kept-alive connection and no access
    line is written. Here a 500 is an ordinary response, logged with its request id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        rid = given if PROXY_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        path: str = scope["path"]
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not path.startswith(DOCS_PATHS):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                headers[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception(
                "unhandled error on %s %s (request %s)", scope["method"], redact_path(path), rid
            )
            if response_started:
                raise  # too late for an error answer; the server closes the connection
            response = server_error_response(Request(scope))
            await response(scope, receive, send_with_headers)
        finally:
            client = scope.get("client")
            access_log.info(
                '%s "%s %s" %s %.1fms %s',
                client[0] if client else "-",
                scope["method"],
                redact_path(path),
                status,
                (time.perf_counter() - started) * 1000,
                rid,
            )


@functools.cache
def _freeze_start_up_heap() -> None:
    """Keep what start-up built (modules, tables, templates, routes: ~300,000 objects)
    out of the garbage collector's full passes, which walked all of it every few
    requests and put 50-150 ms pauses into the results pages' p99. Once per process:
    the objects stay for the process's life anyway."""
    gc.collect()
    gc.freeze()


@asynccontextmanager
async def _frozen_heap(_app: FastAPI) -> AsyncIterator[None]:
    _freeze_start_up_heap()
    yield


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine or make_engine(settings.database_url)
    # Swagger UI and ReDoc from the package's own copies: the docs work offline.
    app = FastAPIOffline(
        title="Peer360 API",
        version="1",
        description=API_DESCRIPTION,
        docs_url="/api/docs",
        redoc_url="/api/redoc",
        openapi_url="/api/openapi.json",
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
        static_url="/api/docs/assets",
        lifespan=_frozen_heap,
    )
    base_openapi = app.openapi
    app.openapi = lambda: document_problems(base_openapi())  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)

    install_error_handlers(app)
    # Pages send visitors who are not logged in to the login form (and back afterwards).
    app.add_exception_handler(LoginRequired, auth_pages.login_redirect)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContext)  # added last: the outermost

    # The rating pages first: every employee posts to them within days, and a request
    # walks the routes in order (~150) until one matches.
    refuse_password_login = Depends(sso_pages.refuse_password_login)
    page_dependencies = [Depends(strict_form), refuse_password_login]
    for router in (ratings_pages.router, ratings_codes.router):
        app.include_router(router, dependencies=page_dependencies)

    api_routers = (
        org_api.router,
        matrix_api.router,
        nominations_api.router,
        cycles_api.router,
        reports_api.router,
        reports_personal_api.router,
        cycles_rhythm_api.router,
        privacy_api.router,
    )
    # A key in the URL is refused by the auth check itself, with its own 401.
    refuse_unknown_query = Depends(
        known_query_parameters(left_to_others=frozenset(QUERY_KEY_PARAMS))
    )
    for router in api_routers:
        app.include_router(router, prefix="/api/v1", dependencies=[refuse_unknown_query])
    # The password form is refused when single sign-on is the only way in.
    for router in (
        auth_pages.router,
        sso_pages.router,
        org_pages.router,
        matrix_pages.router,
        nominations_pages.router,
        nominations_round_pages.router,
        nominations_team_pages.router,
        cycles_pages.router,
        cycles_letter_pages.router,
        cycles_rhythm_pages.router,
        reports_pages.router,
        reports_personal_pages.router,
        mail_pages.router,
    ):
        app.include_router(router, dependencies=page_dependencies)
    # SCIM has its own query parameters and error format (app.scim.api).
    app.include_router(scim_api.router)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
