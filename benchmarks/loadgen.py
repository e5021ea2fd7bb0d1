"""The load process: an httpx async client with N concurrent connections.

It runs apart from the harness (``python -m benchmarks.loadgen ...``) so the client's
CPU never shares an interpreter with the server being measured. Two modes:

* ``open``: for each customer, follow the private link (``GET /r/{token}`` -> cookie)
  and fetch the rating page, then fill in the form with the generated answers
  (:mod:`benchmarks.rating_form`); writes the bodies to submit. Timed, but reported as
  a side figure.
* ``run``: send a list of prepared requests (the submits, or the result reads) and
  record each latency and status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def _limits(concurrency: int) -> httpx.Limits:
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


async def _pool(jobs: list[Any], concurrency: int, work: Any) -> tuple[list[Any], float]:
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    for item in enumerate(jobs):
        queue.put_nowait(item)
    results: list[Any] = [None] * len(jobs)

    async def worker() -> None:
        while True:
            try:
                index, job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            results[index] = await work(job)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - started


async def run_requests(
    base: str, requests: list[dict[str, Any]], concurrency: int
) -> dict[str, Any]:
    """Send every request; returns latencies (ms), statuses and the wall time."""
    async with httpx.AsyncClient(
        base_url=base, limits=_limits(concurrency), timeout=120, follow_redirects=False
    ) as client:

        async def work(req: dict[str, Any]) -> tuple[int, float, int]:
            started = time.perf_counter()
            try:
                response = await client.request(
                    req["method"],
                    req["url"],
                    headers=req.get("headers"),
                    content=req.get("content"),
                )
                status, size = response.status_code, len(response.content)
            except httpx.HTTPError:
                status, size = 0, 0
            return status, (time.perf_counter() - started) * 1000, size

        results, wall = await _pool(requests, concurrency, work)
    statuses: dict[str, int] = {}
    for status, _, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "wall_seconds": wall,
        "latencies_ms": [r[1] for r in results],
        "statuses": statuses,
        "bytes": sum(r[2] for r in results),
        "cpu_seconds": time.process_time(),
    }


async def open_links(
    base: str, jobs: list[dict[str, Any]], concurrency: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Exchange each token for its cookie, fetch the page and fill in the form."""
    from benchmarks.rating_form import build_submission

    async with httpx.AsyncClient(
        base_url=base, limits=_limits(concurrency), timeout=120, follow_redirects=False
    ) as client:

        async def get(url: str, cookies: dict[str, str] | None = None) -> httpx.Response:
            # Opening links only prepares the measured submits: retry a dropped connection.
            for attempt in range(3):
                try:
                    return await client.get(url, cookies=cookies)
                except httpx.TransportError:
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

        async def work(job: dict[str, Any]) -> dict[str, Any] | str:
            started = time.perf_counter()
            response = await get(f"/r/{job['token']}")
            if response.status_code not in (302, 303, 307):
                return f"GET /r/<token> answered {response.status_code}"
            cookies = dict(response.cookies)
            location = response.headers["location"]
            page = await get(location, cookies=cookies)
            if page.status_code != 200:
                return f"GET {location} answered {page.status_code}"
            cookies.update(dict(page.cookies))
            latency = (time.perf_counter() - started) * 1000
            try:
                submission = build_submission(page.text, job["answers"], page_url=location)
            except ValueError as exc:
                return f"could not fill in the rating form: {exc}"
            return {**submission, "cookies": cookies, "open_ms": latency}

        results, wall = await _pool(jobs, concurrency, work)
    errors = [r for r in results if isinstance(r, str)]
    ok = [r for r in results if isinstance(r, dict)]
    return ok, {"wall_seconds": wall, "errors": errors[:5], "error_count": len(errors)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    parser.add_argument("mode", choices=["open", "run"])
    parser.add_argument("base")
    parser.add_argument("infile")
    parser.add_argument("outfile")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    jobs = pickle.loads(Path(args.infile).read_bytes())  # noqa: S301 - our own file
    if args.mode == "open":
        submissions, stats = asyncio.run(open_links(args.base, jobs, args.concurrency))
        Path(args.outfile).write_bytes(pickle.dumps((submissions, stats)))
    else:
        stats = asyncio.run(run_requests(args.base, jobs, args.concurrency))
        Path(args.outfile).write_text(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
