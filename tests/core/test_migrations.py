"""The migrations build exactly the models' schema, and go down and up again cleanly.

Each run uses a database of its own (a temporary SQLite file, or a freshly created
PostgreSQL database), never the session's test database.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Integer,
    LargeBinary,
    Text,
    column,
    insert,
    inspect,
    select,
    table,
    text,
)

from app.db import make_engine, make_sessionmaker
from app.db.types import ScoreList
from app.mail import service as mail_service
from app.migrate import DataLossRefused, downgrade, upgrade
from app.models import metadata
from app.ratings.ballots import unpacked

# The ballot table as revisions 0006 to 0019 have it (a row per ballot; 0020 boxes them).
OLD_BALLOT = table(
    "ballot",
    column("id", Integer),
    column("cycle_id", Integer),
    column("supplier_id", Integer),
    column("nps", Integer),
    column("comment", Text),
    column("scores", ScoreList),
)
BALLOT_BOX = table(
    "ballot_box",
    column("cycle_id", Integer),
    column("supplier_id", Integer),
    column("ballots", Integer),
    column("nps", LargeBinary),
    column("scores", LargeBinary),
    column("comments", JSON),
)


def schema_diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(sql).all()]
    finally:
        engine.dispose()


def test_migrations_match_models_and_round_trip(fresh_database_url: str) -> None:
    upgrade(fresh_database_url)
    assert schema_diff(fresh_database_url) == []
    assert set(metadata.tables) <= table_names(fresh_database_url)

    downgrade(fresh_database_url, "base", force=True)
    assert table_names(fresh_database_url) <= {"alembic_version"}

    upgrade(fresh_database_url)
    assert schema_diff(fresh_database_url) == []


def test_scores_move_into_the_ballot_row_and_back(fresh_database_url: str) -> None:
    # A ballot written before 0006 (a row per score) keeps its scores, in the order of
    # the cycle's competency ids, through the upgrade and back.
    upgrade(fresh_database_url, "0005")
    engine = make_engine(fresh_database_url)
    ballot_id = uuid.uuid4()
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO cycle (id, name, period_start, period_end, opens_at, closes_at, "
                "state, scale_min, scale_max, ask_nps, ask_comment, created_at) VALUES "
                "(1, 'Q', '2026-01-01', '2026-03-31', '2026-03-01 00:00:00', "
                "'2026-03-20 00:00:00', 'closed', 1, 10, true, true, '2026-01-01 00:00:00')"
            )
            conn.exec_driver_sql(
                "INSERT INTO department (id, external_id, name, created_at, updated_at) "
                "VALUES (1, 'D', 'Dept', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
            conn.exec_driver_sql(
                "INSERT INTO employee (id, external_id, full_name, email, department_id, "
                "language, active, created_at, updated_at) VALUES (1, 'E', 'Ann', "
                "'ann@example.com', 1, 'en', true, '2026-01-01 00:00:00', "
                "'2026-01-01 00:00:00')"
            )
            for cid in (7, 3, 5):
                conn.exec_driver_sql(
                    "INSERT INTO cycle_competency (id, cycle_id, code, name, description, "
                    "indicators, weight, display_order) VALUES "
                    f"({cid}, 1, 'c{cid}', 'C{cid}', '', '[]', 1.0, {cid})"
                )
            conn.execute(
                text(
                    "INSERT INTO ballot (id, cycle_id, supplier_id, nps, comment) "
                    "VALUES (:id, 1, 1, 9, 'ok')"
                ),
                {"id": ballot_id if engine.dialect.name != "sqlite" else ballot_id.hex},
            )
            for cid, score in ((7, 2), (3, None), (5, 9)):
                conn.execute(
                    text(
                        "INSERT INTO ballot_score (ballot_id, cycle_competency_id, score) "
                        "VALUES (:id, :cid, :score)"
                    ),
                    {
                        "id": ballot_id if engine.dialect.name != "sqlite" else ballot_id.hex,
                        "cid": cid,
                        "score": score,
                    },
                )
    finally:
        engine.dispose()
    upgrade(fresh_database_url, "0006")
    (key,) = query(fresh_database_url, "SELECT id FROM ballot")[0]
    assert uuid.UUID(str(key)) != ballot_id  # rewritten: a new key, a new place
    # Up to the last revision with a row per ballot (0020 boxes them, tested below).
    upgrade(fresh_database_url, "0019")
    engine = make_engine(fresh_database_url)
    try:
        assert "ballot_score" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            ballot = conn.execute(
                select(OLD_BALLOT.c.nps, OLD_BALLOT.c.comment, OLD_BALLOT.c.scores)
            ).one()
        assert tuple(ballot) == (9, "ok", [None, 9, 2])
    finally:
        engine.dispose()
    # Later revisions drop what they added (forced: this test is about 0006).
    downgrade(fresh_database_url, "0005", force=True)
    rows = query(
        fresh_database_url, "SELECT cycle_competency_id, score FROM ballot_score ORDER BY 1"
    )
    assert rows == [(3, None), (5, 9), (7, 2)]


def test_downgrade_that_drops_data_is_refused_unless_forced(fresh_database_url: str) -> None:
    upgrade(fresh_database_url)
    with pytest.raises(DataLossRefused, match="0001 drops every table"):
        downgrade(fresh_database_url, "base")
    # Refused before any step ran: still at head, every table there.
    assert set(metadata.tables) <= table_names(fresh_database_url)
    assert schema_diff(fresh_database_url) == []
    # The newest downgrades drop what HR or the HRIS entered (the scim ids, the paper-channel
    # flags, the department service map, the competencies'
    # translated texts...): refused, then forced.
    with pytest.raises(DataLossRefused, match=r"00\d\d drops "):
        downgrade(fresh_database_url, "0005")
    downgrade(fresh_database_url, "0005", force=True)
    # Downgrades that keep the data need no force (0005 leaves the competencies).
    downgrade(fresh_database_url, "0004")
    # 0004's would delete the sealed answers of open cycles: refused too.
    with pytest.raises(DataLossRefused, match="0004 drops the pending answers"):
        downgrade(fresh_database_url, "0003")
    assert "pending_submission" in table_names(fresh_database_url)
    downgrade(fresh_database_url, "0003", force=True)
    downgrade(fresh_database_url, "0001")
    downgrade(fresh_database_url, "base", force=True)
    assert table_names(fresh_database_url) <= {"alembic_version"}


def test_results_closed_before_0016_get_their_name_order(fresh_database_url: str) -> None:
    upgrade(fresh_database_url, "0015")
    engine = make_engine(fresh_database_url)
    people = {1: "Olga", 2: "Anna", 3: "Boris", 4: "Anna"}  # two Annas: then by id
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO department (id, external_id, name, created_at, updated_at) "
                "VALUES (1, 'D', 'Dept', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
            for employee_id, name in people.items():
                conn.exec_driver_sql(
                    "INSERT INTO employee (id, external_id, full_name, email, department_id, "
                    f"language, active, created_at, updated_at) VALUES ({employee_id}, "
                    f"'E{employee_id}', '{name}', 'e{employee_id}@example.com', 1, 'en', true, "
                    "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                )
            for cycle_id in (1, 2):
                conn.exec_driver_sql(
                    "INSERT INTO cycle (id, name, period_start, period_end, opens_at, "
                    "closes_at, state, scale_min, scale_max, ask_nps, ask_comment, "
                    f"created_at) VALUES ({cycle_id}, 'Q{cycle_id}', '2026-01-01', "
                    "'2026-03-31', '2026-03-01 00:00:00', '2026-03-20 00:00:00', 'closed', "
                    "1, 10, true, true, '2026-01-01 00:00:00')"
                )
                for employee_id, name in people.items():
                    if cycle_id == 2 and employee_id == 2:
                        continue  # not rated in the second cycle
                    conn.exec_driver_sql(
                        "INSERT INTO cycle_employee (cycle_id, employee_id, full_name, "
                        f"external_id) VALUES ({cycle_id}, {employee_id}, '{name}', "
                        f"'E{employee_id}')"
                    )
                    conn.exec_driver_sql(
                        "INSERT INTO employee_result (cycle_id, employee_id, meets_k) "
                        f"VALUES ({cycle_id}, {employee_id}, false)"
                    )
    finally:
        engine.dispose()
    upgrade(fresh_database_url)
    rows = query(
        fresh_database_url,
        "SELECT cycle_id, employee_id, name_order FROM employee_result ORDER BY 1, 3",
    )
    assert rows == [
        (1, 2, 0),
        (1, 4, 1),
        (1, 3, 2),
        (1, 1, 3),
        (2, 4, 0),
        (2, 3, 1),
        (2, 1, 2),
    ]


def test_ballots_get_integer_keys_in_the_order_of_their_random_ones(
    fresh_database_url: str,
) -> None:
    # 0017: a ballot's random UUID key becomes a number. The numbers follow the old
    # keys' order (random), not the order the rows were written in; nothing is lost,
    # and ballots written later take the next numbers. Down again: random UUIDs.
    upgrade(fresh_database_url, "0016")
    sqlite = fresh_database_url.startswith("sqlite")
    keys = [uuid.uuid4() for _ in range(5)]
    engine = make_engine(fresh_database_url)
    try:
        with engine.begin() as conn:
            for supplier_id, key in enumerate(keys, start=1):
                conn.execute(
                    text(
                        "INSERT INTO ballot (id, cycle_id, supplier_id, nps, comment) "
                        "VALUES (:id, 1, :supplier, 7, :comment)"
                    ),
                    {
                        "id": key.hex if sqlite else key,
                        "supplier": supplier_id,
                        "comment": f"c{supplier_id}",
                    },
                )
    finally:
        engine.dispose()
    # Up to the last revision with a row per ballot (0020 boxes them, tested below).
    upgrade(fresh_database_url, "0019")
    rows = query(fresh_database_url, "SELECT id, supplier_id, comment FROM ballot ORDER BY id")
    by_old_key = sorted(range(1, 6), key=lambda s: keys[s - 1].hex)
    assert rows == [(n, s, f"c{s}") for n, s in enumerate(by_old_key, start=1)]
    engine = make_engine(fresh_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(OLD_BALLOT).values(cycle_id=1, supplier_id=6, scores=[3]))
            later = conn.execute(
                select(OLD_BALLOT.c.id).where(OLD_BALLOT.c.supplier_id == 6)
            ).scalar_one()
        assert later == 6
    finally:
        engine.dispose()
    downgrade(fresh_database_url, "0016")
    rows = query(fresh_database_url, "SELECT id, supplier_id FROM ballot ORDER BY supplier_id")
    assert [s for _, s in rows] == [1, 2, 3, 4, 5, 6]
    assert len({str(k) for k, _ in rows}) == 6
    assert all(uuid.UUID(str(k)) not in keys for k, _ in rows)


def test_competency_means_move_into_the_employee_row_and_back(fresh_database_url: str) -> None:
    # 0018: the rows of employee_competency_result become JSON in their employee's
    # result row, in the cycle's display order (not the ids' order); an employee who
    # meets k with no mean shown gets [], one below k stays NULL. Down again: the rows.
    upgrade(fresh_database_url, "0017")
    engine = make_engine(fresh_database_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO cycle (id, name, period_start, period_end, opens_at, "
                "closes_at, state, scale_min, scale_max, ask_nps, ask_comment, "
                "created_at) VALUES (1, 'Q1', '2026-01-01', '2026-03-31', "
                "'2026-03-01 00:00:00', '2026-03-20 00:00:00', 'closed', 1, 10, true, "
                "true, '2026-01-01 00:00:00')"
            )
            for cid, order in ((10, 2), (11, 1)):
                conn.exec_driver_sql(
                    "INSERT INTO cycle_competency (id, cycle_id, code, name, description, "
                    "indicators, weight, display_order) VALUES "
                    f"({cid}, 1, 'C{cid}', 'Name {cid}', '', '[]', 1, {order})"
                )
            for employee_id, meets_k in ((1, True), (2, True), (3, False)):
                conn.exec_driver_sql(
                    "INSERT INTO employee_result (cycle_id, employee_id, meets_k) "
                    f"VALUES (1, {employee_id}, {str(meets_k).lower()})"
                )
            conn.exec_driver_sql(
                "INSERT INTO employee_competency_result (cycle_id, employee_id, "
                "cycle_competency_id, answers, mean) VALUES (1, 1, 10, 3, 7.25), "
                "(1, 1, 11, 4, 6.333333333333333)"
            )
    finally:
        engine.dispose()
    upgrade(fresh_database_url)
    assert "employee_competency_result" not in table_names(fresh_database_url)
    rows = query(
        fresh_database_url,
        "SELECT employee_id, competency_means FROM employee_result ORDER BY employee_id",
    )
    assert rows == [
        (1, "[[11,6.333333333333333,4],[10,7.25,3]]"),
        (2, "[]"),
        (3, None),
    ]
    downgrade(fresh_database_url, "0017")
    assert query(
        fresh_database_url,
        "SELECT employee_id, cycle_competency_id, answers, mean "
        "FROM employee_competency_result ORDER BY 1, 2",
    ) == [(1, 10, 3, 7.25), (1, 11, 4, 6.333333333333333)]


def test_outbox_texts_move_into_bodies_and_back(fresh_database_url: str) -> None:
    # 0019: each message's text becomes a body of its own (same id), later messages'
    # bodies take the next ids; down again, each message gets its text back with its
    # recipient's name filled in where a shared body left a placeholder.
    upgrade(fresh_database_url, "0018")
    engine = make_engine(fresh_database_url)
    columns = (
        "id, created_at, kind, to_address, to_name, subject, body_text, body_html, status, "
        "attempts, next_attempt_at"
    )
    try:
        with engine.begin() as conn:
            for message_id, html in ((4, "'<p>Hi Ann</p>'"), (9, "NULL")):
                conn.exec_driver_sql(
                    f"INSERT INTO outbox_message ({columns}) VALUES ({message_id}, "
                    "'2026-01-01 00:00:00', 'invitation', 'a@example.com', 'Ann', 's', "
                    f"'Hello Ann {message_id}', {html}, 'pending', 0, '2026-01-01 00:00:00')"
                )
    finally:
        engine.dispose()
    upgrade(fresh_database_url)
    assert query(
        fresh_database_url, "SELECT id, body_text, body_html FROM outbox_body ORDER BY id"
    ) == [(4, "Hello Ann 4", "<p>Hi Ann</p>"), (9, "Hello Ann 9", None)]
    assert query(fresh_database_url, "SELECT id, body_id FROM outbox_message ORDER BY id") == [
        (4, 4),
        (9, 9),
    ]
    engine = make_engine(fresh_database_url)
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            mail_service.enqueue_messages(
                session,
                messages=[
                    {
                        "kind": "invitation",
                        "to_address": f"{name.lower()}@example.com",
                        "to_name": name,
                        "subject": "s",
                        "body_text": f"Hello {mail_service.NAME_PLACEHOLDER}",
                        "body_html": f"<p>{mail_service.NAME_PLACEHOLDER}</p>",
                    }
                    for name in ("Bo", "<Cy>")
                ],
                secret_key="k",
            )
    finally:
        engine.dispose()
    assert query(fresh_database_url, "SELECT max(id), count(*) FROM outbox_body") == [(10, 3)]
    downgrade(fresh_database_url, "0018")
    # Sorted here: PostgreSQL's sequence did not see the ids given by hand above.
    assert sorted(
        query(fresh_database_url, "SELECT to_name, body_text, body_html FROM outbox_message"),
        key=str,
    ) == sorted(
        [
            ("Ann", "Hello Ann 4", "<p>Hi Ann</p>"),
            ("Ann", "Hello Ann 9", None),
            ("Bo", "Hello Bo", "<p>Bo</p>"),
            ("<Cy>", "Hello <Cy>", "<p>&lt;Cy&gt;</p>"),
        ],
        key=str,
    )
    assert "outbox_body" not in table_names(fresh_database_url)


def _insert_cycle(conn: Any, cycle_id: int, competencies: list[int]) -> None:
    conn.exec_driver_sql(
        "INSERT INTO cycle (id, name, period_start, period_end, opens_at, closes_at, state, "
        "scale_min, scale_max, ask_nps, ask_comment, created_at) VALUES "
        f"({cycle_id}, 'Q{cycle_id}', '2026-01-01', '2026-03-31', '2026-03-01 00:00:00', "
        "'2026-03-20 00:00:00', 'closed', 0, 10, true, true, '2026-01-01 00:00:00')"
    )
    for cid in competencies:
        conn.exec_driver_sql(
            "INSERT INTO cycle_competency (id, cycle_id, code, name, description, "
            "indicators, weight, display_order) VALUES "
            f"({cid}, {cycle_id}, 'c{cid}', 'C{cid}', '', '[]', 1.0, {100 - cid})"
        )


def _as_stored(scores: list[int | None] | None, width: int) -> tuple[int | None, ...]:
    """A ballot's scores as the cycle's columns read them: cut or padded to ``width``,
    NULL and missing ones "no answer"."""
    kept = list(scores or [])[:width]
    return tuple(kept + [None] * (width - len(kept)))


def _answer(value: float) -> int | None:
    return None if math.isnan(value) else int(value)


def test_ballots_move_into_boxes_and_back(fresh_database_url: str) -> None:
    # 0020: the ballots about a supplier in a cycle become one box, shuffled, their
    # scores in the cycle's competency columns (ids ascending), comments stripped and
    # blanks dropped; nothing else is lost. Down again: a ballot row each, numbered anew.
    upgrade(fresh_database_url, "0019")
    competencies = {1: [10, 11, 12], 2: [20, 21]}  # cycle -> ids, the box's columns
    # (cycle, supplier, nps, comment, scores); NULL nps and scores, "can't judge", short
    # and long score lists, blank comments, and two equal ballots.
    ballots: list[tuple[int, int, int | None, str | None, list[int | None] | None]] = [
        (1, 1, 9, "  good ", [5, None, 7]),
        (1, 1, 9, "good", [5, None, 7]),
        (1, 1, None, "   ", [1, 2]),
        (1, 1, 3, None, None),
        (1, 2, 10, "x\n", [4, 4, 4]),
        (1, 2, None, "", [None, None, None]),
        (2, 1, 7, "fine", [3, 4]),
        (2, 3, 0, None, [1, 2, 3]),
    ]
    # Enough ballots in one box that their order there cannot follow the old ids by
    # chance (1 in 30!): NPS 0 to 29, written in that order.
    ballots += [(1, 4, n % 11, None, [n % 11, 0, 1]) for n in range(30)]
    engine = make_engine(fresh_database_url)
    try:
        with engine.begin() as conn:
            for cycle_id, ids in competencies.items():
                _insert_cycle(conn, cycle_id, sorted(ids, reverse=True))
            conn.execute(
                insert(OLD_BALLOT),
                [
                    {
                        "id": 100 + i,
                        "cycle_id": c,
                        "supplier_id": s,
                        "nps": n,
                        "comment": t,
                        "scores": sc,
                    }
                    for i, (c, s, n, t, sc) in enumerate(ballots)
                ],
            )
    finally:
        engine.dispose()
    expected = Counter(
        (c, s, n, _as_stored(sc, len(competencies[c]))) for c, s, n, _, sc in ballots
    )
    expected_comments = Counter((c, s, t.strip()) for c, s, _, t, _ in ballots if t and t.strip())
    assert expected_comments == Counter({(1, 1, "good"): 2, (1, 2, "x"): 1, (2, 1, "fine"): 1})

    upgrade(fresh_database_url, "0020")
    assert "ballot" not in table_names(fresh_database_url)
    if not fresh_database_url.startswith("sqlite"):
        # The key's sequence (OWNED BY ballot.id, 0017) went with the table.
        assert query(fresh_database_url, "SELECT to_regclass('ballot_id_seq')") == [(None,)]
    engine = make_engine(fresh_database_url)
    try:
        with engine.connect() as conn:
            boxes = conn.execute(
                select(BALLOT_BOX).order_by(BALLOT_BOX.c.cycle_id, BALLOT_BOX.c.supplier_id)
            ).all()
    finally:
        engine.dispose()
    assert [(b.cycle_id, b.supplier_id, b.ballots) for b in boxes] == [
        (1, 1, 4),
        (1, 2, 2),
        (1, 4, 30),
        (2, 1, 1),
        (2, 3, 1),
    ]
    found: Counter[tuple[Any, ...]] = Counter()
    found_comments: Counter[tuple[Any, ...]] = Counter()
    for cycle_id, ids in competencies.items():
        read = unpacked(
            [
                (b.supplier_id, b.ballots, b.nps, b.scores, b.comments)
                for b in boxes
                if b.cycle_id == cycle_id
            ],
            ids,
        )
        for supplier, nps, scores in zip(
            read.suppliers.tolist(), read.nps.tolist(), read.scores.tolist(), strict=True
        ):
            found[(cycle_id, supplier, _answer(nps), tuple(map(_answer, scores)))] += 1
        for supplier, texts in read.comments.items():
            found_comments.update((cycle_id, supplier, t) for t in texts)
    assert found == expected
    assert found_comments == expected_comments
    # A box with no comments holds NULL; the big one is not in the old ids' order.
    assert [b.comments for b in boxes if b.supplier_id in (3, 4)] == [None, None]
    big = next(b for b in boxes if b.supplier_id == 4)
    in_box = unpacked([(4, big.ballots, big.nps, big.scores, None)], competencies[1])
    assert sorted(in_box.nps.tolist()) == sorted(n % 11 for n in range(30))
    assert in_box.scores[:, 0].tolist() != [n % 11 for n in range(30)]

    # Not a data-losing downgrade: no --force needed.
    downgrade(fresh_database_url, "0019")
    assert "ballot_box" not in table_names(fresh_database_url)
    engine = make_engine(fresh_database_url)
    try:
        with engine.begin() as conn:
            rows = conn.execute(select(OLD_BALLOT).order_by(OLD_BALLOT.c.id)).all()
            # New ballots continue after the renumbered ones (PostgreSQL: the sequence).
            conn.execute(insert(OLD_BALLOT).values(cycle_id=1, supplier_id=9, scores=[1]))
            later = conn.execute(
                select(OLD_BALLOT.c.id).where(OLD_BALLOT.c.supplier_id == 9)
            ).scalar_one()
    finally:
        engine.dispose()
    assert [r.id for r in rows] == list(range(1, len(ballots) + 1))
    assert all(type(r.id) is int for r in rows)
    assert later == len(ballots) + 1
    assert (
        Counter(
            (r.cycle_id, r.supplier_id, r.nps, _as_stored(r.scores, len(competencies[r.cycle_id])))
            for r in rows
        )
        == expected
    )
    # Full rows, as the close wrote them: a score per competency of the cycle.
    assert all(len(r.scores) == len(competencies[r.cycle_id]) for r in rows)
    assert Counter((r.cycle_id, r.supplier_id, r.comment) for r in rows if r.comment) == (
        expected_comments
    )
    # Grouped by supplier, in a fresh random order within (again 1 in 30! to fail).
    assert [r.supplier_id for r in rows if r.cycle_id == 1] == sorted(
        r.supplier_id for r in rows if r.cycle_id == 1
    )
    assert [r.scores[0] for r in rows if r.supplier_id == 4] != [n % 11 for n in range(30)]

    upgrade(fresh_database_url, "0020")
    assert query(
        fresh_database_url,
        "SELECT cycle_id, supplier_id, ballots FROM ballot_box ORDER BY 1, 2",
    ) == [(1, 1, 4), (1, 2, 2), (1, 4, 30), (1, 9, 1), (2, 1, 1), (2, 3, 1)]
    upgrade(fresh_database_url)
    assert schema_diff(fresh_database_url) == []
