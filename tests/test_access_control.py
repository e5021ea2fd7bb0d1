"""Who may call what: every route of the app, with every role and with API keys.

``POLICY`` classifies each route explicitly. A route missing from the table fails the
test, so whoever adds a route must decide who may use it; an entry whose route is gone
fails too, so the table never drifts.

"Allowed" means the request got past authentication and authorisation: no 401, no 403,
no redirect to the login form, and never a 5xx. What the handler then answers (200,
303, 404 for a sample id, 409, 422 for an empty body) is the business of each domain's
own tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from app import lifecycle
from app.auth import service as auth_service
from app.auth.models import Role, User
from app.cycles import service as cycles_service
from app.db import utcnow
from tests.auth.helpers import fast_user
from tests.conftest import app_routes as every_route
from tests.factories import (
    auth_header,
    link,
    make_api_key,
    make_competency,
    make_department,
    make_employee,
)

PUBLIC = "public"  # anyone, logged in or not
LOGGED_IN = "logged-in"  # any HR user: admin, hr, manager
RESULTS = "results"  # managers (their own reporting line), hr, admin
HR = "hr"  # hr and admin
ADMIN = "admin"  # admin only
MANAGER = "manager"  # managers only (their own reporting line)


@dataclass(frozen=True)
class Api:
    """An /api route: a Bearer key with this scope; browser sessions never count."""

    scope: str


POLICY: dict[tuple[str, str], str | Api] = {
    # --- public: the login form, raters' private links, health, docs, static files
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/login/sso"): PUBLIC,
    ("GET", "/login/sso/callback"): PUBLIC,
    ("GET", "/r/{token}"): PUBLIC,
    ("GET", "/rate"): PUBLIC,
    ("POST", "/rate"): PUBLIC,
    ("GET", "/code"): PUBLIC,
    ("GET", "/my-results/{token}"): PUBLIC,
    ("GET", "/n/{token}"): PUBLIC,
    ("GET", "/nominate"): PUBLIC,
    ("POST", "/nominate/add"): PUBLIC,
    ("POST", "/nominate/remove"): PUBLIC,
    ("POST", "/nominate/confirm"): PUBLIC,
    ("GET", "/nominate/team"): PUBLIC,
    ("POST", "/nominate/team/approve"): PUBLIC,
    ("POST", "/nominate/team/add"): PUBLIC,
    ("POST", "/nominate/team/remove"): PUBLIC,
    ("GET", "/my-results"): PUBLIC,
    ("POST", "/my-results/focus"): PUBLIC,
    ("GET", "/my-results/charts/{name}.png"): PUBLIC,
    ("POST", "/results/{cycle_id}/employees/{employee_id}/focus"): MANAGER,
    ("GET", "/results/{cycle_id}/focus"): HR,
    ("POST", "/cycles/{cycle_id}/personal-results"): HR,
    ("PUT", "/api/v1/cycles/{cycle_id}/personal-results"): Api("cycles:write"),
    ("GET", "/rhythm"): HR,
    ("POST", "/rhythm"): HR,
    ("POST", "/cycles/{cycle_id}/auto-launch"): HR,
    ("GET", "/api/v1/rhythm"): Api("cycles:read"),
    ("PUT", "/api/v1/rhythm"): Api("cycles:write"),
    ("PUT", "/api/v1/cycles/{cycle_id}/auto-launch"): Api("cycles:write"),
    ("POST", "/code"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/static"): PUBLIC,
    ("GET", "/api/openapi.json"): PUBLIC,
    ("GET", "/api/docs"): PUBLIC,
    ("GET", "/api/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/api/docs/assets"): PUBLIC,
    ("GET", "/api/redoc"): PUBLIC,
    # --- every logged-in user
    ("GET", "/"): LOGGED_IN,
    ("GET", "/logout"): LOGGED_IN,
    ("POST", "/logout"): LOGGED_IN,
    # --- results: managers see their reporting line (the results pages scope the rows)
    ("GET", "/results"): RESULTS,
    ("GET", "/results/{cycle_id}"): RESULTS,
    ("GET", "/results/{cycle_id}/employees/{employee_id}"): RESULTS,
    ("GET", "/results/{cycle_id}/employees/{employee_id}/report.pdf"): RESULTS,
    ("GET", "/results/{cycle_id}/departments/{department_id}/reports.zip"): HR,
    ("GET", "/results/{cycle_id}/charts/{filename}"): RESULTS,
    ("GET", "/results/{cycle_id}/exports/{filename}"): RESULTS,
    # --- HR screens
    ("GET", "/org"): HR,
    ("GET", "/org/departments"): HR,
    ("GET", "/org/employees"): HR,
    ("GET", "/org/employees/{employee_id}/deactivate"): HR,
    ("POST", "/org/employees/{employee_id}/deactivate"): HR,
    ("POST", "/org/employees/{employee_id}/paper-channel"): HR,
    ("POST", "/org/employees/{employee_id}/reactivate"): HR,
    ("GET", "/org/competencies"): HR,
    ("GET", "/org/competencies/new"): HR,
    ("POST", "/org/competencies/new"): HR,
    ("GET", "/org/competencies/{competency_id}"): HR,
    ("POST", "/org/competencies/{competency_id}"): HR,
    ("GET", "/matrix"): HR,
    ("GET", "/matrix/suppliers/{employee_id}"): HR,
    ("POST", "/matrix/suppliers/{employee_id}/customers"): HR,
    ("GET", "/matrix/suppliers/{employee_id}/customers/{customer_id}/remove"): HR,
    ("POST", "/matrix/suppliers/{employee_id}/customers/{customer_id}/remove"): HR,
    ("GET", "/matrix/customers/{employee_id}"): HR,
    ("GET", "/matrix/import"): HR,
    ("POST", "/matrix/import"): HR,
    ("POST", "/matrix/import/confirm"): HR,
    ("GET", "/matrix/export.csv"): HR,
    ("GET", "/matrix/export.xlsx"): HR,
    ("GET", "/matrix/suggestions"): HR,
    ("POST", "/matrix/suggestions/accept"): HR,
    ("GET", "/matrix/service-map"): HR,
    ("POST", "/matrix/service-map"): HR,
    ("POST", "/matrix/service-map/remove"): HR,
    ("GET", "/cycles"): HR,
    ("POST", "/cycles/next"): HR,
    ("GET", "/cycles/new"): HR,
    ("POST", "/cycles/new"): HR,
    ("GET", "/cycles/{cycle_id}"): HR,
    ("GET", "/cycles/{cycle_id}/launch"): HR,
    ("POST", "/cycles/{cycle_id}/launch"): HR,
    ("POST", "/cycles/{cycle_id}/remind"): HR,
    ("POST", "/cycles/{cycle_id}/nominations/start"): HR,
    ("GET", "/cycles/{cycle_id}/letters"): HR,
    ("POST", "/cycles/{cycle_id}/letters/{department}"): HR,
    ("GET", "/cycles/{cycle_id}/close"): HR,
    ("POST", "/cycles/{cycle_id}/close"): HR,
    ("GET", "/outbox"): HR,
    # --- admin screens
    ("GET", "/admin/users"): ADMIN,
    ("POST", "/admin/users"): ADMIN,
    ("GET", "/admin/users/{user_id}"): ADMIN,
    ("POST", "/admin/users/{user_id}"): ADMIN,
    ("GET", "/admin/users/{user_id}/deactivate"): ADMIN,
    ("POST", "/admin/users/{user_id}/deactivate"): ADMIN,
    ("POST", "/admin/users/{user_id}/reactivate"): ADMIN,
    ("GET", "/admin/api-keys"): ADMIN,
    ("POST", "/admin/api-keys"): ADMIN,
    ("GET", "/admin/api-keys/{key_id}/revoke"): ADMIN,
    ("POST", "/admin/api-keys/{key_id}/revoke"): ADMIN,
    ("GET", "/admin/audit"): ADMIN,
    ("GET", "/admin/settings"): ADMIN,
    # --- the HRIS API
    ("GET", "/api/v1/departments"): Api("org:read"),
    ("GET", "/api/v1/departments/{external_id}"): Api("org:read"),
    ("PUT", "/api/v1/departments/{external_id}"): Api("org:write"),
    ("GET", "/api/v1/employees"): Api("org:read"),
    ("GET", "/api/v1/employees/{external_id}"): Api("org:read"),
    ("PUT", "/api/v1/employees/{external_id}"): Api("org:write"),
    ("DELETE", "/api/v1/employees/{external_id}"): Api("org:write"),
    ("POST", "/api/v1/employees/{external_id}/erase"): Api("org:write"),
    # --- SCIM provisioning (/scim/v2): a key with the scim scope
    ("GET", "/scim/v2/ServiceProviderConfig"): Api("scim"),
    ("GET", "/scim/v2/ResourceTypes"): Api("scim"),
    ("GET", "/scim/v2/ResourceTypes/{name}"): Api("scim"),
    ("GET", "/scim/v2/Schemas"): Api("scim"),
    ("GET", "/scim/v2/Schemas/{schema_id}"): Api("scim"),
    ("GET", "/scim/v2/Users"): Api("scim"),
    ("POST", "/scim/v2/Users"): Api("scim"),
    ("GET", "/scim/v2/Users/{user_id}"): Api("scim"),
    ("PUT", "/scim/v2/Users/{user_id}"): Api("scim"),
    ("PATCH", "/scim/v2/Users/{user_id}"): Api("scim"),
    ("DELETE", "/scim/v2/Users/{user_id}"): Api("scim"),
    ("GET", "/api/v1/competencies"): Api("org:read"),
    ("GET", "/api/v1/matrix"): Api("org:read"),
    ("GET", "/api/v1/suppliers/{external_id}/customers"): Api("org:read"),
    ("PUT", "/api/v1/suppliers/{external_id}/customers"): Api("org:write"),
    ("GET", "/api/v1/customers/{external_id}/suppliers"): Api("org:read"),
    ("POST", "/api/v1/import/matrix"): Api("org:write"),
    ("POST", "/api/v1/matrix/suggestions"): Api("org:read"),
    ("POST", "/api/v1/matrix/suggestions/accept"): Api("org:write"),
    ("GET", "/api/v1/service-map"): Api("org:read"),
    ("PUT", "/api/v1/service-map/{external_id}"): Api("org:write"),
    ("PUT", "/api/v1/competencies/{code}"): Api("org:write"),
    ("POST", "/api/v1/import/departments"): Api("org:write"),
    ("POST", "/api/v1/import/employees"): Api("org:write"),
    ("POST", "/api/v1/import/competencies"): Api("org:write"),
    ("GET", "/api/v1/cycles"): Api("cycles:read"),
    ("POST", "/api/v1/cycles"): Api("cycles:write"),
    ("GET", "/api/v1/cycles/{cycle_id}"): Api("cycles:read"),
    ("GET", "/api/v1/cycles/{cycle_id}/launch-preview"): Api("cycles:read"),
    ("POST", "/api/v1/cycles/{cycle_id}/launch"): Api("cycles:write"),
    ("POST", "/api/v1/cycles/{cycle_id}/reminders"): Api("cycles:write"),
    ("POST", "/api/v1/cycles/{cycle_id}/nominations/start"): Api("cycles:write"),
    ("GET", "/api/v1/cycles/{cycle_id}/nominations"): Api("cycles:read"),
    ("POST", "/api/v1/cycles/{cycle_id}/close"): Api("cycles:write"),
    ("GET", "/api/v1/cycles/{cycle_id}/close-jobs/{job_id}"): Api("cycles:read"),
    ("GET", "/api/v1/cycles/{cycle_id}/results/employees"): Api("results:read"),
    ("GET", "/api/v1/cycles/{cycle_id}/results/departments"): Api("results:read"),
    ("GET", "/api/v1/cycles/{cycle_id}/results/company"): Api("results:read"),
    ("GET", "/api/v1/employees/{external_id}/results"): Api("results:read"),
    ("GET", "/api/v1/cycles/{cycle_id}/charts/{filename}"): Api("results:read"),
}

# Path parameters that need a particular value to reach the check under test (a chart
# a manager may see, a file that exists); everything else comes from ``_sample_params``.
PARAM_OVERRIDES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/results/{cycle_id}/charts/{filename}"): {"filename": "trend-company.svg"},
    ("GET", "/results/{cycle_id}/exports/{filename}"): {"filename": "employees.csv"},
    ("GET", "/api/v1/cycles/{cycle_id}/charts/{filename}"): {"filename": "trend-company.svg"},
    ("GET", "/static"): {"__path__": "/static/app.css"},
}

ROLES = ("anonymous", "manager", "hr", "admin")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route and mount, HEAD aside (it follows GET)."""
    found = set()
    for route in every_route(app):
        if route.path is None:
            continue
        methods = route.methods or {"GET"}  # a mount (static files) answers GET
        for method in methods - {"HEAD", "OPTIONS"}:
            found.add((method, route.path))
    return found


