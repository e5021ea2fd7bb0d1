"""No 5xx from input: ids beyond the columns' range, unexpected errors answered and logged
with a request id on a connection that stays open, the error contract in OpenAPI."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.errors import PROBLEM_JSON
from app.fields import INT32_MAX
from tests.auth.helpers import sign_in
from tests.conftest import LiveServer, app_routes
from tests.factories import auth_header, make_api_key, make_employee
from tests.reports.factories import build_three_levels

# Past int32 (the columns), past int64 (what a driver can bind), and below the range.
OUT_OF_RANGE = (INT32_MAX + 1, 2**63, -1, 0)
INT_PARAM = re.compile(r"\{(\w+_id)\}")


def _id_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route, API or page, with an integer id in its path."""
    found = []
    for route in app_routes(app):
        if route.path is None or not INT_PARAM.search(route.path):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found.append((method, route.path))
    return found


def test_every_integer_id_in_a_path_is_bounded(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    """Every route, API and page, answers 404 or 422 for an id no column can hold, as
    the most privileged caller, whose request gets furthest."""
    routes = _id_routes(app)
    assert len(routes) >= 20, routes  # cycles, matrix, results, admin... all of them
    signed_in = sign_in(client, db, role=Role.admin)
    headers = {**auth_header(make_api_key(db)), "X-CSRF-Token": signed_in.csrf}
    db.commit()
    for method, path in routes:
        for number in OUT_OF_RANGE:
            url = INT_PARAM.sub(str(number), path)
            r = client.request(method, url, headers=headers, follow_redirects=False)
            assert r.status_code in (404, 422), (method, url, r.status_code, r.text[:200])
            expected = PROBLEM_JSON if path.startswith("/api") else "text/html"
            if path.startswith("/scim/"):
                expected = "application/scim+json"  # SCIM clients read SCIM errors
            assert r.headers["content-type"].startswith(expected), (method, url)


def test_page_filters_beyond_the_range_are_ignored(client: TestClient, db: Session) -> None:
    sign_in(client, db, role=Role.hr)
    for url in (
        f"/org/employees?department={2**63}",
        f"/org/employees?department={INT32_MAX + 1}&page={2**70}",
    ):
        assert client.get(url).status_code == 200, url


@pytest.fixture
def failing_app(app: FastAPI) -> FastAPI:
    @app.get("/api/v1/test-boom", include_in_schema=False)
    def api_boom() -> None:
        raise RuntimeError("boom")

    @app.get("/test-boom")
    def page_boom() -> None:
        raise RuntimeError("boom")

    return app


def test_unexpected_error_names_its_request_id(
    failing_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), TestClient(failing_app) as c:
        api = c.get("/api/v1/test-boom")
        page = c.get("/test-boom")
    assert api.status_code == 500
    assert api.headers["content-type"].startswith(PROBLEM_JSON)
    rid = api.headers["x-request-id"]
    assert api.json()["request_id"] == rid
    assert "boom" not in api.text  # the exception's text is not sent
    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-request-id"] in page.text
    errors = [r for r in caplog.records if r.name == "app.main" and r.levelno == logging.ERROR]
    assert any(rid in r.getMessage() and r.exc_info for r in errors)
    access = [r.getMessage() for r in caplog.records if r.name == "app.access"]
    assert any("/api/v1/test-boom" in line and " 500 " in line and rid in line for line in access)


def test_request_id_from_the_proxy_is_kept_and_junk_replaced(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "nginx-0123abcd"}).headers[
        "x-request-id"
    ] == ("nginx-0123abcd")
    replaced = client.get("/healthz", headers={"X-Request-ID": "bad id\twith junk"})
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])


