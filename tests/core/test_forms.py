"""Every page form refuses fields it does not have and fields sent twice, with a page
that says which; nothing is saved."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import ApiKey, Role
from tests.auth.helpers import sign_in
from tests.conftest import app_routes

URLENCODED = {"Content-Type": "application/x-www-form-urlencoded"}


def _page_form_routes(app: FastAPI) -> list[str]:
    paths = []
    for route in app_routes(app):
        # SCIM (/scim) takes JSON bodies, like the API.
        path = route.path or ""
        if "POST" in (route.methods or ()) and path and not path.startswith(("/api", "/scim")):
            paths.append(re.sub(r"\{[^}]+\}", "1", route.path))
    return sorted(set(paths))


def test_every_page_form_refuses_unknown_and_repeated_fields(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    signed_in = sign_in(client, db, role=Role.admin)
    paths = _page_form_routes(app)
    assert {"/login", "/rate", "/admin/api-keys", "/matrix/import"} <= set(paths)
    assert len(paths) >= 20
    csrf = f"csrf_token={signed_in.csrf}"
    for path in paths:
        unknown = client.post(
            path, content=f"{csrf}&surprise=1", headers=URLENCODED, follow_redirects=False
        )
        assert unknown.status_code == 400, (path, unknown.status_code)
        assert unknown.headers["content-type"].startswith("text/html")
        assert "surprise" in unknown.text and "does not have" in unknown.text, path
        twice = client.post(
            path, content=f"{csrf}&{csrf}", headers=URLENCODED, follow_redirects=False
        )
        assert twice.status_code == 400, (path, twice.status_code)
        assert "more than once" in twice.text, path


def test_rating_form_takes_its_pattern_fields_only(client: TestClient) -> None:
    # The service judges s<supplier>-c<competency> names; anything else stops here.
    for body, expected in (
        ("form_token=x&s12-c3=5&s12-nps=9&s12-comment=ok", "rating page"),
        ("form_token=x&s12-c3=5&redirect=http://evil", "does not have"),
        ("form_token=x&s12-c3=5&s12-c3=1", "more than once"),
    ):
        r = client.post("/rate", content=body, headers=URLENCODED)
        if expected == "rating page":
            assert r.status_code == 404  # no rating cookie: the invalid-link page
        else:
            assert r.status_code == 400 and expected in r.text, body


def test_repeatable_fields_stay_repeatable(client: TestClient, db: Session) -> None:
    signed_in = sign_in(client, db, role=Role.admin)
    before = db.scalar(select(func.count()).select_from(ApiKey))
    r = client.post(
        "/admin/api-keys",
        data={"csrf_token": signed_in.csrf, "name": "hris", "scopes": ["org:read", "org:write"]},
    )
    assert r.status_code == 200, r.text[:300]
    assert db.scalar(select(func.count()).select_from(ApiKey)) == before + 1
