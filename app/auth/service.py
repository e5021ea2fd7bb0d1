"""Credentials and access: API keys, HR sessions, passwords, rate limits, audit log."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Protocol

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.auth.models import ApiKey, AuditEntry, RateLimit, Role, User, UserSession
from app.db import defer_write, utcnow
from app.errors import Conflict, Invalid, NotFound

SCOPES: dict[str, str] = {
    "org:read": "Read departments, employees, competencies and the matrix",
    "org:write": "Create and change departments, employees, competencies and the matrix",
    "cycles:read": "Read rating cycles and their progress",
    "cycles:write": "Create, launch, remind and close rating cycles",
    "results:read": "Read the results of closed cycles (aggregates only)",
    "scim": "Provision employees from an identity provider (SCIM 2.0 at /scim/v2)",
}
API_KEY_PREFIX = "p360_"


def hash_secret(value: str) -> str:
    """SHA-256 hex of a high-entropy secret (tokens, keys): enough, as they are random."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret from the OS CSPRNG (32 bytes = 256 bits)."""
    return secrets.token_urlsafe(nbytes)


def create_api_key(
    session: Session, *, name: str, scopes: Iterable[str], created_by: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext, which is never stored."""
    scope_list = sorted(set(scopes))
    unknown = [s for s in scope_list if s not in SCOPES]
    if unknown:
        raise Invalid(
            f"Unknown scope(s): {', '.join(unknown)}",
            errors=[{"field": "scopes", "message": f"unknown scope {s!r}"} for s in unknown],
        )
    if not name.strip():
        raise Invalid("A key needs a name", errors=[{"field": "name", "message": "required"}])
    plaintext = API_KEY_PREFIX + new_secret(32)
    key = ApiKey(
        name=name.strip(),
        prefix=plaintext[:12],
        key_hash=hash_secret(plaintext),
        scopes=scope_list,
        created_by=created_by,
    )
    session.add(key)
    session.flush()
    return key, plaintext


def authenticate_api_key(session: Session, plaintext: str) -> ApiKey | None:
    """The active key with this plaintext, or None."""
    if not plaintext.startswith(API_KEY_PREFIX) or len(plaintext) > 200:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_secret(plaintext)))
    if key is None or key.revoked_at is not None:
        return None
    now = utcnow()
    # Touch at most once a minute so reads do not turn every request into a write.
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
        key_id = key.id
        defer_write(
            session,
            lambda s: s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now)),
        )
    return key


def revoke_api_key(session: Session, *, key_id: int) -> ApiKey | None:
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(
        session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc()))
    )


# --- HR sessions ------------------------------------------------------------------


def start_user_session(session: Session, *, user: User) -> tuple[str, UserSession]:
    """A fresh random session id at every login (no fixation); returns the cookie value."""
    token = new_secret(32)
    row = UserSession(id_hash=hash_secret(token), user_id=user.id, csrf_token=new_secret(24))
    session.add(row)
    user.last_login_at = utcnow()
    session.flush()
    return token, row


def resolve_user_session(
    session: Session, *, token: str, idle: timedelta
) -> tuple[User, UserSession] | None:
    """The user behind a session cookie, if the session exists and has not idled out."""
    if not token or len(token) > 200:
        return None
    row = session.get(UserSession, hash_secret(token))
    if row is None:
        return None
    now = utcnow()
    if now - row.last_seen_at > idle:
        id_hash = row.id_hash
        defer_write(
            session, lambda s: s.execute(delete(UserSession).where(UserSession.id_hash == id_hash))
        )
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    if now - row.last_seen_at > timedelta(seconds=30):
        id_hash = row.id_hash
        defer_write(
            session,
            lambda s: s.execute(
                update(UserSession).where(UserSession.id_hash == id_hash).values(last_seen_at=now)
            ),
        )
    return user, row


def end_user_session(session: Session, *, token: str) -> None:
    row = session.get(UserSession, hash_secret(token))
    if row is not None:
        session.delete(row)
        session.flush()


def check_csrf(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected, given or "")


# --- rate limits ------------------------------------------------------------------


def hit_rate_limit(session: Session, *, key: str, limit: int, window: timedelta) -> bool:
    """Count one event for ``key``; True when the window's count now exceeds ``limit``."""
    now = utcnow()
    row = session.get(RateLimit, key, with_for_update=True)
    if row is None:
        row = RateLimit(key=key, window_started_at=now, count=0)
        session.add(row)
    elif now - row.window_started_at > window:
        row.window_started_at = now
        row.count = 0
    row.count += 1
    session.flush()
    return row.count > limit


def note_failure(session: Session, *, key: str, limit: int, window: timedelta) -> bool:
    """Count one failure for ``key`` after the request (see ``defer_write``); True when
    this failure takes the window over ``limit``. For reading requests."""
    row = session.get(RateLimit, key)
    fresh = row is None or utcnow() - row.window_started_at > window
    current = 0 if fresh or row is None else row.count
    defer_write(session, lambda s: hit_rate_limit(s, key=key, limit=limit, window=window))
    return current + 1 > limit


def rate_limited(session: Session, *, key: str, limit: int, window: timedelta) -> bool:
    """True when ``key`` is over its limit in the current window (counts nothing)."""
    row = session.get(RateLimit, key)
    return bool(row and utcnow() - row.window_started_at <= window and row.count >= limit)


def clear_rate_limit(session: Session, *, key: str) -> None:
    session.execute(update(RateLimit).where(RateLimit.key == key).values(count=0))


# --- audit --------------------------------------------------------------------------


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: str | int | None = None,
    detail: str | None = None,
) -> None:
    """Note who changed what. Callers must never pass rater answers here."""
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            entity=entity,
            entity_id=None if entity_id is None else str(entity_id),
            detail=detail,
        )
    )


