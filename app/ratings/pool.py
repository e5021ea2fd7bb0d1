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
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app import crypto
from app.errors import Conflict
from app.ratings.schemas import SupplierAnswer

# Room kept per supplier: ids, scores and NPS take ~16 bytes a competency; a comment
# slot of 1 KiB holds about 500 Cyrillic or 1,000 Latin characters on average.
SUPPLIER_BYTES = 64
COMPETENCY_BYTES = 16
COMMENT_BYTES = 1024


# Version 2 of the sealed document: the numbers as little-endian arrays, the comments
# as JSON. The close reads half a million answers; numpy takes each array whole, where
# JSON (version 1, still read) parsed every number on its own.
_VERSION = 2
_HEAD = struct.Struct("<BBHH")  # version, counts toward k, suppliers, competencies
CANT_JUDGE = -32768  # int16 score or NPS: "can't judge", or no NPS answer
NOT_ASKED = -32767  # int16 score: the competency was not on this supplier's form
_INT32, _INT16 = np.dtype("<i4"), np.dtype("<i2")
_JSON = json.JSONDecoder()


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


@dataclass
class Columns:
    """One sealed submission as arrays, as the close reads it."""

    counts_toward_k: bool
    competencies: tuple[int, ...]  # the columns of ``scores``
    suppliers: npt.NDArray[np.int32]
    nps: npt.NDArray[np.int16]  # CANT_JUDGE: no answer
    scores: npt.NDArray[np.int16]  # suppliers x competencies; CANT_JUDGE, NOT_ASKED
    comments: Sequence[str | None]  # per supplier


def seal(key: bytes, submission: Submission, *, cycle_id: int, ask_comment: bool) -> bytes:
    answers = submission.answers
    competencies = sorted({cid for a in answers.values() for cid in a.scores})
    n, m = len(answers), len(competencies)
    scores = [
        NOT_ASKED if cid not in a.scores else _int16(a.scores[cid])
        for a in answers.values()
        for cid in competencies
    ]
    comments = [a.comment for a in answers.values()]
    data = b"".join(
        (
            _HEAD.pack(_VERSION, submission.counts_toward_k, n, m),
            struct.pack(f"<{m}i", *competencies),
            struct.pack(f"<{n}i", *answers),
            struct.pack(f"<{n}h", *(_int16(a.nps) for a in answers.values())),
            struct.pack(f"<{n * m}h", *scores),
            json.dumps(comments if any(comments) else [], ensure_ascii=False).encode(),
        )
    )
    size = _size_class(len(data) + 4, _floor(answers, ask_comment=ask_comment))
    return crypto.encrypt(key, crypto.pad(data, size), context=_context(cycle_id))


def _int16(value: int | None) -> int:
    return CANT_JUDGE if value is None else value


def open_sealed(key: bytes, sealed: bytes, *, cycle_id: int) -> Submission:
    """The submission; :class:`app.crypto.DecryptionFailed` under a wrong key."""
    doc = open_columns(key, sealed, cycle_id=cycle_id)
    answers: dict[int, SupplierAnswer] = {}
    for i, supplier_id in enumerate(doc.suppliers.tolist()):
        row = doc.scores[i].tolist()
        nps = int(doc.nps[i])
        answers[supplier_id] = SupplierAnswer(
            scores={
                cid: None if score == CANT_JUDGE else score
                for cid, score in zip(doc.competencies, row, strict=True)
                if score != NOT_ASKED
            },
            nps=None if nps == CANT_JUDGE else nps,
            comment=doc.comments[i],
        )
    return Submission(counts_toward_k=doc.counts_toward_k, answers=answers)


def open_columns(key: bytes, sealed: bytes, *, cycle_id: int) -> Columns:
    """The submission as arrays (for the close: no object per answer), whichever
    version sealed it; :class:`app.crypto.DecryptionFailed` under a wrong key."""
    data = crypto.unpad(crypto.decrypt(key, sealed, context=_context(cycle_id)))
    if data[:1] == b"{":
        return _version_1(json.loads(data))
    version, counts, n, m = _HEAD.unpack_from(data)
    if version != _VERSION:
        raise crypto.DecryptionFailed(f"unknown sealed version {version}")
    at = _HEAD.size
    competencies = np.frombuffer(data, _INT32, m, at)
    at += 4 * m
    suppliers = np.frombuffer(data, _INT32, n, at)
    at += 4 * n
    nps = np.frombuffer(data, _INT16, n, at)
    at += 2 * n
    scores = np.frombuffer(data, _INT16, n * m, at).reshape(n, m)
    at += 2 * n * m
    tail = data[at:]
    # Most raters write no comment: "[]" needs no JSON parser (42,000 calls a close).
    # Text to the decoder: json.loads(bytes) first works out the encoding, every call.
    comments = (_JSON.decode(tail.decode()) if tail != b"[]" else None) or [None] * n
    return Columns(bool(counts), tuple(competencies.tolist()), suppliers, nps, scores, comments)


def _version_1(document: dict[str, Any]) -> Columns:
    # {"v": 1, "k": counts, "a": [[supplier, nps, comment, [[competency, score], ...]]]}
    answers = document["a"]
    competencies = sorted({int(cid) for _, _, _, pairs in answers for cid, _ in pairs})
    column = {cid: j for j, cid in enumerate(competencies)}
    scores = np.full((len(answers), len(competencies)), NOT_ASKED, dtype=np.int16)
    for i, (_, _, _, pairs) in enumerate(answers):
        for cid, score in pairs:
            scores[i, column[int(cid)]] = _int16(score)
    return Columns(
        counts_toward_k=bool(document["k"]),
        competencies=tuple(competencies),
        suppliers=np.array([int(a[0]) for a in answers], dtype=np.int32),
        nps=np.array([_int16(a[1]) for a in answers], dtype=np.int16),
        scores=scores,
        comments=[a[2] for a in answers],
    )


def _context(cycle_id: int) -> bytes:
    # Binds a sealed row to its cycle: copied into another cycle's pool it will not open.
    return f"pending_submission:cycle:{cycle_id}".encode()
