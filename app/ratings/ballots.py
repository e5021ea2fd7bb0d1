"""A cycle's ballots in memory, and their stored form: one box per supplier.

A :class:`~app.ratings.models.BallotBox` row holds every ballot about its supplier as
little-endian int16 arrays (an NPS per ballot; the scores row-major, one column per
competency of the cycle in the order of their ids), :data:`NO_ANSWER` where a ballot has
none, and the comments as a separate list. :func:`boxes` shuffles both before they are
stored, with a permutation drawn from 128 secret bits: nobody can reproduce it to undo it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

NO_ANSWER = -32768
_INT16 = np.dtype("<i2")
# The columns :func:`boxes` yields, in order.
BOX_COLUMNS = ("cycle_id", "supplier_id", "ballots", "nps", "scores", "comments")


@dataclass
class Ballots:
    """Ballots as arrays, a row per ballot in no particular order."""

    competencies: list[int]  # cycle competency ids, the columns of ``scores``
    suppliers: npt.NDArray[np.int64]
    nps: npt.NDArray[np.float64]  # NaN: no answer
    scores: npt.NDArray[np.float64]  # ballots x competencies, NaN: no answer
    # Supplier -> their comments (stripped, none empty): not tied to a ballot.
    comments: dict[int, list[str]] = field(default_factory=dict)

    @classmethod
    def empty(cls, competencies: list[int]) -> Ballots:
        return cls(
            competencies=competencies,
            suppliers=np.zeros(0, np.int64),
            nps=np.zeros(0, np.float64),
            scores=np.zeros((0, len(competencies)), np.float64),
        )

    def __len__(self) -> int:
        return len(self.suppliers)

    def only(self, kept: npt.NDArray[np.bool_]) -> Ballots:
        """The ballots where ``kept`` is true, and the comments of their suppliers."""
        suppliers = self.suppliers[kept]
        still = set(np.unique(suppliers).tolist())
        return Ballots(
            competencies=self.competencies,
            suppliers=suppliers,
            nps=self.nps[kept],
            scores=self.scores[kept],
            comments={s: texts for s, texts in self.comments.items() if s in still},
        )

    @classmethod
    def joined(cls, parts: Sequence[Ballots]) -> Ballots:
        """Several sets of ballots over the same competencies as one."""
        comments: dict[int, list[str]] = {}
        for part in parts:
            for supplier, texts in part.comments.items():
                comments.setdefault(supplier, []).extend(texts)
        return cls(
            competencies=parts[0].competencies,
            suppliers=np.concatenate([p.suppliers for p in parts]),
            nps=np.concatenate([p.nps for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            comments=comments,
        )


def comments_by_supplier(
    suppliers: npt.NDArray[np.int64], comments: Sequence[str | None]
) -> dict[int, list[str]]:
    """Per-ballot comments (None or blank: none) grouped by their ballot's supplier."""
    grouped: dict[int, list[str]] = {}
    # Most ballots carry no comment: look only at those that do.
    for i, given in [(i, text) for i, text in enumerate(comments) if text]:
        if stripped := given.strip():
            grouped.setdefault(int(suppliers[i]), []).append(stripped)
    return grouped


def stored_answers(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    """Answers as the box stores them: int16, NaN as :data:`NO_ANSWER`."""
    return np.where(np.isnan(values), NO_ANSWER, values).astype(_INT16)


def answers(values: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    """Stored int16 answers as floats, NaN where there is no answer."""
    out = values.astype(np.float64)
    out[values == NO_ANSWER] = np.nan
    return out


def boxes(cycle_id: int, ballots: Ballots) -> Iterator[tuple[Any, ...]]:
    """The cycle's boxes as rows in the order of :data:`BOX_COLUMNS`, suppliers in
    ascending order, the ballots and the comments in each in random order."""
    rng = np.random.default_rng(secrets.randbits(128))
    drawn = rng.permutation(len(ballots))
    order = drawn[np.argsort(ballots.suppliers[drawn], kind="stable")]
    suppliers = ballots.suppliers[order]
    nps = stored_answers(ballots.nps[order]).tobytes()
    width = 2 * len(ballots.competencies)
    scores = stored_answers(ballots.scores[order]).tobytes()
    starts = np.flatnonzero(np.r_[True, suppliers[1:] != suppliers[:-1]])[: len(order)]
    ends = [*starts[1:].tolist(), len(order)]
    ids = suppliers[starts]
    # The comments the same way: sorted by supplier, in random order within each; each
    # box then takes a slice (a shuffle per supplier was most of this function's time).
    owners = np.array([s for s, texts in ballots.comments.items() for _ in texts], dtype=np.int64)
    flat = [text for texts in ballots.comments.values() for text in texts]
    mixed = np.lexsort((rng.random(len(flat)), owners)).tolist()
    flat = [flat[i] for i in mixed]
    owners = owners[mixed]
    firsts = np.searchsorted(owners, ids, "left").tolist()
    lasts = np.searchsorted(owners, ids, "right").tolist()
    for supplier, start, end, first, last in zip(
        ids.tolist(), starts.tolist(), ends[: len(starts)], firsts, lasts, strict=True
    ):
        yield (
            cycle_id,
            supplier,
            end - start,
            nps[2 * start : 2 * end],
            scores[width * start : width * end],
            flat[first:last] or None,
        )


def unpacked(rows: Iterable[Sequence[Any]], competencies: list[int]) -> Ballots:
    """Boxes read back: rows of (supplier id, ballots, nps, scores, comments).

    A box whose arrays do not match its count of ballots and the cycle's competencies
    raises ``ValueError``; a NULL array reads as no answers.
    """
    width = len(competencies)
    ids: list[int] = []
    counts: list[int] = []
    nps_parts: list[bytes] = []
    score_parts: list[bytes] = []
    comments: dict[int, list[str]] = {}
    for supplier, count, nps, scores, texts in rows:
        nps = bytes(nps) if nps is not None else _blank(count)
        scores = bytes(scores) if scores is not None else _blank(count * width)
        if len(nps) != 2 * count or len(scores) != 2 * count * width:
            raise ValueError(f"ballot box of supplier {supplier} does not match its cycle")
        ids.append(supplier)
        counts.append(count)
        nps_parts.append(nps)
        score_parts.append(scores)
        if texts:
            comments[supplier] = list(texts)
    if not ids:
        return Ballots.empty(competencies)
    suppliers = np.repeat(np.array(ids, np.int64), counts)
    return Ballots(
        competencies=competencies,
        suppliers=suppliers,
        nps=answers(np.frombuffer(b"".join(nps_parts), _INT16)),
        scores=answers(np.frombuffer(b"".join(score_parts), _INT16).reshape(len(suppliers), width)),
        comments=comments,
    )


def _blank(answers: int) -> bytes:
    return np.full(answers, NO_ANSWER, _INT16).tobytes()
