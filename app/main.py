"""The application factory: routers, static files, middleware, error handlers."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import app.models  # noqa: F401 - the one module that registers every table
from app.auth import api as auth_api
from app.auth import pages as auth_pages
from app.auth.deps import LoginRequired
from app.config import Settings, get_settings
from app.cycles import api as cycles_api
from app.cycles import pages as cycles_pages
from app.db import make_engine, make_sessionmaker
from app.errors import TooLarge, install_error_handlers, problem_response
from app.mail import pages as mail_pages
from app.matrix import api as matrix_api
from app.matrix import pages as matrix_pages
from app.org import api as org_api
from app.org import pages as org_pages
from app.ratings import pages as ratings_pages
from app.redaction import redact_path
from app.reports import api as reports_api
from app.reports import pages as reports_pages

STATIC_DIR = Path(__file__).resolve().parent / "static"
access_log = logging.getLogger("app.access")


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
                    raise TooLarge(f"The request body is larger than {self.max_bytes} bytes.")
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, "Request too large", f"The request body is larger than {self.max_bytes} bytes."
        )
        await response(scope, receive, send)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine or make_engine(settings.database_url)
    app = FastAPI(
        title="Peer360 API",
        version="1",
        description=API_DESCRIPTION,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)

    install_error_handlers(app)
    # Pages send visitors who are not logged in to the login form (and back afterwards).
    app.add_exception_handler(LoginRequired, auth_pages.login_redirect)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/api/docs"):
            headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            )
        access_log.info(
            '%s "%s %s" %s %.1fms',
            request.client.host if request.client else "-",
            request.method,
            redact_path(request.url.path),
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)

    api_routers = (
        org_api.router,
        matrix_api.router,
        cycles_api.router,
        reports_api.router,
        auth_api.router,
    )
    for router in api_routers:
        app.include_router(router, prefix="/api/v1")
    for router in (
        auth_pages.router,
        org_pages.router,
        matrix_pages.router,
        cycles_pages.router,
        ratings_pages.router,
        reports_pages.router,
        mail_pages.router,
    ):
        app.include_router(router)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
