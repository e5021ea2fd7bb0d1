"""One benchmark run: for each size and database, a fresh database, real servers, and
every step of a quarter measured against its reference."""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.context import HR_EMAIL, HR_PASSWORD, Context
from benchmarks.generator import Company, generate
from benchmarks.infra import (
    PG_ADMIN_URL,
    ROOT,
    SmtpSink,
    app_env,
    free_port,
    scratch_database,
    spawn,
    start_uvicorn,
    workdir,
)
from benchmarks.report import Figure, growth
from benchmarks.steps import closing, importing, reading, sending, submitting

STEPS: list[tuple[str, Callable[[Context], None]]] = [
    (module.STEP, module.run) for module in (importing, sending, submitting, closing, reading)
]


@dataclass
class RunConfig:
    sizes: list[int] = field(default_factory=lambda: [5000])
    dbs: list[str] = field(default_factory=lambda: ["sqlite", "postgresql"])
    seed: int = 42
    concurrency: int = 32
    read_requests: int = 100
    read_concurrency: int = 2
    # uvicorn workers; None = 2 on PostgreSQL, 1 on SQLite (one writer at a time anyway).
    web_workers: int | None = None
    keep_workdir: bool = False
    postgres_url: str = PG_ADMIN_URL
    # Run only the steps whose names contain one of these (every step when empty); a
    # step needs the ones before it, so "submit" alone runs nothing useful.
    steps: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls) -> RunConfig:
        env = os.environ
        workers = env.get("BENCH_WEB_WORKERS")
        return cls(
            sizes=[int(s) for s in env.get("BENCH_SIZE", "5000").split(",") if s.strip()],
            dbs=[
                d.strip() for d in env.get("BENCH_DB", "sqlite,postgresql").split(",") if d.strip()
            ],
            seed=int(env.get("BENCH_SEED", "42")),
            concurrency=int(env.get("BENCH_CONCURRENCY", "32")),
            read_requests=int(env.get("BENCH_READ_REQUESTS", "100")),
            read_concurrency=int(env.get("BENCH_READ_CONCURRENCY", "2")),
            web_workers=int(workers) if workers else None,
            keep_workdir=env.get("BENCH_KEEP", "") not in ("", "0"),
            postgres_url=env.get("BENCH_POSTGRES_URL", PG_ADMIN_URL),
            steps=[s.strip() for s in env.get("BENCH_STEPS", "").split(",") if s.strip()],
        )


def _prepare_database(url: str, base_url: str) -> tuple[str, dict[str, str]]:
    """Migrate; create an API key with every scope and an HR user's session (set-up)."""
    from app.auth import service as auth_service
    from app.auth.deps import session_cookie_name
    from app.auth.models import Role
    from app.config import Settings
    from app.db import make_engine, make_sessionmaker
    from app.migrate import upgrade

    upgrade(url)
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            _, key = auth_service.create_api_key(
                session, name="bench", scopes=list(auth_service.SCOPES), created_by="bench"
            )
            user = auth_service.create_user(
                session,
                email=HR_EMAIL,
                password=HR_PASSWORD,
                role=Role.hr,
            )
            token, _ = auth_service.start_user_session(session, user=user)
            session.commit()
    finally:
        engine.dispose()
    settings = Settings(_env_file=None, base_url=base_url)
    return key, {session_cookie_name(settings): token}


def run_one(company: Company, db: str, config: RunConfig) -> Context:
    """Every step for one company on one database kind."""
    from app.migrate import upgrade

    work = workdir()
    keep = config.keep_workdir
    workers = config.web_workers or (2 if db == "postgresql" else 1)
    try:
        with (
            scratch_database(db, work, "app", config.postgres_url, keep=keep) as url,
            scratch_database(db, work, "ref", config.postgres_url, keep=keep) as ref_url,
            SmtpSink() as smtp,
        ):
            upgrade(ref_url)
            port = free_port()
            app_url = f"http://127.0.0.1:{port}"
            api_key, hr_cookie = _prepare_database(url, app_url)
            env = app_env(
                url,
                app_url,
                work,
                SMTP_HOST=smtp.host,
                SMTP_PORT=str(smtp.port),
                WORKER_POLL_SECONDS="0.5",
            )
            server, _ = start_uvicorn(
                "server", "app.main:create_app", env=env, workdir=work, workers=workers, port=port
            )
            try:
                ctx = Context(
                    company=company,
                    db=db,
                    app_url=app_url,
                    ref_url=ref_url,
                    database_url=url,
                    base_url=app_url,
                    workdir=work,
                    server=server,
                    smtp=smtp,
                    api_key=api_key,
                    hr_cookie=hr_cookie,
                    web_workers=workers,
                    concurrency=config.concurrency,
                    read_requests=config.read_requests,
                    read_concurrency=config.read_concurrency,
                )
                ctx.worker = spawn(
                    "worker", [sys.executable, "-m", "app", "worker"], _with_root(env), work
                )
                try:
                    for name, step in STEPS:
                        if config.steps and not any(s in name for s in config.steps):
                            continue
                        started = time.perf_counter()
                        try:
                            step(ctx)
                        except Exception as exc:
                            ctx.say(f"{name} failed: {exc}\n{traceback.format_exc()}")
                            ctx.missing(name, "-", "-", f"error: {str(exc).splitlines()[0][:200]}")
                        # Other work on a shared machine skews timings: say how busy it was.
                        ctx.say(
                            f"{name} took {time.perf_counter() - started:.1f}s in all; "
                            f"load average {Path('/proc/loadavg').read_text().split()[0]}"
                        )
                finally:
                    ctx.worker.stop()
                return ctx
            finally:
                server.stop()
    finally:
        if config.keep_workdir:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _with_root(env: dict[str, str]) -> dict[str, str]:
    return {**env, "PYTHONPATH": str(ROOT)}


def run(config: RunConfig) -> tuple[list[Figure], list[Context]]:
    contexts: list[Context] = []
    for size in config.sizes:
        company = generate(size, config.seed)
        for db in config.dbs:
            print(
                f"== {db}, {size:,} employees, {len(company.pairs):,} matrix links, "
                f"{company.ballot_count:,} ballots to submit",
                file=sys.stderr,
                flush=True,
            )
            contexts.append(run_one(company, db, config))
    figures = [f for ctx in contexts for f in ctx.figures]
    figures += growth(figures)
    return figures, contexts
