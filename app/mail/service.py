"""The outbox: queue a message in the caller's transaction, read it back for HR.

A private link never sits in a message body. The body holds :data:`LINK_PLACEHOLDER`;
the link itself lives in ``secret_link`` only until the message is sent, when the sender
substitutes it and erases the column. It is stored encrypted (AES-GCM, key derived from
``SECRET_KEY``), so the database, its WAL and its backups never hold a usable link.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, delete, exists, func, insert, not_, select
from sqlalchemy.orm import Session

from app import crypto, i18n
from app.db import utcnow
from app.db.wakeup import wake_worker
from app.mail.models import NAME_PLACEHOLDER as NAME_PLACEHOLDER
from app.mail.models import OutboxBody, OutboxMessage, OutboxStatus

LINK_PLACEHOLDER = "[[private-link]]"
_COLUMNS = (
    "kind",
    "tag",
    "to_address",
    "to_name",
    "subject",
    "secret_link",
)


# (subject, plain text, HTML) of one variant of a mass mail, with the placeholders in.
Texts = tuple[str, str, str]


class MassMail:
    """One email to many people, each variant rendered and stored once.

    A launch mails every customer: rendering two Jinja templates 50,000 times would
    dominate it, while the texts differ only by the name, the language and perhaps a
    count. ``render(language, variant)`` renders one variant with :data:`NAME_PLACEHOLDER`
    and :data:`LINK_PLACEHOLDER` in place of the name and the private link; the variant
    is stored once (:class:`OutboxBody`) and the sender fills in both.
    """

    def __init__(self, *, kind: str, tag: str, render: Callable[[str, Hashable], Texts]) -> None:
        self.kind = kind
        self.tag = tag
        self._render = render
        self._cache: dict[tuple[str, Hashable], Texts] = {}

    def message(
        self,
        *,
        to_address: str,
        to_name: str,
        language: str,
        link: str,
        variant: Hashable = None,
    ) -> dict[str, Any]:
        """The outbox row (for :func:`enqueue_messages`) for one recipient."""
        key = (i18n.normalize_language(language), variant)
        if key not in self._cache:
            self._cache[key] = self._render(*key)
        subject, text, body = self._cache[key]
        return {
            "kind": self.kind,
            "tag": self.tag,
            "to_address": to_address,
            "to_name": to_name,
            "subject": subject,
            "body_text": text,
            "body_html": body,
            "secret_link": link,
        }


def _link_key(secret_key: str) -> bytes:
    return crypto.derive_key(secret_key, "outbox-link")


def seal_link(secret_key: str, link: str | None) -> str | None:
    """The private link as stored in the outbox (encrypted)."""
    if link is None:
        return None
    return crypto.encrypt_text(_link_key(secret_key), link, context=b"outbox-link")


def open_link(secret_key: str, sealed: str | None) -> str | None:
    """The link back; :class:`app.crypto.DecryptionFailed` under another ``SECRET_KEY``."""
    if sealed is None:
        return None
    return crypto.decrypt_text(_link_key(secret_key), sealed, context=b"outbox-link")


def enqueue_message(
    session: Session,
    *,
    kind: str,
    tag: str | None,
    to_address: str,
    to_name: str,
    subject: str,
    body_text: str,
    body_html: str | None,
    secret_link: str | None,
    secret_key: str,
) -> OutboxMessage:
    """Queue one email; it is sent after the caller's transaction commits."""
    message = OutboxMessage(
        kind=kind,
        tag=tag,
        to_address=to_address,
        to_name=to_name,
        subject=subject,
        body=OutboxBody(body_text=body_text, body_html=body_html),
        secret_link=seal_link(secret_key, secret_link),
        status=OutboxStatus.pending,
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(message)
    session.flush()
    wake_worker(session)
    return message


def enqueue_messages(
    session: Session, *, messages: Iterable[Mapping[str, Any]], secret_key: str
) -> int:
    """Queue many emails with bulk inserts (a launch queues one per customer).

    Each message gives its ``body_text`` and ``body_html``; messages with the same texts
    (a mass mail's variant, the name still a placeholder) share one stored body.
    """
    now = utcnow()
    messages = list(messages)
    bodies: dict[tuple[str, str | None], OutboxBody] = {}
    for message in messages:
        texts = (message["body_text"], message.get("body_html"))
        if texts not in bodies:
            bodies[texts] = OutboxBody(body_text=texts[0], body_html=texts[1])
    session.add_all(bodies.values())
    session.flush()
    rows = [
        {
            **{column: message.get(column) for column in _COLUMNS},
            "body_id": bodies[(message["body_text"], message.get("body_html"))].id,
            "secret_link": seal_link(secret_key, message.get("secret_link")),
            "to_name": message.get("to_name") or "",
            "status": OutboxStatus.pending,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for message in messages
    ]
    for start in range(0, len(rows), 5000):
        # Core insert: no ORM bookkeeping for rows nobody loads back.
        session.execute(insert(cast(Table, OutboxMessage.__table__)), rows[start : start + 5000])
    if rows:
        wake_worker(session)
    return len(rows)


def count_undeliverable(session: Session, *, tag: str) -> int:
    """Messages with this tag that the mail server refused for good."""
    return (
        session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.tag == tag, OutboxMessage.status == OutboxStatus.undeliverable)
        )
        or 0
    )


