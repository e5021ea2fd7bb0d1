"""The supplier-customer matrix: "customer X rates supplier Y"."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class MatrixLink(Base):
    """One internal customer of one supplier (the live matrix, kept by HR or the HRIS)."""

    __tablename__ = "matrix_link"
    __table_args__ = (CheckConstraint("supplier_id <> customer_id", name="no_self_rating"),)

    supplier_id: Mapped[int] = mapped_column(
        ForeignKey("employee.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("employee.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class DepartmentService(Base):
    """One line of HR's department-level service map: "IT Support serves Sales".

    Not a rating link by itself: the suggestions (``app.nominations``) expand it to
    people (everyone in the supplier department and its sub-departments serves everyone
    in the customer department and its sub-departments), and HR accepts what fits.
    """

    __tablename__ = "department_service"
    __table_args__ = (
        CheckConstraint(
            "supplier_department_id <> customer_department_id", name="not_its_own_customer"
        ),
    )

    supplier_department_id: Mapped[int] = mapped_column(
        ForeignKey("department.id", ondelete="CASCADE"), primary_key=True
    )
    customer_department_id: Mapped[int] = mapped_column(
        ForeignKey("department.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
