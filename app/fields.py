"""Parameter and field types shared by every router and API contract.

Every integer id column is a 32-bit ``INTEGER``: a larger number in a URL would reach
PostgreSQL as an out-of-range parameter and fail there (a 500), so ids are bounded
where they enter, and the bound is in the OpenAPI document too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator

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