def test_every_route_is_classified(app: FastAPI) -> None:
    routes = app_routes(app)
    unclassified = sorted(routes - set(POLICY))
    stale = sorted(set(POLICY) - routes)
    assert not unclassified, f"classify these routes in POLICY: {unclassified}"
    assert not stale, f"these POLICY entries match no route any more: {stale}"


@dataclass
class World:
    """One company with a closed cycle, a user per role and sample ids for every route."""

    users: dict[str, User]
    params: dict[str, str]


@pytest.fixture
def world(db: Session, settings: Any) -> World:
    dept = make_department(db, name="Support")
    boss = make_employee(db, department=dept, full_name="Team Boss")
    member = make_employee(db, department=dept, manager=boss)
    peers = [make_employee(db, department=dept) for _ in range(3)]
    spare = make_employee(db, department=dept, full_name="Spare Person")
    for peer in peers:
        link(db, supplier=member, customer=peer)
    comp = make_competency(db)
    cycle = cycles_service.create_quarter_cycle(db, quarter="2026Q3", now=utcnow())
    cycles_service.launch_cycle(db, cycle_id=cycle.id, settings=settings)
    lifecycle.close_cycle(db, cycle_id=cycle.id)
    users = {
        "manager": fast_user(db, role=Role.manager, employee=boss),
        "hr": fast_user(db, role=Role.hr),
        "admin": fast_user(db, role=Role.admin),
    }
    victim = fast_user(db, role=Role.hr, email="victim@example.com")
    key, _plain = auth_service.create_api_key(db, name="to revoke", scopes=["org:read"])
    db.commit()
    params = {
        "employee_id": str(member.id),
        "customer_id": str(peers[0].id),
        "supplier_id": str(member.id),
        "cycle_id": str(cycle.id),
        "competency_id": str(comp.id),
        "user_id": str(victim.id),
        "key_id": str(key.id),
        "external_id": spare.external_id,
        "code": comp.code,
        "token": "x" * 43,
        "filename": "employees.csv",
    }
    return World(users=users, params=params)


