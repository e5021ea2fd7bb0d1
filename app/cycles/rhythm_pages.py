"""HR screens for the quarterly rhythm, and pausing a cycle's automatic launch."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from pydantic import ValidationError
from starlette.responses import Response

from app.auth import service as auth_service
from app.auth.deps import CsrfProtect, HrOnly
from app.cycles import rhythm
from app.db import SessionDep
from app.fields import RowId
from app.web import page, page_router, see_other

router = page_router(dependencies=[HrOnly])
DayList = Annotated[str, Form(max_length=100)]


def _rhythm_page(
    request: Request, session: SessionDep, values: dict[str, object], errors: dict[str, str]
) -> Response:
    return page(
        request,
        "hr/cycles/rhythm.html",
        {
            "values": values,
            "errors": errors,
            "next_step": rhythm.next_step(session, settings=request.app.state.settings),
        },
        status_code=422 if errors else 200,
    )


def _field_of(loc: tuple[int | str, ...], message: str) -> str:
    """The form field an error belongs to; the rules across fields name their own."""
    if loc:
        return str(loc[0])
    return "nomination_days" if rhythm.NOMINATION_RULE in message else "reminder_days"


@router.get("/rhythm")
def rhythm_form(request: Request, session: SessionDep) -> Response:
    row = rhythm.get_rhythm(session)
    values = rhythm.RhythmFields.model_validate(row, from_attributes=True).model_dump()
    values["reminder_days"] = ", ".join(map(str, values["reminder_days"]))
    return _rhythm_page(request, session, values, {})


@router.post("/rhythm", dependencies=[CsrfProtect])
def rhythm_save(
    request: Request,
    session: SessionDep,
    opens_days_before_quarter_end: Annotated[str, Form(max_length=10)],
    open_days: Annotated[str, Form(max_length=10)],
    reminder_days: DayList,
    prepare_days: Annotated[str, Form(max_length=10)],
    enabled: Annotated[str, Form(max_length=10)] = "",
    nomination_days: Annotated[str, Form(max_length=10)] = "0",
) -> Response:
    values: dict[str, object] = {
        "enabled": bool(enabled),
        "opens_days_before_quarter_end": opens_days_before_quarter_end.strip(),
        "open_days": open_days.strip(),
        "reminder_days": reminder_days,
        "prepare_days": prepare_days.strip(),
        "nomination_days": nomination_days.strip() or "0",
    }
    days = [d.strip() for d in reminder_days.replace(";", ",").split(",") if d.strip()]
    try:
        fields = rhythm.RhythmFields.model_validate({**values, "reminder_days": days})
    except ValidationError as exc:
        errors = {
            _field_of(e["loc"], str(e["msg"])): str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors(include_url=False, include_input=False)
        }
        return _rhythm_page(request, session, values, errors)
    actor = request.state.principal.email
    rhythm.update_rhythm(session, fields=fields, actor=actor)
    auth_service.record_audit(
        session,
        actor=actor,
        action="update",
        entity="rhythm",
        detail=fields.model_dump_json(),
    )
    return see_other("/rhythm", notice="saved")


@router.post("/cycles/{cycle_id}/auto-launch", dependencies=[CsrfProtect])
def cycle_auto_launch(
    request: Request, session: SessionDep, cycle_id: RowId, on: Annotated[bool, Form()]
) -> Response:
    """Pause (or resume) a draft's automatic launch at its opening."""
    cycle = rhythm.set_auto_launch(session, cycle_id=cycle_id, on=on)
    auth_service.record_audit(
        session,
        actor=request.state.principal.email,
        action="resume automatic launch" if on else "pause automatic launch",
        entity="cycle",
        entity_id=cycle.id,
        detail=cycle.name,
    )
    return see_other(f"/cycles/{cycle.id}", notice="saved")
