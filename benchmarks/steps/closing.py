"""Step 4: close the cycle (seal the ballots, compute and store every result)."""

from __future__ import annotations

import time

from benchmarks.context import Context, FeatureMissing, check, route_missing
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
            seconds = time.perf_counter() - started
    except FeatureMissing as exc:
        ctx.missing(STEP, "seconds", "s", str(exc))
        return
    files = export_for_duckdb(ctx.database_url, ctx.cycle_id, ctx.workdir)
    ref_seconds, counts = duckdb_close(files, min_raters=MIN_RATERS)
    ctx.seconds["close"] = seconds
    ctx.say(
        f"close: {seconds:.2f}s (request {request_seconds:.2f}s), "
        f"DuckDB {ref_seconds:.3f}s {counts}"
    )
    at_most_ratio(
        ctx.figure(
            STEP,
            "seal + compute",
            "s",
            seconds,
            reference=ref_seconds,
            reference_name="DuckDB",
            detail={"request_seconds": request_seconds, "duckdb_rows": counts},
        ),
        3 if ctx.db == "postgresql" else 10,
    )
