"""Small helpers shared by the HR pages: redirects, safe ``next`` targets, pagination,
field errors. No domain imports, so every ``pages.py`` may use it."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, TypeVarTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from fastapi import APIRouter, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.datastructures import FormData, UploadFile
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.errors import DomainError
from app.fields import INT32_MAX

# A notice is chosen from this list by key, so a URL cannot put arbitrary text on a page.
NOTICES: dict[str, str] = {
    "saved": "Saved.",
    "created": "Created.",
    "deactivated": "Deactivated.",
    "reactivated": "Reactivated.",
    "paper_on": "Paper channel on: from the next launch this person gets a printed letter "
    "with a one-time code instead of an email.",
    "paper_off": "Paper channel off: from the next launch this person gets an email.",
    "revoked": "The API key was revoked.",
    "link-added": "Customer added.",
    "link-removed": "Customer removed.",
    "imported": "The import was saved.",
    "suggestions-accepted": "The accepted suggestions are now matrix links.",
    "service-map-saved": "The service map was saved.",
    "cycle-created": "The cycle was created as a draft.",
    "nominating": "The confirmation round started: the links to the lists (each supplier's, "
    "or their line manager's) and the managers' team links are in the outbox.",
    "launched": "The cycle was launched: invitations are in the outbox.",
    "reminded": "Reminders were queued.",
    "closed": "The cycle was closed.",
    "logged-out": "You have been logged out.",
}


def see_other(url: str, *, notice: str | None = None) -> RedirectResponse:
    """303 after a successful POST, so reloading the page never re-sends the form."""
    if notice:
        url += ("&" if "?" in url else "?") + urlencode({"notice": notice})
    return RedirectResponse(url, status_code=303)


def notice_text(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def page(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render an HR page with the notice named in the URL, if any."""
    from app.templating import render  # late: templating pulls in the i18n catalogs

    ctx = dict(context or {})
    ctx.setdefault("notice", notice_text(request))
    # HR pages carry personal data: keep them out of shared caches and, after logout,
    # out of the browser's back button.
    headers = {"Cache-Control": "no-store", **(headers or {})}
    return render(request, name, ctx, status_code=status_code, headers=headers)


def safe_next(target: str | None, default: str = "/") -> str:
    """Only a local absolute path: no scheme, no host, no ``//evil`` or ``/\\evil``."""
    if not target or len(target) > 2000:
        return default
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(ch in target for ch in "\\\r\n\t") or any(ord(ch) < 32 for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def field_errors(exc: DomainError) -> dict[str, str]:
    """``{"field": "message"}`` from a service error, for messages next to the fields."""
    out: dict[str, str] = {}
    for err in exc.errors or []:
        field = str(err.get("field") or "_form")
        out.setdefault(field, str(err.get("message") or "invalid"))
    if not out:
        out["_form"] = exc.detail
    return out


def parse_int(value: str | None, *, default: int | None = None, minimum: int = 1) -> int | None:
    """A query parameter as int, tolerating junk (pages never 422 on a bad filter).

    Numbers beyond the id columns' range count as junk: they match no row anyway.
    """
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        return default
    return number if minimum <= number <= INT32_MAX else default


@dataclass
class Pager:
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    def url(self, request: Request, page: int) -> str:
        params: dict[str, Any] = dict(request.query_params)
        params.pop("notice", None)
        params["page"] = page
        return f"{request.url.path}?{urlencode(params)}"


def make_pager(request: Request, total: int, *, per_page: int = 25) -> Pager:
    page = parse_int(request.query_params.get("page"), default=1) or 1
    pager = Pager(page=page, per_page=per_page, total=total)
    # A page past the end shows the last one rather than an empty table.
    pager.page = min(pager.page, pager.pages)
    return pager


def confirm_page(
    request: Request,
    *,
    title: str,
    crumbs: list[tuple[str, str | None]],
    message: str,
    action: str,
    button: str,
    cancel: str,
    details: list[str] | None = None,
    hidden: dict[str, str] | None = None,
    safe_action: bool = False,
) -> HTMLResponse:
    """The "are you sure?" page before a state change: one button posting to ``action``."""
    context: dict[str, Any] = {
        "title": title,
        "crumbs": crumbs,
        "message": message,
        "action": action,
        "button": button,
        "cancel": cancel,
    }
    if details:
        context["details"] = details
    if hidden:
        context["hidden"] = hidden
    if safe_action:
        # A primary (not red) button: the action is wanted, just not undoable.
        context["safe_action"] = True
    return page(request, "hr/confirm.html", context)


# --- strict forms ----------------------------------------------------------------------

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Every state-changing form carries it (read by ``auth.deps.csrf_protect``).
ALWAYS_ACCEPTED = frozenset({"csrf_token"})


class UnexpectedFormFields(DomainError):
    status = 400
    title = "The form was not sent as the page made it"


class TooManyFormFields(DomainError):
    status = 400
    title = "The form has too many fields"


_URLENCODED = "application/x-www-form-urlencoded"


async def read_form(request: Request, *, max_fields: int = 1000, max_files: int = 1000) -> FormData:
    """The posted form, parsed once per request, with its field cap enforced.

    URL-encoded bodies (every page form but uploads) are split by the standard library's
    ``parse_qsl``: Starlette's own parser ignores ``max_fields`` for them and costs four
    times as much (0.5 ms of the rating submit's 4 ms of CPU). The text is decoded as
    Starlette decodes it (bytes as latin-1, then %-escapes as UTF-8), and the result
    becomes the request's form, so later ``request.form()`` calls read the same one.
    Multipart bodies (uploads) go to Starlette, which caps their fields and files.
    """
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != _URLENCODED or request._form is not None:
        return await request.form(max_fields=max_fields, max_files=max_files)
    body = await request.body()
    try:
        items: list[tuple[str, str | UploadFile]] = list(
            parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=max_fields)
        )
    except ValueError:
        raise TooManyFormFields(
            f"The form was refused, nothing was saved: it had more than {max_fields} fields."
        ) from None
    form = FormData(items)
    request._form = form
    return form


