"""Anonymous ballots: the rating form, validating answers, the pool, release at close.

A submit marks the invitation used and adds one sealed row to the mixing pool
(:mod:`app.ratings.pool`); it writes no ballot. At close :func:`release_pool` decrypts the
pool and stores every ballot of the cycle, a box per supplier with the ballots in random
order inside (:mod:`app.ratings.ballots`), in one transaction: what the database and its
WAL show is the set of everyone who answered and the set of all ballots, never which is
whose.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import Table, and_, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from app import crypto, i18n
from app.config import get_settings
from app.crypto import DecryptionFailed
from app.cycles import service as cycles_service
from app.cycles.models import (
    Cycle,
    CycleCompetency,
    CycleDepartment,
    CycleEmployee,
    CyclePair,
    CycleState,
    Invitation,
)
from app.db import ciphertext_delete, core_connection, utcnow
from app.db.bulk import insert_rows, stream_values
from app.errors import Conflict, Invalid, NotFound
from app.org.models import Employee
from app.ratings import pool
from app.ratings.ballots import BOX_COLUMNS, Ballots, boxes, comments_by_supplier, unpacked
from app.ratings.models import BallotBox, PendingSubmission
from app.ratings.pool import PoolKeyMismatch
from app.ratings.schemas import (
    COMMENT_MAX_LENGTH,
    NPS_RANGE,
    CompetencyView,
    FormRules,
    ParsedForm,
    RatingForm,
    SupplierAnswer,
    SupplierView,
)

CANT_JUDGE = "na"
FIELD_PATTERN = re.compile(r"^s(\d{1,12})-(?:c(\d{1,12})|(nps)|(comment))$")


_Opened = TypeVar("_Opened")


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


# Built once: composing a statement costs more CPU than running it on a small index
# lookup, and the submit runs these for every rater of the company within days.
_INVITATION_ROW = (
    select(
        Invitation.used,
        Invitation.customer_id,
        Cycle.id.label("cycle_id"),
        Cycle.name,
        Cycle.state,
        Cycle.closes_at,
        Cycle.scale_min,
        Cycle.scale_max,
        Cycle.ask_nps,
        Cycle.ask_comment,
        Cycle.pool_salt,
        CycleEmployee.full_name,
        CycleEmployee.counts_toward_k,
        Employee.language,
    )
    .join(Cycle, Cycle.id == Invitation.cycle_id)
    .outerjoin(
        CycleEmployee,
        and_(
            CycleEmployee.cycle_id == Invitation.cycle_id,
            CycleEmployee.employee_id == Invitation.customer_id,
        ),
    )
    .outerjoin(Employee, Employee.id == CycleEmployee.employee_id)
    .where(Invitation.id == bindparam("invitation_id"))
)
_SUPPLIER_IDS = (
    select(CyclePair.supplier_id)
    .where(
        CyclePair.cycle_id == bindparam("cycle_id"),
        CyclePair.customer_id == bindparam("customer_id"),
    )
    .order_by(CyclePair.supplier_id)
)
_COMPETENCY_IDS = (
    select(CycleCompetency.id)
    .where(CycleCompetency.cycle_id == bindparam("cycle_id"))
    .order_by(CycleCompetency.display_order, CycleCompetency.id)
)
_invitations = cast(Table, Invitation.__table__)
# Of two concurrent submits exactly one sees used=false.
_CLAIM_INVITATION = (
    update(_invitations)
    .where(_invitations.c.id == bindparam("invitation_id"), _invitations.c.used.is_(False))
    .values(used=True)
)
# Core, not the unit of work: one plain INSERT (the row has no rater, no time).
_POOL_SUBMISSION = insert(cast(Table, PendingSubmission.__table__))


def _open_invitation_row(session: Session, *, invitation_id: int, now: datetime | None) -> Any:
    """The invitation with its cycle's rules and its customer, in one query; NotFound
    unless the cycle is open, :class:`AlreadySubmitted` for a used invitation."""
    row = (
        core_connection(session).execute(_INVITATION_ROW, {"invitation_id": invitation_id}).first()
    )
    if row is None or row.state != CycleState.open or row.closes_at <= (now or utcnow()):
        raise NotFound("This rating link is not valid any more")
    if row.used:
        raise AlreadySubmitted("These answers were already submitted")
    return row


def load_form_rules(
    session: Session, *, invitation_id: int, now: datetime | None = None
) -> FormRules:
    """What a post to the customer's page is checked against: three small queries, no
    names or texts (the submit's share of :func:`load_rating_form`)."""
    row = _open_invitation_row(session, invitation_id=invitation_id, now=now)
    connection = core_connection(session)
    return FormRules(
        invitation_id=invitation_id,
        cycle_id=row.cycle_id,
        cycle_name=row.name,
        language=i18n.normalize_language(row.language),
        scale=list(range(row.scale_min, row.scale_max + 1)),
        ask_nps=row.ask_nps,
        ask_comment=row.ask_comment,
        supplier_ids=list(
            connection.execute(
                _SUPPLIER_IDS, {"cycle_id": row.cycle_id, "customer_id": row.customer_id}
            ).scalars()
        ),
        competency_ids=list(
            connection.execute(_COMPETENCY_IDS, {"cycle_id": row.cycle_id}).scalars()
        ),
        # The launch snapshot has every customer; a missing row would count.
        counts_toward_k=True if row.counts_toward_k is None else bool(row.counts_toward_k),
        pool_salt=row.pool_salt,
    )


def load_rating_form(
    session: Session, *, invitation_id: int, now: datetime | None = None
) -> RatingForm:
    """The customer's page: every supplier and competency from the launch snapshot."""
    row = _open_invitation_row(session, invitation_id=invitation_id, now=now)
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
            .where(CyclePair.cycle_id == row.cycle_id, CyclePair.customer_id == row.customer_id)
            .order_by(CycleEmployee.full_name, CyclePair.supplier_id)
        )
    ]
    language = i18n.normalize_language(row.language)
    competencies = [
        competency_view(cid, name, description, indicators, translations, language=language)
        for cid, name, description, indicators, translations in session.execute(
            select(
                CycleCompetency.id,
                CycleCompetency.name,
                CycleCompetency.description,
                CycleCompetency.indicators,
                CycleCompetency.translations,
            )
            .where(CycleCompetency.cycle_id == row.cycle_id)
            .order_by(CycleCompetency.display_order, CycleCompetency.id)
        )
    ]
    return RatingForm(
        invitation_id=invitation_id,
        cycle_id=row.cycle_id,
        cycle_name=row.name,
        closes_at=row.closes_at,
        scale=list(range(row.scale_min, row.scale_max + 1)),
        ask_nps=row.ask_nps,
        ask_comment=row.ask_comment,
        customer_name=row.full_name or "",
        language=language,
        suppliers=suppliers,
        competencies=competencies,
        counts_toward_k=True if row.counts_toward_k is None else bool(row.counts_toward_k),
    )


