"""Cycles API (``/api/v1/cycles``): create, read, launch, remind, close (a job)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse

from app.auth import service as auth_service
from app.auth.deps import ApiKeyDep, ApiRoute, SettingsDep, require_scopes
from app.cycles import nomination, rater_load
from app.cycles import service as cycles_service
from app.cycles.models import CloseJob, CloseJobState, Cycle, CycleState, NominationLinksTo
from app.cycles.schemas import (
    CloseJobRead,
    CycleCreate,
    CycleDetail,
    CycleRead,
    DepartmentProgressRead,
    LaunchPreviewRead,
    ManagerApprovalRead,
    NominationCoverageRead,
    NominationListRead,
    NominationRoundStart,
    NominationRoundStarted,
    RaterLoadRead,
    RemindersQueued,
    ShortSupplierRead,
)
from app.db import SessionDep
from app.errors import PROBLEM_JSON
from app.fields import RowId

router = APIRouter(route_class=ApiRoute, prefix="/cycles", tags=["cycles"])

READ = [Depends(require_scopes("cycles:read"))]
WRITE = [Depends(require_scopes("cycles:write"))]


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            PROBLEM_JSON: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "field": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                }
            }
        },
    }


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _problem("No valid API key in `Authorization: Bearer`."),
    403: _problem("The API key lacks the required scope."),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _problem("No cycle with this id.")}


def _to_read(cycle: Cycle, counts: tuple[int, int]) -> CycleRead:
    invited, responded = counts
    fields = {name: getattr(cycle, name) for name in CycleRead.model_fields if hasattr(cycle, name)}
    return CycleRead.model_validate(
        {
            **fields,
            "invited": invited,
            "responded": responded,
            "response_rate": responded / invited if invited else 0.0,
        }
    )


def _read(session: Session, cycle: Cycle) -> CycleRead:
    return _to_read(cycle, cycles_service.response_counts(session, cycle_ids=[cycle.id])[cycle.id])


def _audit(session: Session, key: ApiKeyDep, action: str, cycle: Cycle, detail: str = "") -> None:
    auth_service.audit_api(
        session,
        key,
        action=action,
        entity="cycle",
        entity_id=cycle.id,
        detail=f"{cycle.name}{': ' + detail if detail else ''}",
    )


def _audit_state_change(
    session: Session, key: ApiKeyDep, action: str, cycle: Cycle, *, before: CycleState
) -> bool:
    """Audit a launch or close only when it moved the cycle on (repeating one is a no-op)."""
    changed = cycle.state != before
    if changed:
        _audit(session, key, action, cycle)
    return changed


@router.get(
    "",
    dependencies=READ,
    summary="List cycles",
    description="Every rating cycle, newest period first, with invited and responded counts.",
    responses=AUTH_ERRORS,
)
def list_cycles(session: SessionDep) -> list[CycleRead]:
    cycles = cycles_service.list_cycles(session)
    counts = cycles_service.response_counts(session, cycle_ids=[c.id for c in cycles])
    return [_to_read(cycle, counts[cycle.id]) for cycle in cycles]


@router.post(
    "",
    status_code=201,
    dependencies=WRITE,
    summary="Create a cycle",
    description=(
        'Create a **draft** cycle. Send `{"quarter": "2026Q4"}` to get the quarter\'s '
        "cycle named `2026-Q4`, covering the quarter, opening two weeks before it ends (or "
        "now, if later) and closing three weeks after opening; or give `name`, "
        "`period_start`, `period_end`, `opens_at` and `closes_at` yourself. The scale "
        "(default 1 to 10), the optional NPS and comment questions and the most suppliers "
        "one customer rates (`max_suppliers_per_customer`, default 12) are set per cycle. "
        "Nothing is sent until the cycle is launched."
    ),
    responses={
        **AUTH_ERRORS,
        409: _problem("A cycle with this name already exists."),
        422: _problem("A bad quarter, dates in the wrong order or a bad scale."),
    },
)
def create_cycle(body: CycleCreate, session: SessionDep, key: ApiKeyDep) -> CycleRead:
    if body.quarter is not None:
        cycle = cycles_service.create_quarter_cycle(
            session,
            quarter=body.quarter,
            scale_min=body.scale_min,
            scale_max=body.scale_max,
            ask_nps=body.ask_nps,
            ask_comment=body.ask_comment,
            max_suppliers_per_customer=body.max_suppliers_per_customer,
        )
    else:
        assert body.name and body.period_start and body.period_end
        assert body.opens_at and body.closes_at
        cycle = cycles_service.create_cycle(
            session,
            name=body.name,
            period_start=body.period_start,
            period_end=body.period_end,
            opens_at=body.opens_at,
            closes_at=body.closes_at,
            scale_min=body.scale_min,
            scale_max=body.scale_max,
            ask_nps=body.ask_nps,
            ask_comment=body.ask_comment,
            max_suppliers_per_customer=body.max_suppliers_per_customer,
        )
    _audit(session, key, "create", cycle)
    return _read(session, cycle)


@router.get(
    "/{cycle_id}",
    dependencies=READ,
    summary="Read a cycle and its progress",
    description=(
        "The cycle's state (`draft`, `nominating`, `open`, `closed`), invited and responded counts "
        "overall and per department (as the departments were at launch), and how many "
        "emails were undeliverable. Counts only: never who responded."
    ),
    responses={**AUTH_ERRORS, **NOT_FOUND},
)
def read_cycle(cycle_id: RowId, request: Request, session: SessionDep) -> CycleDetail:
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    progress = cycles_service.cycle_progress(
        session, cycle_id=cycle.id, min_invited=request.app.state.settings.anonymity_min_raters
    )
    base = _read(session, cycle).model_dump()
    return CycleDetail(
        **base,
        undeliverable=progress.undeliverable,
        departments=[
            DepartmentProgressRead(
                department_id=d.department_id,
                name=d.name,
                invited=d.invited,
                responded=d.responded,
                response_rate=d.response_rate,
            )
            for d in progress.departments
        ],
    )


@router.get(
    "/{cycle_id}/launch-preview",
    dependencies=READ,
    summary="Preview the rater load of a launch",
    description=(
        "What the rater-load governor would do if this cycle launched now: the "
        "distribution of questions per rater before and after the cycle's "
        "`max_suppliers_per_customer`, the expected minutes per rater, and the suppliers "
        "the cap leaves with fewer than k + 2 raters although the matrix has more. The "
        "subset is seeded per cycle, so the launch picks exactly what this shows (as "
        "long as the matrix does not change meanwhile)."
    ),
    responses={**AUTH_ERRORS, **NOT_FOUND},
)
def launch_preview(
    cycle_id: RowId, session: SessionDep, settings: SettingsDep
) -> LaunchPreviewRead:
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    preview = rater_load.launch_preview(session, cycle=cycle, k=settings.anonymity_min_raters)
    return LaunchPreviewRead(
        max_suppliers_per_customer=preview.cap,
        target_raters=preview.target,
        before=RaterLoadRead.model_validate(preview.before, from_attributes=True),
        after=RaterLoadRead.model_validate(preview.after, from_attributes=True),
        capped_customers=preview.capped_customers,
        dropped_pairs=preview.dropped_pairs,
        short_suppliers=[
            ShortSupplierRead.model_validate(s, from_attributes=True) for s in preview.short
        ],
        short_suppliers_total=preview.short_total,
    )


@router.post(
    "/{cycle_id}/launch",
    dependencies=WRITE,
    summary="Launch a cycle",
    description=(
        "Take the snapshot (active competencies with indicators and weights, departments, "
        "active employees and the matrix between them), create one private link per "
        "internal customer with at least one supplier and queue one invitation email "
        "each, all in one transaction. A customer with more suppliers than the cycle's "
        "`max_suppliers_per_customer` rates a seeded random subset (see "
        "`GET /cycles/{id}/launch-preview`). Launching an open or closed cycle changes nothing "
        "and returns it as it is."
    ),
    responses={
        **AUTH_ERRORS,
        **NOT_FOUND,
        422: _problem("The close date has passed, or there is nothing to rate."),
    },
)
def launch_cycle(
    cycle_id: RowId, session: SessionDep, settings: SettingsDep, key: ApiKeyDep
) -> CycleRead:
    before = cycles_service.get_cycle(session, cycle_id=cycle_id).state
    cycle = cycles_service.launch_cycle(session, cycle_id=cycle_id, settings=settings)
    if _audit_state_change(session, key, "launch", cycle, before=before):
        _audit(
            session,
            key,
            "launch coverage",
            cycle,
            cycles_service.launch_audit_detail(session, cycle=cycle, settings=settings),
        )
    return _read(session, cycle)


@router.post(
    "/{cycle_id}/reminders",
    dependencies=WRITE,
    summary="Send reminders now",
    description=(
        "Queue a reminder for every invited customer who has not submitted and has not "
        "had a reminder today. The reminder carries a fresh link; the invitation's link "
        "keeps working too. A reminder sent this way on or after a scheduled reminder "
        "date counts as that date's reminder, so nobody gets two the same day."
    ),
    responses={**AUTH_ERRORS, **NOT_FOUND, 409: _problem("The cycle is not open.")},
)
def send_reminders(
    cycle_id: RowId, session: SessionDep, settings: SettingsDep, key: ApiKeyDep
) -> RemindersQueued:
    queued = cycles_service.send_reminders(session, cycle_id=cycle_id, settings=settings)
    _audit(session, key, "remind", cycles_service.get_cycle(session, cycle_id=cycle_id))
    return RemindersQueued(queued=queued)


def close_job_read(job: CloseJob) -> CloseJobRead:
    fields = {name: getattr(job, name) for name in CloseJobRead.model_fields if name != "href"}
    return CloseJobRead.model_validate(
        {**fields, "href": f"/api/v1/cycles/{job.cycle_id}/close-jobs/{job.id}"}
    )


@router.post(
    "/{cycle_id}/close",
    dependencies=WRITE,
    status_code=202,
    response_model=CloseJobRead,
    summary="Close a cycle (as a background job)",
    description=(
        "Queue the close for the worker and answer at once with the job (`202 Accepted`, "
        "`Location` names it): every link ends, the sealed answers are released as "
        "ballots (a box per supplier, the ballots in random order inside) and every result "
        "is computed, in one transaction; "
        "afterwards the tables are vacuumed so no old row version survives. Poll the "
        "job until `state` is `done` (the results are then readable) or `failed` (the "
        "cycle is still open, nothing was changed, and it can be closed again). A close "
        "already queued or running is returned as it is; closing a closed cycle answers "
        "`200` with its finished job. Open cycles also close on their own at `closes_at`."
    ),
    responses={
        200: {"description": "The cycle was already closed: its finished close job."},
        **AUTH_ERRORS,
        **NOT_FOUND,
        409: _problem("The cycle was never launched."),
    },
)
def close_cycle(cycle_id: RowId, session: SessionDep, key: ApiKeyDep) -> JSONResponse:
    job, queued = cycles_service.request_close(
        session, cycle_id=cycle_id, requested_by=auth_service.api_actor(key)
    )
    if queued:
        cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
        _audit(session, key, "close", cycle, "queued")
    body = close_job_read(job)
    pending = job.state in (CloseJobState.queued, CloseJobState.running)
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202 if pending else 200,
        headers={"Location": body.href},
    )


@router.get(
    "/{cycle_id}/close-jobs/{job_id}",
    dependencies=READ,
    response_model=CloseJobRead,
    summary="Read a close job",
    description=(
        "The state of a cycle's close: `queued`, `running` (with `step` and `percent`), "
        "`done` (results are ready) or `failed` (with `error`; the cycle is still open)."
    ),
    responses={**AUTH_ERRORS, 404: _problem("No such cycle or close job.")},
)
def read_close_job(cycle_id: RowId, job_id: RowId, session: SessionDep) -> CloseJobRead:
    return close_job_read(cycles_service.get_close_job(session, cycle_id=cycle_id, job_id=job_id))


@router.post(
    "/{cycle_id}/nominations/start",
    dependencies=WRITE,
    summary="Start the confirmation round",
    description=(
        "Move a draft cycle to `nominating` and email the private links to the "
        "suppliers' customer lists, where colleagues are added from the directory, "
        "customers removed with a reason, and the list confirmed. `links_to` (optional "
        "body) says who gets each list's link: `supplier` (the default, see "
        "`NOMINATION_LINKS_TO`) or `line_manager` (only the manager's team link; a "
        "supplier without an active manager on email gets their own). Every line manager "
        "of a supplier gets one team link to see and approve their direct reports' lists "
        "(approving confirms a list; a later change withdraws it). Changes are "
        "proposals: the launch writes the confirmed lists' proposals to the matrix "
        "(audited); unconfirmed lists launch as they are, approved or not. People on the "
        "paper channel get no email. Launch with `POST /cycles/{id}/launch` as usual."
    ),
    responses={
        **AUTH_ERRORS,
        **NOT_FOUND,
        409: _problem("The cycle is not a draft."),
        422: _problem(
            "The close date has passed, the matrix has no supplier, or the body is invalid."
        ),
    },
)
def start_nominations(
    cycle_id: RowId,
    session: SessionDep,
    settings: SettingsDep,
    key: ApiKeyDep,
    body: NominationRoundStart | None = None,
) -> NominationRoundStarted:
    emailed = nomination.start_round(
        session, cycle_id=cycle_id, settings=settings, links_to=body.links_to if body else None
    )
    cycle = cycles_service.get_cycle(session, cycle_id=cycle_id)
    managers = nomination.team_links(session, cycle_id=cycle.id)
    links_to = cycle.nomination_links_to or NominationLinksTo.supplier
    detail = nomination.start_audit_detail(session, cycle=cycle, emailed=emailed)
    _audit(session, key, "start nominations", cycle, detail)
    return NominationRoundStarted(
        state=cycle.state, links_to=links_to, emailed=emailed, managers_emailed=managers
    )


def _list_read(row: nomination.ListCoverage) -> NominationListRead:
    return NominationListRead(
        supplier_external_id=row.external_id,
        full_name=row.full_name,
        confirmed_at=row.confirmed_at,
        customers=row.customers,
        added=row.added,
        removed=row.removed,
        link_to=row.link_to,
        line_manager_external_id=row.manager_external_id,
        approved_at=row.approved_at,
        approved_by_external_id=row.approved_by_external_id,
    )


@router.get(
    "/{cycle_id}/nominations",
    dependencies=READ,
    summary="Coverage of the confirmation round",
    description=(
        "Who confirmed their list and whose line manager approved it, the managers with "
        "lists still waiting for their approval, and the suppliers who would launch with "
        "fewer than k + 2 customers (counting the proposals of confirmed lists). `lists` "
        "holds every list, paged with `offset` and `limit` (at most 5,000). Empty lists "
        "for a cycle that never had a round."
    ),
    responses={**AUTH_ERRORS, **NOT_FOUND, 422: _problem("`offset` or `limit` out of range.")},
)
def nomination_coverage(
    cycle_id: RowId,
    session: SessionDep,
    settings: SettingsDep,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> NominationCoverageRead:
    found = nomination.coverage(session, cycle_id=cycle_id, k=settings.anonymity_min_raters)
    return NominationCoverageRead(
        state=found.cycle.state,
        links_to=found.cycle.nomination_links_to,
        suppliers=len(found.lists),
        confirmed=found.confirmed,
        approved=found.approved,
        unapproved=found.unapproved,
        short_of=found.short_of,
        confirmed_lists=[_list_read(r) for r in found.lists if r.confirmed_at is not None],
        short_suppliers=[_list_read(r) for r in found.short],
        managers_waiting=[
            ManagerApprovalRead(
                external_id=m.external_id,
                full_name=m.full_name,
                lists=m.lists,
                approved=m.approved,
                has_link=m.has_link,
            )
            for m in found.managers_waiting
        ],
        lists=[_list_read(r) for r in found.lists[offset : offset + limit]],
        offset=offset,
        limit=limit,
    )
