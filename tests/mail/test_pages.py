"""The HR outbox page: who may see it, and the local mailbox with clickable links."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.auth import service as auth_service
from app.auth.models import Role
from app.config import Settings
from app.cycles import service as cycles_service
from app.mail import sender
from app.mail.models import OutboxMessage, OutboxStatus
from tests.cycles.helpers import launched_cycle, make_company
from tests.factories import make_user


def login(client: TestClient, db: Session, role: Role) -> None:
    user = make_user(db, role=role)
    token, _row = auth_service.start_user_session(db, user=user)
    db.commit()
    client.cookies.set("p360_session", token)


def test_outbox_needs_hr(client: TestClient, db: Session) -> None:
    r = client.get("/outbox", follow_redirects=False)
    assert r.status_code in (302, 303, 401)
    login(client, db, Role.manager)
    assert client.get("/outbox").status_code == 403


def test_local_outbox_shows_delivered_mail_with_its_link(
    client: TestClient, db: Session, settings: Settings
) -> None:
    make_company(db, suppliers=1, customers=2)
    cycle = launched_cycle(db, settings)
    login(client, db, Role.hr)
    pending = client.get("/outbox")
    assert pending.status_code == 200
    assert pending.text.count("pending") >= 2
    assert "/r/" not in pending.text  # a queued link is never shown

    factory = sessionmaker(bind=db.connection(), join_transaction_mode="create_savepoint")
    assert sender.deliver_due(factory, settings).sent == 2
    db.expire_all()  # the page's session is the test's: forget what it read before
    page = client.get("/outbox")
    links = re.findall(r'href="(http://testserver/r/[A-Za-z0-9_-]+)"', page.text)
    assert len(links) == 2
    assert "Please rate your colleagues: " + cycle.name in page.text
    # The link in the page opens the rating page.
    opened = client.get(links[0].replace("http://testserver", ""), follow_redirects=True)
    assert opened.status_code == 200 and "Rate your colleagues" in opened.text
    assert client.get("/outbox?status=undeliverable").text.count("<tr>") <= 1
    assert client.get("/outbox?status=bogus").status_code == 422


def test_smtp_mode_never_shows_links(
    client: TestClient, db: Session, settings: Settings, app: object
) -> None:
    make_company(db, suppliers=1, customers=1)
    launched_cycle(db, settings)
    client.app.state.settings = settings.model_copy(update={"smtp_host": "mail.example.com"})  # type: ignore[attr-defined]
    login(client, db, Role.admin)
    page = client.get("/outbox")
    assert page.status_code == 200
    assert "mail.example.com" in page.text
    assert "/r/" not in page.text


def test_smtp_mode_lists_no_recipients_except_undeliverable(
    client: TestClient, db: Session, settings: Settings
) -> None:
    # A list of who got a reminder is a list of who had not answered yet: with a real
    # mail server the page shows counts, and addresses only for mail HR must fix.
    company = make_company(db, suppliers=1, customers=3)
    cycle = launched_cycle(db, settings)
    factory = sessionmaker(bind=db.connection(), join_transaction_mode="create_savepoint")
    assert sender.deliver_due(factory, settings).sent == 3
    assert cycles_service.send_reminders(db, cycle_id=cycle.id, settings=settings) == 3
    bounced = company.customers[0]
    db.execute(
        update(OutboxMessage)
        .where(OutboxMessage.kind == "reminder", OutboxMessage.to_address == bounced.email)
        .values(status=OutboxStatus.undeliverable, last_error="550 no such user")
    )
    db.flush()
    smtp = settings.model_copy(update={"smtp_host": "mail.example.com"})
    client.app.state.settings = smtp  # type: ignore[attr-defined]
    login(client, db, Role.hr)
    page = client.get("/outbox")
    assert page.status_code == 200
    assert bounced.email in page.text and "550 no such user" in page.text
    for customer in company.customers[1:]:
        assert customer.email not in page.text
        assert customer.full_name not in page.text
    # Counts by kind and status instead: 3 invitations sent; 2 reminders pending, 1 bounced.
    kinds = re.findall(r"<tr><td>(\w+)</td>((?:<td>\d+</td>)+)</tr>", page.text)
    table = {kind: re.findall(r"\d+", cells) for kind, cells in kinds}
    assert table == {"invitation": ["0", "3", "0"], "reminder": ["2", "0", "1"]}
    # A status filter cannot bring the other recipients back.
    for status in ("pending", "sent"):
        filtered = client.get(f"/outbox?status={status}")
        assert all(c.email not in filtered.text for c in company.customers[1:])

    # Local mode is the demo's mailbox: every message, with its recipient, as before.
    client.app.state.settings = settings  # type: ignore[attr-defined]
    local = client.get("/outbox")
    assert all(c.email in local.text for c in company.customers)