def competency_view(
    competency_id: int,
    name: str,
    description: str | None,
    indicators: list[Any] | None,
    translations: Mapping[str, Any] | None,
    *,
    language: str,
) -> CompetencyView:
    """A competency in the rater's language: each text translated where the snapshot has
    it, in the organisation's language otherwise."""
    text = (translations or {}).get(language) or {}
    chosen = [str(i) for i in (text.get("indicators") or indicators or []) if str(i).strip()]
    return CompetencyView(
        id=competency_id,
        name=str(text.get("name") or name),
        description=str(text.get("description") or description or ""),
        indicators=chosen,
    )


# --- reading a posted form ---------------------------------------------------------------


_INTEGER = re.compile(r"-?\d+")


def _int_or_none(value: str) -> int | None:
    value = value.strip()
    if not value or len(value) > 6 or not _INTEGER.fullmatch(value):
        return None
    return int(value)


def parse_form(form: FormRules, data: Mapping[str, str]) -> ParsedForm:
    """Turn posted fields into answers, with an error per field that needs one.

    Every competency of every supplier needs an answer; "can't judge" is an answer.
    A skipped question and "can't judge" mean different things for the results, so the
    page never guesses. NPS and the comment are optional.
    """
    parsed = ParsedForm()
    supplier_ids = set(form.supplier_ids)
    competency_ids = set(form.competency_ids)
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
    for supplier_id in form.supplier_ids:
        scores: dict[int, int | None] = {}
        for competency_id in form.competency_ids:
            key = score_field(supplier_id, competency_id)
            raw = str(data.get(key, "") or "")
            parsed.values[key] = raw[:20]
            if raw == CANT_JUDGE:
                scores[competency_id] = None
            elif not raw.strip():
                parsed.errors[key] = MSG_CHOOSE
            else:
                number = _int_or_none(raw)
                if number is None or not low <= number <= high:
                    parsed.errors[key] = MSG_SCORE_RANGE
                else:
                    scores[competency_id] = number
        nps: int | None = None
        if form.ask_nps:
            key = nps_field(supplier_id)
            raw = str(data.get(key, "") or "")
            parsed.values[key] = raw[:20]
            if raw.strip():
                nps = _int_or_none(raw)
                if nps is None or not NPS_RANGE[0] <= nps <= NPS_RANGE[1]:
                    parsed.errors[key] = MSG_NPS_RANGE
                    nps = None
        comment: str | None = None
        if form.ask_comment:
            key = comment_field(supplier_id)
            raw = str(data.get(key, "") or "")
            # Keep what was typed, even when too long, so nothing is lost on an error.
            parsed.values[key] = raw[: COMMENT_MAX_LENGTH * 2]
            comment = raw.strip() or None
            if comment is not None and len(comment) > COMMENT_MAX_LENGTH:
                parsed.errors[key] = MSG_COMMENT_LENGTH
        parsed.answers[supplier_id] = SupplierAnswer(scores=scores, nps=nps, comment=comment)
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
    secret_key: str | None = None,
) -> int:
    """Mark the invitation used and put the answers, sealed, into the cycle's pool.

    All or nothing: any invalid answer raises Invalid and stores nothing. A second or
    concurrent submit of the same invitation raises AlreadySubmitted and stores nothing.
    Returns the number of ballots stored.
    """
    rules = load_form_rules(session, invitation_id=invitation_id, now=now)
    return submit_checked_answers(
        session, rules=rules, answers=answers, secret_key=secret_key or get_settings().secret_key
    )


