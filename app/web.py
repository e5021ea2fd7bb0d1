"""Small helpers shared by the HR pages: redirects, safe ``next`` targets, pagination,
field errors. No domain imports, so every ``pages.py`` may use it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from starlette.responses import HTMLResponse, RedirectResponse

from app.errors import DomainError

# A notice is chosen from this list by key, so a URL cannot put arbitrary text on a page.
NOTICES: dict[str, str] = {
    "saved": "Saved.",
    "created": "Created.",
    "deactivated": "Deactivated.",
    "reactivated": "Reactivated.",
    "revoked": "The API key was revoked.",
    "link-added": "Customer added.",
    "link-removed": "Customer removed.",
    "imported": "The import was saved.",
    "cycle-created": "The cycle was created as a draft.",
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
    """A query parameter as int, tolerating junk (pages never 422 on a bad filter)."""
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        return default
    return number if number >= minimum else default


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