def _url(method: str, path: str, world: World) -> str:
    overrides = PARAM_OVERRIDES.get((method, path), {})
    if "__path__" in overrides:
        return overrides["__path__"]

    def fill(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return overrides.get(name) or world.params.get(name, "1")

    return re.sub(r"\{([^}]+)\}", fill, path)


def _as(client: TestClient, db: Session, world: World, role: str) -> str:
    """Point the client at a fresh session of this role; returns its CSRF token."""
    client.cookies.clear()
    if role == "anonymous":
        return ""
    token, row = auth_service.start_user_session(db, user=world.users[role])
    db.commit()
    client.cookies.set("p360_session", token)
    return row.csrf_token


def _call(
    client: TestClient,
    method: str,
    url: str,
    *,
    csrf: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    kwargs: dict[str, Any] = {"headers": headers or {}, "follow_redirects": False}
    if method in WRITE_METHODS:
        if url.startswith("/api/"):
            kwargs["json"] = {}
        else:
            kwargs["data"] = {"csrf_token": csrf}
    return client.request(method, url, **kwargs)


def _to_login(r: Response) -> bool:
    """Sent to the login form because nobody is logged in (not the page after logout)."""
    location = r.headers.get("location", "")
    return r.status_code in (302, 303, 307) and (
        location == "/login" or location.startswith("/login?next=")
    )


def _allowed(r: Response) -> bool:
    return r.status_code < 500 and r.status_code not in (401, 403) and not _to_login(r)


def _ordered(routes: set[tuple[str, str]]) -> list[tuple[str, str]]:
    # Reads first: a write (deactivate, close, log out) must not change what a later
    # read of the same walk sees.
    return sorted(routes, key=lambda mp: (mp[0] in WRITE_METHODS, mp[1], mp[0]))


def test_every_route_with_every_role(
    app: FastAPI, client: TestClient, db: Session, world: World
) -> None:
    problems: list[str] = []
    expected_allowed = {
        PUBLIC: set(ROLES),
        LOGGED_IN: {"manager", "hr", "admin"},
        RESULTS: {"manager", "hr", "admin"},
        HR: {"hr", "admin"},
        ADMIN: {"admin"},
        MANAGER: {"manager"},
    }
    for method, path in _ordered(app_routes(app) & set(POLICY)):
        policy = POLICY[(method, path)]
        url = _url(method, path, world)
        for role in ROLES:
            csrf = _as(client, db, world, role)
            r = _call(client, method, url, csrf=csrf)
            where = f"{method} {url} as {role} -> {r.status_code} {r.headers.get('location', '')}"
            if r.status_code >= 500:
                problems.append(f"{where}: server error")
            elif policy == PUBLIC:
                # The login form's own CSRF check may answer 403; it must not ask to log in.
                if _to_login(r) or r.status_code == 401:
                    problems.append(f"{where}: a public route asked for a login")
            elif isinstance(policy, Api):
                # A browser session is no API credential.
                if r.status_code != 401:
                    problems.append(f"{where}: expected 401 without an API key")
            elif role in expected_allowed[policy]:
                if not _allowed(r):
                    problems.append(f"{where}: expected to be allowed")
            elif role == "anonymous":
                if not _to_login(r):
                    problems.append(f"{where}: expected a redirect to the login form")
            elif r.status_code != 403:
                problems.append(f"{where}: expected 403")
    client.cookies.clear()
    assert not problems, "\n".join(problems)


def test_every_api_route_with_keys_of_each_scope(
    app: FastAPI, client: TestClient, db: Session, world: World
) -> None:
    problems: list[str] = []
    everything = set(auth_service.SCOPES)
    client.cookies.clear()
    for method, path in _ordered(app_routes(app) & set(POLICY)):
        policy = POLICY[(method, path)]
        url = _url(method, path, world)
        if not isinstance(policy, Api):
            if path.startswith("/api/v1"):
                problems.append(f"{method} {path}: an /api/v1 route must be classified as Api")
            continue
        without = auth_header(make_api_key(db, *(everything - {policy.scope})))
        only = auth_header(make_api_key(db, policy.scope))
        db.commit()  # a refused request rolls back its own work, not the keys
        checks: list[tuple[str, dict[str, str], int | None]] = [
            ("no key", {}, 401),
            ("malformed key", {"Authorization": "Bearer nonsense"}, 401),
            ("key without the scope", without, 403),
            ("key with only the scope", only, None),
        ]
        for label, headers, expected in checks:
            r = _call(client, method, url, headers=headers)
            where = f"{method} {url} with {label} -> {r.status_code}"
            if r.status_code >= 500:
                problems.append(f"{where}: server error")
            elif expected is None and not _allowed(r):
                problems.append(f"{where}: expected to be allowed")
            elif expected is not None and r.status_code != expected:
                problems.append(f"{where}: expected {expected}")
    assert not problems, "\n".join(problems)


def test_api_keys_never_open_pages(app: FastAPI, client: TestClient, db: Session) -> None:
    key = make_api_key(db)  # every scope
    client.cookies.clear()
    for method, path in app_routes(app):
        policy = POLICY.get((method, path))
        if policy in (HR, ADMIN, RESULTS, LOGGED_IN) and method == "GET" and "{" not in path:
            r = client.get(path, headers=auth_header(key), follow_redirects=False)
            assert _to_login(r), f"{path} accepted an API key instead of a login"
