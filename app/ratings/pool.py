"""The mixing pool's sealed format: one rater's submission, padded and encrypted.

Why a pool: a submit marks the invitation used. Had it also inserted the ballots, the
database's own history (PostgreSQL's WAL and its archives, replicas, SQLite's ``-wal``)
would keep each ballot beside its rater's invitation for good, whatever the close does
later. So a submit writes only this sealed blob, and the close releases the whole pool
at once (see ``service.release_pool``).

Why release at close and not in batches of N: a batch's ballots name their suppliers,
and a supplier rated by only one rater of the batch would give that rater away. The
close is the only moment when every supplier's ballots leave together, so each ballot
hides among all of its supplier's raters.

The blob's size depends only on how many suppliers and competencies the rater had
(public through the matrix) unless the comments are unusually long, so its length does
not point at a comment either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app import crypto
from app.errors import Conflict
from app.ratings.schemas import SupplierAnswer

# Room kept per supplier: ids, scores and NPS take ~16 bytes a competency; a comment
# slot of 1 KiB holds about 500 Cyrillic or 1,000 Latin characters on average.
SUPPLIER_BYTES = 64
COMPETENCY_BYTES = 16
COMMENT_BYTES = 1024


class PoolKeyMismatch(Conflict):
    title = "Answers sealed under another SECRET_KEY"


@dataclass
class Submission:
    counts_toward_k: bool
    answers: dict[int, SupplierAnswer]


def _size_class(length: int, floor: int) -> int:
    """``floor``, or ``floor`` doubled until ``length`` fits: few, coarse sizes."""
    size = floor
    while size < length:
        size *= 2
    return size


def _floor(answers: dict[int, SupplierAnswer], *, ask_comment: bool) -> int:
    competencies = max((len(a.scores) for a in answers.values()), default=0)
    per_supplier = SUPPLIER_BYTES + COMPETENCY_BYTES * competencies
    if ask_comment:
        per_supplier += COMMENT_BYTES
    return 64 + per_supplier * max(1, len(answers))


def seal(key: bytes, submission: Submission, *, cycle_id: int, ask_comment: bool) -> bytes:
    document = {
        "v": 1,
        "k": submission.counts_toward_k,
        "a": [
            [sid, a.nps, a.comment, [[cid, score] for cid, score in a.scores.items()]]
            for sid, a in submission.answers.items()
        ],
    }
    data = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    size = _size_class(len(data) + 4, _floor(submission.answers, ask_comment=ask_comment))
    return crypto.encrypt(key, crypto.pad(data, size), context=_context(cycle_id))


def open_sealed(key: bytes, sealed: bytes, *, cycle_id: int) -> Submission:
    """The submission; :class:`app.crypto.DecryptionFailed` under a wrong key."""
    counts_toward_k, answers = open_raw(key, sealed, cycle_id=cycle_id)
    return Submission(
        counts_toward_k=counts_toward_k,
        answers={
            int(sid): SupplierAnswer(
                scores={int(cid): score for cid, score in scores}, nps=nps, comment=comment
            )
            for sid, nps, comment, scores in answers
        },
    )


def open_raw(key: bytes, sealed: bytes, *, cycle_id: int) -> tuple[bool, list[list[Any]]]:
    """Whether the rater counts toward k, and the answers as sealed: per supplier
    ``[supplier id, NPS, comment, [[competency id, score], ...]]``.

    For the close, which reads half a million answers into columns: an object per
    answer cost as much as the decryption.
    """
    data = crypto.unpad(crypto.decrypt(key, sealed, context=_context(cycle_id)))
    document = json.loads(data)
    return bool(document["k"]), document["a"]


def _context(cycle_id: int) -> bytes:
    # Binds a sealed row to its cycle: copied into another cycle's pool it will not open.
    return f"pending_submission:cycle:{cycle_id}".encode()
