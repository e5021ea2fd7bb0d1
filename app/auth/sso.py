"""Single sign-on through OpenID Connect: the protocol (authorization code with PKCE,
through authlib) and the rules for who may log in as what.

The browser leaves with a random ``state``, ``nonce`` and PKCE verifier sealed in a
short-lived cookie (AES-GCM under a key from SECRET_KEY): nothing is stored server-side
until the provider sends the person back. The ID token is checked against the
provider's published keys, the configured issuer, our client id and the nonce.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2 import OAuth2Error
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import crypto
from app.auth import service as auth_service
from app.auth.models import Role, User
from app.config import Settings
from app.errors import DomainError

with warnings.catch_warnings():
    # authlib 1.9 prefers the httpx2 fork and warns on import; httpx, which the rest of
    # the app uses, is still supported.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

FLOW_SECONDS = 600  # how long a login may take at the provider
HTTP_TIMEOUT_SECONDS = 10
METADATA_SECONDS = 3600  # discovery and keys are read again after this
# The highest role named by the person's claims wins.
ROLE_RANK = {Role.manager: 1, Role.hr: 2, Role.admin: 3}


class SsoFailed(DomainError):
    """The provider's answer cannot log anyone in (bad state, issuer, token...)."""

    status = 400
    title = "Single sign-on failed"


class SsoUnavailable(SsoFailed):
    status = 502
    title = "Identity provider unavailable"


class SsoRefused(DomainError):
    """A valid sign-in for someone who may not use Peer360 (no role, no employee...)."""

    status = 403
    title = "Access refused"


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks: dict[str, Any]


_cache: dict[str, tuple[float, ProviderMetadata]] = {}
_cache_lock = threading.Lock()


