"""Forwarded headers are believed only from FORWARDED_ALLOW_IPS, in the real server.

Played as an attacker: a client on the same machine (127.0.0.1, which Uvicorn trusts
by default) rotates X-Forwarded-For to get a fresh bad-link allowance on every request.
On PostgreSQL the server runs two app processes, as the Docker image does, so the
setting is shown to reach every worker.
"""

from __future__ import annotations

import secrets

import httpx

from tests.core.helpers import Cli, ServeStarter, stop

LIMIT = 3


def bad_link(url: str, forwarded_for: str) -> int:
    # The shape of a real token, so the lookup (and the failure count) really happens.
    token = secrets.token_urlsafe(32)
    response = httpx.get(f"{url}/r/{token}", headers={"X-Forwarded-For": forwarded_for}, timeout=10)
    return response.status_code


def workers(db_kind: str) -> list[str]:
    return ["--workers", "2"] if db_kind == "postgresql" else []


def test_a_local_client_cannot_rotate_its_address_by_default(
    migrated: Cli, serve: ServeStarter, db_kind: str
) -> None:
    process, url = serve(*workers(db_kind), BAD_TOKEN_LIMIT_PER_MINUTE=str(LIMIT))
    statuses = [bad_link(url, f"198.51.100.{i}") for i in range(LIMIT + 3)]
    _code, log = stop(process)
    assert statuses[:LIMIT] == [404] * LIMIT
    assert set(statuses[LIMIT:]) == {429}, statuses
    assert "198.51.100." not in log  # the access log names the real peer


def test_a_named_proxy_is_believed(migrated: Cli, serve: ServeStarter, db_kind: str) -> None:
    process, url = serve(
        *workers(db_kind), BAD_TOKEN_LIMIT_PER_MINUTE=str(LIMIT), FORWARDED_ALLOW_IPS="127.0.0.1"
    )
    # Behind the proxy, each forwarded client has an allowance of its own...
    rotating = [bad_link(url, f"198.51.100.{i}") for i in range(LIMIT + 3)]
    # ...and one client is limited by its forwarded address, whatever the proxy's.
    one_client = [bad_link(url, "203.0.113.7") for _ in range(LIMIT + 2)]
    _code, log = stop(process)
    assert rotating == [404] * (LIMIT + 3)
    assert one_client[:LIMIT] == [404] * LIMIT
    assert set(one_client[LIMIT:]) == {429}, one_client
    assert '203.0.113.7 "GET /r/' in log
