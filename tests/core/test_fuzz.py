"""Schema-driven fuzzing of the whole /api/v1 surface: no 5xx, and every answer as the
OpenAPI document describes it (status code, content type, body schema).

Schemathesis reads the app's own OpenAPI document and sends generated requests, valid
ones and deliberately invalid ones, with an HR key that has every scope. The seed is
fixed (``derandomize``) and the example count bounded, so a run is repeatable and fits
CI. It runs on both databases; PostgreSQL is the one whose integer columns overflow.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import BaseOpenAPISchema
from sqlalchemy.orm import Session

from tests.factories import auth_header, link, make_api_key, make_department, make_employee

schemathesis.experimental.OPEN_API_3_1.enable()

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
)
# Examples per operation (valid and invalid together): about a minute of CPU on
# PostgreSQL, whose 32-bit columns are the ones that overflow; a quick pass on SQLite.
POSTGRESQL_EXAMPLES = 40
SQLITE_EXAMPLES = 10


@schemathesis.serializer("text/csv")
class CsvSerializer:
    """Uploads are raw text; send whatever string was generated as the body."""

    def as_requests(self, context: Any, value: Any) -> dict[str, Any]:
        data = value if isinstance(value, bytes) else str(value).encode()
        return {"data": data}

    def as_werkzeug(self, context: Any, value: Any) -> dict[str, Any]:
        return self.as_requests(context, value)


@schemathesis.serializer("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
class XlsxSerializer(CsvSerializer):
    """Random bytes as a workbook: it must be refused cleanly, never crash."""


def _with_inclusive_twins(node: Any) -> Any:
    """Add ``minimum: x`` beside each ``exclusiveMinimum: x`` (and the same for maximum):
    the same constraint, but Schemathesis 3's negative mutations assume the OpenAPI 3.0
    pairing and fail with KeyError 'minimum' on a 3.1 ``exclusiveMinimum`` alone."""
    if isinstance(node, dict):
        out = {key: _with_inclusive_twins(value) for key, value in node.items()}
        for exclusive, inclusive in (
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ):
            if isinstance(out.get(exclusive), int | float) and inclusive not in out:
                out[inclusive] = out[exclusive]
        return out
    if isinstance(node, list):
        return [_with_inclusive_twins(value) for value in node]
    return node


@pytest.fixture
def api_schema(app: FastAPI, db: Session) -> BaseOpenAPISchema:
    # A little real data, so some generated ids and filters hit existing rows.
    dept = make_department(db, external_id="0")
    boss = make_employee(db, external_id="1", department=dept)
    peer = make_employee(db, external_id="2", department=dept, manager=boss)
    link(db, supplier=boss, customer=peer)
    db.commit()
    return schemathesis.from_dict(
        _with_inclusive_twins(app.openapi()),
        app=app,
        endpoint="^/api/v1/",
        data_generation_methods=[
            schemathesis.DataGenerationMethod.positive,
            schemathesis.DataGenerationMethod.negative,
        ],
    )


@pytest.fixture
def fuzz_headers(db: Session) -> dict[str, str]:
    headers = auth_header(make_api_key(db))  # every scope
    db.commit()
    return headers


schema = schemathesis.from_pytest_fixture("api_schema")


@pytest.fixture
def on_postgresql(db_kind: str) -> None:
    if db_kind != "postgresql":
        pytest.skip("the full run is on PostgreSQL; SQLite gets a shorter one")


@pytest.fixture
def on_sqlite(db_kind: str) -> None:
    if db_kind != "sqlite":
        pytest.skip("the short run is for SQLite")


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # a fixed seed: the same cases on every run
        suppress_health_check=list(HealthCheck),
    )


def _check(case: schemathesis.Case, headers: dict[str, str]) -> None:
    response = case.call(headers=headers)
    case.validate_response(response, checks=CHECKS)


@schema.parametrize()
@fuzz_settings(POSTGRESQL_EXAMPLES)
def test_api_matches_its_openapi_document(
    case: schemathesis.Case, fuzz_headers: dict[str, str], on_postgresql: None
) -> None:
    _check(case, fuzz_headers)


@schema.parametrize()
@fuzz_settings(SQLITE_EXAMPLES)
def test_api_matches_its_openapi_document_on_sqlite(
    case: schemathesis.Case, fuzz_headers: dict[str, str], on_sqlite: None
) -> None:
    _check(case, fuzz_headers)