def api_actor(key: ApiKey) -> str:
    """How the audit log names an API key's writes (the key's name, never its secret)."""
    return f"api-key:{key.name}"


def audit_api(
    session: Session,
    key: ApiKey,
    *,
    action: str,
    entity: str,
    entity_id: str | int | None = None,
    detail: str | None = None,
) -> None:
    """Note a write made through the API, as ``record_audit`` does for a page's user."""
    record_audit(
        session,
        actor=api_actor(key),
        action=action,
        entity=entity,
        entity_id=entity_id,
        detail=detail,
    )


def role_allows(role: Role, allowed: Iterable[Role]) -> bool:
    allowed = set(allowed)
    # Admins run the system and may do everything HR does.
    return role in allowed or (role == Role.admin and Role.hr in allowed)


# --- HR users and passwords ---------------------------------------------------------

# Argon2id with OWASP's recommended minimum (19 MiB, t=2, p=1).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, InvalidHashError, VerificationError):
        return False


def create_user(
    session: Session,
    *,
    email: str,
    password: str,
    role: Role,
    full_name: str = "",
    employee_id: int | None = None,
) -> User:
    """Create an HR user; the email is stored lower-cased."""
    email = email.strip().lower()
    if "@" not in email:
        raise Invalid(
            "Enter a valid email address", errors=[{"field": "email", "message": "invalid"}]
        )
    if len(password) < 10:
        raise Invalid(
            "The password must have at least 10 characters",
            errors=[{"field": "password", "message": "at least 10 characters"}],
        )
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"A user with email {email} already exists")
    user = User(
        email=email,
        full_name=full_name,
        password_hash=hash_password(password),
        role=role,
        employee_id=employee_id,
    )
    session.add(user)
    session.flush()
    return user


# --- logging in ------------------------------------------------------------------------

# Verifying against this when the email is unknown makes both failures take as long,
# so response times do not reveal which addresses have accounts.
_DUMMY_HASH = _hasher.hash("not-a-real-password-" + new_secret(8))


def login_failure_keys(*, email: str, ip: str) -> tuple[str, str]:
    """The rate-limit keys counting failed logins for this email and this client."""
    return f"login:email:{hash_secret(email)[:40]}", f"login:ip:{ip[:100]}"