def submit_checked_answers(
    session: Session,
    *,
    rules: FormRules,
    answers: Mapping[int, SupplierAnswer],
    secret_key: str,
) -> int:
    """:func:`submit_answers` against rules :func:`load_form_rules` just loaded: the
    answers checked and sealed (:func:`seal_answers`), then pooled (:func:`pool_sealed`).

    Same guarantees: all or nothing, and exactly one of two concurrent submits stores.
    """
    pool_sealed(session, rules=rules, sealed=seal_answers(rules, answers, secret_key=secret_key))
    return len(answers)


def seal_answers(
    rules: FormRules, answers: Mapping[int, SupplierAnswer], *, secret_key: str
) -> bytes:
    """Check every answer against the rules (Invalid, naming fields only) and seal the
    whole submission for the cycle's pool. No database: the rating page does this before
    it takes SQLite's write lock."""
    _validate_answers(
        suppliers=set(rules.supplier_ids),
        competencies=set(rules.competency_ids),
        scale=(rules.scale[0], rules.scale[-1]),
        ask_nps=rules.ask_nps,
        ask_comment=rules.ask_comment,
        answers=answers,
    )
    submission = pool.Submission(
        counts_toward_k=rules.counts_toward_k,
        answers={
            supplier_id: SupplierAnswer(
                scores=dict(answer.scores),
                nps=answer.nps,
                comment=(answer.comment.strip() or None) if answer.comment else None,
            )
            for supplier_id, answer in answers.items()
        },
    )
    return pool.seal(
        cycles_service.cycle_pool_key(secret_key, rules.cycle_id, rules.pool_salt),
        submission,
        cycle_id=rules.cycle_id,
        ask_comment=rules.ask_comment,
    )


