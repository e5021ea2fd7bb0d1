"""One Jinja environment for pages and emails, with gettext translations."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from starlette.responses import HTMLResponse

from app import dates, i18n
from app.config import get_settings

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


@lru_cache
def templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(("html", "htm", "xml"), default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        # A file check per template per render is for editing them; a deployed app's
        # templates do not change under it.
        auto_reload=get_settings().environment == "development",
    )
    # Fallback callables; render() passes the request's language ones in the context.
    env.install_gettext_translations(i18n.translations("en"), newstyle=True)  # type: ignore[attr-defined]
    # Every date a person reads goes through these: the organisation's zone, and one
    # format per language (render() and render_string() put both in the context).
    env.filters["date"] = _date_filter
    env.filters["datetime"] = _datetime_filter
    return Jinja2Templates(env=env)


@pass_context
def _date_filter(ctx: Context, value: Any) -> str:
    if value is None:
        return ""
    return dates.format_date(value, ctx.get("lang") or "en", ctx.get("org_time_zone") or "UTC")


@pass_context
def _datetime_filter(ctx: Context, value: Any) -> str:
    if value is None:
        return ""
    return dates.format_datetime(value, ctx.get("lang") or "en", ctx.get("org_time_zone") or "UTC")


def environment() -> Environment:
    return templates().env


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    lang: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render a page with the request, the logged-in principal and its CSRF token."""
    ctx: dict[str, Any] = dict(context or {})
    principal = getattr(request.state, "principal", None)
    ctx.setdefault("principal", principal)
    ctx.setdefault("csrf_token", principal.csrf_token if principal else "")
    language = lang or ctx.get("lang") or "en"
    ctx["lang"] = language
    settings = getattr(request.app.state, "settings", None) or get_settings()
    ctx["org_time_zone"] = settings.org_time_zone
    ctx.update(i18n.jinja_callables(language))
    return templates().TemplateResponse(
        request, name, ctx, status_code=status_code, headers=headers
    )


def render_string(
    name: str, context: dict[str, Any], *, lang: str = "en", tz: str | None = None
) -> str:
    """Render a template outside a request (emails); ``tz`` defaults to the setting."""
    ctx = dict(context)
    ctx["lang"] = lang
    ctx["org_time_zone"] = tz or get_settings().org_time_zone
    ctx.update(i18n.jinja_callables(lang))
    return environment().get_template(name).render(ctx)