# Many people may share one office IP, so the per-IP allowance is wider than per email.
IP_FAILURE_FACTOR = 4


def login_throttled(
    session: Session, *, email: str, ip: str, max_failures: int, window: timedelta
) -> bool:
    """True while this email or this client has too many recent failed logins."""
    email_key, ip_key = login_failure_keys(email=email, ip=ip)
    return rate_limited(session, key=email_key, limit=max_failures, window=window) or rate_limited(
        session, key=ip_key, limit=max_failures * IP_FAILURE_FACTOR, window=window
    )


def note_login_failure(
    session: Session, *, email: str, ip: str, max_failures: int, window: timedelta
) -> None:
    """Count one failed login against the email and against the client."""
    email_key, ip_key = login_failure_keys(email=email, ip=ip)
    hit_rate_limit(session, key=email_key, limit=max_failures, window=window)
    hit_rate_limit(session, key=ip_key, limit=max_failures * IP_FAILURE_FACTOR, window=window)


def authenticate_user(session: Session, *, email: str, password: str) -> User | None:
    """The active user with this email and password, or None (same cost either way)."""
    email = email.strip().lower()
    user = session.scalar(select(User).where(User.email == email)) if email else None
    if user is None:
        verify_password(_DUMMY_HASH, password)
        return None
    if not verify_password(user.password_hash, password) or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


class LoginRefused(Enum):
    """Why a password login was refused (the page words it; the same for an unknown
    email and a wrong password)."""

    throttled = "throttled"
    bad_credentials = "bad_credentials"


@dataclass(frozen=True)
class Login:
    """A password login that succeeded: the new session's token, for the cookie."""

    user: User
    token: str


def log_in(
    session: Session,
    *,
    email: str,
    password: str,
    ip: str,
    previous_token: str | None,
    max_failures: int,
    window: timedelta,
    idle: timedelta,
) -> Login | LoginRefused:
    """Check a password login and start the session, with every rule around it.

    Throttled before the password is even checked, so a locked account is no oracle; a
    failure is counted against the email and the client (the caller commits it); a
    success ends the browser's previous session, clears the email's failures and is
    audited.
    """
    clean_email = email.strip().lower()
    limits = {"max_failures": max_failures, "window": window}
    if login_throttled(session, email=clean_email, ip=ip, **limits):  # type: ignore[arg-type]
        return LoginRefused.throttled
    user = authenticate_user(session, email=clean_email, password=password)
    if user is None:
        note_login_failure(session, email=clean_email, ip=ip, **limits)  # type: ignore[arg-type]
        return LoginRefused.bad_credentials
    if previous_token:
        end_user_session(session, token=previous_token)
    purge_idle_sessions(session, idle=idle)
    email_key, _ip_key = login_failure_keys(email=clean_email, ip=ip)
    clear_rate_limit(session, key=email_key)
    token, _row = start_user_session(session, user=user)
    record_audit(session, actor=user.email, action="login", entity="session")
    return Login(user=user, token=token)


