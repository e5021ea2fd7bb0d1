"""SCIM 2.0 at /scim/v2: the conversations Okta and Entra ID hold with us, and the rules.

Requests are shaped as each provider sends them (their documented payloads: Okta's
path-less PATCH and PUT updates, Entra ID's capitalised ops, string booleans, bare
manager ids and `emails[type eq "work"].value` paths). Every answer is validated with
scim2-models in the response context, as a SCIM client would read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from scim2_models import (
    Context,
    EnterpriseUser,
    Error,
    ListResponse,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    User,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry
from app.matrix.models import MatrixLink
from app.org.models import Department, Employee
from app.scim.models import ScimUser
from tests.factories import auth_header, link, make_api_key, make_department, make_employee

SCIM = "/scim/v2"
UserResource = User[EnterpriseUser]
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


def scim_headers(db: Session, *scopes: str) -> dict[str, str]:
    h = auth_header(make_api_key(db, *(scopes or ("scim",))))
    db.commit()
    return {**h, "Content-Type": "application/scim+json"}


def patch_ops(*operations: dict[str, Any]) -> dict[str, Any]:
    """A PatchOp message body."""
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


@dataclass
class Scim:
    """The provider's side of the conversation: /scim/v2/Users with a scim key."""

    client: TestClient
    headers: dict[str, str]

    def search(self, **params: Any) -> Response:
        return self.client.get(f"{SCIM}/Users", params=params, headers=self.headers)

    def get(
        self, user_id: object, *, headers: dict[str, str] | None = None, **params: Any
    ) -> Response:
        return self.client.get(
            f"{SCIM}/Users/{user_id}", params=params, headers={**self.headers, **(headers or {})}
        )

    def create(self, body: dict[str, Any]) -> Response:
        return self.client.post(f"{SCIM}/Users", headers=self.headers, json=body)

    def replace(self, user_id: object, body: dict[str, Any]) -> Response:
        return self.client.put(f"{SCIM}/Users/{user_id}", headers=self.headers, json=body)

    def patch(
        self, user_id: object, *operations: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Response:
        return self.client.patch(
            f"{SCIM}/Users/{user_id}",
            headers={**self.headers, **(headers or {})},
            json=patch_ops(*operations),
        )


@pytest.fixture
def scim(client: TestClient, db: Session) -> Scim:
    return Scim(client=client, headers=scim_headers(db))


def user_of(response: Response, status: int = 200) -> UserResource:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    user = UserResource.model_validate(response.json(), scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    assert user.meta is not None and response.headers["etag"] == user.meta.version
    return user


def list_of(response: Response) -> ListResponse[UserResource]:
    assert response.status_code == 200, response.text
    return ListResponse[UserResource].model_validate(
        response.json(), scim_ctx=Context.SEARCH_RESPONSE
    )


def error_of(response: Response, status: int, scim_type: str | None = None) -> Error:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    error = Error.model_validate(response.json())
    assert error.status == status
    assert error.scim_type == scim_type
    return error


def audit_actions(db: Session) -> list[str]:
    return list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


# --- Okta ------------------------------------------------------------------------------------


def test_okta_conversation(scim: Scim, db: Session) -> None:
    # Okta first checks whether the person exists.
    found = list_of(scim.search(filter='userName eq "ana@example.com"'))
    assert found.total_results == 0 and not found.resources

    created = user_of(
        scim.create(
            {
                "schemas": [CORE],
                "userName": "Ana@example.com",
                "name": {"givenName": "Ana", "familyName": "Silva"},
                "emails": [{"primary": True, "value": "ana@example.com", "type": "work"}],
                "displayName": "Ana Silva",
                "locale": "en-US",
                "externalId": "00u1abcd",
                "groups": [],
                "password": "1mSecret!",
                "active": True,
            }
        ),
        201,
    )
    assert created.user_name == "ana@example.com"
    assert created.display_name == "Ana Silva"
    assert created.external_id == "00u1abcd"
    employee = db.get(Employee, int(created.id or 0))
    assert employee is not None and employee.active and employee.full_name == "Ana Silva"
    assert employee.email == "ana@example.com" and employee.language == "en-us"

    found = list_of(scim.search(filter='userName eq "ANA@example.com"'))
    assert found.total_results == 1 and found.resources[0].id == created.id

    # Okta's profile push: PUT the whole user.
    replaced = user_of(
        scim.replace(
            created.id,
            {
                "schemas": [CORE, ENTERPRISE],
                "id": created.id,
                "userName": "ana@example.com",
                "name": {"givenName": "Ana", "familyName": "Costa"},
                "emails": [{"primary": True, "value": "ana.costa@example.com", "type": "work"}],
                "active": True,
                ENTERPRISE: {"employeeNumber": "E-77", "department": "Finance"},
            },
        )
    )
    assert replaced.display_name == "Ana Costa"
    assert replaced.emails and replaced.emails[0].value == "ana.costa@example.com"
    db.refresh(employee)
    assert employee.external_id == "E-77" and employee.department is not None
    assert employee.department.name == "Finance"

    # Okta's PATCH replaces several attributes in one path-less operation.
    patched = user_of(
        scim.patch(
            created.id,
            {
                "op": "replace",
                "value": {
                    "displayName": "Ana Costa-Silva",
                    "preferredLanguage": "ru",
                    "name": {"givenName": "Anna"},
                },
            },
        )
    )
    assert patched.display_name == "Ana Costa-Silva"
    assert patched.preferred_language == "ru"
    assert patched.name is not None and patched.name.given_name == "Anna"

    # Deactivation: active false, the employee stays.
    deactivated = user_of(scim.patch(created.id, {"op": "replace", "value": {"active": False}}))
    assert deactivated.active is False
    db.refresh(employee)
    assert employee.active is False
    assert audit_actions(db) == [
        "scim create employee",
        "scim create department",
        "scim update employee",
        "scim update employee",
        "scim deactivate employee",
    ]


# --- Entra ID ---------------------------------------------------------------------------------


def test_entra_id_conversation(scim: Scim, db: Session) -> None:
    boss = make_employee(db, full_name="Bo Boss", email="bo@example.com")
    sales = make_department(db, external_id="SALES", name="Sales")
    db.commit()
    # Entra's "test connection" asks for a user that cannot exist.
    probe = list_of(scim.search(filter='userName eq "0f7c9a4e-1b9c-4f39-8f69-7ad9d1e6a0d2"'))
    assert probe.total_results == 0

    created = user_of(
        scim.create(
            {
                "schemas": [CORE, ENTERPRISE],
                "externalId": "8e1c52f5-3b51-4d68-9f4e-d4b2f1c5c001",
                "userName": "Kim.Lee@contoso.com",
                "active": True,
                "displayName": "Kim Lee",
                "emails": [{"primary": True, "type": "work", "value": "Kim.Lee@contoso.com"}],
                "name": {"formatted": "Kim Lee", "familyName": "Lee", "givenName": "Kim"},
                "preferredLanguage": "en-US",
                ENTERPRISE: {"employeeNumber": "701984", "department": "SALES"},
            }
        ),
        201,
    )
    employee = db.get(Employee, int(created.id or 0))
    assert employee is not None
    assert employee.external_id == "701984" and employee.department_id == sales.id

    filtered = list_of(
        scim.search(filter='userName eq "kim.lee@contoso.com"', excludedAttributes="name")
    )
    assert filtered.total_results == 1
    assert filtered.resources[0].name is None and filtered.resources[0].user_name

    patched = user_of(
        scim.patch(
            created.id,
            {"op": "Replace", "path": "displayName", "value": "Kim Lee-Park"},
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": "kim.park@contoso.com",
            },
            {"op": "Add", "path": "name.familyName", "value": "Lee-Park"},
            {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": str(boss.id)},
            {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Marketing"},
        )
    )
    assert patched.display_name == "Kim Lee-Park"
    assert patched.emails and patched.emails[0].value == "kim.park@contoso.com"
    enterprise = patched[EnterpriseUser]
    assert enterprise is not None and enterprise.manager is not None
    assert enterprise.manager.value == str(boss.id) and enterprise.department == "Marketing"
    db.refresh(employee)
    assert employee.manager_id == boss.id and employee.email == "kim.park@contoso.com"
    assert db.scalar(select(Department.external_id).where(Department.name == "Marketing"))

    # Entra's soft delete: active as the string "False".
    supplier = make_employee(db)
    link(db, supplier=supplier, customer=employee)
    db.commit()
    deactivated = user_of(
        scim.patch(created.id, {"op": "Replace", "path": "active", "value": "False"})
    )
    assert deactivated.active is False
    assert db.scalar(select(MatrixLink).where(MatrixLink.customer_id == employee.id)) is None
    # And the hard delete deactivates too (never deletes); the user is still readable.
    assert scim.client.delete(f"{SCIM}/Users/{created.id}", headers=scim.headers).status_code == 204
    assert user_of(scim.get(created.id)).active is False
    assert db.get(Employee, employee.id) is not None
    actor = db.scalar(select(AuditEntry.actor).where(AuditEntry.entity == "employee"))
    assert actor is not None and actor.startswith("api-key:")


# --- reading ---------------------------------------------------------------------------------


def test_filters_paging_and_attributes(scim: Scim, db: Session) -> None:
    people = [
        make_employee(db, email=f"p{i}@example.com", external_id=f"P{i}", full_name=f"Person {i}")
        for i in range(5)
    ]
    people[3].active = False
    db.add(ScimUser(employee_id=people[1].id, user_name="second@idp.example", external_id="X1"))
    db.commit()

    def search(**params: Any) -> ListResponse[UserResource]:
        return list_of(scim.search(**params))

    # An employee the HRIS made is found by email as userName; a provisioned one by its own.
    assert search(filter='userName eq "p0@example.com"').total_results == 1
    assert search(filter='userName eq "p1@example.com"').total_results == 0
    assert search(filter='userName eq "SECOND@idp.example"').resources[0].id == str(people[1].id)
    assert search(filter='externalId eq "X1"').total_results == 1
    assert search(filter='externalId eq "x1"').total_results == 0  # case-exact
    assert search(filter='emails.value eq "P2@example.com"').resources[0].id == str(people[2].id)
    assert search(filter='emails[type eq "work" and value eq "p2@example.com"]').total_results == 1
    both = 'userName sw "p" and active eq false'
    assert [u.id for u in search(filter=both).resources] == [str(people[3].id)]
    assert search(filter=f'{ENTERPRISE}:employeeNumber eq "P4"').total_results == 1
    assert search(filter='emails.value co "_"').total_results == 0  # LIKE escaped

    page = search(filter='userName ew "@example.com"', startIndex=2, count=2)
    assert page.total_results == 4 and page.start_index == 2 and page.items_per_page == 2
    assert [u.id for u in page.resources] == [str(people[2].id), str(people[3].id)]
    assert search(count=0).resources is None or search(count=0).resources == []

    one = scim.get(people[0].id, excludedAttributes="emails,name").json()
    assert "emails" not in one and "name" not in one and one["userName"] == "p0@example.com"
    first = scim.search(attributes="userName").json()["Resources"][0]
    assert set(first) <= {"schemas", "id", "userName"} and "userName" in first


@pytest.mark.parametrize("bad_filter", ["userName eq", 'title eq "x"'])
def test_a_filter_we_cannot_read_is_refused(scim: Scim, bad_filter: str) -> None:
    error_of(scim.search(filter=bad_filter), 400, "invalidFilter")


def test_discovery_endpoints(scim: Scim) -> None:
    def get(path: str) -> Any:
        return scim.client.get(f"{SCIM}/{path}", headers=scim.headers)

    config = ServiceProviderConfig.model_validate(
        get("ServiceProviderConfig").json(), scim_ctx=Context.RESOURCE_QUERY_RESPONSE
    )
    assert config.patch and config.patch.supported
    assert config.filter and config.filter.supported and config.filter.max_results == 200
    assert config.bulk and not config.bulk.supported
    types = get("ResourceTypes").json()
    assert [t["name"] for t in types["Resources"]] == ["User"]  # no Groups: see the README
    ResourceType.model_validate(types["Resources"][0], scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    schemas = get("Schemas").json()["Resources"]
    ids = {Schema.model_validate(s, scim_ctx=Context.RESOURCE_QUERY_RESPONSE).id for s in schemas}
    assert ids == {CORE, ENTERPRISE}
    assert get(f"Schemas/{ENTERPRISE}").status_code == 200
    error_of(get("Groups"), 404)


# --- refusals --------------------------------------------------------------------------------


def test_keys_and_scopes(client: TestClient, db: Session) -> None:
    r = client.get(f"{SCIM}/Users")
    error_of(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    error_of(client.get(f"{SCIM}/Users", headers=scim_headers(db, "org:write")), 403)


NEW_USER = {"schemas": [CORE], "userName": "new@example.com"}
TAKEN = {"value": "taken@example.com", "primary": True}


@pytest.mark.parametrize(
    ("request_", "status", "scim_type"),
    [
        pytest.param(
            ("POST", "", {**NEW_USER, "emails": [TAKEN]}), 409, "uniqueness", id="email taken"
        ),
        pytest.param(
            ("POST", "", {**NEW_USER, "userName": "taken@example.com", "emails": [TAKEN]}),
            409,
            "uniqueness",
            id="userName taken",
        ),
        pytest.param(("POST", "", {"schemas": [CORE]}), 400, "invalidValue", id="no userName"),
        pytest.param(("POST", "", b"{not json"), 400, "invalidSyntax", id="not JSON"),
        pytest.param(("GET", "/999999", None), 404, None, id="unknown id"),
        pytest.param(("GET", "/abc", None), 404, None, id="id not a number"),
        pytest.param(
            (
                "PATCH",
                "/{taken}",
                patch_ops({"op": "replace", "path": f"{ENTERPRISE}:manager", "value": "424242"}),
            ),
            400,
            "invalidValue",
            id="unknown manager",
        ),
        pytest.param(
            ("PATCH", "/{taken}", patch_ops({"op": "explode", "path": "active"})),
            400,
            "invalidValue",
            id="unknown op",
        ),
    ],
)
def test_refusals_write_nothing(
    scim: Scim,
    db: Session,
    request_: tuple[str, str, dict[str, Any] | bytes | None],
    status: int,
    scim_type: str | None,
) -> None:
    taken = make_employee(db, email="taken@example.com", external_id="T1")
    db.commit()
    method, path, body = request_
    url = f"{SCIM}/Users" + path.format(taken=taken.id)
    sent = {"content": body} if isinstance(body, bytes) else {"json": body} if body else {}
    error_of(scim.client.request(method, url, headers=scim.headers, **sent), status, scim_type)
    db.refresh(taken)
    assert taken.active and taken.manager_id is None
    assert db.scalar(select(Employee.id).where(Employee.email == "new@example.com")) is None
    assert audit_actions(db) == []


def test_etags(scim: Scim, db: Session) -> None:
    taken = make_employee(db, email="taken@example.com", external_id="T1")
    db.commit()
    # A stale ETag is refused with 412; the current one is accepted.
    current = user_of(scim.get(taken.id))
    deactivate = {"op": "replace", "path": "active", "value": False}
    error_of(scim.patch(taken.id, deactivate, headers={"If-Match": 'W/"0000"'}), 412)
    db.refresh(taken)
    assert taken.active is True
    fresh = {"If-Match": str(current.meta.version if current.meta else "")}
    assert scim.patch(taken.id, deactivate, headers=fresh).status_code == 200
    old_version = {"If-None-Match": str(current.meta and current.meta.version)}
    assert scim.get(taken.id, headers=old_version).status_code == 200
    now = user_of(scim.get(taken.id))
    same = {"If-None-Match": str(now.meta and now.meta.version)}
    assert scim.get(taken.id, headers=same).status_code == 304
