"""The outbox page for HR: what was queued and sent, and in local mode the mailbox itself."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.responses import Response

from app.auth.deps import SettingsDep, require_role
from app.auth.models import Role
from app.config import Settings
from app.db import SessionDep
from app.mail import service as mail_service
from app.mail.models import OutboxMessage, OutboxStatus
from app.mail.sender import eml_name
from app.templating import render
from app.web import page_router

router = page_router()
HrOnly = Depends(require_role(Role.hr))
LINK_PATTERN = re.compile(r"https?://[^\s<>\"']+/r/[A-Za-z0-9_-]+")


@dataclass
class OutboxRow:
    message: OutboxMessage
    # Local mode only: the delivered .eml's plain text and the private links in it.
    text: str | None = None
    links: list[str] | None = None


def _local_copy(settings: Settings, message: OutboxMessage) -> tuple[str | None, list[str]]:
    path = settings.mail_dir / eml_name(message.id, message.kind)
    try:
        raw = path.read_bytes()
    except OSError:
        return None, []
    parsed = message_from_bytes(raw, policy=policy.default)
    text = ""
    if isinstance(parsed, EmailMessage):
        body = parsed.get_body(preferencelist=("plain",))
        if body is not None and isinstance(body, EmailMessage):
            text = str(body.get_content())
    return text, sorted(set(LINK_PATTERN.findall(text)))


@router.get("/outbox", dependencies=[HrOnly])
def outbox_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[OutboxStatus | None, Query()] = None,
) -> Response:
    """Local mode: the demo's mailbox. SMTP mode: counts, and only the bounced addresses.

    With a real mail server, listing who got a reminder would tell HR who had not answered
    yet; HR only needs the undeliverable addresses, to correct them.
    """
    local = not settings.smtp_host
    if not local:
        status = OutboxStatus.undeliverable
    messages = mail_service.recent_messages(session, limit=100, status=status)
    rows = []
    for message in messages:
        row = OutboxRow(message=message)
        if local and message.status == OutboxStatus.sent:
            row.text, row.links = _local_copy(settings, message)
        rows.append(row)
    return render(
        request,
        "mail/outbox.html",
        {
            "rows": rows,
            "local": local,
            "counts": mail_service.count_by_status(session),
            "kind_counts": {} if local else mail_service.count_by_kind(session),
            "status": status.value if status else "",
            "statuses": [s.value for s in OutboxStatus],
            "mail_dir": str(settings.mail_dir),
            "smtp": f"{settings.smtp_host}:{settings.smtp_port}" if settings.smtp_host else "",
        },
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
