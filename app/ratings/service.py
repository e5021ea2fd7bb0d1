"""Anonymous ballots: the rating form, validating and storing answers, sealing at close.

A ballot is stored with the cycle and the supplier only. The invitation is marked used
in the same transaction, so while a cycle is open the database's physical bookkeeping
(row order, SQLite rowid, PostgreSQL xmin/ctid) still ties the two together;
:func:`seal_ballots` removes that at close.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, insert, select, text, update
from sqlalchemy.orm import Session

from app import i18n
from app.cycles.models import (
    Cycle,
    CycleCompetency,
    CycleDepartment,
    CycleEmployee,
    CyclePair,
    CycleState,
    Invitation,
)
from app.db import is_sqlite, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.org.models import Employee
from app.ratings.models import Ballot, BallotScore
from app.ratings.schemas import (
    COMMENT_MAX_LENGTH,
    NPS_RANGE,
    CompetencyView,
    ParsedForm,
    RatingForm,
    SupplierAnswer,
    SupplierView,
)

CANT_JUDGE = "na"
FIELD_PATTERN = re.compile(r"^s(\d{1,12})-(?:c(\d{1,12})|(nps)|(comment))$")


def N_(message: str) -> str:
    """Mark a message for translation; it is translated where it is shown."""
    return message


MSG_CHOOSE = N_("Choose a score or “can't judge”.")
MSG_SCORE_RANGE = N_("Choose one of the scores shown.")
MSG_NPS_RANGE = N_("Choose a number from 0 to 10, or leave it empty.")
MSG_COMMENT_LENGTH = N_("The comment is too long (at most 2000 characters).")


class AlreadySubmitted(Conflict):
    title = "Already submitted"


# --- the page's contents ---------------------------------------------------------------


def score_field(supplier_id: int, competency_id: int) -> str:
    return f"s{supplier_id}-c{competency_id}"


def nps_field(supplier_id: int) -> str:
    return f"s{supplier_id}-nps"


def comment_field(supplier_id: int) -> str:
    return f"s{supplier_id}-comment"


def open_invitation(
    session: Session, *, invitation_id: int, now: datetime | None = None
) -> tuple[Invitation, Cycle]:
    """The invitation and its cycle if the cycle is open; NotFound otherwise.

    A used invitation raises :class:`AlreadySubmitted`.
    """
    row = session.execute(
        select(Invitation, Cycle)
        .join(Cycle, Cycle.id == Invitation.cycle_id)
        .where(Invitation.id == invitation_id)
    ).first()
    now = now or utcnow()
    if row is None or row[1].state != CycleState.open or row[1].closes_at <= now:
        raise NotFound("This rating link is not valid any more")
    if row[0].used:
        raise AlreadySubmitted("These answers were already submitted")
    return row[0], row[1]


def load_rating_form(
    session: Session, *, invitation_id: int, now: datetime | None = None
) -> RatingForm:
    """The customer's page: every supplier and competency from the launch snapshot."""
    invitation, cycle = open_invitation(session, invitation_id=invitation_id, now=now)
    customer = session.execute(
        select(CycleEmployee.full_name, Employee.language)
        .join(Employee, Employee.id == CycleEmployee.employee_id)
        .where(
            CycleEmployee.cycle_id == cycle.id,
            CycleEmployee.employee_id == invitation.customer_id,
        )
    ).first()
    suppliers = [
        SupplierView(id=sid, full_name=name, department=dept or "")
        for sid, name, dept in session.execute(
            select(CyclePair.supplier_id, CycleEmployee.full_name, CycleDepartment.name)
            .join(
                CycleEmployee,
                and_(
                    CycleEmployee.cycle_id == CyclePair.cycle_id,
                    CycleEmployee.employee_id == CyclePair.supplier_id,
                ),
            )
            .outerjoin(
                CycleDepartment,
                and_(
                    CycleDepartment.cycle_id == CyclePair.cycle_id,
                    CycleDepartment.department_id == CycleEmployee.department_id,
                ),
            )
            .where(CyclePair.cycle_id == cycle.id, CyclePair.customer_id == invitation.customer_id)
            .order_by(CycleEmployee.full_name, CyclePair.supplier_id)
        )
    ]
    competencies = [
        CompetencyView(
            id=cid,
            name=name,
            description=description or "",
            indicators=[str(i) for i in (indicators or []) if str(i).strip()],
        )
        for cid, name, description, indicators in session.execute(
            select(
                CycleCompetency.id,
                CycleCompetency.name,
                CycleCompetency.description,
                CycleCompetency.indicators,
            )
            .where(CycleCompetency.cycle_id == cycle.id)
            .order_by(CycleCompetency.display_order, CycleCompetency.id)
        )
    ]
    return RatingForm(
        invitation_id=invitation.id,
        cycle_id=cycle.id,
        cycle_name=cycle.name,
        closes_at=cycle.closes_at,
        scale=list(range(cycle.scale_min, cycle.scale_max + 1)),
        ask_nps=cycle.ask_nps,
        ask_comment=cycle.ask_comment,
        customer_name=customer[0] if customer else "",
        language=i18n.normalize_language(customer[1] if customer else None),
        suppliers=suppliers,
        competencies=competencies,
    )


