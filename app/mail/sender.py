"""Deliver the outbox over SMTP (or into a local mail directory when none is configured).

One pass claims due messages in batches, sends them over one reused connection and
records the outcome of a whole batch in one short transaction:

* a claim sets a lease (``locked_until``) and counts the attempt up front, so a worker
  that dies mid-batch leaves messages that become due again when the lease runs out:
  each is sent at most once more;
* on PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED``, so several workers never
  claim the same row; on SQLite the claim runs under the database write lock;
* temporary failures (4xx, refused or dropped connections, timeouts) are retried with
  exponential backoff; permanent ones (5xx) mark the message undeliverable.
"""

from __future__ import annotations

import base64
import contextlib
import html
import logging
import secrets
import smtplib
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import queue, utcnow, writer_session
from app.mail.models import (
    OutboxBody,
    OutboxMessage,
    OutboxStatus,
    for_recipient,
    for_recipient_html,
)
from app.mail.service import LINK_PLACEHOLDER, open_link

log = logging.getLogger(__name__)

BATCH_SIZE = 200
LEASE = timedelta(minutes=5)
# Stop starting new sends this long before the lease ends, so no other worker can
# claim a message while we may still be sending it.
LEASE_MARGIN_SECONDS = 60
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600


@dataclass(frozen=True)
class Outgoing:
    """A claimed message, detached from the session while it is being sent."""

    id: int
    kind: str
    to_address: str
    to_name: str
    subject: str
    body_text: str
    body_html: str | None
    secret_link: str | None
    attempts: int


@dataclass
class DeliveryStats:
    sent: int = 0
    retried: int = 0
    undeliverable: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.sent + self.retried + self.undeliverable


class TemporaryFailure(Exception):
    """Try again later (4xx, connection problems)."""

    def __init__(self, message: str, *, connection_lost: bool = False) -> None:
        super().__init__(message)
        self.connection_lost = connection_lost


class PermanentFailure(Exception):
    """The server refused this message for good (5xx)."""


class Transport(Protocol):
    def send(self, message: Outgoing, data: bytes) -> None: ...

    def close(self) -> None: ...


def _header_safe(value: str) -> str:
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def build_email(settings: Settings, message: Outgoing) -> bytes:
    """The MIME message as bytes, with the private link put in place of the placeholder.

    Built by hand rather than with ``email.message.EmailMessage``: the structure is fixed
    (text, optionally with an HTML alternative, both base64 UTF-8), and the standard
    header machinery costs several times more than sending the message over loopback.
    """
    link = open_link(settings.secret_key, message.secret_link) or ""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "peer360.local"
    headers = [
        f"From: {_encode_header(settings.mail_from, address=True)}",
        f"To: {formataddr((_header_safe(message.to_name), message.to_address), 'utf-8')}",
        f"Subject: {_encode_header(_header_safe(message.subject))}",
        f"Date: {formatdate(usegmt=True)}",
        f"Message-ID: <{message.id}.{secrets.token_hex(8)}@{domain}>",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
    ]
    text = _base64_part("plain", message.body_text.replace(LINK_PLACEHOLDER, link))
    if not message.body_html:
        return CRLF.join([*headers, *text]).encode("ascii") + CRLF_BYTES
    boundary = f"=_peer360_{secrets.token_hex(12)}"
    body_html = message.body_html.replace(LINK_PLACEHOLDER, html.escape(link, quote=True))
    lines = [
        *headers,
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        f"--{boundary}",
        *text,
        f"--{boundary}",
        *_base64_part("html", body_html),
        f"--{boundary}--",
        "",
    ]
    return CRLF.join(lines).encode("ascii")


CRLF = "\r\n"
CRLF_BYTES = b"\r\n"


def _base64_part(subtype: str, content: str) -> list[str]:
    encoded = base64.encodebytes(content.replace("\r\n", "\n").replace("\n", "\r\n").encode())
    return [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        encoded.decode("ascii").rstrip("\n").replace("\n", CRLF),
    ]


@lru_cache(maxsize=1024)
def _encode_header(value: str, *, address: bool = False) -> str:
    if address:
        name, addr = parseaddr(value)
        return formataddr((name, addr), "utf-8") if addr else _encode_header(value)
    if value.isascii():
        return value
    return Header(value, "utf-8").encode()


