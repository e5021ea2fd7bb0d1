"""Erasing a person's data through the HRIS API (scope `org:write`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from app.auth import service as auth_service
from app.auth.deps import ApiKeyDep, ApiRoute, require_scopes
from app.db import SessionDep
from app.errors import problems
from app.org.schemas import ExternalId
from app.privacy import service as privacy_service

router = APIRouter(route_class=ApiRoute, tags=["employees"])


class ErasureRead(BaseModel):
    """What an erasure did."""

    pseudonym: str = Field(
        description="The external id the record now has; its email is `<pseudonym>@erased.invalid`."
    )
    results_deleted: int = Field(description="Result rows about the person deleted.")
    ballots_about_them_deleted: int = Field(description="Ballots rating the person deleted.")


@router.post(
    "/employees/{external_id}/erase",
    response_model=ErasureRead,
    dependencies=[Depends(require_scopes("org:write"))],
    summary="Erase an employee's personal data",
    description="The right to erasure (scope `org:write`). The employee's name, email and "
    "external id are replaced by a pseudonym everywhere (the record, cycle snapshots, "
    "their HR account, the audit log), their identity-provider data is deleted and they "
    "are deactivated. With `delete_results=true` their own results, the comments about "
    "them and the ballots rating them are deleted too; department and company figures "
    "stay (aggregates over at least k people). The anonymous ballots they gave as a "
    "rater carry nothing that leads to them, so they cannot be found and stay. The "
    "erasure itself is audited, under the pseudonym. Not undoable.",
    responses=problems(404, 422),
)
def erase_employee(
    external_id: Annotated[ExternalId, Path(description="The HRIS's id of the employee.")],
    session: SessionDep,
    key: ApiKeyDep,
    delete_results: Annotated[
        bool, Query(description="Also delete the results and ballots about them.")
    ] = False,
) -> ErasureRead:
    report = privacy_service.erase_employee(
        session,
        external_id=external_id,
        delete_results=delete_results,
        actor=auth_service.api_actor(key),
    )
    return ErasureRead(
        pseudonym=report.pseudonym,
        results_deleted=report.results_deleted,
        ballots_about_them_deleted=report.ballots_about_them_deleted,
    )