def pool_sealed(session: Session, *, rules: FormRules, sealed: bytes) -> None:
    """Add the sealed submission to the pool and claim the invitation: two statements.

    The claim is atomic (of two concurrent submits exactly one sees used=false) and
    fails for an invitation a close removed since the rules were read; the pool row is
    then deleted again (the callers show a page and commit).

    The pool row goes first for the order of locks on PostgreSQL: its foreign key
    share-locks the cycle row, which the close holds for update from its start, and
    only then does the claim lock the invitation, which the close deletes. A post that
    arrives during a close waits at the first statement and is refused after it. In
    the opposite order the two waited for each other and the close failed.
    """
    pooled = uuid.uuid4()
    connection = core_connection(session)
    connection.execute(
        _POOL_SUBMISSION, {"id": pooled, "cycle_id": rules.cycle_id, "sealed": sealed}
    )
    claimed = connection.execute(_CLAIM_INVITATION, {"invitation_id": rules.invitation_id})
    if getattr(claimed, "rowcount", 0) != 1:
        session.execute(delete(PendingSubmission).where(PendingSubmission.id == pooled))
        if session.get(Invitation, rules.invitation_id, populate_existing=True) is None:
            raise NotFound("This rating link is not valid any more")
        raise AlreadySubmitted("These answers were already submitted")
    # The UPDATE skipped the ORM: a loaded Invitation must not keep used=False.
    loaded = session.identity_map.get(session.identity_key(Invitation, rules.invitation_id))
    if loaded is not None:
        session.expire(loaded, ["used"])


# --- releasing the pool at close ---------------------------------------------------------


POOL_READ_BATCH = 500


def open_pool(session: Session, *, cycle: Cycle, secret_key: str) -> Iterator[pool.Submission]:
    """Every submission waiting in the cycle's pool, decrypted one at a time."""
    return _read_pool(session, cycle=cycle, secret_key=secret_key, opener=pool.open_sealed)


def _read_pool(
    session: Session, *, cycle: Cycle, secret_key: str, opener: Callable[..., _Opened]
) -> Iterator[_Opened]:
    """The cycle's pool rows, each opened by ``opener(key, sealed, cycle_id=...)``.

    Streams: at 50,000 employees the pool holds about half a gigabyte of padded rows,
    so they are read in batches and never all held at once.
    """
    key = cycles_service.pool_key(secret_key, cycle)
    # Not through the ORM: its per-row loading cost as much as the decryption.
    rows = stream_values(
        session,
        select(PendingSubmission.sealed).where(PendingSubmission.cycle_id == cycle.id),
        batch=POOL_READ_BATCH,
    )
    try:
        for sealed in rows:
            yield opener(key, sealed, cycle_id=cycle.id)
    except DecryptionFailed as exc:
        raise PoolKeyMismatch(
            f"The answers of cycle {cycle.name} were sealed under another SECRET_KEY; "
            "restore the SECRET_KEY the cycle was launched with, then close it"
        ) from exc
    finally:
        rows.close()


@dataclass
class Release:
    """What the close learnt from the pool, as counts over raters who count toward k.

    Only aggregates leave the closing transaction: which ballot came from a counting
    rater is never written anywhere.
    """

    withheld_suppliers: set[int] = field(default_factory=set)
    # (supplier, cycle competency) whose real answers from counting raters are below k.
    thin_competencies: set[tuple[int, int]] = field(default_factory=set)
    # Suppliers whose NPS answers from counting raters are below k.
    thin_nps: set[int] = field(default_factory=set)
    # Every ballot the close stored, for the results (not read back from the boxes).
    released: Ballots | None = None


