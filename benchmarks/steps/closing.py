"""Step 4: close the cycle (seal the ballots, compute and store every result)."""

from __future__ import annotations

import sqlite3
import time

from benchmarks.context import Context, FeatureMissing, check, route_missing
from benchmarks.infra import driver_connect
from benchmarks.references import duckdb_close, export_for_duckdb
from benchmarks.report import at_most_ratio

STEP = "4 close"
MIN_RATERS = 3  # the app's default ANONYMITY_MIN_RATERS; the run does not change it


def results_ready(ctx: Context) -> bool:
    with ctx.client() as http:
        response = http.get(f"/api/v1/cycles/{ctx.cycle_id}/results/company")
        if route_missing(response):
            raise FeatureMissing(f"GET {response.request.url.path} does not exist yet")
        return response.status_code == 200


def wait_for_vacuum(ctx: Context, timeout: float = 120.0) -> float | None:
    """Wait until the server has finished the purge that follows the close: it deletes
    the released pool and vacuums, then records ``cycle.vacuumed_at``. Returns when that
    was first seen (``perf_counter``), or None after ``timeout`` seconds.

    Each poll is its own short transaction: a snapshot held here would keep the server's
    PostgreSQL ``VACUUM FULL`` waiting for it.
    """
    deadline = time.monotonic() + timeout
    conn = driver_connect(ctx.database_url)
    try:
        if ctx.db == "sqlite":
            conn.execute("PRAGMA busy_timeout=100")
        while time.monotonic() < deadline:
            cur = conn.cursor()
            try:
                cur.execute(f"SELECT vacuumed_at FROM cycle WHERE id = {int(ctx.cycle_id or 0)}")
                done = cur.fetchone()[0] is not None
            except sqlite3.OperationalError:  # SQLite: busy while the VACUUM runs
                done = False
            finally:
                conn.rollback()
            if done:
                return time.perf_counter()
            time.sleep(0.02)
        return None
    finally:
        conn.close()


def run(ctx: Context) -> None:
    if ctx.cycle_id is None:
        ctx.missing(STEP, "seconds", "s", "no cycle was launched")
        return
    try:
        with ctx.memory("close"), ctx.client() as http:
            started = time.perf_counter()
            check(http.post(f"/api/v1/cycles/{ctx.cycle_id}/close"), "close")
            request_seconds = time.perf_counter() - started
            # Results may be computed in the request or by the worker just after: the
            # step ends when the results API serves them.
            deadline = time.monotonic() + 600 + ctx.size * 0.02
            while not results_ready(ctx):
                if time.monotonic() > deadline:
                    raise RuntimeError("results were not ready in time after close")
                time.sleep(0.05)
            ready_seconds = time.perf_counter() - started
            # The app purges the pool and vacuums after the results (part of sealing):
            # wait for it too.
            vacuum_until = wait_for_vacuum(ctx)
            seconds = max(ready_seconds, (vacuum_until or 0) - started)
    except FeatureMissing as exc:
        ctx.missing(STEP, "seconds", "s", str(exc))
        return
    files = export_for_duckdb(ctx.database_url, ctx.cycle_id, ctx.workdir)
    ref_seconds, counts = duckdb_close(files, min_raters=MIN_RATERS)
    ctx.say(
        f"close: {seconds:.2f}s (request {request_seconds:.2f}s), "
        f"DuckDB {ref_seconds:.3f}s {counts}"
    )
    # The close is a job: from the button (the POST) until the results API serves them.
    at_most_ratio(
        ctx.figure(
            STEP,
            "close job: button to results ready",
            "s",
            ready_seconds,
            reference=ref_seconds,
            reference_name="DuckDB",
            detail={"request_seconds": request_seconds},
        ),
        3 if ctx.db == "postgresql" else 10,
    )
    at_most_ratio(
        ctx.figure(
            STEP,
            "seal + compute",
            "s",
            seconds,
            reference=ref_seconds,
            reference_name="DuckDB",
            detail={
                "request_seconds": request_seconds,
                "results_ready_seconds": ready_seconds,
                "vacuum_observed": vacuum_until is not None,
                "duckdb_rows": counts,
            },
        ),
        3 if ctx.db == "postgresql" else 10,
    )
