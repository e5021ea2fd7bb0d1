"""Errors: domain exceptions that carry their HTTP status, rendered in one place.

Under ``/api`` every error is an RFC 9457 problem document
(``application/problem+json``); elsewhere a friendly HTML page. Services raise these
classes and never import FastAPI.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.redaction import redact_path

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class DomainError(Exception):
    """Base for every error a service raises on purpose."""

    status = 400
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.extra = extra


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Invalid(DomainError):
    """Input that is well-formed but breaks a business rule (422)."""

    status = 422
    title = "Validation failed"


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class TooLarge(DomainError):
    status = 413
    title = "Request too large"


class TooManyRequests(DomainError):
    status = 429
    title = "Too many requests"


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported media type"


def wants_problem_json(request: Request) -> bool:
    return request.url.path.startswith("/api")


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    from app.templating import render  # late: templating imports i18n helpers

    try:
        return render(
            request,
            "error.html",
            {"status": status, "title": title, "detail": detail},
            status_code=status,
        )
    except Exception:  # never let the error page itself fail
        log.exception("error page failed to render")
        return HTMLResponse(f"<h1>{status} {title}</h1>", status_code=status)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append({"field": _location(err.get("loc", ())), "message": err.get("msg", "invalid")})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        if wants_problem_json(request):
            return problem_response(
                exc.status,
                exc.title,
                exc.detail,
                errors=exc.errors,
                headers=exc.headers,
                **exc.extra,
            )
        response = error_page(request, exc.status, exc.title, exc.detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        if wants_problem_json(request):
            return problem_response(422, "Validation failed", detail, errors=errors)
        return error_page(request, 422, "Validation failed", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        detail = str(exc.detail) if exc.detail else title
        headers = dict(exc.headers) if exc.headers else None
        if wants_problem_json(request):
            return problem_response(exc.status_code, title, detail, headers=headers)
        response = error_page(request, exc.status_code, title, detail)
        if headers:
            response.headers.update(headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # The message is generic on purpose: an exception text could contain input.
        log.exception("unhandled error on %s %s", request.method, redact_path(request.url.path))
        detail = "Something went wrong on our side. Nothing was saved; please try again."
        if wants_problem_json(request):
            return problem_response(500, "Internal server error", detail)
        return error_page(request, 500, "Internal server error", detail)