class SmtpTransport:
    """One SMTP connection, opened on first use and reused for every message."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.envelope_from = parseaddr(settings.mail_from)[1] or "no-reply@peer360.local"
        self._smtp: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        assert s.smtp_host
        try:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
            smtp.ehlo()
            if s.smtp_starttls:
                smtp.starttls()
                smtp.ehlo()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
        except (OSError, smtplib.SMTPException) as exc:
            # Even a 5xx here (e.g. bad credentials) is about the server, not this
            # message: retry later rather than give the message up.
            raise TemporaryFailure(
                f"cannot connect to {s.smtp_host}:{s.smtp_port}: {exc}", connection_lost=True
            ) from exc
        return smtp

    def send(self, message: Outgoing, data: bytes) -> None:
        if self._smtp is None:
            self._smtp = self._open()
        try:
            self._smtp.sendmail(self.envelope_from, [message.to_address], data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (0, b""))
            _raise_for_code(code, reply)
        except smtplib.SMTPResponseException as exc:
            _raise_for_code(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise TemporaryFailure(f"connection lost: {exc}", connection_lost=True) from exc
        except smtplib.SMTPException as exc:
            raise PermanentFailure(f"refused: {exc}") from exc

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.quit()
            self._drop()


def _raise_for_code(code: int, reply: bytes | str) -> None:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    detail = f"{code} {text}".strip()
    if 400 <= code < 500:
        raise TemporaryFailure(detail)
    raise PermanentFailure(detail)


class MailDirTransport:
    """No SMTP configured: every message becomes an .eml file, the local mailbox."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: Outgoing, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / eml_name(message.id, message.kind)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def close(self) -> None:
        pass


def eml_name(message_id: int, kind: str) -> str:
    safe_kind = "".join(ch for ch in kind if ch.isalnum() or ch in "-_") or "mail"
    return f"{message_id:09d}-{safe_kind}.eml"


def make_transport(settings: Settings) -> Transport:
    if settings.smtp_host:
        return SmtpTransport(settings)
    return MailDirTransport(settings.mail_dir)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min ... capped at an hour."""
    return queue.backoff(
        attempts,
        base=timedelta(seconds=BACKOFF_BASE_SECONDS),
        cap=timedelta(seconds=BACKOFF_MAX_SECONDS),
    )


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(OutboxMessage.status == OutboxStatus.pending, OutboxMessage.next_attempt_at <= now)


def claim_batch(
    session: Session, *, now: datetime, limit: int = BATCH_SIZE, lease: timedelta = LEASE
) -> list[Outgoing]:
    """Lease up to ``limit`` due messages to this worker (committed by the caller)."""
    rows = queue.claim(
        session,
        OutboxMessage,
        due=_due(now),
        order_by=(OutboxMessage.next_attempt_at, OutboxMessage.id),
        now=now,
        lease=lease,
        limit=limit,
        returning=(
            OutboxMessage.id,
            OutboxMessage.kind,
            OutboxMessage.to_address,
            OutboxMessage.to_name,
            OutboxMessage.subject,
            OutboxMessage.body_id,
            OutboxMessage.secret_link,
            OutboxMessage.attempts,
        ),
    )
    # A batch of a mass mail shares one or a few bodies: read each once.
    bodies = {
        body_id: (text, html_text)
        for body_id, text, html_text in session.execute(
            select(OutboxBody.id, OutboxBody.body_text, OutboxBody.body_html).where(
                OutboxBody.id.in_(sorted({row.body_id for row in rows}))
            )
        )
    }
    outgoing = []
    textless = []
    for row in rows:
        if row.body_id not in bodies:
            textless.append(row.id)
            continue
        text, html_text = bodies[row.body_id]
        outgoing.append(
            Outgoing(
                id=row.id,
                kind=row.kind,
                to_address=row.to_address,
                to_name=row.to_name,
                subject=row.subject,
                body_text=for_recipient(text, row.to_name),
                body_html=None if html_text is None else for_recipient_html(html_text, row.to_name),
                secret_link=row.secret_link,
                attempts=row.attempts,
            )
        )
    if textless:
        # Never expected (bodies go only with their last message); should one be
        # missing, that message must not stop the queue by failing every batch.
        log.error("%d outbox messages have no text; marked undeliverable", len(textless))
        _give_up(
            session, [(message_id, "The message's text is missing") for message_id in textless]
        )
    return sorted(outgoing, key=lambda m: m.id)


def record_outcome(
    session: Session,
    *,
    now: datetime,
    sent: list[int],
    failed: list[tuple[Outgoing, str]],
    refused: list[tuple[Outgoing, str]],
    released: list[int],
    max_attempts: int,
) -> tuple[int, int]:
    """Store a batch's results; returns (retried, undeliverable)."""
    if sent:
        # The link is erased as soon as the message has left: the outbox no longer
        # holds anything that opens a rating page.
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(sent))
            .values(
                status=OutboxStatus.sent,
                sent_at=now,
                secret_link=None,
                locked_until=None,
                last_error=None,
            )
            .execution_options(synchronize_session=False)
        )
    if released:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(released))
            .values(locked_until=None, attempts=OutboxMessage.attempts - 1)
            .execution_options(synchronize_session=False)
        )
    retry_rows = []
    give_up_rows: list[tuple[int, str]] = []
    for message, error in failed:
        if message.attempts >= max_attempts:
            give_up_rows.append((message.id, f"gave up after {message.attempts} attempts: {error}"))
        else:
            retry_rows.append(
                {
                    "id": message.id,
                    "next_attempt_at": now + backoff(message.attempts),
                    "locked_until": None,
                    "last_error": error[:1000],
                }
            )
    give_up_rows += [(m.id, error) for m, error in refused]
    if retry_rows:
        session.execute(update(OutboxMessage), retry_rows)
    _give_up(session, give_up_rows)
    return len(retry_rows), len(give_up_rows)


