"""API for the quarterly rhythm and the automatic launch of a cycle."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from app.auth import service as auth_service
from app.auth.deps import ApiKeyDep, ApiRoute, SettingsDep, require_scopes
from app.cycles import rhythm
from app.db import SessionDep
from app.errors import problems
from app.fields import RowId, UtcDatetime

router = APIRouter(route_class=ApiRoute, tags=["cycles"])


class NextStepRead(BaseModel):
    action: str = Field(
        description="`start round` (a draft's confirmation round starts on its own), `launch` "
        "(a cycle opens on its own) or `create`."
    )
    cycle_name: str
    when: UtcDatetime
    opens_at: UtcDatetime
    cycle_id: int | None = None
    round_starts_at: UtcDatetime | None = Field(
        default=None, description="When the rhythm starts (or started) the confirmation round."
    )
    nominating: bool = Field(default=False, description="The confirmation round is running.")
    customers: int | None = Field(
        default=None,
        description="Customers it would invite, as of `figures_at` (null until the worker "
        "has computed the preview).",
    )
    suppliers_short: int | None = Field(
        default=None, description="Suppliers with fewer than k + 2 raters who count."
    )
    short_of: int | None = Field(default=None, description="k + 2")
    figures_at: UtcDatetime | None = Field(
        default=None, description="When the worker computed these figures (at most hourly)."
    )


class RhythmRead(rhythm.RhythmFields):
    updated_at: UtcDatetime | None = None
    updated_by: str = ""
    next_step: NextStepRead | None = None


class AutoLaunch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_launch: bool = Field(description="False pauses the automatic launch of this draft.")


def _read(session: SessionDep, settings: SettingsDep) -> RhythmRead:
    row = rhythm.get_rhythm(session)
    step = rhythm.next_step(session, settings=settings)
    return RhythmRead(
        **rhythm.RhythmFields.model_validate(row, from_attributes=True).model_dump(),
        updated_at=row.updated_at,
        updated_by=row.updated_by or "",
        next_step=NextStepRead(**step.__dict__) if step else None,
    )


@router.get(
    "/rhythm",
    response_model=RhythmRead,
    dependencies=[Depends(require_scopes("cycles:read"))],
    summary="Read the quarterly rhythm",
    description="The organisation's rhythm and what it will do next (off until saved).",
    responses=problems(),
)
def get_rhythm(session: SessionDep, settings: SettingsDep) -> RhythmRead:
    return _read(session, settings)


@router.put(
    "/rhythm",
    response_model=RhythmRead,
    dependencies=[Depends(require_scopes("cycles:write"))],
    summary="Set the quarterly rhythm",
    description="With `enabled`, the worker creates each quarter's cycle `prepare_days` before "
    "it opens (emailing HR to review the matrix), starts its confirmation round "
    "`nomination_days` before it opens (0: no round), launches it at its opening "
    "(`opens_days_before_quarter_end` before the quarter ends) unless paused, reminds on "
    "`reminder_days` (counted from the opening) and closes it after `open_days`.",
    responses=problems(422),
)
def put_rhythm(
    body: rhythm.RhythmFields, session: SessionDep, settings: SettingsDep, key: ApiKeyDep
) -> RhythmRead:
    rhythm.update_rhythm(session, fields=body, actor=auth_service.api_actor(key))
    auth_service.audit_api(
        session,
        key,
        action="update",
        entity="rhythm",
        detail=body.model_dump_json(),
    )
    return _read(session, settings)


@router.put(
    "/cycles/{cycle_id}/auto-launch",
    response_model=AutoLaunch,
    dependencies=[Depends(require_scopes("cycles:write"))],
    summary="Pause or resume a cycle's automatic launch",
    description="Only a draft launches on its own (409 otherwise).",
    responses=problems(404, 409, 422),
)
def put_auto_launch(
    cycle_id: RowId, body: AutoLaunch, session: SessionDep, key: ApiKeyDep
) -> AutoLaunch:
    cycle = rhythm.set_auto_launch(session, cycle_id=cycle_id, on=body.auto_launch)
    auth_service.audit_api(
        session,
        key,
        action="resume automatic launch" if body.auto_launch else "pause automatic launch",
        entity="cycle",
        entity_id=cycle.id,
        detail=cycle.name,
    )
    return AutoLaunch(auto_launch=cycle.auto_launch)