@dataclass(frozen=True)
class FormSpec:
    """The fields a page route reads itself with ``request.form()``."""

    names: frozenset[str] = frozenset()
    pattern: re.Pattern[str] | None = None
    repeated: frozenset[str] = frozenset()
    max_fields: int = 1000
    max_files: int = 1000


def form_fields(
    *names: str,
    pattern: re.Pattern[str] | None = None,
    repeated: tuple[str, ...] = (),
    max_fields: int = 1000,
    max_files: int = 1000,
) -> Callable[[Endpoint], Endpoint]:
    """Declare the fields of a route that reads ``request.form()`` itself: ``names``,
    any name matching ``pattern``; only ``repeated`` ones may come more than once.
    Routes with ``Form()`` parameters need nothing: their parameters are the list."""
    spec = FormSpec(frozenset(names), pattern, frozenset(repeated), max_fields, max_files)

    def declare(endpoint: Endpoint) -> Endpoint:
        endpoint.form_spec = spec  # type: ignore[attr-defined]
        return endpoint

    return declare


def _route_spec(route: object) -> FormSpec:
    if not isinstance(route, APIRoute):
        return FormSpec()
    spec: FormSpec | None = getattr(route.endpoint, "form_spec", None)
    if spec is not None:
        return spec
    return FormSpec(names=frozenset(_form_parameters(route.dependant)))


def _form_parameters(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.body_params}
    for sub in dependant.dependencies:
        names |= _form_parameters(sub)
    return names


def form_problems(items: list[tuple[str, Any]], spec: FormSpec) -> str | None:
    """What is wrong with the posted field names, in one sentence; None when nothing."""
    seen: set[str] = set()
    unknown: list[str] = []
    twice: list[str] = []
    for name, _value in items:
        if name in seen and name not in spec.repeated and name not in twice:
            twice.append(name)
        seen.add(name)
        known = name in spec.names or name in ALWAYS_ACCEPTED
        matches = bool(spec.pattern and spec.pattern.fullmatch(name))
        if not known and not matches and name not in unknown:
            unknown.append(name)
    if not unknown and not twice:
        return None

    def listed(names: list[str]) -> str:
        shown = ", ".join(repr(n[:40]) for n in names[:5])
        return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    parts = []
    if unknown:
        parts.append(f"fields this form does not have: {listed(unknown)}")
    if twice:
        parts.append(f"fields sent more than once: {listed(twice)}")
    return "The form was refused, nothing was saved. It had " + "; and ".join(parts) + "."


class PageRoute(APIRoute):
    """A page route: a posted form is read, within its route's field cap, before FastAPI
    reads it for ``Form()`` parameters (which would take any number of fields)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        spec = _route_spec(self)

        async def form_first(request: Request) -> Response:
            if request.method == "POST":
                await read_form(request, max_fields=spec.max_fields, max_files=spec.max_files)
            return await handler(request)

        return form_first


def page_router(**kwargs: Any) -> APIRouter:
    """The router of a module of pages: out of the API document, forms read first."""
    return APIRouter(include_in_schema=False, route_class=PageRoute, **kwargs)


async def strict_form(request: Request) -> None:
    """Refuse a posted form with a field the route does not read, or one sent twice.

    Without this a mistyped or injected field is dropped without a word, and a repeated
    one silently keeps only its last value. Applied to every page router (app.main).
    """
    content_type = request.headers.get("content-type", "")
    if request.method != "POST" or not content_type.startswith(FORM_TYPES):
        return
    spec = _route_spec(request.scope.get("route"))
    form = await read_form(request, max_fields=spec.max_fields, max_files=spec.max_files)
    problem = form_problems(list(form.multi_items()), spec)
    if problem:
        raise UnexpectedFormFields(problem)


# The lanes of the current event loop: a server has one loop per process (a test client
# not used as a context manager starts a loop, and so new lanes, per request).
_LANES: RunVar[dict[str, anyio.CapacityLimiter]] = RunVar("peer360_lanes")
_Result = TypeVar("_Result")
_Args = TypeVarTuple("_Args")


async def run_in_lane(
    lane: str, width: int, func: Callable[[*_Args], _Result], /, *args: *_Args
) -> _Result:
    """``func(*args)`` in the thread pool, at most ``width`` calls of ``lane`` at once in
    this process (the width of the lane's first call); the others wait on the event loop,
    in the order they came.

    For a route that everyone posts to within minutes. On SQLite, forty threads that
    poll the one write lock and fight over the GIL each answer later, and for more CPU,
    than two that take turns. ``func`` should end its own transaction, so that a lane is
    never given up with a write lock still held.
    """
    try:
        lanes = _LANES.get()
    except LookupError:
        lanes = {}
        _LANES.set(lanes)
    limiter = lanes.get(lane)
    if limiter is None:
        limiter = lanes[lane] = anyio.CapacityLimiter(width)
    return await anyio.to_thread.run_sync(func, *args, limiter=limiter)