# --- reading a posted form ---------------------------------------------------------------


def _int_or_none(value: str) -> int | None:
    value = value.strip()
    if not value or len(value) > 6 or not re.fullmatch(r"-?\d+", value):
        return None
    return int(value)


def parse_form(form: RatingForm, data: Mapping[str, str]) -> ParsedForm:
    """Turn posted fields into answers, with an error per field that needs one.

    Every competency of every supplier needs an answer; "can't judge" is an answer.
    A skipped question and "can't judge" mean different things for the results, so the
    page never guesses. NPS and the comment are optional.
    """
    parsed = ParsedForm()
    supplier_ids = {s.id for s in form.suppliers}
    competency_ids = {c.id for c in form.competencies}
    for key in data:
        match = FIELD_PATTERN.match(key)
        if match is None:
            continue
        sid = int(match.group(1))
        cid = match.group(2)
        unknown = sid not in supplier_ids or (cid is not None and int(cid) not in competency_ids)
        not_asked = (match.group(3) and not form.ask_nps) or (
            match.group(4) and not form.ask_comment
        )
        if unknown or not_asked:
            parsed.foreign.append(key)
    low, high = form.scale[0], form.scale[-1]
    for supplier in form.suppliers:
        scores: dict[int, int | None] = {}
        for competency in form.competencies:
            key = score_field(supplier.id, competency.id)
            raw = str(data.get(key, "") or "")
            parsed.values[key] = raw[:20]
            if raw == CANT_JUDGE:
                scores[competency.id] = None
            elif not raw.strip():
                parsed.errors[key] = MSG_CHOOSE
            else:
                number = _int_or_none(raw)
                if number is None or not low <= number <= high:
                    parsed.errors[key] = MSG_SCORE_RANGE
                else:
                    scores[competency.id] = number
        nps: int | None = None
        if form.ask_nps:
            key = nps_field(supplier.id)
            raw = str(data.get(key, "") or "")
            parsed.values[key] = raw[:20]
            if raw.strip():
                nps = _int_or_none(raw)
                if nps is None or not NPS_RANGE[0] <= nps <= NPS_RANGE[1]:
                    parsed.errors[key] = MSG_NPS_RANGE
                    nps = None
        comment: str | None = None
        if form.ask_comment:
            key = comment_field(supplier.id)
            raw = str(data.get(key, "") or "")
            # Keep what was typed, even when too long, so nothing is lost on an error.
            parsed.values[key] = raw[: COMMENT_MAX_LENGTH * 2]
            comment = raw.strip() or None
            if comment is not None and len(comment) > COMMENT_MAX_LENGTH:
                parsed.errors[key] = MSG_COMMENT_LENGTH
        parsed.answers[supplier.id] = SupplierAnswer(scores=scores, nps=nps, comment=comment)
    return parsed


# --- storing ballots ---------------------------------------------------------------------


