"""The transactional outbox: a message is written in the same transaction as the
business change that causes it, and a worker delivers it later."""

from __future__ import annotations

import enum
import html
from datetime import datetime

from sqlalchemy import DateTime, Enum, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, foreign, mapped_column, relationship

from app.db import Base, utcnow

# Stands for the recipient's name in a text stored once for many recipients; the sender
# puts each message's ``to_name`` in its place.
NAME_PLACEHOLDER = "[[recipient-name]]"


def for_recipient(text: str, name: str) -> str:
    """A plain-text body with the recipient's name in place of the placeholder."""
    return text.replace(NAME_PLACEHOLDER, name)


def for_recipient_html(body: str, name: str) -> str:
    """An HTML body with the recipient's name, escaped, in place of the placeholder."""
    return body.replace(NAME_PLACEHOLDER, html.escape(name))


class OutboxStatus(enum.StrEnum):
    pending = "pending"
    sent = "sent"
    undeliverable = "undeliverable"


class OutboxBody(Base):
    """The text of a mailing, stored once for all of its messages.

    A launch mails every customer a text that differs only by the name: one row per
    language and variant instead of 50,000 copies of two kilobytes (written at launch,
    and overwritten with zeros when the close deletes the cycle's mail). Deleted with
    the last message that uses it (``mail.service.delete_unused_bodies``).
    """

    __tablename__ = "outbox_body"

    id: Mapped[int] = mapped_column(primary_key=True)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    __tablename__ = "outbox_message"
    __table_args__ = (
        Index("ix_outbox_message_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # What caused it, e.g. "invitation" or "reminder", and a free tag such as "cycle:12"
    # so HR can count undeliverable mail per cycle without mail importing other domains.
    kind: Mapped[str] = mapped_column(String(30))
    tag: Mapped[str | None] = mapped_column(String(50), index=True)
    to_address: Mapped[str] = mapped_column(String(320))
    to_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(300))
    # No foreign key: PostgreSQL would check it row by row for the 50,000 messages of a
    # launch; bodies are only deleted once no message uses them.
    body_id: Mapped[int] = mapped_column(Integer, index=True)
    # The private link, kept apart from the body so it can be erased once sent.
    secret_link: Mapped[str | None] = mapped_column(Text)
    status: Mapped[OutboxStatus] = mapped_column(
        Enum(OutboxStatus, native_enum=False, length=15, validate_strings=True),
        default=OutboxStatus.pending,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # A worker's lease: if it dies mid-send the lease runs out and another worker retries.
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)

    body: Mapped[OutboxBody] = relationship(
        primaryjoin=lambda: foreign(OutboxMessage.body_id) == OutboxBody.id
    )

    @property
    def body_text(self) -> str:
        """The plain text as this recipient gets it (the link still a placeholder)."""
        return for_recipient(self.body.body_text, self.to_name)

    @property
    def body_html(self) -> str | None:
        """The HTML as this recipient gets it (the link still a placeholder)."""
        if self.body.body_html is None:
            return None
        return for_recipient_html(self.body.body_html, self.to_name)