def test_a_500_keeps_the_connection_alive(live_app: FastAPI, live_server: LiveServer) -> None:
    """A real uvicorn: the connection that got the 500 serves the next request."""

    @live_app.get("/api/v1/test-boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("boom")

    @live_app.get("/test-peer", include_in_schema=False)
    def peer(request: Request) -> dict[str, int]:
        assert request.client is not None
        return {"port": request.client.port}

    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        before = http.get("/test-peer").json()["port"]
        assert http.get("/api/v1/test-boom").status_code == 500
        after = http.get("/test-peer")
    assert after.status_code == 200
    assert after.json()["port"] == before  # same TCP connection: it was not reset


def test_oversized_page_post_gets_the_page(client: TestClient) -> None:
    body = b"s1-c1=5&" * (11 * 1024 * 1024 // 8 + 1)
    declared = client.post(
        "/rate", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert declared.status_code == 413
    assert declared.headers["content-type"].startswith("text/html")

    def chunks() -> object:  # no Content-Length: counted while it streams
        for _ in range(12):
            yield b"x" * (1024 * 1024)

    streamed = client.post(
        "/rate", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert streamed.status_code == 413
    assert streamed.headers["content-type"].startswith("text/html")


def test_validation_errors_are_problem_documents(client: TestClient, db: Session) -> None:
    headers = auth_header(make_api_key(db))
    r = client.get("/api/v1/employees?limit=0", headers=headers)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    body = r.json()
    assert body["status"] == 422 and body["errors"][0]["field"] == "limit"


def test_openapi_documents_errors_as_sent(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "503" in responses, (method, path)
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    assert list(response["content"]) == [PROBLEM_JSON], (method, path, code)
    results = spec["paths"]["/api/v1/cycles/{cycle_id}/results/company"]["get"]["responses"]
    assert {"404", "409", "422"} <= set(results)
    cycle_id = spec["paths"]["/api/v1/cycles/{cycle_id}"]["get"]["parameters"][0]["schema"]
    assert cycle_id["maximum"] == INT32_MAX


def test_api_docs_work_offline(client: TestClient) -> None:
    for page, asset_names in (
        ("/api/docs", ("swagger-ui-bundle.js", "swagger-ui.css")),
        ("/api/redoc", ("redoc.standalone.js",)),
    ):
        html = client.get(page)
        assert html.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets and all(a.startswith("/") for a in assets), assets  # nothing remote
        for name in asset_names:
            url = next(a for a in assets if a.endswith(name))
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url


def test_selectors_that_look_like_ids_never_overflow(client: TestClient, db: Session) -> None:
    """``department`` takes an id or an external id: digits past int32, or digits that
    are not ASCII, are just an unknown department (404)."""
    cycle = build_three_levels(db)["cycle"]
    headers = auth_header(make_api_key(db))
    db.commit()
    base = f"/api/v1/cycles/{cycle.id}"
    for selector in ("99999999999", str(INT32_MAX + 1), "²", "١٢٣٤٥٦٧٨٩٠١"):
        for url in (
            f"{base}/results/employees?department={selector}",
            f"{base}/charts/trend-department.png?department={selector}",
        ):
            r = client.get(url, headers=headers)
            assert r.status_code == 404, (url, r.status_code, r.text[:200])


def test_page_forms_with_huge_numbers_answer_422(client: TestClient, db: Session) -> None:
    signed_in = sign_in(client, db, role=Role.hr)
    huge = str(2**63)
    employee = make_employee(db)
    db.commit()
    posts = {
        "/cycles/new": {
            "name": "Huge",
            "period_start": "2031-01-01",
            "period_end": "2031-03-31",
            "opens_at": "2031-03-20 09:00",
            "closes_at": "2031-04-10 18:00",
            "scale_min": huge,
            "scale_max": huge,
        },
        "/org/competencies/new": {"code": "huge", "name": "Huge", "display_order": huge},
        f"/matrix/suppliers/{employee.id}/customers": {"customer_id": huge},
    }
    for url, data in posts.items():
        r = client.post(url, data={"csrf_token": signed_in.csrf, **data})
        assert r.status_code in (404, 422), (url, r.status_code, r.text[:300])
