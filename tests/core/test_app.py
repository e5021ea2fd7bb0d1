"""The application shell: health, headers, errors, body limit, docs."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.org.models import Department
from tests.factories import make_department


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_security_headers_on_every_answer(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_unknown_api_path_is_problem_json(client: TestClient) -> None:
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 404


def test_oversized_body_is_refused_before_parsing(client: TestClient) -> None:
    r = client.post("/api/v1/import/employees", content=b"x" * (11 * 1024 * 1024))
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")


def test_openapi_documents_the_api(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    assert spec["info"]["title"] == "Peer360 API"
    assert client.get("/api/docs").status_code == 200


def test_rolled_back_session_isolation(db: Session) -> None:
    make_department(db, external_id="iso-1")
    assert db.scalar(select(Department).where(Department.external_id == "iso-1")) is not None
