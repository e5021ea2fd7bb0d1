"""The stored form of ballots (app.ratings.ballots): a box per supplier, in random order."""

from __future__ import annotations

import numpy as np
import pytest

from app.ratings.ballots import NO_ANSWER, Ballots, boxes, comments_by_supplier, unpacked

NAN = np.nan


def _ballots(n: int = 40) -> Ballots:
    suppliers = np.array([7 if i % 3 else 4 for i in range(n)], dtype=np.int64)
    texts = [f"comment {i}" if i % 4 == 0 else None for i in range(n)]
    return Ballots(
        competencies=[11, 12],
        suppliers=suppliers,
        nps=np.array([NAN if i % 5 == 0 else i % 11 for i in range(n)], dtype=np.float64),
        scores=np.array([[i % 7 + 1, NAN if i % 2 else i % 5] for i in range(n)]),
        comments=comments_by_supplier(suppliers, texts),
    )


def _as_set(ballots: Ballots) -> list[tuple[int, float, float, float]]:
    rows = zip(
        ballots.suppliers.tolist(), ballots.nps.tolist(), ballots.scores.tolist(), strict=True
    )
    # NaN never equals itself: compare as a marker.
    return sorted(
        (s, -1.0 if nps != nps else nps, *(-1.0 if v != v else v for v in scores))
        for s, nps, scores in rows
    )


def test_a_box_per_supplier_holds_every_ballot_and_comment() -> None:
    ballots = _ballots()
    rows = list(boxes(3, ballots))
    assert [(cycle, supplier, count) for cycle, supplier, count, *_ in rows] == [
        (3, 4, 14),
        (3, 7, 26),
    ]
    back = unpacked([row[1:] for row in rows], [11, 12])
    assert _as_set(back) == _as_set(ballots)
    assert {s: sorted(t) for s, t in back.comments.items()} == {
        s: sorted(t) for s, t in ballots.comments.items()
    }
    # Little-endian int16, NO_ANSWER where there is none.
    nps = np.frombuffer(rows[0][3], "<i2")
    assert (
        len(nps) == 14
        and (nps == NO_ANSWER).sum() == np.isnan(ballots.nps[ballots.suppliers == 4]).sum()
    )


def test_the_order_inside_a_box_is_drawn_afresh_each_time() -> None:
    ballots = _ballots()
    first, second = list(boxes(3, ballots)), list(boxes(3, ballots))
    order = ballots.scores[ballots.suppliers == 7].tolist()
    stored = unpacked([first[1][1:]], [11, 12]).scores.tolist()
    # By chance equal: 1 in 26! for the ballots, 1 in 5! for the comments (and again).
    assert stored != order or first[1][4] != second[1][4]
    assert first[1][5] != second[1][5] or first[1][4] != second[1][4]


def test_comments_are_stripped_and_blank_ones_dropped() -> None:
    suppliers = np.array([1, 1, 2, 2], dtype=np.int64)
    assert comments_by_supplier(suppliers, [" ok ", "  ", None, "\tyes\n"]) == {
        1: ["ok"],
        2: ["yes"],
    }


def test_a_box_that_does_not_match_its_cycle_is_refused() -> None:
    with pytest.raises(ValueError, match="does not match"):
        unpacked([(5, 2, b"\x01\x00\x02\x00", b"\x01\x00", None)], [11, 12])
    # NULL arrays read as no answers; no box at all is no ballot.
    empty = unpacked([(5, 2, None, None, None)], [11, 12])
    assert np.isnan(empty.scores).all() and empty.scores.shape == (2, 2)
    assert len(unpacked([], [11])) == 0 and list(boxes(1, Ballots.empty([11]))) == []


def test_only_keeps_the_comments_of_the_suppliers_left() -> None:
    ballots = _ballots()
    kept = ballots.only(ballots.suppliers == 7)
    assert set(kept.suppliers.tolist()) == {7} and set(kept.comments) == {7}
    joined = Ballots.joined([kept, ballots.only(ballots.suppliers == 4)])
    assert _as_set(joined) == _as_set(ballots)
