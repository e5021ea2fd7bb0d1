"""Logging in from tests: through the real form, or straight into a session."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.auth.models import Role, User
from app.org.models import Employee

PASSWORD = "correct horse battery"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')


def form_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = _TOKEN.search(html)
    assert match, "no csrf_token field on the page"
    return match.group(1)


def login_via_form(
    client: TestClient, email: str, password: str = PASSWORD, *, next: str = ""
) -> Response:
    """GET the login form (sets the pre-session cookie), then POST it."""
    form = client.get("/login")
    assert form.status_code == 200
    data = {"email": email, "password": password, "csrf_token": form_token(form.text)}
    if next:
        data["next"] = next
    return client.post("/login", data=data, follow_redirects=False)


@lru_cache
def _password_hash() -> str:
    return auth_service.hash_password(PASSWORD)


_seq = itertools.count(1)


def fast_user(
    db: Session,
    *,
    role: Role = Role.hr,
    employee: Employee | None = None,
    email: str | None = None,
) -> User:
    """Like ``make_user`` with the default password, without an Argon2 hash per user
    (the suite makes hundreds of users; hashing is what the login tests measure)."""
    user = User(
        email=email or f"signed-in-{next(_seq)}@example.com",
        password_hash=_password_hash(),
        role=role,
        employee_id=employee.id if employee else None,
    )
    db.add(user)
    db.flush()
    return user


@dataclass
class SignedIn:
    user: User
    csrf: str
    token: str


def sign_in(
    client: TestClient,
    db: Session,
    *,
    role: Role = Role.hr,
    employee: Employee | None = None,
    email: str | None = None,
) -> SignedIn:
    """A user of this role with a live session whose cookie the client now carries."""
    user = fast_user(db, role=role, employee=employee, email=email)
    token, row = auth_service.start_user_session(db, user=user)
    client.cookies.set("p360_session", token)
    # Release the savepoint: a request that fails rolls back only its own work.
    db.commit()
    return SignedIn(user=user, csrf=row.csrf_token, token=token)
