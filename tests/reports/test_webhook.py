"""The results-ready webhook against a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import utcnow
from app.reports.models import WebhookDelivery, WebhookStatus
from app.reports.webhook import SIGNATURE_HEADER, backoff, deliver_due_webhooks, verify
from tests.reports.factories import build_three_levels

SECRET = "webhook-secret-for-tests"


@dataclass
class Receiver:
    url: str
    status: int = 500
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/peer360"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def close_a_cycle(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        t = build_three_levels(session, name="W-2026-Q3")
        session.commit()
        return int(t["cycle"].id)


def deliveries(factory: sessionmaker[Session]) -> list[WebhookDelivery]:
    with factory() as session:
        return list(session.scalars(select(WebhookDelivery)))


def test_failing_receiver_then_working_one(
    committed_db: sessionmaker[Session], settings: Settings, receiver: Receiver
) -> None:
    cycle_id = close_a_cycle(committed_db)
    hooked = settings.model_copy(
        update={"results_webhook_url": receiver.url, "results_webhook_secret": SECRET}
    )

    receiver.status = 500
    now = utcnow()
    assert deliver_due_webhooks(committed_db, hooked, now=now) == 0
    [row] = deliveries(committed_db)
    assert row.status == WebhookStatus.pending and row.attempts == 1
    assert row.last_error == "HTTP 500"
    assert row.next_attempt_at == now + backoff(1)
    # Not due yet: nothing is sent.
    assert deliver_due_webhooks(committed_db, hooked, now=now + timedelta(seconds=5)) == 0
    assert len(receiver.received) == 1

    receiver.status = 204
    later = now + backoff(1) + timedelta(seconds=1)
    assert deliver_due_webhooks(committed_db, hooked, now=later) == 1
    [row] = deliveries(committed_db)
    assert row.status == WebhookStatus.delivered and row.attempts == 2 and row.last_error is None
    assert len(receiver.received) == 2

    headers, body = receiver.received[-1]
    assert verify(SECRET, body, headers[SIGNATURE_HEADER.lower()])
    assert not verify("wrong secret", body, headers[SIGNATURE_HEADER.lower()])
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert payload["event"] == "cycle.results_ready"
    assert payload["cycle"] == {"id": cycle_id, "name": "W-2026-Q3"}
    assert (
        payload["links"]["employees"]
        == f"http://testserver/api/v1/cycles/{cycle_id}/results/employees"
    )
    # Delivered once: another pass sends nothing.
    assert deliver_due_webhooks(committed_db, hooked, now=later + timedelta(hours=5)) == 0
    assert len(receiver.received) == 2


def test_unreachable_receiver_is_retried_then_given_up(
    committed_db: sessionmaker[Session], settings: Settings
) -> None:
    close_a_cycle(committed_db)
    from tests.conftest import free_port

    hooked = settings.model_copy(
        update={
            "results_webhook_url": f"http://127.0.0.1:{free_port()}/",
            "results_webhook_secret": SECRET,
        }
    )
    now = utcnow()
    with committed_db() as session:
        row = session.scalars(select(WebhookDelivery)).one()
        row.attempts = 11  # the next failure is the last one allowed
        session.commit()
    assert deliver_due_webhooks(committed_db, hooked, now=now) == 0
    [row] = deliveries(committed_db)
    assert row.status == WebhookStatus.failed and row.attempts == 12
    assert row.last_error and "Connect" in row.last_error


def test_no_secret_means_no_unsigned_post(
    committed_db: sessionmaker[Session], settings: Settings, receiver: Receiver
) -> None:
    close_a_cycle(committed_db)
    hooked = settings.model_copy(
        update={"results_webhook_url": receiver.url, "results_webhook_secret": None}
    )
    assert deliver_due_webhooks(committed_db, hooked) == 0
    assert receiver.received == []
    [row] = deliveries(committed_db)
    assert row.status == WebhookStatus.pending and "SECRET" in (row.last_error or "")


def test_without_a_url_rows_are_closed(
    committed_db: sessionmaker[Session], settings: Settings
) -> None:
    close_a_cycle(committed_db)
    assert deliver_due_webhooks(committed_db, settings) == 0
    [row] = deliveries(committed_db)
    assert row.status == WebhookStatus.skipped


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff(30) == timedelta(hours=2)


def test_the_worker_runs_the_delivery_pass() -> None:
    from app import lifecycle
    from app.reports.webhook import deliver_webhooks_job

    assert ("deliver results webhooks", deliver_webhooks_job) in lifecycle.scheduled_jobs()