def release_pool(
    session: Session,
    *,
    cycle: Cycle,
    secret_key: str,
    k: int,
    counting_raters: Mapping[int, int],
) -> Release:
    """Decrypt the cycle's pool and store every ballot once: a box per supplier, the
    ballots in random order inside.

    Runs in the closing transaction, after the links died. ``counting_raters`` is, per
    supplier of the cycle, how many customers who count toward k answered (from the
    invitations, see ``cycles.service.counting_responders``). A supplier below k gets
    no ballot at all (nothing would ever be shown). The boxes are written in one
    statement, so the WAL shows one set of raters and one set of ballots: the whole
    cycle's. The pool rows are left to :func:`drop_released_pools`, and the caller makes
    them unreadable first. A row that does not decrypt (another SECRET_KEY) stops the
    close: nothing is lost.
    """
    withheld = {sid for sid, n in counting_raters.items() if n < k}
    order = cycle_competency_order(session, cycle_id=cycle.id)
    # Each submission's arrays as they come; joined once: one entry per ballot, half a
    # million of them at 50,000 employees.
    suppliers: list[npt.NDArray[np.int32]] = []
    nps_parts: list[npt.NDArray[np.int16]] = []
    score_parts: list[npt.NDArray[np.int16]] = []
    counting: list[bool] = []
    sizes: list[int] = []
    comments: list[str | None] = []
    columns = tuple(order)
    opened = _read_pool(session, cycle=cycle, secret_key=secret_key, opener=pool.open_columns)
    for doc in opened:
        suppliers.append(doc.suppliers)
        nps_parts.append(doc.nps)
        score_parts.append(doc.scores if doc.competencies == columns else _in_columns(doc, columns))
        counting.append(doc.counts_toward_k)
        sizes.append(len(doc.suppliers))
        comments.extend(doc.comments)
    supplier_of = np.concatenate(suppliers or [np.zeros(0, np.int32)]).astype(np.int64)
    released = Ballots(
        competencies=order,
        suppliers=supplier_of,
        nps=_answers(np.concatenate(nps_parts or [np.zeros(0, np.int16)])),
        scores=_answers(np.concatenate(score_parts or [np.zeros((0, len(order)), np.int16)])),
        comments=comments_by_supplier(supplier_of, comments),
    )
    counts = np.repeat(np.array(counting, dtype=bool), sizes)
    if legacy := _take_legacy_boxes(session, cycle_id=cycle.id, competencies=order):
        # Ballots written before the pool existed (migration 0006 shuffled them): stored
        # again with the pool's, in the same boxes. Their raters counted toward k.
        released = Ballots.joined([released, legacy])
        counts = np.concatenate([counts, np.ones(len(legacy), dtype=bool)])
    if withheld:
        kept = ~np.isin(released.suppliers, list(withheld))
        released, counts = released.only(kept), counts[kept]
    release = Release(withheld_suppliers=withheld, released=released)
    _find_thin(release, released, counts, k=k)
    # The pool rows stay until the vacuum after the close (drop_released_pools): deleting
    # half a gigabyte of sealed rows was a seventh of a 50,000-employee close on
    # PostgreSQL. From here on nothing can open them, not even with SECRET_KEY: the close
    # replaces the salt their key came from (cycles.service.forget_pool_key).
    insert_rows(
        session,
        cast(Table, BallotBox.__table__),
        boxes(cycle.id, released),
        columns=BOX_COLUMNS,
    )
    return release


def _take_legacy_boxes(session: Session, *, cycle_id: int, competencies: list[int]) -> Ballots:
    """The cycle's boxes stored before its close (none, unless it was launched before
    the pool), deleted: the close stores their ballots again with the pool's."""
    legacy = read_ballots(session, cycle_id=cycle_id, competencies=competencies)
    if len(legacy):
        session.execute(
            delete(BallotBox)
            .where(BallotBox.cycle_id == cycle_id)
            .execution_options(synchronize_session=False)
        )
    return legacy


