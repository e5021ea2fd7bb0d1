"""Step 3: customers submit their ballots through the rating page, 32 at a time.

The private links are read from the emails the SMTP server received (step 2). The load
process first opens the links (token -> cookie -> page) and fills in the forms, then,
measured, posts them. The reference gets exactly the same bodies.

Only a sample of ``BENCH_HTTP_FORMS`` customers (5,000) goes through HTTP: at 50,000
employees opening 42,000 pages alone took a quarter of an hour and measured nothing
the sample does not. The other customers' answers go through the same service the
rating page calls (``ratings.service.submit_answers``: validated, sealed into the
pool), from the harness, so the close still finds every ballot of the company.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from benchmarks.context import Context, percentile
from benchmarks.infra import BENCH_SECRET, cpu_seconds, driver_connect, start_uvicorn
from benchmarks.ref_rating_app import count_rows, create_schema
from benchmarks.report import at_least_ratio, at_most_ratio

STEP = "3 submit"
# Goals as ratios to the bare endpoint in the same run: on two shared cores the load
# generator itself sets the latency floor (the reference's p99 is several hundred ms).
P99_GOAL_RATIO = 1.5
THROUGHPUT_GOAL = 0.7
CPU_GOAL_RATIO = 2.0
HTTP_FORMS = 5000  # BENCH_HTTP_FORMS


def cycle_competency_ids(ctx: Context) -> dict[str, int]:
    conn = driver_connect(ctx.database_url)
    try:
        cur = conn.cursor()
        mark = "?" if ctx.db == "sqlite" else "%s"
        cur.execute(
            f"SELECT code, id FROM cycle_competency WHERE cycle_id = {mark}", (ctx.cycle_id,)
        )
        return {row[0]: row[1] for row in cur.fetchall()}
    finally:
        conn.close()


def count_pending(ctx: Context) -> int:
    """Submissions waiting in the mixing pool (ballots are written only at close)."""
    conn = driver_connect(ctx.database_url)
    try:
        cur = conn.cursor()
        mark = "?" if ctx.db == "sqlite" else "%s"
        cur.execute(
            f"SELECT count(*) FROM pending_submission WHERE cycle_id = {mark}", (ctx.cycle_id,)
        )
        return int(cur.fetchone()[0])
    finally:
        conn.close()


def jobs(ctx: Context, customers: list[str]) -> list[dict[str, Any]]:
    company = ctx.company
    cc = cycle_competency_ids(ctx)
    codes = [code for code, _ in company.competencies]
    result = []
    for customer in customers:
        token = ctx.tokens.get(customer)
        if token is None:
            raise RuntimeError(f"no link was emailed to customer {customer}")
        answers = {}
        for supplier in company.suppliers_of[customer]:
            answer = company.answer(customer, supplier)
            answers[ctx.employee_ids[supplier]] = {
                "scores": {cc[code]: s for code, s in zip(codes, answer.scores, strict=True)},
                "nps": answer.nps,
                "comment": answer.comment,
            }
        result.append({"token": token, "answers": answers})
    return result


def split_responders(ctx: Context) -> tuple[list[str], list[str]]:
    """(customers who submit over HTTP, the rest), an even spread of the responders."""
    responders = sorted(ctx.company.responders)
    sample = int(os.environ.get("BENCH_HTTP_FORMS", HTTP_FORMS))
    if len(responders) <= sample:
        return responders, []
    step = len(responders) / sample
    picked = {int(i * step) for i in range(sample)}
    return (
        [c for i, c in enumerate(responders) if i in picked],
        [c for i, c in enumerate(responders) if i not in picked],
    )


def submit_in_process(ctx: Context, work: list[dict[str, Any]]) -> int:
    """The rest of the company's answers, through the service the rating page calls."""
    from app.cycles import service as cycles_service
    from app.db import make_engine, make_sessionmaker, writer_session
    from app.ratings import service as ratings_service
    from app.ratings.schemas import SupplierAnswer

    engine = make_engine(ctx.database_url)
    stored = 0
    try:
        factory = make_sessionmaker(engine)
        # A few hundred forms per transaction: the service's work, without waiting for
        # a commit per form (this is set-up for the close, not a measured figure).
        for start in range(0, len(work), 250):
            with writer_session(factory) as session, session.begin():
                for job in work[start : start + 250]:
                    invitation = cycles_service.find_invitation_by_token(
                        session, token=job["token"]
                    )
                    if invitation is None:
                        raise RuntimeError("an emailed link matches no invitation")
                    stored += ratings_service.submit_answers(
                        session,
                        invitation_id=invitation.id,
                        answers={
                            int(supplier): SupplierAnswer(**answer)
                            for supplier, answer in job["answers"].items()
                        },
                        secret_key=BENCH_SECRET,
                    )
    finally:
        engine.dispose()
    return stored


