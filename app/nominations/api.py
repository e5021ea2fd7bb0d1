"""HRIS API for the matrix suggestions: list them, accept some or all."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.auth.deps import ApiKeyDep, ApiRoute, require_scopes
from app.db import SessionDep
from app.errors import Invalid
from app.nominations import suggestions
from app.nominations.schemas import (
    AcceptedRead,
    AcceptSuggestions,
    PersonRead,
    ReasonRead,
    SuggestionPage,
    SuggestionQuery,
    SuggestionRead,
)
from app.org import service as org_service
from app.org.api import bearer
from app.org.schemas import problems

router = APIRouter(
    route_class=ApiRoute,
    prefix="/matrix/suggestions",
    tags=["matrix"],
    dependencies=[Depends(bearer)],
)
READ = [Depends(require_scopes("org:read"))]
WRITE = [Depends(require_scopes("org:write"))]


def _filter(
    session: Session,
    *,
    sources: list[suggestions.Source],
    supplier_external_id: str | None,
    department_external_id: str | None,
) -> suggestions.SuggestionFilter:
    supplier_ids = None
    if supplier_external_id is not None:
        supplier_ids = frozenset(
            {org_service.get_employee(session, external_id=supplier_external_id).id}
        )
    department_id = None
    if department_external_id is not None:
        department_id = org_service.get_department(session, external_id=department_external_id).id
    return suggestions.SuggestionFilter(
        sources=tuple(dict.fromkeys(sources)),
        supplier_ids=supplier_ids,
        department_id=department_id,
    )


def _person(p: suggestions.Person) -> PersonRead:
    return PersonRead(
        external_id=p.external_id,
        full_name=p.full_name,
        department_external_id=p.department_external_id,
        department_name=p.department_name,
    )


def by_source(found: list[suggestions.Suggestion]) -> dict[str, int]:
    counts = {source.value: 0 for source in suggestions.ALL_SOURCES}
    for s in found:
        for source in {r.source for r in s.reasons}:
            counts[source.value] += 1
    return counts


@router.post(
    "",
    dependencies=READ,
    summary="Suggest matrix links",
    description="Proposes supplier → customer links that are not in the matrix yet, each "
    "with every reason that produced it (scope `org:read`; nothing is written). "
    "Suggestions are computed from the data each time, ordered by supplier, then "
    "customer, and paged with `offset`/`limit`. Inactive employees, self-pairs and "
    "pairs already in the matrix are never suggested. Accept them with "
    "`POST /matrix/suggestions/accept`.",
    responses=problems(404, 422),
)
def suggest(body: SuggestionQuery, session: SessionDep) -> SuggestionPage:
    flt = _filter(
        session,
        sources=body.sources,
        supplier_external_id=body.supplier_external_id,
        department_external_id=body.department_external_id,
    )
    found = suggestions.suggest(session, flt)
    shown = found[body.offset : body.offset + body.limit]
    names = suggestions.people(session, {i for s in shown for i in (s.supplier_id, s.customer_id)})
    texts = suggestions.describe(session, shown, names)
    return SuggestionPage(
        items=[
            SuggestionRead(
                supplier=_person(names[s.supplier_id]),
                customer=_person(names[s.customer_id]),
                reasons=[
                    ReasonRead(source=t.source, text=t.text)
                    for t in texts[(s.supplier_id, s.customer_id)]
                ],
            )
            for s in shown
        ],
        total=len(found),
        offset=body.offset,
        limit=body.limit,
        by_source=by_source(found),
    )


@router.post(
    "/accept",
    dependencies=WRITE,
    summary="Accept matrix suggestions",
    description="Writes the chosen suggestions as ordinary matrix links, audited (scope "
    "`org:write`). Send `links` (pairs by external id) to accept some, or `all: true` "
    "(with the same `sources` and filters as the listing) to accept every current "
    "suggestion. All or nothing: a pair that is not (or no longer) suggested by "
    "`sources` rejects the request with 422; pairs already in the matrix count as "
    "`unchanged`, so sending the same request twice changes nothing.",
    responses=problems(404, 422),
)
def accept(body: AcceptSuggestions, session: SessionDep, key: ApiKeyDep) -> AcceptedRead:
    sources = tuple(dict.fromkeys(body.sources))
    if body.links is not None:
        known = org_service.employee_ids_by_external_id(
            session,
            external_ids={
                ext
                for link in body.links
                for ext in (link.supplier_external_id, link.customer_external_id)
            },
        )
        unknown = sorted(
            {
                ext
                for link in body.links
                for ext in (link.supplier_external_id, link.customer_external_id)
                if ext not in known
            }
        )
        if unknown:
            raise Invalid(
                f"Unknown employees: {', '.join(repr(u[:100]) for u in unknown[:10])}",
                errors=[
                    {"field": "links", "message": f"unknown employee {u[:100]!r}"}
                    for u in unknown[:100]
                ],
            )
        result = suggestions.accept(
            session,
            pairs=[
                (known[link.supplier_external_id][0], known[link.customer_external_id][0])
                for link in body.links
            ],
            sources=sources,
        )
    else:
        result = suggestions.accept_all(
            session,
            _filter(
                session,
                sources=body.sources,
                supplier_external_id=body.supplier_external_id,
                department_external_id=body.department_external_id,
            ),
        )
    if result.added:
        auth_service.audit_api(
            session,
            key,
            action="accept suggestions",
            entity="matrix",
            detail=suggestions.audit_detail(result),
        )
    return AcceptedRead(
        added=len(result.added), unchanged=result.unchanged, by_source=result.by_source
    )
