"""The paper channel: one-time codes on printed letters for employees without email.

A paper-channel customer's invitation gets no email at launch. HR prints the letters
of a department (a PDF, see :mod:`app.cycles.letters`); printing draws a fresh code for
everyone in it and keeps only its keyed hash, so a code exists in plain text only on
paper. Typing the code at ``/code`` leads to the same rating page as a private link.

Codes are 12 characters of Crockford's base32 (no I, L, O or U): 60 bits, easy to
read aloud and to type on a phone. Typing is forgiving (case, spaces, dashes, O for
0, I or L for 1). The hash is an HMAC under a key derived from ``SECRET_KEY``: 60
bits is too few to resist a brute force of a plain hash by someone with the database.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from app import crypto
from app.cycles.models import Cycle, CycleDepartment, CycleEmployee, CycleState, Invitation
from app.errors import Conflict
from app.org.models import Employee

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
CODE_LENGTH = 12  # 60 bits
_TYPED_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_CODE_RE = re.compile(f"^[{ALPHABET}]{{{CODE_LENGTH}}}$")
# The most a code field may hold before it is refused unread (spaces and dashes allowed).
TYPED_MAX = 40
NO_DEPARTMENT = "none"


def new_code() -> str:
    """A one-time code from the OS CSPRNG, without separators."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def display_code(code: str) -> str:
    """``ABCD-EFGH-JKMN``: groups of four for reading and typing."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalize_code(typed: str) -> str | None:
    """The code as typed -> canonical form, or None if it cannot be a code."""
    if not typed or len(typed) > TYPED_MAX:
        return None
    text = re.sub(r"[\s\-‐-―]", "", typed).upper().translate(_TYPED_ALIASES)
    return text if _CODE_RE.fullmatch(text) else None


def hash_code(secret_key: str, code: str) -> str:
    key = crypto.derive_key(secret_key, "rating-code")
    return hmac.new(key, code.encode(), sha256).hexdigest()


def find_invitation_by_code(session: Session, *, code: str, secret_key: str) -> Invitation | None:
    """The paper invitation whose newest letter carries this (canonical) code."""
    return session.scalar(
        select(Invitation).where(Invitation.code_hash == hash_code(secret_key, code))
    )


# --- letters --------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperDepartment:
    """A department of a cycle with paper-channel customers (``key`` for URLs)."""

    key: str
    name: str
    raters: int


@dataclass(frozen=True)
class Letter:
    full_name: str
    department: str
    language: str
    code: str


def _department_filter(key: str) -> Any:
    if key == NO_DEPARTMENT:
        return CycleEmployee.department_id.is_(None)
    if not key.isdigit() or len(key) > 18:
        return None
    return CycleEmployee.department_id == int(key)


def _paper_invitations(cycle_id: int) -> Any:
    return (
        select(Invitation.id, CycleEmployee.full_name, CycleDepartment.name, Employee.language)
        .join(
            CycleEmployee,
            and_(
                CycleEmployee.cycle_id == Invitation.cycle_id,
                CycleEmployee.employee_id == Invitation.customer_id,
            ),
        )
        .outerjoin(
            CycleDepartment,
            and_(
                CycleDepartment.cycle_id == Invitation.cycle_id,
                CycleDepartment.department_id == CycleEmployee.department_id,
            ),
        )
        .join(Employee, Employee.id == Invitation.customer_id)
        .where(Invitation.cycle_id == cycle_id, Invitation.by_paper.is_(True))
    )


def paper_departments(session: Session, *, cycle_id: int) -> list[PaperDepartment]:
    """Departments (at launch) with paper-channel customers in the cycle, by name."""
    counts: dict[str, tuple[str, int]] = {}
    query = _paper_invitations(cycle_id).add_columns(CycleEmployee.department_id)
    for _id, _name, dept_name, _lang, dept_id in session.execute(query):
        key = NO_DEPARTMENT if dept_id is None else str(dept_id)
        name, n = counts.get(key, (dept_name or "", 0))
        counts[key] = (name, n + 1)
    return sorted(
        (PaperDepartment(key=key, name=name, raters=n) for key, (name, n) in counts.items()),
        key=lambda d: (d.key == NO_DEPARTMENT, d.name.lower()),
    )


def issue_letters(
    session: Session, *, cycle: Cycle, department_key: str, secret_key: str
) -> list[Letter]:
    """Fresh codes for every paper-channel customer of a department, by name.

    Everyone gets a letter, answered or not: leaving out those who answered would tell
    HR who did. Earlier letters of these people stop working.
    """
    if cycle.state != CycleState.open:
        raise Conflict(f"Cycle {cycle.name} is not open: letters are printed while it is")
    condition = _department_filter(department_key)
    if condition is None:
        return []
    rows = session.execute(
        _paper_invitations(cycle.id).where(condition).order_by(CycleEmployee.full_name)
    ).all()
    letters: list[Letter] = []
    updates: list[dict[str, Any]] = []
    for invitation_id, full_name, dept_name, language in rows:
        code = new_code()
        updates.append({"id": invitation_id, "code_hash": hash_code(secret_key, code)})
        letters.append(Letter(full_name, dept_name or "", language, code))
    if updates:
        session.execute(update(Invitation), updates)
    return letters
