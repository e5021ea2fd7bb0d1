"""The submit reference: a bare Starlette endpoint that parses the same rating form and
inserts the same ballot rows with the driver, and nothing else (no session, no token,
no validation, no templates).

Served by uvicorn like the app: ``uvicorn --factory benchmarks.ref_rating_app:create_app``
with ``REF_DATABASE_URL``, ``REF_CYCLE_ID`` and ``REF_ORIENTATION`` set.
"""

from __future__ import annotations

import os
import queue
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from benchmarks.infra import driver_connect
from benchmarks.rating_form import parse_body

SCHEMA = {
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS ref_ballot (id CHAR(32) PRIMARY KEY, cycle_id INTEGER NOT NULL,"
        " supplier_id INTEGER NOT NULL, nps INTEGER, comment TEXT)",
        "CREATE INDEX IF NOT EXISTS ix_ref_ballot ON ref_ballot (cycle_id, supplier_id)",
        "CREATE TABLE IF NOT EXISTS ref_ballot_score (ballot_id CHAR(32) NOT NULL"
        " REFERENCES ref_ballot (id) ON DELETE CASCADE, cycle_competency_id INTEGER NOT NULL,"
        " score INTEGER, PRIMARY KEY (ballot_id, cycle_competency_id))",
    ],
    "postgresql": [
        "CREATE TABLE IF NOT EXISTS ref_ballot (id UUID PRIMARY KEY, cycle_id INTEGER NOT NULL,"
        " supplier_id INTEGER NOT NULL, nps INTEGER, comment TEXT)",
        "CREATE INDEX IF NOT EXISTS ix_ref_ballot ON ref_ballot (cycle_id, supplier_id)",
        "CREATE TABLE IF NOT EXISTS ref_ballot_score (ballot_id UUID NOT NULL"
        " REFERENCES ref_ballot (id) ON DELETE CASCADE, cycle_competency_id INTEGER NOT NULL,"
        " score INTEGER, PRIMARY KEY (ballot_id, cycle_competency_id))",
    ],
}


def create_schema(url: str) -> None:
    """The reference's ballot tables: the app's columns, keys and index."""
    conn = driver_connect(url)
    try:
        for statement in SCHEMA["sqlite" if url.startswith("sqlite") else "postgresql"]:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def count_rows(url: str) -> tuple[int, int]:
    conn = driver_connect(url)
    try:
        ballots = conn.execute("SELECT count(*) FROM ref_ballot").fetchone()[0]
        scores = conn.execute("SELECT count(*) FROM ref_ballot_score").fetchone()[0]
    finally:
        conn.close()
    return int(ballots), int(scores)


class _Pool:
    """A fixed pool of driver connections (the app's engine keeps a pool too)."""

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self._free: queue.Queue[Any] = queue.Queue()
        for _ in range(size):
            conn = driver_connect(url)
            if self.sqlite:
                conn.execute("PRAGMA busy_timeout=30000")
            self._free.put(conn)

    @contextmanager
    def connection(self) -> Iterator[Any]:
        conn = self._free.get()
        try:
            yield conn
        finally:
            self._free.put(conn)


def create_app() -> Starlette:
    url = os.environ["REF_DATABASE_URL"]
    cycle_id = int(os.environ["REF_CYCLE_ID"])
    si, ci = (int(x) for x in os.environ.get("REF_ORIENTATION", "0,1").split(","))
    pool = _Pool(url, int(os.environ.get("REF_POOL_SIZE", "10")))
    mark = "?" if pool.sqlite else "%s"
    insert_ballot = (
        f"INSERT INTO ref_ballot (id, cycle_id, supplier_id, nps, comment) "
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark})"
    )
    insert_score = (
        f"INSERT INTO ref_ballot_score (ballot_id, cycle_competency_id, score) "
        f"VALUES ({mark}, {mark}, {mark})"
    )

    def store(items: list[tuple[str, str]]) -> None:
        ballots = parse_body(items, (si, ci))
        ballot_rows: list[tuple[Any, ...]] = []
        score_rows: list[tuple[Any, ...]] = []
        for supplier_id, answer in ballots.items():
            ballot_id: Any = uuid.uuid4()
            ballot_id = ballot_id.hex if pool.sqlite else ballot_id
            ballot_rows.append((ballot_id, cycle_id, supplier_id, answer["nps"], answer["comment"]))
            score_rows.extend((ballot_id, c, s) for c, s in answer["scores"].items())
        with pool.connection() as conn:
            if pool.sqlite:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert_ballot, ballot_rows)
                conn.executemany(insert_score, score_rows)
                conn.execute("COMMIT")
            else:
                with conn.cursor() as cur:
                    cur.executemany(insert_ballot, ballot_rows)
                    cur.executemany(insert_score, score_rows)
                conn.commit()

    async def rate(request: Request) -> Response:
        form = await request.form()
        items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        await run_in_threadpool(store, items)
        return RedirectResponse("/thanks", status_code=303)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/rate", rate, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )
