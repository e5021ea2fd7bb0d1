"""SCIM 2.0 service provider at /scim/v2 (RFC 7644), for Okta, Entra ID and the like.

Authenticated by an API key with the `scim` scope. Bodies and answers are
``application/scim+json``; errors are SCIM error documents (``app.errors`` renders
every error under /scim so). Left out of the OpenAPI document: SCIM describes itself
at /ServiceProviderConfig, /ResourceTypes and /Schemas.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import ValidationError
from scim2_models import (
    Context,
    ListResponse,
    ResourceType,
    ResponseParameters,
    SCIMException,
    SearchRequest,
)
from starlette.responses import JSONResponse, Response

from app.auth import service as auth_service
from app.auth.deps import ApiRoute, SettingsDep, require_scopes
from app.auth.models import ApiKey
from app.db import SessionDep
from app.errors import SCIM_JSON
from app.scim import service as scim_service
from app.scim.service import POLICY, PROVIDER, ScimProblem, UserResource

router = APIRouter(route_class=ApiRoute, prefix="/scim/v2", include_in_schema=False)
ScimKey = Annotated[ApiKey, Depends(require_scopes("scim"))]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=1000)]


def scim_response(
    body: dict[str, Any], *, status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, media_type=SCIM_JSON, headers=headers)


async def raw_body(request: Request) -> bytes:
    # Read here (async) so the routes stay sync defs in the threadpool.
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


def _json(raw: bytes) -> Any:
    """The request's JSON (sent as application/scim+json or application/json)."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ScimProblem("The body is not JSON", scim_type="invalidSyntax") from None


def _response_parameters(request: Request) -> ResponseParameters[Any] | None:
    """``attributes`` / ``excludedAttributes`` of the query (RFC 7644 §3.9)."""
    raw = {
        name: request.query_params[name]
        for name in ("attributes", "excludedAttributes")
        if request.query_params.get(name)
    }
    if not raw:
        return None
    try:
        return ResponseParameters[UserResource].model_validate(raw, scim_policy=POLICY)
    except (SCIMException, ValidationError) as exc:
        raise scim_service.problem_from(exc) from None


def _user_answer(
    found: scim_service.ScimEmployee,
    settings: Any,
    *,
    status_code: int = 200,
    request: Request | None = None,
) -> JSONResponse:
    user = scim_service.to_resource(found, base_url=settings.base_url)
    headers = {"ETag": user.meta.version} if user.meta and user.meta.version else {}
    if status_code == 201 and user.meta and user.meta.location:
        headers["Location"] = str(user.meta.location)
    body = user.model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE,
        response_parameters=_response_parameters(request) if request else None,
    )
    return scim_response(body, status_code=status_code, headers=headers)


def _parse_user(body: Any, context: Context) -> UserResource:
    try:
        return UserResource.model_validate(body, scim_ctx=context, scim_policy=POLICY)
    except (SCIMException, ValidationError) as exc:
        raise scim_service.problem_from(exc) from None


# --- discovery -----------------------------------------------------------------------------


@router.get("/ServiceProviderConfig")
def service_provider_config(_key: ScimKey) -> JSONResponse:
    config = scim_service.SERVICE_PROVIDER_CONFIG
    return scim_response(config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


def _list(resources: list[Any]) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(resources),
        "startIndex": 1,
        "itemsPerPage": len(resources),
        "Resources": [r.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE) for r in resources],
    }


@router.get("/ResourceTypes")
def resource_types(_key: ScimKey) -> JSONResponse:
    return scim_response(_list(list(PROVIDER.resource_types)))


