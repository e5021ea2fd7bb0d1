"""HR screens for the paper channel: the printable letters of an open cycle."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path, Request
from starlette.responses import Response

from app.auth import service as auth_service
from app.auth.deps import CsrfProtect, HrOnly, SettingsDep
from app.cycles import letters, paper
from app.cycles import service as cycles_service
from app.cycles.models import CycleState
from app.db import SessionDep
from app.errors import NotFound
from app.fields import RowId
from app.web import page, page_router

router = page_router(dependencies=[HrOnly])
DepartmentKey = Annotated[str, Path(max_length=20, pattern=r"^(none|[0-9]{1,18})$")]


@router.get("/cycles/{cycle_id}/letters")
def letters_page(request: Request, session: SessionDep, cycle_id: RowId) -> Response:
    """Departments with paper-channel customers, each with its letters to print."""
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    departments = (
        paper.paper_departments(session, cycle_id=cycle.id)
        if cycle.state == CycleState.open
        else []
    )
    return page(
        request,
        "hr/cycles/letters.html",
        {
            "cycle": cycle,
            "departments": departments,
            "code_url": letters.code_entry_url(request.app.state.settings.base_url),
        },
    )


@router.post("/cycles/{cycle_id}/letters/{department}", dependencies=[CsrfProtect])
def print_letters(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    cycle_id: RowId,
    department: DepartmentKey,
) -> Response:
    """One PDF, a page per person; every earlier letter of these people stops working."""
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    issued = paper.issue_letters(
        session, cycle=cycle, department_key=department, secret_key=settings.secret_key
    )
    if not issued:
        raise NotFound("This department has nobody on the paper channel in this cycle")
    pdf = letters.render_letters(
        issued,
        cycle_name=cycle.name,
        closes_at=cycle.closes_at,
        base_url=settings.base_url,
        tz=settings.org_time_zone,
    )
    # Who printed whose letters, and when: the codes pass through HR's hands.
    auth_service.record_audit(
        session,
        actor=request.state.principal.email,
        action="print letters",
        entity="cycle",
        entity_id=cycle.id,
        detail=f"{cycle.name}: {issued[0].department or '(no department)'}, "
        f"{len(issued)} letters (earlier ones replaced)",
    )
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", cycle.name)
    filename = f"peer360-{safe_name}-letters-{department}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )
