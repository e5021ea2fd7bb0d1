"""A rated person's own access to their results, and the focus areas they agree on.

Nothing here is about raters: a results link is the rated person's key to figures that
are already aggregated over k raters or more, and a focus plan is a choice the person
and their manager make afterwards.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class ResultsLink(Base):
    """One supplier's private link to their results of one closed cycle.

    Only the SHA-256 of the 256-bit token is kept; the link stops working at
    ``expires_at``.
    """

    __tablename__ = "results_link"
    __table_args__ = (UniqueConstraint("cycle_id", "employee_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"), index=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employee.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class FocusPlan(Base):
    """The 2–3 competencies a person works on after a cycle's results.

    Proposed by the person (on their results page) or their manager; agreed when the
    manager confirms it. Changing the areas afterwards withdraws the agreement.
    """

    __tablename__ = "focus_plan"
    __table_args__ = (UniqueConstraint("cycle_id", "employee_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"), index=True)
    employee_id: Mapped[int] = mapped_column(
        ForeignKey("employee.id", ondelete="CASCADE"), index=True
    )
    # "employee", or the HR-app user (a manager) who last chose the areas.
    chosen_by: Mapped[str] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    agreed_by: Mapped[str | None] = mapped_column(String(320))
    agreed_at: Mapped[datetime | None] = mapped_column(DateTime)


class FocusArea(Base):
    """One competency of a focus plan, by code so the next cycles can find it again."""

    __tablename__ = "focus_area"

    plan_id: Mapped[int] = mapped_column(
        ForeignKey("focus_plan.id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(50), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
