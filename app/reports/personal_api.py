"""API switch for the personal results emails of a cycle."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from app.auth import service as auth_service
from app.auth.deps import ApiKeyDep, ApiRoute, require_scopes
from app.db import SessionDep
from app.errors import problems
from app.fields import RowId, UtcDatetime
from app.reports import personal

router = APIRouter(route_class=ApiRoute, prefix="/cycles", tags=["cycles"])


class PersonalResultsSetting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    send: bool = Field(
        description="Email each supplier who reached k a private link to their own results "
        "after close."
    )


class PersonalResultsRead(PersonalResultsSetting):
    sent_at: UtcDatetime | None = Field(description="When the emails were queued, if they were.")


@router.put(
    "/{cycle_id}/personal-results",
    response_model=PersonalResultsRead,
    dependencies=[Depends(require_scopes("cycles:write"))],
    summary="Switch the personal results emails of a cycle",
    description="On by default. After close, each supplier whose results are shown (k raters "
    "who count or more) gets an email with a private link to their own results page; "
    "suppliers below k, leavers and people on the paper channel get none. 409 once the "
    "emails were sent.",
    responses=problems(404, 409, 422),
)
def put_personal_results(
    cycle_id: RowId, body: PersonalResultsSetting, session: SessionDep, key: ApiKeyDep
) -> PersonalResultsRead:
    cycle = personal.set_sending(session, cycle_id=cycle_id, send=body.send)
    auth_service.audit_api(
        session,
        key,
        action="personal results on" if body.send else "personal results off",
        entity="cycle",
        entity_id=cycle.id,
        detail=cycle.name,
    )
    return PersonalResultsRead(
        send=cycle.send_personal_results, sent_at=cycle.personal_results_sent_at
    )
