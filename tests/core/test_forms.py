"""Every page form refuses fields it does not have and fields sent twice, with a page
that says which; nothing is saved."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import Headers
from starlette.formparsers import FormParser

from app.auth.models import ApiKey, Role
from app.web import read_form
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


def _form_cap(path: str) -> int:
    return 20_000 if path == "/rate" else 1000


def test_every_page_form_caps_its_fields(app: FastAPI, client: TestClient, db: Session) -> None:
    # Starlette caps the fields of multipart bodies only; a URL-encoded body of a few
    # MiB could carry hundreds of thousands of them.
    signed_in = sign_in(client, db, role=Role.admin)
    for path in _page_form_routes(app):
        cap = _form_cap(path)
        body = f"csrf_token={signed_in.csrf}&" + "&".join(f"f{i}=1" for i in range(cap))
        r = client.post(path, content=body, headers=URLENCODED, follow_redirects=False)
        assert r.status_code == 400, (path, r.status_code)
        assert r.headers["content-type"].startswith("text/html"), path
        assert f"more than {cap} fields" in r.text, path


_TRICKY_BODIES = [
    b"a=1&b=2",
    b"name=J%C3%BCrgen+M%C3%BCller&empty=&flag&=orphan",
    b"plus=a+b%2Bc&pct=100%25&amp=%26&eq=a%3Db=c",
    b"raw=\xc3\xa9t\xc3\xa9&latin=\xe9&bad=%ff%fe",
    b"twice=1&twice=2&&&trailing=",
    b"s12-c3=5&s12-nps=9&s12-comment=Tr%C3%A8s+bien%0D%0Amerci",
    b"",
]


_T = TypeVar("_T")


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run on a fresh loop in a thread of its own: the browser tests' Playwright keeps a
    loop running in the main thread for the whole session."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _posted(body: bytes) -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
    }
    return Request(scope, receive)


@pytest.mark.parametrize("body", _TRICKY_BODIES)
def test_url_encoded_forms_read_as_starlette_reads_them(body: bytes) -> None:
    async def both() -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
        ours = await read_form(_posted(body))

        async def stream() -> AsyncIterator[bytes]:
            yield body
            yield b""

        theirs = await FormParser(Headers(), stream()).parse()
        return list(ours.multi_items()), list(theirs.multi_items())

    ours, theirs = _run(both())
    assert ours == theirs


def test_the_form_is_parsed_once_per_request() -> None:
    async def run() -> bool:
        request = _posted(b"a=1")
        first = await read_form(request)
        # What Starlette, FastAPI's Form() parameters and the CSRF check read.
        return await request.form() is first

    assert _run(run())
