"""Admin screens: users, API keys, audit log, settings; and the demo accounts."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.auth.models import ApiKey, AuditEntry, Role, User, UserSession
from app.demo import seed_accounts
from tests.auth.helpers import login_via_form, sign_in
from tests.factories import auth_header, make_employee, make_user


def _user(db: Session, email: str) -> User | None:
    return db.scalar(select(User).where(User.email == email))


def test_admin_creates_users_with_a_typed_or_generated_password(
    client: TestClient, db: Session
) -> None:
    signed = sign_in(client, db, role=Role.admin)
    r = client.post(
        "/admin/users",
        data={
            "csrf_token": signed.csrf,
            "email": "New.HR@Example.com",
            "full_name": "New HR",
            "role": "hr",
            "password": "a long enough password",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    created = _user(db, "new.hr@example.com")
    assert created is not None and created.role == Role.hr

    boss = make_employee(db, email="boss@example.com")
    r = client.post(
        "/admin/users",
        data={
            "csrf_token": signed.csrf,
            "email": "boss.login@example.com",
            "role": "manager",
            "employee_email": "BOSS@example.com",
        },
    )
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    match = re.search(r'<code class="secret-value" id="new-password">([^<]+)</code>', r.text)
    assert match, "the generated password is shown once"
    manager = _user(db, "boss.login@example.com")
    assert manager is not None and manager.employee_id == boss.id
    assert auth_service.verify_password(manager.password_hash, match.group(1))
    # ...and never again.
    assert match.group(1) not in client.get("/admin/users").text
    details = list(db.scalars(select(AuditEntry.detail).where(AuditEntry.entity == "user")))
    assert any("boss.login@example.com as manager" in (d or "") for d in details)
    assert not any(match.group(1) in (d or "") for d in details)


def test_user_form_errors_are_shown_next_to_fields(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db, role=Role.admin)
    make_user(db, email="dup@example.com")
    before = db.scalar(select(func.count()).select_from(User))
    cases = [
        ({"email": "dup@example.com", "role": "hr", "password": "x" * 12}, "email"),
        ({"email": "not-an-email", "role": "hr", "password": "x" * 12}, "email"),
        ({"email": "ok@example.com", "role": "hr", "password": "short"}, "password"),
        ({"email": "ok@example.com", "role": "superuser"}, "role"),
        ({"email": "ok@example.com", "role": "manager"}, "employee_email"),
        (
            {"email": "ok@example.com", "role": "hr", "employee_email": "ghost@x.com"},
            "employee_email",
        ),
    ]
    for data, field in cases:
        r = client.post("/admin/users", data={"csrf_token": signed.csrf, **data})
        assert r.status_code == 422, data
        assert f'id="{field}-error"' in r.text, (data, r.text[-3000:])
        assert f'value="{data["email"]}"' in r.text  # what was typed stays
    assert db.scalar(select(func.count()).select_from(User)) == before


def test_change_role_logs_the_user_out_and_is_audited(client: TestClient, db: Session) -> None:
    target = make_user(db, email="promote@example.com", role=Role.hr)
    token, _row = auth_service.start_user_session(db, user=target)
    signed = sign_in(client, db, role=Role.admin)
    form = client.get(f"/admin/users/{target.id}")
    assert form.status_code == 200 and "promote@example.com" in form.text
    r = client.post(
        f"/admin/users/{target.id}",
        data={"csrf_token": signed.csrf, "full_name": "Promoted", "role": "admin"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    db.refresh(target)
    assert target.role == Role.admin and target.full_name == "Promoted"
    assert db.get(UserSession, auth_service.hash_secret(token)) is None
    entry = db.scalar(select(AuditEntry).where(AuditEntry.action == "update"))
    assert entry is not None and "role hr -> admin" in (entry.detail or "")


def test_the_last_admin_cannot_be_demoted(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db, role=Role.admin)
    r = client.post(
        f"/admin/users/{signed.user.id}",
        data={"csrf_token": signed.csrf, "role": "hr"},
    )
    assert r.status_code == 422 and 'id="role-error"' in r.text
    db.refresh(signed.user)
    assert signed.user.role == Role.admin


def test_deactivate_user_confirms_and_ends_sessions(client: TestClient, db: Session) -> None:
    target = make_user(db, email="leaver@example.com")
    token, _row = auth_service.start_user_session(db, user=target)
    signed = sign_in(client, db, role=Role.admin)
    confirm = client.get(f"/admin/users/{target.id}/deactivate")
    assert "Deactivate leaver@example.com?" in confirm.text
    db.refresh(target)
    assert target.active
    r = client.post(
        f"/admin/users/{target.id}/deactivate",
        data={"csrf_token": signed.csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    db.refresh(target)
    assert not target.active
    assert db.get(UserSession, auth_service.hash_secret(token)) is None
    # Admins cannot lock themselves out.
    r = client.post(f"/admin/users/{signed.user.id}/deactivate", data={"csrf_token": signed.csrf})
    assert r.status_code == 422
    r = client.post(
        f"/admin/users/{target.id}/reactivate",
        data={"csrf_token": signed.csrf},
        follow_redirects=False,
    )
    db.refresh(target)
    assert target.active


def test_api_key_is_shown_once_works_and_can_be_revoked(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db, role=Role.admin)
    r = client.post(
        "/admin/api-keys",
        data={"csrf_token": signed.csrf, "name": "HRIS sync", "scopes": ["org:read", "org:write"]},
    )
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    match = re.search(r'id="new-key">(p360_[^<]+)</code>', r.text)
    assert match
    plaintext = match.group(1)
    key = db.scalar(select(ApiKey).where(ApiKey.name == "HRIS sync"))
    assert key is not None and key.scopes == ["org:read", "org:write"]
    assert key.key_hash != plaintext and plaintext not in client.get("/admin/api-keys").text
    assert auth_service.authenticate_api_key(db, plaintext) is not None

    confirm = client.get(f"/admin/api-keys/{key.id}/revoke")
    assert "Revoke the API key" in confirm.text
    db.refresh(key)
    assert key.revoked_at is None
    r = client.post(
        f"/admin/api-keys/{key.id}/revoke",
        data={"csrf_token": signed.csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert auth_service.authenticate_api_key(db, plaintext) is None
    assert client.get("/api/v1/employees", headers=auth_header(plaintext)).status_code == 401
    actions = set(db.scalars(select(AuditEntry.action).where(AuditEntry.entity == "api_key")))
    assert actions == {"create", "revoke"}
    audit_text = " ".join(db.scalars(select(AuditEntry.detail)).all() or [])  # type: ignore[arg-type]
    assert plaintext not in audit_text


def test_api_key_form_errors(client: TestClient, db: Session) -> None:
    signed = sign_in(client, db, role=Role.admin)
    for data, field in (
        ({"name": "no scopes"}, "scopes"),
        ({"name": "", "scopes": "org:read"}, "name"),
        ({"name": "bad", "scopes": "root:all"}, "scopes"),
    ):
        r = client.post("/admin/api-keys", data={"csrf_token": signed.csrf, **data})
        assert r.status_code == 422
        assert f'id="{field}-error"' in r.text
    assert db.scalar(select(func.count()).select_from(ApiKey)) == 0
    assert (
        client.post("/admin/api-keys/9999/revoke", data={"csrf_token": signed.csrf}).status_code
        == 422
    )


def test_audit_log_lists_and_filters(client: TestClient, db: Session) -> None:
    for i in range(60):
        auth_service.record_audit(
            db, actor="hr@example.com", action="update", entity="competency", entity_id=i
        )
    auth_service.record_audit(db, actor="admin@example.com", action="create", entity="user")
    sign_in(client, db, role=Role.admin)
    r = client.get("/admin/audit")
    assert r.status_code == 200 and "Page 1 of 2" in r.text
    r = client.get("/admin/audit", params={"entity": "user"})
    assert "admin@example.com" in r.text and "hr@example.com</td>" not in r.text
    r = client.get("/admin/audit", params={"actor": "HR@example.com", "page": "2"})
    assert "Page 2 of 2" in r.text
    assert client.get("/admin/audit", params={"page": "x", "actor": "%"}).status_code == 200


def test_settings_page_shows_no_secrets(client: TestClient, db: Session) -> None:
    sign_in(client, db, role=Role.admin)
    r = client.get("/admin/settings")
    assert r.status_code == 200
    assert "Minimum raters" in r.text
    assert "Confirmation round links go to (default)</th><td>each supplier</td>" in r.text
    assert "test-secret-" not in r.text


def test_hr_and_managers_cannot_open_admin_pages(client: TestClient, db: Session) -> None:
    for role in (Role.hr, Role.manager):
        signed = sign_in(client, db, role=role, employee=make_employee(db))
        for url in ("/admin/users", "/admin/api-keys", "/admin/audit", "/admin/settings"):
            assert client.get(url).status_code == 403, (role, url)
        r = client.post(
            "/admin/api-keys",
            data={"csrf_token": signed.csrf, "name": "sneaky", "scopes": "org:write"},
        )
        assert r.status_code == 403
    assert db.scalar(select(func.count()).select_from(ApiKey)) == 0


def test_demo_accounts_can_log_in(client: TestClient, db: Session) -> None:
    boss = make_employee(db, full_name="Big Boss")
    for _ in range(3):
        make_employee(db, manager=boss)
    small = make_employee(db)
    make_employee(db, manager=small)
    lines = seed_accounts(db)
    creds = {}
    for line in lines:
        m = re.match(r"(\w+) login: (\S+) / (\S+)", line)
        if m:
            creds[m.group(1)] = (m.group(2), m.group(3))
    assert set(creds) >= {"Admin", "HR", "Manager"}
    manager = _user(db, creds["Manager"][0])
    assert manager is not None and manager.role == Role.manager and manager.employee_id == boss.id
    db.commit()
    r = login_via_form(client, *creds["HR"])
    assert r.status_code == 303