def _same_issuer(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def provider_metadata(settings: Settings, *, refresh: bool = False) -> ProviderMetadata:
    """The provider's endpoints and keys, from its discovery document (cached)."""
    issuer = str(settings.oidc_issuer or "")
    with _cache_lock:
        cached = _cache.get(issuer)
    if cached and not refresh and time.monotonic() - cached[0] < METADATA_SECONDS:
        return cached[1]
    try:
        with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as http:
            doc = http.get(issuer.rstrip("/") + "/.well-known/openid-configuration")
            doc.raise_for_status()
            config = doc.json()
            keys = http.get(config["jwks_uri"])
            keys.raise_for_status()
            jwks = keys.json()
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise SsoUnavailable(
            f"The identity provider at {issuer} cannot be reached or answered nonsense "
            f"({type(exc).__name__}). Try again later or ask an administrator."
        ) from None
    if not _same_issuer(str(config.get("issuer", "")), issuer):
        # OpenID Connect Discovery §4.3: a document for another issuer is not to be used.
        raise SsoFailed(
            "The identity provider describes itself as another issuer than OIDC_ISSUER; "
            "ask an administrator to check the setting."
        )
    metadata = ProviderMetadata(
        issuer=str(config["issuer"]),
        authorization_endpoint=str(config["authorization_endpoint"]),
        token_endpoint=str(config["token_endpoint"]),
        jwks=jwks,
    )
    with _cache_lock:
        _cache[issuer] = (time.monotonic(), metadata)
    return metadata


def _client(settings: Settings, *, redirect_uri: str) -> OAuth2Client:
    return OAuth2Client(
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        scope=settings.oidc_scopes,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=HTTP_TIMEOUT_SECONDS,
    )


def _flow_key(settings: Settings) -> bytes:
    return crypto.derive_key(settings.secret_key, "sso-flow")


@dataclass(frozen=True)
class Started:
    url: str
    cookie: str


def start(settings: Settings, *, redirect_uri: str, next_url: str) -> Started:
    """The provider's authorization URL, and the sealed cookie that must come back with it."""
    metadata = provider_metadata(settings)
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
    with _client(settings, redirect_uri=redirect_uri) as client:
        url, _state = client.create_authorization_url(
            metadata.authorization_endpoint, state=state, nonce=nonce, code_verifier=verifier
        )
    flow = {
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "next": next_url,
        "expires": time.time() + FLOW_SECONDS,
    }
    cookie = crypto.encrypt_text(_flow_key(settings), json.dumps(flow), context=b"sso")
    return Started(url=url, cookie=cookie)


def finish(
    settings: Settings,
    *,
    cookie: str,
    state: str,
    code: str,
    error: str,
    redirect_uri: str,
) -> tuple[dict[str, Any], str]:
    """The ID token's claims once every check passed, and where the person was going."""
    try:
        flow = json.loads(crypto.decrypt_text(_flow_key(settings), cookie, context=b"sso"))
    except Exception:  # a missing, altered or foreign cookie
        flow = None
    if not isinstance(flow, dict) or float(flow.get("expires", 0)) < time.time():
        raise SsoFailed("The sign-in took too long or was started elsewhere. Please try again.")
    if not hmac.compare_digest(str(flow["state"]), state):
        # Someone else's authorization response (login CSRF), or a replayed one.
        raise SsoFailed("The sign-in answer does not belong to this browser. Please try again.")
    if error:
        raise SsoRefused(f"The identity provider did not sign you in ({error[:100]}).")
    if not code:
        raise SsoFailed("The identity provider sent no authorization code.")
    metadata = provider_metadata(settings)
    try:
        with _client(settings, redirect_uri=redirect_uri) as client:
            token = client.fetch_token(
                metadata.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=flow["verifier"],
            )
    except (OAuth2Error, httpx.HTTPError, ValueError) as exc:
        raise SsoFailed(
            f"The identity provider refused the authorization code ({type(exc).__name__})."
        ) from None
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise SsoFailed("The identity provider sent no ID token (is the `openid` scope on?).")
    try:
        keys = KeySet.import_key_set(metadata.jwks)  # type: ignore[arg-type]
        token_claims = jwt.decode(id_token, keys).claims
        # OpenID Connect Core §3.1.3.7: our issuer, our client, our nonce, not expired.
        jwt.JWTClaimsRegistry(
            leeway=120,
            iss={"essential": True, "value": metadata.issuer},
            aud={"essential": True, "value": str(settings.oidc_client_id or "")},
            nonce={"essential": True, "value": flow["nonce"]},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        ).validate(token_claims)
    except (JoseError, ValueError) as exc:
        raise SsoFailed(f"The ID token is not valid ({type(exc).__name__}).") from None
    return dict(token_claims), str(flow.get("next") or "")


# --- who may log in as what --------------------------------------------------------------


def role_from_claims(claims: dict[str, Any], *, settings: Settings) -> Role | None:
    """The highest role that the role claim's values map to, or None."""
    value = claims.get(settings.oidc_role_claim)
    values = value if isinstance(value, list) else str(value or "").replace(",", " ").split()
    roles = [
        Role(settings.oidc_role_map[str(v)]) for v in values if str(v) in settings.oidc_role_map
    ]
    return max(roles, key=ROLE_RANK.__getitem__) if roles else None


def sign_in(session: Session, *, claims: dict[str, Any], settings: Settings) -> User:
    """The account this verified person logs in as: found by email, its role following
    the provider's, or created just in time (managers linked to their employee record)."""
    email = str(claims.get("email") or "").strip().lower()
    if "@" not in email or claims.get("email_verified") is False:
        raise SsoRefused("The identity provider sent no verified email address for you.")
    role = role_from_claims(claims, settings=settings)
    if role is None:
        raise SsoRefused(
            "Your identity provider account has no Peer360 role. Ask an administrator "
            f"to add you to one of the groups in OIDC_ROLE_MAP ({settings.oidc_role_claim})."
        )
    employee_id = None
    if role == Role.manager:
        ref = auth_service.find_employee_ref(session, email=email)
        if ref is None:
            raise SsoRefused(
                "A manager signs in as an employee, and no active employee has your email."
            )
        employee_id = ref.id
    name = str(claims.get("name") or "").strip()[:200]
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        user = auth_service.create_user(
            session,
            email=email,
            # Unusable: an account made by single sign-on has no password of its own.
            password=auth_service.new_secret(32),
            role=role,
            full_name=name,
            employee_id=employee_id,
        )
        auth_service.record_audit(
            session,
            actor=email,
            action="create (single sign-on)",
            entity="user",
            entity_id=user.id,
            detail=f"{email} as {role}",
        )
        return user
    if not user.active:
        raise SsoRefused("Your Peer360 account is deactivated. Ask an administrator.")
    if user.role != role or (role == Role.manager and user.employee_id != employee_id):
        changes = auth_service.update_user(
            session,
            user=user,
            role=role,
            full_name=user.full_name or name,
            employee_id=employee_id if role == Role.manager else user.employee_id,
        )
        auth_service.record_audit(
            session,
            actor=email,
            action="update (single sign-on)",
            entity="user",
            entity_id=user.id,
            detail=f"{email}: " + "; ".join(changes),
        )
    return user
