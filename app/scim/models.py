"""What SCIM knows about an employee beyond the HRIS fields.

The identity provider's own names for a person (``userName``, its ``externalId``, the
given and family names) have no place in the organisation model, and most employees
(those the HRIS API created) have none: a row here exists once an identity provider
has provisioned or changed the employee.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class ScimUser(Base):
    __tablename__ = "scim_user"

    employee_id: Mapped[int] = mapped_column(
        ForeignKey("employee.id", ondelete="CASCADE"), primary_key=True
    )
    # userName is case-insensitive in SCIM (RFC 7643 §4.1.1): stored lower-cased, so
    # uniqueness and filters ignore case on both databases.
    user_name: Mapped[str] = mapped_column(String(320), unique=True)
    # The identity provider's id of the person (case-exact, not unique across providers).
    external_id: Mapped[str | None] = mapped_column(String(200), index=True)
    given_name: Mapped[str | None] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
