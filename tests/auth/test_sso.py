"""Single sign-on against a real OpenID Connect provider running in the test process.

``oidc-provider-mock`` is a complete provider (discovery, keys, signed ID tokens,
authorization form) on a loopback port in a thread; the app talks to it over HTTP as it
would to Okta or Entra ID. The browser test goes through it in Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from oidc_provider_mock import User as OidcUser
from oidc_provider_mock import run_server_in_thread
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.auth import sso
from app.auth.models import AuditEntry, Role, User
from app.config import Settings
from tests.conftest import LiveServer
from tests.factories import make_employee, make_user

ROLE_MAP = {"peer360-admins": "admin", "peer360-hr": "hr", "peer360-managers": "manager"}
PEOPLE = [
    OidcUser(
        sub="hana",
        claims={"email": "hana@example.com", "name": "Hana Hr", "groups": ["peer360-hr"]},
    ),
    OidcUser(
        sub="max",
        claims={"email": "Max@example.com", "name": "Max Manager", "groups": ["peer360-managers"]},
    ),
    OidcUser(sub="nora", claims={"email": "nora@example.com", "groups": ["sales"]}),
    OidcUser(
        sub="ada",
        claims={"email": "ada@example.com", "groups": ["peer360-managers", "peer360-admins"]},
    ),
]


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with run_server_in_thread(user_claims=PEOPLE) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def settings(settings: Settings, provider: str) -> Settings:
    sso._cache.clear()
    return settings.model_copy(
        update={
            "oidc_issuer": provider,
            "oidc_client_id": "peer360",
            "oidc_client_secret": "client-secret",
            "oidc_role_map": ROLE_MAP,
        }
    )


def authorize_at_provider(client: TestClient, sub: str) -> str:
    """Start at /login/sso, sign in at the provider as ``sub``; the callback path."""
    started = client.get("/login/sso", follow_redirects=False)
    assert started.status_code == 303, started.text
    query = parse_qs(urlsplit(started.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["nonce"][0] and query["state"][0]
    assert query["redirect_uri"] == ["http://testserver/login/sso/callback"]
    answer = httpx.post(started.headers["location"], data={"sub": sub}, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    callback = answer.headers["location"]
    assert callback.startswith("http://testserver/login/sso/callback?")
    return callback.removeprefix("http://testserver")


def test_hr_user_is_created_just_in_time(client: TestClient, db: Session) -> None:
    done = client.get(authorize_at_provider(client, "hana"), follow_redirects=False)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/"
    user = db.scalar(select(User).where(User.email == "hana@example.com"))
    assert user is not None and user.role == Role.hr and user.full_name == "Hana Hr"
    assert client.get("/", follow_redirects=False).status_code == 200  # logged in
    actions = set(db.scalars(select(AuditEntry.action)))
    assert {"create (single sign-on)", "login (single sign-on)"} <= actions


def test_manager_is_linked_to_their_employee_and_role_follows_the_provider(
    client: TestClient, db: Session
) -> None:
    me = make_employee(db, email="max@example.com")
    ada = make_employee(db, email="ada@example.com")
    make_user(db, role=Role.hr, email="ada@example.com")  # the provider now says admin
    db.commit()
    assert client.get(authorize_at_provider(client, "max")).status_code == 200
    manager = db.scalar(select(User).where(User.email == "max@example.com"))
    assert manager is not None and manager.role == Role.manager and manager.employee_id == me.id
    assert client.get(authorize_at_provider(client, "ada")).status_code == 200
    admin = db.scalar(select(User).where(User.email == "ada@example.com"))
    assert admin is not None and admin.role == Role.admin  # the highest mapped role
    assert ada.id  # an admin needs no employee link


def test_manager_without_employee_record_is_refused(client: TestClient, db: Session) -> None:
    refused = client.get(authorize_at_provider(client, "max"))
    assert refused.status_code == 403
    assert "no active employee" in refused.text
    assert db.scalar(select(User).where(User.email == "max@example.com")) is None


def test_unknown_role_is_refused(client: TestClient, db: Session) -> None:
    refused = client.get(authorize_at_provider(client, "nora"))
    assert refused.status_code == 403
    assert "no Peer360 role" in refused.text
    assert db.scalar(select(User).where(User.email == "nora@example.com")) is None


def test_state_mismatch_is_refused(client: TestClient, db: Session) -> None:
    callback = authorize_at_provider(client, "hana")
    forged = callback.replace("state=", "state=x")
    refused = client.get(forged)
    assert refused.status_code == 400
    assert "does not belong to this browser" in refused.text
    # Without the flow cookie (another browser) it fails too.
    client.cookies.clear()
    assert client.get(callback).status_code == 400
    assert db.scalar(select(User).where(User.email == "hana@example.com")) is None


def test_wrong_issuer_is_refused(
    client: TestClient, db: Session, app: Any, settings: Settings, provider: str
) -> None:
    # The provider's answer names another issuer (RFC 9207 mix-up).
    callback = authorize_at_provider(client, "hana")
    refused = client.get(callback + "&iss=http%3A%2F%2Fevil.example")
    assert refused.status_code == 400 and "another identity provider" in refused.text
    # The discovery document is for another issuer than the one configured.
    app.state.settings = settings.model_copy(
        update={"oidc_issuer": provider.replace("localhost", "LOCALHOST")}
    )
    refused = client.get("/login/sso", follow_redirects=False)
    assert refused.status_code == 400 and "another issuer" in refused.text
    assert db.scalar(select(User).where(User.email == "hana@example.com")) is None


def test_password_login_can_be_switched_off(
    client: TestClient, db: Session, app: Any, settings: Settings
) -> None:
    make_user(db, role=Role.hr, email="pat@example.com")
    db.commit()
    page = client.get("/login")
    assert 'id="sso-login"' in page.text and 'name="password"' in page.text
    app.state.settings = settings.model_copy(update={"local_password_login": False})
    page = client.get("/login")
    assert 'id="sso-login"' in page.text and 'name="password"' not in page.text
    refused = client.post("/login", data={"email": "pat@example.com", "password": "x" * 12})
    assert refused.status_code == 403
    with pytest.raises(ValueError, match="needs single sign-on"):
        Settings(_env_file=None, local_password_login=False)  # type: ignore[call-arg]


def test_sso_is_off_without_an_issuer(client: TestClient, app: Any, settings: Settings) -> None:
    app.state.settings = settings.model_copy(update={"oidc_issuer": None})
    assert client.get("/login/sso", follow_redirects=False).status_code == 404
    assert 'id="sso-login"' not in client.get("/login").text


def test_sign_in_in_chromium(
    live_server: LiveServer,
    committed_db: sessionmaker[Session],
    page: Any,
    settings: Settings,
) -> None:
    # The callback URL comes from BASE_URL: the live server's address.
    live_server.app.state.settings = settings.model_copy(update={"base_url": live_server.url})
    page.goto(f"{live_server.url}/results")
    page.wait_for_url("**/login?next=%2Fresults")
    page.click("#sso-login")
    # The provider's own authorization page: choose the predefined person.
    page.get_by_role("button", name="hana").click()
    page.wait_for_url(f"{live_server.url}/results")
    assert "Hana Hr" in page.content()
    with committed_db() as session:
        user = session.scalar(select(User).where(User.email == "hana@example.com"))
        assert user is not None and user.role == Role.hr
