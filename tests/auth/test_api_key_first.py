"""A caller without a valid API key learns nothing about a route's body: broken JSON
is answered 401, as a well-formed body would be, on every API route that takes one."""

from __future__ import annotations

import re
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.auth.deps import ApiRoute, api_key
from tests.factories import auth_header, make_api_key

BROKEN_JSON = b'{"name": "Sales",'


def _json_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path with ids filled in) of every API operation that takes a JSON body,
    from the API document."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path)))
    return found


def _send(
    client: TestClient, method: str, path: str, headers: dict[str, str], body: bytes = BROKEN_JSON
) -> httpx.Response:
    return client.request(
        method, path, content=body, headers={"Content-Type": "application/json", **headers}
    )


# What FastAPI cannot read as JSON: cut short, not UTF-8, nested past Python's limit.
UNREADABLE = {"cut short": BROKEN_JSON, "not UTF-8": b'{"name": "\xff"}', "too deep": b"[" * 5000}


def test_broken_json_is_refused_for_want_of_a_key_first(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    routes = _json_routes(app)
    assert len(routes) >= 10, routes  # the enumeration found the API, not an empty list
    good = auth_header(make_api_key(db))
    db.commit()
    for method, path in routes:
        for kind, body in UNREADABLE.items():
            for headers in ({}, {"Authorization": "Bearer p360_not-a-key"}):
                response = _send(client, method, path, headers, body)
                assert response.status_code == 401, (kind, method, path, response.text)
                assert "JSON" not in response.text
            # With a valid key the caller is told what is wrong with the body.
            response = _send(client, method, path, good, body)
            assert response.status_code == 422, (kind, method, path, response.text)
        # ... and the route did not run: nothing but the JSON is wrong with this request.
        response = _send(client, method, path, good)
        assert "not valid JSON" in response.json()["detail"], (method, path, response.text)


def test_a_key_without_the_scope_hears_403_before_the_body(client: TestClient, db: Session) -> None:
    reader = auth_header(make_api_key(db, "org:read"))
    db.commit()
    response = _send(client, "PUT", "/api/v1/departments/sales", reader)
    assert response.status_code == 403, response.text


def test_broken_json_is_described_in_words(client: TestClient, db: Session) -> None:
    good = auth_header(make_api_key(db))
    db.commit()
    response = _send(client, "POST", "/api/v1/cycles", good)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    (error,) = response.json()["errors"]
    assert error["field"] == "body"
    assert error["message"].startswith("not valid JSON at character 17")
    response = _send(client, "POST", "/api/v1/cycles", good, UNREADABLE["not UTF-8"])
    (error,) = response.json()["errors"]
    assert error == {"field": "body", "message": "not valid JSON at character 10 (not UTF-8)"}


# --- the route class alone (no database: also runs on the lowest FastAPI allowed) -------


class _Filters(BaseModel):
    """A body whose every field has a default: FastAPI reads a non-mapping as empty."""

    limit: int = 10


def _tiny_app(calls: list[int]) -> FastAPI:
    def key(authorization: Annotated[str | None, Header()] = None) -> None:
        if authorization != "Bearer good":
            raise HTTPException(401, "no key")

    router = APIRouter(route_class=ApiRoute)

    @router.post("/filters")
    def filters(body: _Filters) -> dict[str, int]:
        calls.append(body.limit)
        return {"limit": body.limit}

    @router.put("/names")
    def names(body: list[str]) -> int:
        calls.append(len(body))
        return len(body)

    application = FastAPI()
    application.include_router(router)
    application.dependency_overrides[api_key] = key
    return application


@pytest.mark.parametrize(("method", "path"), [("POST", "/filters"), ("PUT", "/names")])
def test_broken_json_runs_the_guards_and_never_the_route(method: str, path: str) -> None:
    calls: list[int] = []
    client = TestClient(_tiny_app(calls))
    json_type = {"Content-Type": "application/json"}
    refused = client.request(method, path, content=BROKEN_JSON, headers=json_type)
    assert refused.status_code == 401
    told = client.request(
        method, path, content=BROKEN_JSON, headers={**json_type, "Authorization": "Bearer good"}
    )
    assert told.status_code == 422
    (error,) = told.json()["detail"]
    assert error["type"] == "json_invalid"
    assert error["loc"] == ["body", len(BROKEN_JSON)]
    assert calls == []
    body = {"limit": 3} if path == "/filters" else ["a", "b", "c"]
    ok = client.request(method, path, json=body, headers={"Authorization": "Bearer good"})
    assert ok.status_code == 200, ok.text
    assert calls == [3]