def purge_idle_sessions(session: Session, *, idle: timedelta) -> int:
    """Delete sessions idle longer than ``idle``; returns how many went."""
    cutoff = utcnow() - idle
    result = session.execute(delete(UserSession).where(UserSession.last_seen_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def end_all_sessions(session: Session, *, user_id: int) -> None:
    """Log a user out everywhere (deactivation, role change)."""
    session.execute(delete(UserSession).where(UserSession.user_id == user_id))


# --- managing users -------------------------------------------------------------------


def list_users(session: Session) -> list[User]:
    """Every HR user, active ones first, then by email."""
    return list(session.scalars(select(User).order_by(User.active.desc(), User.email)))


def get_user(session: Session, *, user_id: int) -> User:
    """One user, or NotFound."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such user")
    return user


def count_active_admins(session: Session) -> int:
    """How many admins can still log in (the last one may not be demoted)."""
    return int(
        session.scalar(
            select(func.count()).select_from(User).where(User.role == Role.admin, User.active)
        )
        or 0
    )


def update_user(
    session: Session,
    *,
    user: User,
    role: Role,
    full_name: str,
    employee_id: int | None,
) -> list[str]:
    """Change a user's role, name or linked employee; returns what changed (for the audit)."""
    if (
        user.role == Role.admin
        and role != Role.admin
        and user.active
        and count_active_admins(session) <= 1
    ):
        raise Invalid(
            "The last admin cannot lose the admin role",
            errors=[{"field": "role", "message": "the last active admin must stay admin"}],
        )
    if role == Role.manager and employee_id is None:
        raise Invalid(
            "A manager account must be linked to an employee",
            errors=[{"field": "employee_email", "message": "required for a manager"}],
        )
    changes = []
    if user.role != role:
        changes.append(f"role {user.role} -> {role}")
        user.role = role
        # A role change takes effect at once: existing sessions carry the old rights.
        end_all_sessions(session, user_id=user.id)
    if user.full_name != full_name.strip():
        changes.append("name")
        user.full_name = full_name.strip()[:200]
    if user.employee_id != employee_id:
        changes.append(f"employee {user.employee_id} -> {employee_id}")
        user.employee_id = employee_id
    session.flush()
    return changes


def set_user_active(session: Session, *, user: User, active: bool) -> None:
    """Deactivate (ends every session) or reactivate a user; never the last admin."""
    if not active and user.role == Role.admin and user.active and count_active_admins(session) <= 1:
        raise Invalid("The last active admin cannot be deactivated")
    user.active = active
    if not active:
        end_all_sessions(session, user_id=user.id)
    session.flush()


# --- reading the audit log ----------------------------------------------------------------


def list_audit(
    session: Session,
    *,
    actor: str | None = None,
    entity: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AuditEntry], int]:
    """Audit entries, newest first, optionally filtered; returns the page and the total."""
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor.strip().lower())
    if entity:
        query = query.where(AuditEntry.entity == entity)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = session.scalars(
        query.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total


def audit_entities(session: Session) -> list[str]:
    """The kinds of things the audit log mentions (for its filter)."""
    return list(session.scalars(select(AuditEntry.entity).distinct().order_by(AuditEntry.entity)))


# --- the employee a manager account stands for ---------------------------------------------

# Employees belong to org, and auth imports no domain (org's pages import auth). So org
# hands its lookups in, once per process: app.models wires them for every entry point.


@dataclass(frozen=True)
class EmployeeRef:
    """Who a manager account stands for."""

    id: int
    full_name: str
    email: str


class EmployeeDirectory(Protocol):
    def find_active(self, session: Session, *, email: str) -> EmployeeRef | None:
        """The active employee with this email, or None."""

    def by_ids(self, session: Session, *, ids: Collection[int]) -> dict[int, EmployeeRef]:
        """``{id: ref}`` of these employees, active or not."""


_directory: EmployeeDirectory | None = None


def use_employee_directory(directory: EmployeeDirectory) -> None:
    """Where auth finds employees (called by app.models; tests may swap it)."""
    global _directory
    _directory = directory


def _employees() -> EmployeeDirectory:
    if _directory is None:
        raise RuntimeError("No employee directory: import app.models, which connects org")
    return _directory


def find_employee_ref(session: Session, *, email: str) -> EmployeeRef | None:
    """The active employee with this email (a manager account stands for them), or None."""
    return _employees().find_active(session, email=email)


def employee_labels(session: Session, *, ids: Iterable[int | None]) -> dict[int, str]:
    """``{employee id: "Name <email>"}`` for showing which employee an account stands for."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    refs = _employees().by_ids(session, ids=wanted)
    return {i: f"{ref.full_name} <{ref.email}>" for i, ref in refs.items()}


def employee_email(session: Session, *, employee_id: int | None) -> str:
    if employee_id is None:
        return ""
    ref = _employees().by_ids(session, ids=[employee_id]).get(employee_id)
    return ref.email if ref else ""