def _validate_answers(
    *,
    suppliers: set[int],
    competencies: set[int],
    scale: tuple[int, int],
    ask_nps: bool,
    ask_comment: bool,
    answers: Mapping[int, SupplierAnswer],
) -> None:
    """Every supplier of the page answered, on every competency, within the rules."""
    errors: list[dict[str, str]] = []
    foreign = [sid for sid in answers if sid not in suppliers]
    if foreign:
        errors.append({"field": "supplier", "message": "not a supplier of this customer"})
    missing = suppliers - set(answers)
    if missing:
        errors.append({"field": "supplier", "message": f"{len(missing)} supplier(s) unanswered"})

    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    scale_min, scale_max = scale
    for sid, answer in answers.items():
        if sid not in suppliers:
            continue
        if set(answer.scores) != competencies:
            errors.append({"field": f"s{sid}", "message": "every competency needs an answer"})
        for cid, score in answer.scores.items():
            if score is not None and (not is_int(score) or not scale_min <= score <= scale_max):
                errors.append({"field": score_field(sid, cid), "message": "out of range"})
        low, high = NPS_RANGE
        if answer.nps is not None and (
            not ask_nps or not is_int(answer.nps) or not low <= answer.nps <= high
        ):
            errors.append({"field": nps_field(sid), "message": "not a valid answer"})
        if answer.comment is not None and (
            not ask_comment
            or not isinstance(answer.comment, str)
            or len(answer.comment.strip()) > COMMENT_MAX_LENGTH
        ):
            errors.append({"field": comment_field(sid), "message": "not a valid comment"})
    if errors:
        # Field names only: an error report never carries the answers themselves.
        raise Invalid("The answers are incomplete or not valid; nothing was stored", errors=errors)


def submit_answers(
    session: Session,
    *,
    invitation_id: int,
    answers: Mapping[int, SupplierAnswer],
    now: datetime | None = None,
) -> int:
    """Store one anonymous ballot per supplier and mark the invitation used.

    All or nothing: any invalid answer raises Invalid and stores nothing. A second or
    concurrent submit of the same invitation raises AlreadySubmitted and stores nothing.
    Returns the number of ballots stored.
    """
    invitation, cycle = open_invitation(session, invitation_id=invitation_id, now=now)
    suppliers = set(
        session.scalars(
            select(CyclePair.supplier_id).where(
                CyclePair.cycle_id == cycle.id, CyclePair.customer_id == invitation.customer_id
            )
        )
    )
    competencies = set(
        session.scalars(select(CycleCompetency.id).where(CycleCompetency.cycle_id == cycle.id))
    )
    _validate_answers(
        suppliers=suppliers,
        competencies=competencies,
        scale=(cycle.scale_min, cycle.scale_max),
        ask_nps=cycle.ask_nps,
        ask_comment=cycle.ask_comment,
        answers=answers,
    )
    return _store_ballots(session, invitation_id=invitation.id, cycle_id=cycle.id, answers=answers)


def submit_form_answers(
    session: Session, *, form: RatingForm, answers: Mapping[int, SupplierAnswer]
) -> int:
    """:func:`submit_answers` for a form :func:`load_rating_form` just loaded.

    The rating page loads the form (open cycle, unused invitation, the customer's
    suppliers and the cycle's competencies) to read the post, in the same transaction;
    this checks the answers against that form instead of loading it all again. Same
    guarantees: all or nothing, and exactly one of two concurrent submits stores.
    """
    _validate_answers(
        suppliers={s.id for s in form.suppliers},
        competencies={c.id for c in form.competencies},
        scale=(form.scale[0], form.scale[-1]),
        ask_nps=form.ask_nps,
        ask_comment=form.ask_comment,
        answers=answers,
    )
    return _store_ballots(
        session, invitation_id=form.invitation_id, cycle_id=form.cycle_id, answers=answers
    )


