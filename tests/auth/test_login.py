"""Logging in and out: sessions, cookies, throttling, CSRF and the next redirect."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.auth.models import ApiKey, AuditEntry, Role, UserSession
from app.db import utcnow
from app.web import safe_next
from tests.auth.helpers import PASSWORD, form_token, login_via_form, sign_in
from tests.factories import make_user


def _sessions(db: Session, user_id: int) -> int:
    return int(
        db.scalar(
            select(func.count()).select_from(UserSession).where(UserSession.user_id == user_id)
        )
        or 0
    )


def test_login_form_renders_with_its_own_csrf_cookie(client: TestClient) -> None:
    r = client.get("/login")
    assert r.status_code == 200
    assert "Log in to Peer360" in r.text
    assert "p360_login" in r.cookies
    assert form_token(r.text)
    assert r.headers["cache-control"] == "no-store"


def test_login_ok_sets_session_cookie_and_redirects_home(client: TestClient, db: Session) -> None:
    user = make_user(db, role=Role.hr, email="Ann@Example.com")
    r = login_via_form(client, " ann@example.COM ")
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "p360_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie.replace("samesite", "SameSite")
    assert "Secure" not in cookie.split("p360_session=")[1].split(",")[0]
    assert _sessions(db, user.id) == 1
    home = client.get("/")
    assert home.status_code == 200
    assert "ann@example.com" in home.text
    assert db.scalar(select(AuditEntry).where(AuditEntry.action == "login")) is not None


def test_https_base_url_gives_host_prefixed_secure_cookie(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"base_url": "https://hr.example"})
    make_user(db, email="sec@example.com")
    form = client.get("/login")
    assert "__Host-p360_login=" in form.headers["set-cookie"]
    token = form_token(form.text)
    # httpx does not send Secure cookies over http: hand the pre-session cookie back.
    nonce = form.headers["set-cookie"].split("__Host-p360_login=")[1].split(";")[0]
    r = client.post(
        "/login",
        data={"email": "sec@example.com", "password": PASSWORD, "csrf_token": token},
        headers={"cookie": f"__Host-p360_login={nonce}"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    session_cookie = next(
        c for c in r.headers.get_list("set-cookie") if c.startswith("__Host-p360_session=")
    )
    assert "Secure" in session_cookie
    assert "HttpOnly" in session_cookie
    assert "Path=/" in session_cookie
    assert "Domain" not in session_cookie


@pytest.mark.parametrize("email", ["nobody@example.com", "ann@example.com"])
def test_unknown_user_and_wrong_password_get_the_same_answer(
    client: TestClient, db: Session, email: str
) -> None:
    make_user(db, email="ann@example.com")
    r = login_via_form(client, email, "wrong password!")
    assert r.status_code == 400
    assert "The email or password is not correct." in r.text
    assert email in r.text  # what was typed is kept
    assert "wrong password!" not in r.text
    assert "p360_session" not in r.cookies


def test_inactive_user_cannot_log_in(client: TestClient, db: Session) -> None:
    user = make_user(db, email="gone@example.com")
    user.active = False
    db.flush()
    r = login_via_form(client, "gone@example.com")
    assert r.status_code == 400
    assert _sessions(db, user.id) == 0


def test_login_without_or_with_wrong_csrf_is_refused(client: TestClient, db: Session) -> None:
    user = make_user(db, email="csrf@example.com")
    client.get("/login")
    for token in ("", "forged"):
        r = client.post(
            "/login",
            data={"email": "csrf@example.com", "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert r.status_code == 403
        assert "expired" in r.text
    # A token without its cookie (another browser's form) is refused too.
    token = form_token(client.get("/login").text)
    client.cookies.clear()
    r = client.post(
        "/login",
        data={"email": "csrf@example.com", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert _sessions(db, user.id) == 0


def test_login_is_throttled_per_email(app: FastAPI, client: TestClient, db: Session) -> None:
    app.state.settings = app.state.settings.model_copy(update={"login_max_failures": 3})
    user = make_user(db, email="target@example.com")
    for _ in range(3):
        assert login_via_form(client, "target@example.com", "bad guess 123").status_code == 400
    # Locked now: even the right password is refused, with a clear message.
    r = login_via_form(client, "target@example.com")
    assert r.status_code == 429
    assert "Too many failed attempts" in r.text
    assert _sessions(db, user.id) == 0
    # Other accounts from the same client are not locked by this email's count.
    make_user(db, email="other@example.com")
    assert login_via_form(client, "other@example.com").status_code == 303


def test_lockout_ends_after_the_window(app: FastAPI, client: TestClient, db: Session) -> None:
    app.state.settings = app.state.settings.model_copy(update={"login_max_failures": 2})
    make_user(db, email="wait@example.com")
    for _ in range(2):
        login_via_form(client, "wait@example.com", "bad guess 123")
    assert login_via_form(client, "wait@example.com").status_code == 429
    key, _ = auth_service.login_failure_keys(email="wait@example.com", ip="testclient")
    row = db.get(auth_service.RateLimit, key)
    assert row is not None
    row.window_started_at = utcnow() - timedelta(minutes=16)
    db.flush()
    assert login_via_form(client, "wait@example.com").status_code == 303


def test_login_is_throttled_per_client_address(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"login_max_failures": 1})
    limit = 1 * auth_service.IP_FAILURE_FACTOR
    make_user(db, email="real@example.com")
    for i in range(limit):
        assert login_via_form(client, f"guess{i}@example.com", "x" * 12).status_code == 400
    r = login_via_form(client, "real@example.com")
    assert r.status_code == 429


def test_a_fresh_session_id_at_every_login(client: TestClient, db: Session) -> None:
    user = make_user(db, email="fix@example.com")
    # An attacker-planted cookie value is not adopted...
    client.cookies.set("p360_session", "planted-by-attacker")
    first = login_via_form(client, "fix@example.com")
    token1 = first.cookies["p360_session"]
    assert token1 != "planted-by-attacker"
    # ...and logging in again replaces the old session rather than reusing it.
    client.cookies.clear()
    token = form_token(client.get("/login").text)
    second = client.post(
        "/login",
        data={"email": "fix@example.com", "password": PASSWORD, "csrf_token": token},
        headers={"cookie": f"p360_login={client.cookies['p360_login']}; p360_session={token1}"},
        follow_redirects=False,
    )
    token2 = second.cookies["p360_session"]
    assert token2 != token1
    assert db.get(UserSession, auth_service.hash_secret(token1)) is None
    assert db.get(UserSession, auth_service.hash_secret(token2)) is not None
    assert _sessions(db, user.id) == 1


def test_logout_ends_the_session_on_the_server(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    r = client.post("/logout", data={"csrf_token": signed.csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login")
    assert db.get(UserSession, auth_service.hash_secret(signed.token)) is None
    # Replaying the old cookie gets nowhere.
    client.cookies.set("p360_session", signed.token)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_logout_without_csrf_is_refused(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    r = client.post("/logout", data={}, follow_redirects=False)
    assert r.status_code == 403
    assert db.get(UserSession, auth_service.hash_secret(signed.token)) is not None


def test_idle_session_times_out(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    assert client.get("/").status_code == 200
    row = db.get(UserSession, auth_service.hash_secret(signed.token))
    assert row is not None
    row.last_seen_at = utcnow() - timedelta(minutes=31)
    db.flush()
    r = client.get("/org/employees", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Forg%2Femployees"


def test_activity_keeps_the_session_alive(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    row = db.get(UserSession, auth_service.hash_secret(signed.token))
    assert row is not None
    row.last_seen_at = utcnow() - timedelta(minutes=29)
    db.flush()
    assert client.get("/").status_code == 200
    assert utcnow() - row.last_seen_at < timedelta(minutes=1)


def test_deactivated_user_loses_access_at_once(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db)
    signed.user.active = False
    db.flush()
    assert client.get("/", follow_redirects=False).status_code == 303


def test_anonymous_page_access_redirects_to_login_with_next(client: TestClient) -> None:
    r = client.get("/matrix?supplier=3", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fmatrix%3Fsupplier%3D3"
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_next_redirect_after_login(client: TestClient, db: Session) -> None:
    make_user(db, email="next@example.com")
    r = login_via_form(client, "next@example.com", next="/cycles?x=1")
    assert r.headers["location"] == "/cycles?x=1"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "http:/evil",
        "javascript:alert(1)",
        "relative/path",
        "/ok\r\nSet-Cookie: x=1",
    ],
)
def test_next_redirect_only_to_local_paths(client: TestClient, db: Session, target: str) -> None:
    make_user(db, email="open@example.com")
    r = login_via_form(client, "open@example.com", next=target)
    assert r.status_code == 303
    assert r.headers["location"] == "/"


def test_safe_next_accepts_local_paths() -> None:
    assert safe_next("/org/employees?q=a") == "/org/employees?q=a"
    assert safe_next(None) == "/"
    assert safe_next("///x") == "/"


def test_logged_in_user_on_login_page_goes_home(client: TestClient, db: Session) -> None:
    sign_in(client, db)
    r = client.get("/login", follow_redirects=False)
    assert r.status_code == 303


def test_csrf_missing_or_wrong_changes_nothing(client: TestClient, db: Session) -> None:
    sign_in(client, db, role=Role.admin)
    before = db.scalar(select(func.count()).select_from(ApiKey))
    for data in (
        {"name": "k", "scopes": "org:read"},
        {"name": "k", "scopes": "org:read", "csrf_token": "wrong"},
    ):
        r = client.post("/admin/api-keys", data=data)
        assert r.status_code == 403
        assert "expired" in r.text
    assert db.scalar(select(func.count()).select_from(ApiKey)) == before


def test_csrf_token_of_another_session_is_refused(client: TestClient, db: Session) -> None:
    other = sign_in(client, db, role=Role.admin)
    sign_in(client, db, role=Role.admin)  # the client now carries this one's cookie
    r = client.post(
        "/admin/api-keys", data={"name": "k", "scopes": "org:read", "csrf_token": other.csrf}
    )
    assert r.status_code == 403


def test_password_hashes_are_argon2id(db: Session) -> None:
    user = make_user(db)
    assert user.password_hash.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in user.password_hash


def test_expired_session_on_a_form_post_returns_to_the_page_after_login(
    client: TestClient,
) -> None:
    r = client.post(
        "/cycles/next",
        data={"csrf_token": "x"},
        headers={"referer": "http://testserver/cycles?tab=1"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fcycles%3Ftab%3D1"
    r = client.post(
        "/cycles/next",
        data={"csrf_token": "x"},
        headers={"referer": "https://evil.example/cycles"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/login"
