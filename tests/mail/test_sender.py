"""Delivering the outbox over real SMTP (aiosmtpd on loopback) and into local .eml files."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import Message
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import utcnow
from app.mail import sender
from app.mail import service as mail_service
from app.mail.models import OutboxBody, OutboxMessage, OutboxStatus
from tests.conftest import TEST_SECRET_KEY, SmtpServer, free_port
from tests.factories import make_message


@pytest.fixture
def factory(db: Session) -> sessionmaker[Session]:
    """Sessions that share the test's rolled-back connection (one thread only)."""
    return sessionmaker(
        bind=db.connection(), join_transaction_mode="create_savepoint", expire_on_commit=False
    )


def queue(session: Session, n: int, *, tag: str = "cycle:1", kind: str = "invitation") -> None:
    mail_service.enqueue_messages(
        session,
        messages=[
            {
                "kind": kind,
                "tag": tag,
                "to_address": f"person{i}@example.com",
                "to_name": f"Person {i}",
                "subject": f"Rate your colleagues #{i}",
                "body_text": f"Hello Person {i}\nYour link: {mail_service.LINK_PLACEHOLDER}\n",
                "body_html": f'<p>Hello</p><a href="{mail_service.LINK_PLACEHOLDER}">open</a>',
                "secret_link": f"http://testserver/r/secret-token-{i:04d}-abcdefghijkl",
            }
            for i in range(n)
        ],
        secret_key=TEST_SECRET_KEY,
    )
    session.flush()


def rows(session: Session) -> list[OutboxMessage]:
    session.expire_all()
    return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def smtp_settings(settings: Settings, server: SmtpServer) -> Settings:
    return settings.model_copy(update={"smtp_host": server.host, "smtp_port": server.port})


def text_and_html(message: Message) -> tuple[str, str]:
    text = html = ""
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if part.get_content_type() == "text/plain":
            text = payload.decode(part.get_content_charset() or "utf-8")
        elif part.get_content_type() == "text/html":
            html = payload.decode(part.get_content_charset() or "utf-8")
    return text, html


def test_delivers_over_smtp_substitutes_and_erases_links(
    db: Session, factory: sessionmaker[Session], settings: Settings, smtp_server: SmtpServer
) -> None:
    queue(db, 3)
    stats = sender.deliver_due(factory, smtp_settings(settings, smtp_server))
    assert (stats.sent, stats.retried, stats.undeliverable) == (3, 0, 0)
    received = smtp_server.wait_for(3)
    assert len(received) == 3
    (message,) = [m for m in received if "<person1@example.com>" in m["To"]]
    text, html = text_and_html(message)
    assert "http://testserver/r/secret-token-0001-abcdefghijkl" in text
    assert 'href="http://testserver/r/secret-token-0001-abcdefghijkl"' in html
    assert mail_service.LINK_PLACEHOLDER not in text + html
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"]
    for row in rows(db):
        assert row.status == OutboxStatus.sent and row.sent_at is not None
        assert row.secret_link is None  # erased once sent
        assert row.attempts == 1 and row.locked_until is None
    # Nothing left to send.
    assert sender.deliver_due(factory, smtp_settings(settings, smtp_server)).attempted == 0
    assert len(smtp_server.messages) == 3