def run(ctx: Context) -> None:
    if not ctx.tokens:
        ctx.missing(STEP, "requests/s", "req/s", "no private links were received (step 2)")
        return
    over_http, in_process = split_responders(ctx)
    work = jobs(ctx, over_http)
    sample_ballots = sum(len(job["answers"]) for job in work)
    submissions, opened = ctx.loadgen("open", ctx.app_url, work, ctx.concurrency)
    if opened["error_count"]:
        raise RuntimeError(
            f"{opened['error_count']} of {len(work)} rating pages could not be opened or "
            f"filled in, e.g. {opened['errors'][:2]}"
        )
    open_lat = [s["open_ms"] for s in submissions]
    requests = [
        {
            "method": "POST",
            "url": urlsplit(s["url"]).path,
            "headers": {
                "content-type": s["content_type"],
                "cookie": "; ".join(f"{k}={v}" for k, v in s["cookies"].items()),
            },
            "content": s["body"],
        }
        for s in submissions
    ]
    with ctx.memory("submit"):
        cpu_before = cpu_seconds(ctx.server.pid)
        ours = ctx.loadgen("run", ctx.app_url, requests, ctx.concurrency)
        cpu_ours = cpu_seconds(ctx.server.pid) - cpu_before
    stored = count_pending(ctx)
    bad = {k: v for k, v in ours["statuses"].items() if not k.startswith(("2", "3"))}
    if bad or stored != len(submissions):
        raise RuntimeError(
            f"submits answered {ours['statuses']}; {stored} submissions pooled, "
            f"{len(submissions)} expected ({sample_ballots} ballots)"
        )
    if in_process:
        rest = jobs(ctx, in_process)
        ballots = submit_in_process(ctx, rest)
        if count_pending(ctx) != len(submissions) + len(rest):
            raise RuntimeError("the in-process submits did not all reach the pool")
        ctx.say(f"submit: {len(rest)} more forms ({ballots} ballots) through the service")

    # The reference: the same bodies, to a bare endpoint writing to the reference database.
    create_schema(ctx.ref_url)
    orientation = submissions[0]["orientation"]
    env = {
        "REF_DATABASE_URL": ctx.ref_url,
        "REF_CYCLE_ID": str(ctx.cycle_id),
        "REF_ORIENTATION": f"{orientation[0]},{orientation[1]}",
    }
    ref_server, ref_url = start_uvicorn(
        "ref-rating",
        "benchmarks.ref_rating_app:create_app",
        env={**os.environ, **env},
        workdir=ctx.workdir,
        workers=ctx.web_workers,
    )
    try:
        ref_requests = [{**r, "url": "/rate"} for r in requests]
        ref_cpu_before = cpu_seconds(ref_server.pid)
        ref = ctx.loadgen("run", ref_url, ref_requests, ctx.concurrency)
        cpu_ref = cpu_seconds(ref_server.pid) - ref_cpu_before
    finally:
        ref_server.stop()
    ref_bad = {k: v for k, v in ref["statuses"].items() if not k.startswith(("2", "3"))}
    if ref_bad:
        raise RuntimeError(f"the reference answered {ref['statuses']}:\n{ref_server.log_tail()}")
    ref_ballots, _ = count_rows(ctx.ref_url)
    if ref_ballots != sample_ballots:
        raise RuntimeError(f"the reference stored {ref_ballots} ballots, {sample_ballots} expected")

    n = len(requests)
    rate, ref_rate = n / ours["wall_seconds"], n / ref["wall_seconds"]
    p50, p99 = percentile(ours["latencies_ms"], 50), percentile(ours["latencies_ms"], 99)
    ref_p99 = percentile(ref["latencies_ms"], 99)
    ctx.say(
        f"submit: {n} forms over HTTP ({sample_ballots} ballots) at {rate:.0f}/s, "
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms; reference {ref_rate:.0f}/s p99 {ref_p99:.0f} ms; "
        f"opening the links took {opened['wall_seconds']:.1f}s "
        f"(p99 {percentile(open_lat, 99):.0f} ms)"
    )
    detail = {
        "forms": n,
        "ballots": sample_ballots,
        "forms_through_the_service": len(in_process),
        "concurrency": ctx.concurrency,
        "web_workers": ctx.web_workers,
        "seconds": ours["wall_seconds"],
        "reference_seconds": ref["wall_seconds"],
        "p50_ms": p50,
        "reference_p50_ms": percentile(ref["latencies_ms"], 50),
        "open_link_and_page_p50_ms": percentile(open_lat, 50),
        "open_link_and_page_p99_ms": percentile(open_lat, 99),
        "load_process_cpu_seconds": ours["cpu_seconds"],
    }
    at_least_ratio(
        ctx.figure(
            STEP,
            "throughput",
            "req/s",
            rate,
            reference=ref_rate,
            reference_name="bare Starlette",
            detail=detail,
        ),
        THROUGHPUT_GOAL,
    )
    at_most_ratio(
        ctx.figure(
            STEP,
            f"p99 at {ctx.concurrency} clients",
            "ms",
            p99,
            reference=ref_p99,
            reference_name="bare Starlette",
            detail={"p50_ms": p50},
        ),
        P99_GOAL_RATIO,
    )
    at_most_ratio(
        ctx.figure(
            STEP,
            "server CPU per submit",
            "ms",
            cpu_ours * 1000 / n,
            reference=cpu_ref * 1000 / n,
            reference_name="bare Starlette",
            detail={"server_cpu_seconds": cpu_ours, "reference_cpu_seconds": cpu_ref},
        ),
        CPU_GOAL_RATIO,
    )
