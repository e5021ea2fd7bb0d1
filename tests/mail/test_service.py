"""The outbox's bookkeeping: deleting a finished cause's mail and the texts it used."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.mail import service as mail_service
from app.mail.models import OutboxBody, OutboxMessage
from tests.conftest import TEST_SECRET_KEY
from tests.factories import make_message


def _queue(db: Session, *, tag: str, to: str) -> OutboxMessage:
    return make_message(
        db,
        kind="reminder",
        tag=tag,
        to_address=to,
        body_text=f"text for {tag}",
        secret_key=TEST_SECRET_KEY,
    )


def test_messages_of_several_tags_go_in_one_call_with_their_texts(db: Session) -> None:
    now = utcnow()
    for tag in ("cycle-1", "cycle-2", "cycle-3"):
        _queue(db, tag=tag, to=f"a@{tag}.example")
        _queue(db, tag=tag, to=f"b@{tag}.example")
    # Being sent right now (its lease runs): left for a later call.
    leased = _queue(db, tag="cycle-2", to="c@cycle-2.example")
    leased.locked_until = now + timedelta(minutes=5)
    db.flush()

    assert mail_service.delete_messages_by_tags(db, tags=[], now=now) == 0
    assert mail_service.delete_messages_by_tags(db, tags=["cycle-1", "cycle-2"], now=now) == 4

    left = db.execute(select(OutboxMessage.tag, OutboxMessage.to_address)).all()
    assert sorted(left) == [
        ("cycle-2", "c@cycle-2.example"),
        ("cycle-3", "a@cycle-3.example"),
        ("cycle-3", "b@cycle-3.example"),
    ]
    # Only the texts still used are kept.
    used = set(db.scalars(select(OutboxMessage.body_id)))
    assert set(db.scalars(select(OutboxBody.id))) == used

    later = now + timedelta(minutes=6)
    assert mail_service.delete_messages_by_tags(db, tags=["cycle-2"], now=later) == 1
    assert set(db.scalars(select(OutboxBody.id))) == set(db.scalars(select(OutboxMessage.body_id)))
