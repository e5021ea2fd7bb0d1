"""What the steps of one run share: the company, the servers, the ids, the figures."""

from __future__ import annotations

import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import profiling
from benchmarks.generator import Company
from benchmarks.infra import ROOT, PeakMemory, Proc, SmtpSink
from benchmarks.report import Figure, at_most


class FeatureMissing(Exception):
    """The app does not offer what a step drives yet (a route answers 404/405...)."""


# The HR user made at set-up; the read step signs in as them (a throw-away database).
HR_EMAIL = "hr@bench.example.com"
HR_PASSWORD = "bench-password-1"  # noqa: S105


@dataclass
class Context:
    company: Company
    db: str
    app_url: str
    ref_url: str  # the reference database (same schema, loaded the bare way)
    database_url: str
    base_url: str
    workdir: Path
    server: Proc
    smtp: SmtpSink
    api_key: str
    hr_cookie: dict[str, str]
    web_workers: int
    concurrency: int
    read_requests: int
    read_concurrency: int
    worker: Proc | None = None
    figures: list[Figure] = field(default_factory=list)
    # Filled in as the steps go.
    employee_ids: dict[str, int] = field(default_factory=dict)
    department_ids: dict[str, int] = field(default_factory=dict)
    competency_ids: dict[str, int] = field(default_factory=dict)
    cycle_id: int | None = None
    tokens: dict[str, str] = field(default_factory=dict)  # customer external id -> token
    log: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.company.size

    def client(self, timeout: float = 600) -> httpx.Client:
        return httpx.Client(
            base_url=self.app_url,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=timeout,
        )

    def figure(self, step: str, metric: str, unit: str, ours: float | None, **kw: Any) -> Figure:
        fig = Figure(
            step=step, db=self.db, size=self.size, metric=metric, unit=unit, ours=ours, **kw
        )
        self.figures.append(fig)
        return fig

    def missing(self, step: str, metric: str, unit: str, why: str, **kw: Any) -> Figure:
        self.say(f"{step}: not measured: {why}")
        return self.figure(step, metric, unit, None, note=why, **kw)

    def say(self, text: str) -> None:
        line = f"[{self.db} {self.size}] {text}"
        self.log.append(line)
        print(line, file=sys.stderr, flush=True)

    @contextmanager
    def memory(self, step: str) -> Iterator[None]:
        """Record the peak RSS of the server and worker during the block."""
        roots = {"server": self.server.pid}
        if self.worker is not None and self.worker.popen.poll() is None:
            roots["worker"] = self.worker.pid
        label = f"{self.db}-{self.size}"
        with PeakMemory(roots) as peak, profiling.recording(step, label, roots) as profiles:
            yield
        for path in profiles:
            self.say(profiling.summarize(path))
        for name, (largest, tree) in peak.peak_mib().items():
            at_most(
                self.figure(
                    f"6 memory: {step}",
                    f"peak RSS {name} (largest process)",
                    "MiB",
                    largest,
                    detail={"all_processes_mib": tree},
                ),
                1024,
            )

    def loadgen(self, mode: str, base: str, jobs: Any, concurrency: int) -> Any:
        """Run the load process and return what it wrote."""
        stamp = f"{mode}-{time.monotonic_ns()}"
        infile, outfile = self.workdir / f"{stamp}.in", self.workdir / f"{stamp}.out"
        infile.write_bytes(pickle.dumps(jobs))
        done = subprocess.run(
            [
                *(sys.executable, "-m", "benchmarks.loadgen", mode, base),
                *(str(infile), str(outfile), "--concurrency", str(concurrency)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"load process failed:\n{done.stderr[-3000:]}")
        if mode == "open":
            return pickle.loads(outfile.read_bytes())  # noqa: S301 - our own file
        import json

        return json.loads(outfile.read_text())


def check(response: httpx.Response, what: str) -> httpx.Response:
    """Raise FeatureMissing for absent routes and RuntimeError for other failures."""
    if route_missing(response):
        raise FeatureMissing(
            f"{what}: {response.request.method} {response.request.url.path} does not exist "
            f"yet ({response.status_code})"
        )
    if response.status_code >= 400:
        raise RuntimeError(
            f"{what}: {response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:800]}"
        )
    return response


def route_missing(response: httpx.Response) -> bool:
    return response.status_code == 405 or (
        response.status_code == 404 and _detail(response) in ("Not Found", "")
    )


def _detail(response: httpx.Response) -> str:
    # Starlette's own 404 for an unknown route says just "Not Found"; a domain NotFound
    # names what was not found.
    try:
        return str(response.json().get("detail", ""))
    except ValueError:
        return "Not Found" if "Not found" in response.text else response.text[:50]


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]
