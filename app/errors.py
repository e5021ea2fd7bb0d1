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
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.db import database_unavailable
from app.redaction import redact_path

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# The charset is said out loud: clients that guess it (requests, for a type they do not
# know as JSON) otherwise misread non-ASCII details.
PROBLEM_JSON_UTF8 = f"{PROBLEM_JSON}; charset=utf-8"
# How long a client should wait before retrying while the database is unreachable.
DATABASE_RETRY_AFTER_SECONDS = 10
INTERNAL_ERROR_DETAIL = "Something went wrong on our side. Nothing was saved; please try again."
DATABASE_DOWN_DETAIL = (
    "The service cannot reach its database right now. Nothing was saved; "
    "please try again in a moment."
)


class Problem(BaseModel):
    """An RFC 9457 problem document, as every error under /api is returned."""

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Validation failed"])
    status: int = Field(examples=[422])
    detail: str | None = Field(
        default=None, examples=["The employee is not valid: email is not an email address"]
    )
    errors: list[dict[str, Any]] | None = Field(
        default=None,
        description="Per-field (and, for imports, per-line) problems: `{line?, field, message}`.",
        examples=[[{"line": 3, "field": "email", "message": "email is not an email address"}]],
    )
    error_count: int | None = Field(
        default=None, description="Imports: how many problems were found (and listed)."
    )
    error_count_is_complete: bool | None = Field(
        default=None,
        description="Imports: false when checking stopped at `UPLOAD_MAX_PROBLEMS`.",
    )
    limit: str | None = Field(
        default=None,
        description="Uploads: the setting whose limit was exceeded.",
        examples=["XLSX_MAX_UNPACKED_BYTES"],
    )
    limit_value: float | None = Field(default=None, description="Uploads: that limit.")
    request_id: str | None = Field(
        default=None,
        description="On server errors (5xx): the id our logs know the request by "
        "(also in the `X-Request-ID` header).",
    )


PROBLEM_TEXT = {
    400: "The request is malformed.",
    401: "No API key, or an unknown or revoked one (or a key sent in the URL).",
    403: "The API key lacks the scope this route needs.",
    404: "No record has this id.",
    409: "The change conflicts with existing data (a duplicate email, a cycle), or an "
    "employee import would deactivate more than `IMPORT_MAX_DEACTIVATE_FRACTION` without "
    "`confirm_mass_deactivation=true`.",
    413: "The request body, or an uploaded file's rows or unpacked size, is larger than "
    "the configured limit (`limit` names the setting).",
    415: "The body's content type is not supported.",
    422: "The input breaks a rule; `errors` names each field (and line) and the reason.",
    503: "The database is unreachable; retry after `Retry-After` seconds.",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer (plus auth)."""
    return {
        code: {"model": Problem, "description": PROBLEM_TEXT[code]}
        for code in sorted({401, 403, *codes})
    }


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


# SCIM clients (Okta, Entra ID) read errors in SCIM's own format (RFC 7644 §3.12).
SCIM_PATH_PREFIX = "/scim/"
SCIM_JSON = "application/scim+json"
SCIM_ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
# SCIM has no 422: a value that breaks a rule is a 400 with scimType invalidValue.
_SCIM_TYPES = {400: "invalidValue", 409: "uniqueness", 422: "invalidValue"}


def scim_error_response(
    status: int,
    detail: str,
    *,
    scim_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error as a SCIM client expects it: ``{"schemas", "status", "scimType", "detail"}``."""
    status = 400 if status == 422 else status
    body: dict[str, Any] = {"schemas": [SCIM_ERROR_SCHEMA], "status": str(status)}
    scim_type = scim_type or _SCIM_TYPES.get(status)
    if scim_type:
        body["scimType"] = scim_type
    if detail:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, media_type=SCIM_JSON, headers=headers)


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
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON_UTF8, headers=headers)