def _give_up(session: Session, messages: list[tuple[int, str]]) -> None:
    """Mark messages (id, reason) undeliverable for good; their sealed links go too."""
    if not messages:
        return
    session.execute(
        update(OutboxMessage),
        [
            {
                "id": message_id,
                "status": OutboxStatus.undeliverable,
                "locked_until": None,
                "secret_link": None,
                "last_error": error[:1000],
            }
            for message_id, error in messages
        ],
    )


def deliver_due(
    factory: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    max_batches: int | None = None,
    transport: Transport | None = None,
) -> DeliveryStats:
    """Send every message that is due, batch by batch, over one connection."""
    stats = DeliveryStats()
    own_transport = transport is None
    transport = transport or make_transport(settings)
    batches = 0
    try:
        while max_batches is None or batches < max_batches:
            batches += 1
            at = now or utcnow()
            if not queue.any_due(factory, OutboxMessage, due=_due(at), now=at):
                break
            with writer_session(factory) as session, session.begin():
                batch = claim_batch(session, now=at, limit=batch_size)
            if not batch:
                break
            server_down = _send_batch(factory, settings, transport, batch, at, stats)
            if server_down or len(batch) < batch_size:
                break
    finally:
        if own_transport:
            transport.close()
    return stats


def _send_batch(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    batch: list[Outgoing],
    claimed_at: datetime,
    stats: DeliveryStats,
) -> bool:
    deadline = time.monotonic() + LEASE.total_seconds() - LEASE_MARGIN_SECONDS
    sent: list[int] = []
    failed: list[tuple[Outgoing, str]] = []
    refused: list[tuple[Outgoing, str]] = []
    released: list[int] = []
    server_down = False
    # Build the whole batch first, then send it in a tight loop.
    prepared: list[tuple[Outgoing, bytes]] = []
    for message in batch:
        try:
            prepared.append((message, build_email(settings, message)))
        except (ValueError, TypeError, UnicodeError) as exc:
            refused.append((message, f"cannot build the message: {exc}"))
    for index, (message, data) in enumerate(prepared):
        if server_down:
            # The server is unreachable: the rest of the batch backs off with it.
            failed.extend((m, failed[-1][1]) for m, _data in prepared[index:])
            break
        if time.monotonic() > deadline:
            released.extend(m.id for m, _data in prepared[index:])
            break
        try:
            _send_with_one_reconnect(transport, message, data)
        except TemporaryFailure as exc:
            failed.append((message, str(exc)))
            if exc.connection_lost:
                server_down = True
                stats.errors.append(str(exc))
        except PermanentFailure as exc:
            refused.append((message, str(exc)))
        else:
            sent.append(message.id)
    with writer_session(factory) as session, session.begin():
        at = max(utcnow(), claimed_at)
        retried, undeliverable = record_outcome(
            session,
            now=at,
            sent=sent,
            failed=failed,
            refused=refused,
            released=released,
            max_attempts=settings.mail_max_attempts,
        )
    stats.sent += len(sent)
    stats.retried += retried
    stats.undeliverable += undeliverable
    if failed or refused:
        # Addresses and ids only: never a body, and so never a link.
        log.warning(
            "mail: %d sent, %d to retry, %d undeliverable in this batch",
            len(sent),
            retried,
            undeliverable,
        )
    return server_down


def _send_with_one_reconnect(transport: Transport, message: Outgoing, data: bytes) -> None:
    try:
        transport.send(message, data)
    except TemporaryFailure as exc:
        if not exc.connection_lost or not isinstance(transport, SmtpTransport):
            raise
        # A server may drop an idle or long-used connection: reconnect once.
        transport.send(message, data)