def count_by_status(session: Session, *, tag: str | None = None) -> dict[str, int]:
    """How many messages are pending, sent and undeliverable (optionally for one tag)."""
    query = select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    if tag is not None:
        query = query.where(OutboxMessage.tag == tag)
    counts = {status.value: 0 for status in OutboxStatus}
    for status, count in session.execute(query):
        counts[OutboxStatus(status).value] = count
    return counts


def recent_messages(
    session: Session, *, limit: int = 100, status: OutboxStatus | None = None
) -> list[OutboxMessage]:
    """The newest messages first (optionally of one status), for the HR outbox page."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if status is not None:
        query = query.where(OutboxMessage.status == status)
    return list(session.scalars(query))


def count_by_kind(session: Session) -> dict[str, dict[str, int]]:
    """Per kind ("invitation", "reminder"...), how many messages have each status."""
    query = select(OutboxMessage.kind, OutboxMessage.status, func.count()).group_by(
        OutboxMessage.kind, OutboxMessage.status
    )
    counts: dict[str, dict[str, int]] = {}
    for kind, status, count in session.execute(query):
        row = counts.setdefault(kind, {s.value: 0 for s in OutboxStatus})
        row[OutboxStatus(status).value] = count
    return dict(sorted(counts.items()))


def delete_messages_by_tags(
    session: Session, *, tags: Collection[str], now: datetime | None = None
) -> int:
    """Delete every message with one of these tags, whatever its status, and the texts
    no message uses any more; returns how many messages.

    A message a worker is sending right now (its lease has not run out) is left for a
    later call, so the worker can still record its outcome.
    """
    if not tags:
        return 0
    # Who was reminded, and when, says who had not answered by that date: once the
    # cause is over (a closed cycle) the rows have no further use.
    now = now or utcnow()
    leased = and_(
        OutboxMessage.status == OutboxStatus.pending,
        OutboxMessage.locked_until.is_not(None),
        OutboxMessage.locked_until > now,
    )
    result = session.execute(delete(OutboxMessage).where(OutboxMessage.tag.in_(tags), not_(leased)))
    deleted = int(getattr(result, "rowcount", 0) or 0)
    if deleted:
        delete_unused_bodies(session)
    return deleted


def delete_unused_bodies(session: Session) -> int:
    """Delete the bodies no message uses any more (after messages were deleted)."""
    result = session.execute(
        delete(OutboxBody).where(~exists().where(OutboxMessage.body_id == OutboxBody.id))
    )
    return int(getattr(result, "rowcount", 0) or 0)