def request_id(request: Request) -> str | None:
    """The id the request is logged under (set by the app's outermost middleware)."""
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    from app.templating import render  # late: templating imports i18n helpers

    context: dict[str, Any] = {"status": status, "title": title, "detail": detail}
    if status >= 500:
        context["request_id"] = request_id(request)
    try:
        return render(request, "error.html", context, status_code=status)
    except Exception:  # never let the error page itself fail
        log.exception("error page failed to render")
        return HTMLResponse(f"<h1>{status} {title}</h1>", status_code=status)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            # FastAPI places it at ("body", character offset): say so in words.
            loc = err.get("loc", ())
            where = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
            reason = (err.get("ctx") or {}).get("error", "")
            message = f"not valid JSON{where}" + (f" ({reason})" if reason else "")
            out.append({"field": "body", "message": message})
            continue
        out.append({"field": _location(err.get("loc", ())), "message": err.get("msg", "invalid")})
    return out


def error_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem document under /api, a SCIM error under /scim, the friendly page elsewhere."""
    if request.url.path.startswith(SCIM_PATH_PREFIX):
        if errors:
            detail = "; ".join([detail, *(f"{e.get('field')}: {e.get('message')}" for e in errors)])
        scim_type = extra.get("scim_type")
        return scim_error_response(
            status,
            detail,
            scim_type=scim_type if isinstance(scim_type, str) else None,
            headers=headers,
        )
    if wants_problem_json(request):
        return problem_response(status, title, detail, errors=errors, headers=headers, **extra)
    response = error_page(request, status, title, detail)
    if headers:
        response.headers.update(headers)
    return response


def server_error_response(
    request: Request,
    status: int = 500,
    title: str = "Internal server error",
    detail: str = INTERNAL_ERROR_DETAIL,
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    """A 5xx that names the request id our log has it under (the message is generic on
    purpose: an exception's text could contain input)."""
    rid = request_id(request)
    extra: dict[str, Any] = {"request_id": rid} if rid else {}
    return error_response(request, status, title, detail, headers=headers, **extra)


HTTP_TITLES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    413: "Request too large",
    415: "Unsupported media type",
}


def install_error_handlers(app: FastAPI) -> None:
    """Handlers for expected errors. Unexpected ones become a 500 in the app's outermost
    middleware (``app.main.RequestContext``), not here: Starlette re-raises after its
    catch-all handler, which drops the connection and the access log line."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        return error_response(
            request,
            exc.status,
            exc.title,
            exc.detail,
            errors=exc.errors,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        # The page shows the detail line only.
        listed = errors if wants_problem_json(request) else None
        return error_response(request, 422, "Validation failed", detail, errors=listed)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = HTTP_TITLES.get(exc.status_code, "Error")
        detail = str(exc.detail) if exc.detail else title
        headers = dict(exc.headers) if exc.headers else None
        return error_response(request, exc.status_code, title, detail, headers=headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_unavailable(request: Request, exc: Exception) -> Response:
        # Connection refused or lost, a locked SQLite file, an exhausted pool: all pass
        # on their own, so the client is told to come back rather than given a 500.
        if not database_unavailable(exc):
            raise exc  # a bug: the outermost middleware answers 500 and logs the traceback
        log.warning(
            "database unavailable on %s %s (request %s): %s",
            request.method,
            redact_path(request.url.path),
            request_id(request),
            _driver_error(exc),
        )
        return server_error_response(
            request,
            503,
            "Service unavailable",
            DATABASE_DOWN_DETAIL,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )


def _driver_error(exc: Exception) -> str:
    """The driver's error class and code (``OperationalError SQLITE_BUSY``, a PostgreSQL
    SQLSTATE): enough to tell a lock from a lost file, never the statement's values."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "sqlite_errorname", None) or getattr(orig, "sqlstate", None)
    return f"{type(orig).__name__} {code}" if code else type(orig).__name__


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what the handlers above send for every error.

    Routes list their error statuses with ``problems()``; FastAPI documents them as
    ``application/json`` and adds its own list-shaped 422. Here every 4xx/5xx of every
    operation becomes the ``Problem`` schema as ``application/problem+json``, and every
    operation documents 422 and 503.
    """
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            # Any route refuses unknown query parameters (app.fields), any can find
            # the database down.
            responses.setdefault("422", {"description": PROBLEM_TEXT[422]})
            responses.setdefault("503", {"description": PROBLEM_TEXT[503]})
            for code, response in responses.items():
                if code[:1] in ("4", "5"):
                    if code == "422" and response.get("description") == "Validation Error":
                        response["description"] = PROBLEM_TEXT[422]
                    response["content"] = dict(problem)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return openapi
