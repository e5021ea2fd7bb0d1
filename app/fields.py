"""Parameter and field types shared by every router and API contract.

Every integer id column is a 32-bit ``INTEGER``: a larger number in a URL would reach
PostgreSQL as an out-of-range parameter and fail there (a 500), so ids are bounded
where they enter, and the bound is in the OpenAPI document too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import AfterValidator

from app.errors import Invalid

INT32_MAX = 2_147_483_647

# A row id in a path (``/cycles/{cycle_id}``): out of range answers 422, never a 500.
RowId = Annotated[int, Path(ge=1, le=INT32_MAX, description="The record's id.")]
# The same as an optional query parameter (a filter).
RowIdQuery = Annotated[int | None, Query(ge=1, le=INT32_MAX)]


def _as_utc(value: datetime) -> datetime:
    # Both databases store naive UTC (see app.db.utcnow); the API says so explicitly,
    # so every value is a valid RFC 3339 ``date-time``.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# A datetime read from the database, sent with its UTC offset.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def _query_parameters(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_parameters(sub)
    return names


def known_query_parameters(
    *, left_to_others: frozenset[str] = frozenset()
) -> Callable[[Request], Awaitable[None]]:
    """A dependency refusing query parameters the route does not have (422), as bodies
    refuse unknown fields: ``?limt=10`` would otherwise quietly return the default page.
    ``left_to_others`` are names another dependency refuses with its own answer."""

    async def check(request: Request) -> None:
        route = request.scope.get("route")
        if not isinstance(route, APIRoute) or not request.query_params:
            return
        known = _query_parameters(route.dependant) | left_to_others
        unknown = [name for name in request.query_params if name not in known]
        if unknown:
            shown = ", ".join(repr(name[:40]) for name in unknown[:5])
            raise Invalid(
                f"Unknown query parameter: {shown}.",
                errors=[
                    {"field": name[:100], "message": "this route has no such parameter"}
                    for name in unknown[:20]
                ],
            )

    return check
