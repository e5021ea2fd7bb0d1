"""Step 5: reading results, as HR and the HRIS do: the employee table, a department
page, a chart. Reference: the app's own /healthz at the same concurrency, i.e. the
cost of a request that does no work (the floor set by the stack and the machine)."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx

from benchmarks.context import HR_EMAIL, HR_PASSWORD, Context, percentile, route_missing
from benchmarks.rating_form import page_forms
from benchmarks.report import at_most

STEP = "5 read"
GOAL_MS = 150
PRERENDER_WAIT_SECONDS = 600


def _targets(ctx: Context) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Name -> (paths to request, headers). Department pages need an HR session."""
    rng = random.Random(ctx.company.seed)
    bearer = {"Authorization": f"Bearer {ctx.api_key}"}
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in ctx.hr_cookie.items())}
    departments = list(ctx.department_ids.values())
    department_keys = list(ctx.department_ids)
    suppliers = len({s for s, _ in ctx.company.pairs})
    n = ctx.read_requests
    cycle = ctx.cycle_id
    page = 500
    return {
        # HR pages through the table; each request a different page of 500 rows.
        "employee table (API)": (
            [
                f"/api/v1/cycles/{cycle}/results/employees?limit={page}"
                f"&offset={rng.randrange(0, max(1, suppliers), page)}"
                for _ in range(n)
            ],
            bearer,
        ),
        "department page (HTML)": (
            [f"/results/{cycle}?department={rng.choice(departments)}" for _ in range(n)],
            cookie,
        ),
        # A different department each time, so the app's chart cache rarely helps.
        "department heatmap (PNG)": (
            [
                f"/api/v1/cycles/{cycle}/charts/heatmap.png?department={rng.choice(department_keys)}"
                for _ in range(n)
            ],
            bearer,
        ),
    }


def sign_in(ctx: Context) -> None:
    """Sign in as HR through the login form, as a person would before reading.

    The session made at set-up has been idle for the whole quarter by now (half an hour
    at 50,000 employees), longer than the app lets an HR session live.
    """
    with httpx.Client(base_url=ctx.app_url, timeout=60) as http:
        page = http.get("/login")
        forms = [f for f in page_forms(page.text) if f.method == "post"]
        if page.status_code != 200 or not forms:
            raise RuntimeError(f"GET /login answered {page.status_code} without a form")
        fields = dict(forms[0].hidden) | {"email": HR_EMAIL, "password": HR_PASSWORD}
        answer = http.post(forms[0].action or "/login", data=fields)
        if answer.status_code not in (302, 303):
            raise RuntimeError(f"signing in answered {answer.status_code}")
        ctx.hr_cookie = {name: value for name, value in http.cookies.items()}


def wait_for_prerendered_charts(ctx: Context, timeout: float) -> float | None:
    """Seconds until the worker has rendered every department's charts (None: not seen).

    After a close the worker renders each department's charts into the chart cache; HR
    reads them later, so the reads are measured once that is done, as HR would meet them.
    """
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    pattern = f"cycle-{ctx.cycle_id}/*/prerendered"
    while time.monotonic() < deadline:
        if any((ctx.workdir / "charts").glob(pattern)):
            return time.perf_counter() - started
        time.sleep(0.5)
    return None


def run(ctx: Context) -> None:
    if ctx.cycle_id is None:
        ctx.missing(STEP, "p99", "ms", "no closed cycle to read")
        return
    # HR reads results hours after a close, when the worker has long drawn every
    # department's charts; wait for that, at most ten minutes (then the reads meet a
    # partly warm cache, and the log says so).
    charts_seconds = wait_for_prerendered_charts(ctx, timeout=PRERENDER_WAIT_SECONDS)
    ctx.say(
        "department charts rendered ahead by the worker "
        + (
            f"{charts_seconds:.1f}s after the read step began"
            if charts_seconds is not None
            else f"only in part after {PRERENDER_WAIT_SECONDS} s"
        )
    )
    sign_in(ctx)
    healthz = [{"method": "GET", "url": "/healthz"} for _ in range(ctx.read_requests)]
    floor = ctx.loadgen("run", ctx.app_url, healthz, ctx.read_concurrency)
    floor_p99 = percentile(floor["latencies_ms"], 99)
    with ctx.memory("read"):
        for name, (paths, headers) in _targets(ctx).items():
            probe = httpx.get(ctx.app_url + paths[0], headers=headers, timeout=120)
            if route_missing(probe) or probe.status_code != 200:
                ctx.missing(
                    STEP,
                    f"{name} p99",
                    "ms",
                    f"GET {paths[0]} answered {probe.status_code}",
                    reference=floor_p99,
                    reference_name="/healthz p99",
                )
                continue
            requests: list[dict[str, Any]] = [
                {"method": "GET", "url": p, "headers": headers} for p in paths
            ]
            result = ctx.loadgen("run", ctx.app_url, requests, ctx.read_concurrency)
            # Failed requests are reported, not hidden: the figure fails and says why.
            bad = {s: c for s, c in result["statuses"].items() if s != "200"}
            lat = result["latencies_ms"]
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            ctx.say(
                f"read {name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(lat)} requests)"
                + (f", failed: {bad}" if bad else "")
            )
            fig = at_most(
                ctx.figure(
                    STEP,
                    f"{name} p99",
                    "ms",
                    p99,
                    reference=floor_p99,
                    reference_name="/healthz p99",
                    detail={
                        "p50_ms": p50,
                        "requests": len(lat),
                        "concurrency": ctx.read_concurrency,
                        "bytes_per_response": result["bytes"] / max(1, len(lat)),
                        "statuses": result["statuses"],
                        "charts_rendered_ahead_seconds": charts_seconds,
                    },
                ),
                GOAL_MS,
            )
            if bad:
                fig.passed = False
                fig.note = f"{sum(bad.values())} of {len(lat)} requests failed: {bad}"
