"""The "results ready" webhook for the HRIS.

``compute_cycle_results`` queues a ``WebhookDelivery`` row in the closing transaction,
so a notification exists exactly when the results do. A worker pass
(:func:`deliver_due_webhooks`) posts due rows to ``RESULTS_WEBHOOK_URL``, signed with
HMAC-SHA256 over the raw body (``X-Peer360-Signature: sha256=<hex>``), and retries with
exponential backoff. Each row is leased (``locked_until``) before the POST, so two
workers never post the same row at once; on PostgreSQL rows are claimed with
``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import queue, utcnow, writer_session
from app.reports.models import WebhookDelivery, WebhookStatus

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Peer360-Signature"
MAX_ATTEMPTS = 12
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=2)
LEASE = timedelta(minutes=2)
TIMEOUT_SECONDS = 10.0
BATCH = 20


def sign(secret: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at 2 hours."""
    return queue.backoff(attempts, base=BASE_DELAY, cap=MAX_DELAY)


def payload_body(delivery: WebhookDelivery, settings: Settings, *, now: datetime) -> bytes:
    """The JSON body: the event, the cycle and absolute links to its results."""
    cycle_id = delivery.cycle_id
    base = settings.base_url.rstrip("/")
    body: dict[str, Any] = {
        "event": delivery.event,
        "delivery_id": delivery.id,
        "sent_at": now.isoformat() + "Z",
        "cycle": {"id": cycle_id, "name": delivery.payload.get("cycle_name")},
        "links": {
            "company": f"{base}/api/v1/cycles/{cycle_id}/results/company",
            "departments": f"{base}/api/v1/cycles/{cycle_id}/results/departments",
            "employees": f"{base}/api/v1/cycles/{cycle_id}/results/employees",
        },
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        WebhookDelivery.status == WebhookStatus.pending, WebhookDelivery.next_attempt_at <= now
    )


def _claim(session: Session, *, now: datetime) -> list[WebhookDelivery]:
    ids = queue.claim(
        session,
        WebhookDelivery,
        due=_due(now),
        order_by=(WebhookDelivery.next_attempt_at, WebhookDelivery.id),
        now=now,
        lease=LEASE,
        limit=BATCH,
        returning=(WebhookDelivery.id,),
    )
    rows = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.id.in_([row.id for row in ids]))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .execution_options(populate_existing=True)
    )
    return list(rows)


def deliver_due_webhooks(
    session_factory: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    client: httpx.Client | None = None,
) -> int:
    """One worker pass: post every due notification; returns how many were delivered."""
    now = now or utcnow()
    url, secret = settings.results_webhook_url, settings.results_webhook_secret
    if not queue.any_due(session_factory, WebhookDelivery, due=_due(now), now=now):
        return 0
    with writer_session(session_factory) as session, session.begin():
        if not url:
            # Nobody to notify: close the rows rather than let them pile up.
            for row in _claim(session, now=now):
                row.status = WebhookStatus.skipped
                row.locked_until = None
                row.last_error = "RESULTS_WEBHOOK_URL is not set"
            return 0
        claimed = [
            (row.id, payload_body(row, settings, now=now), row.attempts)
            for row in _claim(session, now=now)
        ]
    if not claimed:
        return 0

    own_client = client is None
    http = client or httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False)
    outcomes: list[tuple[int, int, str | None]] = []
    try:
        for delivery_id, body, attempts in claimed:
            outcomes.append((delivery_id, attempts, _post(http, url, secret, delivery_id, body)))
    finally:
        if own_client:
            http.close()

    delivered = 0
    with writer_session(session_factory) as session, session.begin():
        for delivery_id, attempts, error in outcomes:
            found = session.get(WebhookDelivery, delivery_id)
            if found is None:
                continue
            row = found
            row.locked_until = None
            if error is None:
                row.status = WebhookStatus.delivered
                row.delivered_at = utcnow()
                row.last_error = None
                delivered += 1
            else:
                row.last_error = error[:500]
                if attempts >= MAX_ATTEMPTS:
                    row.status = WebhookStatus.failed
                else:
                    row.next_attempt_at = now + backoff(attempts)
                log.warning(
                    "results webhook %s attempt %s failed: %s", delivery_id, attempts, error[:200]
                )
    return delivered


def _post(
    http: httpx.Client, url: str, secret: str | None, delivery_id: int, body: bytes
) -> str | None:
    """POST one body; None on a 2xx answer, else why it failed."""
    if not secret:
        # Unsigned results notifications could be forged by anyone; wait for a secret.
        return "RESULTS_WEBHOOK_SECRET is not set; not sending unsigned notifications"
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Peer360-Webhook/1",
        "X-Peer360-Event": "cycle.results_ready",
        "X-Peer360-Delivery": str(delivery_id),
        SIGNATURE_HEADER: sign(secret, body),
    }
    try:
        response = http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


def deliver_webhooks_job(settings: Settings, engine: Any, factory: sessionmaker[Session]) -> None:
    """The worker's scheduled job: one delivery pass (signature of lifecycle's jobs)."""
    delivered = deliver_due_webhooks(factory, settings)
    if delivered:
        log.info("results webhook: %d notification(s) delivered", delivered)