def read_ballots(
    session: Session, *, cycle_id: int, competencies: list[int] | None = None
) -> Ballots:
    """Every stored ballot of a cycle, unpacked from its boxes."""
    if competencies is None:
        competencies = cycle_competency_order(session, cycle_id=cycle_id)
    box = cast(Table, BallotBox.__table__)
    rows = session.connection().execute(
        select(box.c.supplier_id, box.c.ballots, box.c.nps, box.c.scores, box.c.comments).where(
            box.c.cycle_id == cycle_id
        )
    )
    return unpacked(rows, competencies)


def _in_columns(doc: pool.Columns, columns: tuple[int, ...]) -> npt.NDArray[np.int16]:
    """A submission's scores in the cycle's columns (a rater not asked about every
    competency; a competency the cycle no longer has is dropped)."""
    scores = np.full((len(doc.suppliers), len(columns)), pool.NOT_ASKED, dtype=np.int16)
    where = {cid: j for j, cid in enumerate(doc.competencies)}
    for j, cid in enumerate(columns):
        if cid in where:
            scores[:, j] = doc.scores[:, where[cid]]
    return scores


def _answers(values: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    """Sealed int16 answers as floats, NaN where there is no answer."""
    out = values.astype(np.float64)
    out[values <= pool.NOT_ASKED] = np.nan
    return out


def _find_thin(
    release: Release, ballots: Ballots, counting: npt.NDArray[np.bool_], *, k: int
) -> None:
    """Figures that reach k answers only with answers of raters who do not count.

    A figure over k answers of which some came from raters who do not count could be
    unpicked by whoever wrote those: each figure needs k answers that count. (Figures
    below k answers in all are not stored anyway.)
    """
    if not len(ballots.suppliers):
        return
    ids, which = np.unique(ballots.suppliers, return_inverse=True)
    which = which.reshape(-1)
    answered = ~np.isnan(ballots.scores)
    for col, competency_id in enumerate(ballots.competencies):
        total = np.bincount(which, weights=answered[:, col], minlength=len(ids))
        real = np.bincount(which, weights=answered[:, col] & counting, minlength=len(ids))
        for supplier_id in ids[(total >= k) & (real < k)].tolist():
            release.thin_competencies.add((supplier_id, competency_id))
    has_nps = ~np.isnan(ballots.nps)
    total = np.bincount(which, weights=has_nps, minlength=len(ids))
    real = np.bincount(which, weights=has_nps & counting, minlength=len(ids))
    release.thin_nps = set(ids[(total >= k) & (real < k)].tolist())


def drop_released_pools(session: Session) -> int:
    """Delete the pool rows of every closed cycle; returns how many.

    Run before the vacuum after a close, which then purges their old versions. The
    close left them behind as ciphertext under a key nobody can derive any more.
    """
    closed = select(Cycle.id).where(Cycle.state == CycleState.closed)
    with ciphertext_delete(session):
        dropped = session.execute(
            delete(PendingSubmission)
            .where(PendingSubmission.cycle_id.in_(closed))
            .execution_options(synchronize_session=False)
        )
    return int(getattr(dropped, "rowcount", 0) or 0)


def cycle_competency_order(session: Session, *, cycle_id: int) -> list[int]:
    """The cycle's competency ids in the order a ballot's ``scores`` lists them."""
    return list(
        session.scalars(
            select(CycleCompetency.id)
            .where(CycleCompetency.cycle_id == cycle_id)
            .order_by(CycleCompetency.id)
        )
    )


def cycles_sealed_under_another_key(session: Session, *, secret_key: str) -> list[str]:
    """Open cycles with pending answers that ``secret_key`` cannot open (their names).

    Started with another SECRET_KEY, the service would take new answers under a key
    that cannot open the earlier ones, and the close would stop: refused at start-up.
    """
    cycles = session.scalars(
        select(Cycle).where(
            Cycle.state == CycleState.open,
            Cycle.pool_key_check.is_not(None),
            select(PendingSubmission.id).where(PendingSubmission.cycle_id == Cycle.id).exists(),
        )
    ).all()
    return [
        cycle.name
        for cycle in cycles
        if crypto.key_check(cycles_service.pool_key(secret_key, cycle)) != cycle.pool_key_check
    ]