@router.get("/ResourceTypes/{name}")
def resource_type(name: str, _key: ScimKey) -> JSONResponse:
    found: ResourceType | None = next(
        (r for r in PROVIDER.resource_types if (r.id or "").lower() == name.lower()), None
    )
    if found is None:
        raise ScimProblem(f"No resource type is named {name[:50]!r}", status=404)
    return scim_response(found.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


@router.get("/Schemas")
def schemas(_key: ScimKey) -> JSONResponse:
    return scim_response(_list(list(PROVIDER.schemas)))


@router.get("/Schemas/{schema_id}")
def schema(schema_id: str, _key: ScimKey) -> JSONResponse:
    found = next((s for s in PROVIDER.schemas if (s.id or "").lower() == schema_id.lower()), None)
    if found is None:
        raise ScimProblem(f"No schema has the id {schema_id[:100]!r}", status=404)
    return scim_response(found.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


# --- users -----------------------------------------------------------------------------------


@router.get("/Users")
def list_users(
    request: Request, session: SessionDep, settings: SettingsDep, _key: ScimKey
) -> JSONResponse:
    params = request.query_params
    raw: dict[str, Any] = {
        "filter": params.get("filter"),
        "attributes": params.get("attributes"),
        "excludedAttributes": params.get("excludedAttributes"),
        "startIndex": params.get("startIndex"),
        "count": params.get("count"),
    }
    if len(raw["filter"] or "") > 2000:
        raise ScimProblem("The filter is longer than 2000 characters", scim_type="invalidFilter")
    try:
        search = SearchRequest[UserResource].model_validate(
            {k: v for k, v in raw.items() if v is not None},
            scim_ctx=Context.SEARCH_REQUEST,
            scim_policy=POLICY,
        )
    except (SCIMException, ValidationError) as exc:
        problem = scim_service.problem_from(exc)
        if raw["filter"] and "filter" in problem.detail.lower():
            problem = ScimProblem(problem.detail, scim_type="invalidFilter")
        raise problem from None
    # RFC 7644 §3.4.2.4: a startIndex below 1 is read as 1; a count above our maximum is
    # cut to it, and a negative one read as 0.
    start_index = max(search.start_index or 1, 1)
    count = min(max(search.count if search.count is not None else 100, 0), scim_service.MAX_RESULTS)
    found, total = scim_service.search_users(
        session, scim_filter=search.filter, start_index=start_index, count=count
    )
    page = ListResponse[UserResource](
        total_results=total,
        start_index=start_index,
        items_per_page=len(found),
        resources=[scim_service.to_resource(f, base_url=settings.base_url) for f in found],
    )
    body = page.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=search)
    return scim_response(body)


@router.post("/Users")
def create_user(
    body: RawBody, session: SessionDep, settings: SettingsDep, key: ScimKey
) -> JSONResponse:
    user = _parse_user(_json(body), Context.RESOURCE_CREATION_REQUEST)
    found = scim_service.create_user(session, user=user, actor=auth_service.api_actor(key))
    return _user_answer(found, settings, status_code=201)


@router.get("/Users/{user_id}")
def get_user(
    user_id: str, request: Request, session: SessionDep, settings: SettingsDep, _key: ScimKey
) -> Response:
    found = scim_service.get_user(session, user_id=user_id)
    user = scim_service.to_resource(found, base_url=settings.base_url)
    version = user.meta.version if user.meta else None
    if version and version in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={"ETag": version})
    return _user_answer(found, settings, request=request)


@router.put("/Users/{user_id}")
def replace_user(
    user_id: str,
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    key: ScimKey,
    if_match: IfMatch = None,
) -> JSONResponse:
    found = scim_service.get_user(session, user_id=user_id)
    before = scim_service.to_resource(found, base_url=settings.base_url)
    scim_service.check_if_match(if_match, before)
    user = _parse_user(_json(body), Context.RESOURCE_REPLACEMENT_REQUEST)
    found = scim_service.replace_user(
        session, found=found, user=user, before=before, actor=auth_service.api_actor(key)
    )
    return _user_answer(found, settings)


@router.patch("/Users/{user_id}")
def patch_user(
    user_id: str,
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    key: ScimKey,
    if_match: IfMatch = None,
) -> JSONResponse:
    found = scim_service.get_user(session, user_id=user_id)
    scim_service.check_if_match(
        if_match, scim_service.to_resource(found, base_url=settings.base_url)
    )
    found = scim_service.patch_user(
        session,
        found=found,
        body=_json(body),
        base_url=settings.base_url,
        actor=auth_service.api_actor(key),
    )
    return _user_answer(found, settings)


@router.delete("/Users/{user_id}", status_code=204)
def delete_user(
    user_id: str,
    session: SessionDep,
    settings: SettingsDep,
    key: ScimKey,
    if_match: IfMatch = None,
) -> Response:
    found = scim_service.get_user(session, user_id=user_id)
    scim_service.check_if_match(
        if_match, scim_service.to_resource(found, base_url=settings.base_url)
    )
    scim_service.deactivate_user(session, found=found, actor=auth_service.api_actor(key))
    return Response(status_code=204)