def test_one_connection_for_many_messages(
    db: Session,
    factory: sessionmaker[Session],
    settings: Settings,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = []
    original = sender.SmtpTransport._open

    def counting_open(self: sender.SmtpTransport) -> Any:
        opened.append(1)
        return original(self)

    monkeypatch.setattr(sender.SmtpTransport, "_open", counting_open)
    queue(db, 25)
    stats = sender.deliver_due(factory, smtp_settings(settings, smtp_server), batch_size=10)
    assert stats.sent == 25
    assert len(smtp_server.wait_for(25)) == 25
    assert len(opened) == 1


def test_local_mode_writes_eml_files_with_links(
    db: Session, factory: sessionmaker[Session], settings: Settings
) -> None:
    assert settings.smtp_host is None
    queue(db, 2)
    stats = sender.deliver_due(factory, settings)
    assert stats.sent == 2
    files = sorted(settings.mail_dir.glob("*.eml"))
    assert len(files) == 2
    from email import message_from_bytes

    text, html = text_and_html(message_from_bytes(files[0].read_bytes()))
    assert "http://testserver/r/secret-token-0000-abcdefghijkl" in text
    assert "secret-token-0000" in html
    assert all(r.status == OutboxStatus.sent and r.secret_link is None for r in rows(db))


def test_permanent_failure_is_undeliverable_and_counted(
    db: Session, factory: sessionmaker[Session], settings: Settings, smtp_server: SmtpServer
) -> None:
    queue(db, 2, tag="cycle:77")
    smtp_server.handler.fail_with = "550 5.1.1 No such user"
    stats = sender.deliver_due(factory, smtp_settings(settings, smtp_server))
    assert (stats.sent, stats.undeliverable) == (0, 2)
    for row in rows(db):
        assert row.status == OutboxStatus.undeliverable
        assert row.last_error and "550" in row.last_error
        assert row.secret_link is None
    assert mail_service.count_undeliverable(db, tag="cycle:77") == 2
    # Never retried.
    smtp_server.handler.fail_with = None
    later = utcnow() + timedelta(days=1)
    assert (
        sender.deliver_due(factory, smtp_settings(settings, smtp_server), now=later).attempted == 0
    )
    assert smtp_server.messages == []


def test_temporary_failure_is_retried_with_backoff(
    db: Session, factory: sessionmaker[Session], settings: Settings, smtp_server: SmtpServer
) -> None:
    queue(db, 2)
    smtp_server.handler.fail_with = "451 4.3.0 Try again later"
    config = smtp_settings(settings, smtp_server)
    start = utcnow()
    stats = sender.deliver_due(factory, config, now=start)
    assert (stats.sent, stats.retried) == (0, 2)
    first = rows(db)
    assert all(r.status == OutboxStatus.pending and r.attempts == 1 for r in first)
    assert all(r.next_attempt_at >= start + timedelta(seconds=29) for r in first)
    # Not due yet: nothing is attempted.
    assert sender.deliver_due(factory, config, now=start + timedelta(seconds=5)).attempted == 0
    smtp_server.handler.fail_with = None
    stats = sender.deliver_due(factory, config, now=start + timedelta(minutes=2))
    assert stats.sent == 2
    assert len(smtp_server.wait_for(2)) == 2
    assert all(r.status == OutboxStatus.sent and r.attempts == 2 for r in rows(db))


def test_gives_up_after_max_attempts(
    db: Session, factory: sessionmaker[Session], settings: Settings, smtp_server: SmtpServer
) -> None:
    queue(db, 1)
    smtp_server.handler.fail_with = "451 4.3.0 Try again later"
    config = smtp_settings(settings, smtp_server).model_copy(update={"mail_max_attempts": 3})
    at = utcnow()
    for _ in range(3):
        sender.deliver_due(factory, config, now=at)
        at += timedelta(hours=2)
    (row,) = rows(db)
    assert row.status == OutboxStatus.undeliverable
    assert row.last_error and "gave up after 3 attempts" in row.last_error


def test_smtp_down_then_up_loses_nothing_and_sends_once(
    db: Session, factory: sessionmaker[Session], settings: Settings, smtp_server: SmtpServer
) -> None:
    queue(db, 5)
    down = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": free_port()})
    start = utcnow()
    stats = sender.deliver_due(factory, down, now=start)
    assert stats.sent == 0 and stats.retried == 5
    assert stats.errors and "cannot connect" in stats.errors[0]
    assert all(r.status == OutboxStatus.pending and r.secret_link for r in rows(db))
    up = smtp_settings(settings, smtp_server)
    stats = sender.deliver_due(factory, up, now=start + timedelta(minutes=5))
    assert stats.sent == 5
    received = smtp_server.wait_for(5)
    assert sorted(m["To"] for m in received) == sorted(set(m["To"] for m in received))
    assert len(received) == 5
    assert sender.deliver_due(factory, up, now=start + timedelta(hours=5)).attempted == 0
    assert len(smtp_server.messages) == 5


def test_a_crashed_worker_means_at_most_one_resend(
    db: Session, factory: sessionmaker[Session], settings: Settings, smtp_server: SmtpServer
) -> None:
    queue(db, 3)
    start = utcnow()
    # A worker claims a batch and dies before recording anything.
    with factory() as session, session.begin():
        claimed = sender.claim_batch(session, now=start)
    assert len(claimed) == 3
    config = smtp_settings(settings, smtp_server)
    # While its lease runs, nobody else touches those messages.
    assert sender.deliver_due(factory, config, now=start + timedelta(minutes=1)).attempted == 0
    # After the lease: sent once, and never again.
    after = start + sender.LEASE + timedelta(seconds=1)
    assert sender.deliver_due(factory, config, now=after).sent == 3
    assert sender.deliver_due(factory, config, now=after + timedelta(hours=1)).attempted == 0
    assert len(smtp_server.wait_for(3)) == 3
    assert all(r.attempts == 2 for r in rows(db))


def test_header_injection_in_names_is_neutralised(
    db: Session, factory: sessionmaker[Session], settings: Settings, smtp_server: SmtpServer
) -> None:
    make_message(
        db,
        kind="invitation",
        to_address="victim@example.com",
        to_name="Eve\r\nBcc: attacker@example.com",
        subject="Hi\nBcc: attacker@example.com",
        body_text="x",
        secret_key=TEST_SECRET_KEY,
    )
    assert sender.deliver_due(factory, smtp_settings(settings, smtp_server)).sent == 1
    (message,) = smtp_server.wait_for(1)
    assert message["Bcc"] is None


def test_each_recipient_gets_their_name_in_the_shared_text(
    db: Session, factory: sessionmaker[Session], settings: Settings, smtp_server: SmtpServer
) -> None:
    placeholder = mail_service.NAME_PLACEHOLDER
    mail_service.enqueue_messages(
        db,
        messages=[
            {
                "kind": "invitation",
                "to_address": f"p{i}@example.com",
                "to_name": name,
                "subject": "Rate",
                "body_text": f"Hello {placeholder}, {mail_service.LINK_PLACEHOLDER}",
                "body_html": f"<p>Hello {placeholder}</p>",
                "secret_link": f"http://testserver/r/token-{i}",
            }
            for i, name in enumerate(["Ann", "<Eve> & Co"])
        ],
        secret_key=TEST_SECRET_KEY,
    )
    assert len({m.body_id for m in rows(db)}) == 1  # one text stored for both
    assert sender.deliver_due(factory, smtp_settings(settings, smtp_server)).sent == 2
    received = {m["To"]: m for m in smtp_server.wait_for(2)}
    ann = next(m for to, m in received.items() if "p0@" in to)
    eve = next(m for to, m in received.items() if "p1@" in to)
    assert "Hello Ann, http://testserver/r/token-0" in _part(ann, "text/plain")
    assert "Hello <Eve> & Co, http://testserver/r/token-1" in _part(eve, "text/plain")
    assert "<p>Hello &lt;Eve&gt; &amp; Co</p>" in _part(eve, "text/html")


def _part(message: Message, content_type: str) -> str:
    for part in message.walk():
        if part.get_content_type() == content_type:
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise AssertionError(f"no {content_type} part")


def test_a_message_without_its_text_does_not_stop_the_queue(
    db: Session, factory: sessionmaker[Session], settings: Settings, smtp_server: SmtpServer
) -> None:
    queue(db, 3)
    broken = make_message(
        db,
        kind="invitation",
        to_address="lost@example.com",
        to_name="Lost",
        body_text="mine alone",
        secret_key=TEST_SECRET_KEY,
    )
    db.execute(delete(OutboxBody).where(OutboxBody.id == broken.body_id))
    assert sender.deliver_due(factory, smtp_settings(settings, smtp_server)).sent == 3
    assert len(smtp_server.wait_for(3)) == 3
    db.expire_all()
    lost = db.get(OutboxMessage, broken.id)
    assert lost is not None and lost.status == OutboxStatus.undeliverable
    assert lost.last_error == "The message's text is missing"


# --- several workers --------------------------------------------------------------------


@pytest.fixture
def many_messages(committed_db: sessionmaker[Session]) -> Iterator[int]:
    with committed_db() as session:
        queue(session, 240)
        session.commit()
    yield 240


def test_two_workers_never_send_the_same_message_twice(
    committed_db: sessionmaker[Session],
    settings: Settings,
    smtp_server: SmtpServer,
    many_messages: int,
) -> None:
    config = smtp_settings(settings, smtp_server)
    results: list[sender.DeliveryStats] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        try:
            barrier.wait()
            results.append(sender.deliver_due(committed_db, config, batch_size=20))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    received = smtp_server.wait_for(many_messages)
    recipients = [m["To"] for m in received]
    assert len(recipients) == many_messages
    assert len(set(recipients)) == many_messages
    assert sum(r.sent for r in results) == many_messages
    with committed_db() as session:
        counts = mail_service.count_by_status(session)
        attempts = session.scalar(select(func.max(OutboxMessage.attempts)))
    assert counts["sent"] == many_messages and attempts == 1
