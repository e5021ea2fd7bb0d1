"""HR screen for the matrix suggestions: look, tick, accept (some, all or none)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import Form, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from app.auth import service as auth_service
from app.auth.deps import CsrfProtect, HrOnly
from app.db import SessionDep
from app.errors import DomainError
from app.nominations import suggestions
from app.org import service as org_service
from app.org.models import Department
from app.web import form_fields, make_pager, page, page_router, parse_int, see_other

router = page_router(dependencies=[HrOnly])

PER_PAGE = 100
MAX_TICKED = 1000


def _sources(values: list[str]) -> tuple[suggestions.Source, ...]:
    """The sources ticked in the form; all when none (or only unknown ones) are."""
    chosen = tuple(s for s in suggestions.ALL_SOURCES if s.value in values)
    return chosen or suggestions.ALL_SOURCES


def _filter(
    session: Session, sources: tuple[suggestions.Source, ...], department_id: int | None
) -> suggestions.SuggestionFilter:
    if department_id is not None and session.get(Department, department_id) is None:
        department_id = None  # deleted since the page was drawn (or made up): show all
    return suggestions.SuggestionFilter(sources=sources, department_id=department_id)


def _query(sources: tuple[suggestions.Source, ...], department_id: int | None) -> str:
    params: list[tuple[str, str]] = []
    if sources != suggestions.ALL_SOURCES:
        params += [("source", s.value) for s in sources]
    if department_id is not None:
        params.append(("department", str(department_id)))
    return urlencode(params)


def _render(
    request: Request,
    session: Session,
    *,
    sources: tuple[suggestions.Source, ...],
    department_id: int | None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    flt = _filter(session, sources, department_id)
    try:
        found = suggestions.suggest(session, flt)
    except DomainError as exc:  # too many: the filters above the error narrow them
        found, error, status_code = [], exc.detail, exc.status
    pager = make_pager(request, len(found), per_page=PER_PAGE)
    shown = found[pager.offset : pager.offset + pager.per_page]
    names = suggestions.people(session, {i for s in shown for i in (s.supplier_id, s.customer_id)})
    counts = {source: 0 for source in suggestions.ALL_SOURCES}
    for s in found:
        for source in {r.source for r in s.reasons}:
            counts[source] += 1
    return page(
        request,
        "hr/matrix/suggestions.html",
        {
            "sources": sources,
            "all_sources": suggestions.ALL_SOURCES,
            "department_id": flt.department_id,
            "departments": org_service.list_departments(session),
            "suggestions": shown,
            "names": names,
            "reasons": suggestions.describe(session, shown, names),
            "total": len(found),
            "counts": counts,
            "pager": pager,
            "previous_cycle": suggestions.previous_cycle(session),
            "added": parse_int(request.query_params.get("added"), minimum=0),
            "error": error,
            "query": _query(sources, flt.department_id),
        },
        status_code=status_code,
    )


@router.get("/matrix/suggestions")
def suggestions_page(request: Request, session: SessionDep) -> Response:
    sources = _sources(request.query_params.getlist("source"))
    department_id = parse_int(request.query_params.get("department"))
    return _render(request, session, sources=sources, department_id=department_id)


def _pair(value: str) -> tuple[int, int] | None:
    supplier, _, customer = value.partition("-")
    s, c = parse_int(supplier), parse_int(customer)
    return (s, c) if s is not None and c is not None else None


@router.post("/matrix/suggestions/accept", dependencies=[CsrfProtect])
@form_fields("pair", "source", "department", "accept", repeated=("pair", "source"))
def accept_suggestions(
    request: Request,
    session: SessionDep,
    pair: Annotated[list[str], Form(max_length=MAX_TICKED)] = [],  # noqa: B006
    source: Annotated[list[str], Form(max_length=10)] = [],  # noqa: B006
    department: Annotated[str, Form(max_length=20)] = "",
    accept: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    sources = _sources(source)
    department_id = parse_int(department)
    try:
        if accept == "all":
            result = suggestions.accept_all(session, _filter(session, sources, department_id))
        else:
            pairs = [p for p in (_pair(v[:40]) for v in pair) if p is not None]
            if not pairs:
                return _render(
                    request,
                    session,
                    sources=sources,
                    department_id=department_id,
                    error="Tick the suggestions to accept, or accept them all.",
                    status_code=422,
                )
            result = suggestions.accept(session, pairs=pairs, sources=sources)
    except DomainError as exc:
        return _render(
            request,
            session,
            sources=sources,
            department_id=department_id,
            error=exc.detail,
            status_code=exc.status,
        )
    if result.added:
        auth_service.record_audit(
            session,
            actor=request.state.principal.email,
            action="accept suggestions",
            entity="matrix",
            detail=suggestions.audit_detail(result),
        )
    query = _query(sources, department_id)
    target = f"/matrix/suggestions?{query + '&' if query else ''}added={len(result.added)}"
    return see_other(target, notice="suggestions-accepted")