def _store_ballots(
    session: Session, *, invitation_id: int, cycle_id: int, answers: Mapping[int, SupplierAnswer]
) -> int:
    """Claim the invitation, then insert the ballots and their scores."""
    # Claim first, atomically: of two concurrent submits exactly one sees used=false.
    claimed = session.execute(
        update(Invitation)
        .where(Invitation.id == invitation_id, Invitation.used.is_(False))
        .values(used=True)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        raise AlreadySubmitted("These answers were already submitted")
    ballots: list[dict[str, Any]] = []
    scores: list[dict[str, Any]] = []
    for supplier_id, answer in answers.items():
        # No rater, no invitation, no timestamp: only the cycle and the supplier.
        ballot_id = uuid.uuid4()
        comment = answer.comment.strip() if answer.comment else None
        ballots.append(
            {
                "id": ballot_id,
                "cycle_id": cycle_id,
                "supplier_id": supplier_id,
                "nps": answer.nps,
                "comment": comment or None,
            }
        )
        scores.extend(
            {"ballot_id": ballot_id, "cycle_competency_id": cid, "score": score}
            for cid, score in answer.scores.items()
        )
    session.execute(insert(cast(Table, Ballot.__table__)), ballots)
    if scores:
        session.execute(insert(cast(Table, BallotScore.__table__)), scores)
    # The UPDATE skipped the ORM: a loaded Invitation must not keep used=False.
    loaded = session.identity_map.get(session.identity_key(Invitation, invitation_id))
    if loaded is not None:
        session.expire(loaded, ["used"])
    return len(ballots)


# --- sealing at close --------------------------------------------------------------------


def seal_ballots(session: Session, *, cycle_id: int) -> int:
    """Rewrite the cycle's ballots, scores and invitations in random order.

    Runs in the closing transaction. Every row is copied aside, deleted and inserted
    again in random order: afterwards row order and SQLite rowids are random, and
    on PostgreSQL every row carries the closing transaction's xmin, so nothing ties a
    ballot to the invitation that was marked used in the same transaction as its
    insert. The old row versions are purged by ``PRAGMA secure_delete`` (SQLite) and by
    ``lifecycle.vacuum_after_close`` after the commit. Returns the number of ballots.
    """
    sqlite = is_sqlite(session)
    temp = "CREATE TEMP TABLE {name} " + ("AS " if sqlite else "ON COMMIT DROP AS ")
    params = {"cycle_id": cycle_id}
    statements = [
        temp.format(name="seal_ballot")
        + "SELECT id, cycle_id, supplier_id, nps, comment FROM ballot WHERE cycle_id = :cycle_id",
        temp.format(name="seal_score")
        + "SELECT s.ballot_id, s.cycle_competency_id, s.score FROM ballot_score s "
        "JOIN seal_ballot b ON b.id = s.ballot_id",
        temp.format(name="seal_invitation")
        + "SELECT id, cycle_id, customer_id, token_hash, reminder_token_hash, used, "
        "last_reminded_on FROM invitation WHERE cycle_id = :cycle_id",
        "DELETE FROM ballot_score WHERE ballot_id IN (SELECT id FROM seal_ballot)",
        "DELETE FROM ballot WHERE cycle_id = :cycle_id",
        "DELETE FROM invitation WHERE cycle_id = :cycle_id",
        # Ballot ids are random UUIDv4s drawn at submit time, so their order is a random
        # permutation of the submission order, as good as ORDER BY random(), and it lets
        # the primary-key indexes fill in order (several times faster on large cycles).
        "INSERT INTO ballot (id, cycle_id, supplier_id, nps, comment) "
        "SELECT id, cycle_id, supplier_id, nps, comment FROM seal_ballot ORDER BY id",
        "INSERT INTO ballot_score (ballot_id, cycle_competency_id, score) "
        "SELECT ballot_id, cycle_competency_id, score FROM seal_score "
        "ORDER BY ballot_id, cycle_competency_id",
        "INSERT INTO invitation (id, cycle_id, customer_id, token_hash, reminder_token_hash, "
        "used, last_reminded_on) SELECT id, cycle_id, customer_id, token_hash, "
        "reminder_token_hash, used, last_reminded_on FROM seal_invitation ORDER BY random()",
    ]
    count = 0
    session.flush()
    for statement in statements:
        result = session.execute(text(statement), params)
        if statement.startswith("INSERT INTO ballot "):
            count = int(getattr(result, "rowcount", 0) or 0)
    for name in ("seal_ballot", "seal_score", "seal_invitation"):
        session.execute(text(f"DROP TABLE {name}"))
    # The ORM's copies of these rows are stale now.
    session.expire_all()
    return count
