"""Command line: ``python -m app <command>``."""

from __future__ import annotations

import argparse
import logging
import logging.config
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from sqlalchemy.engine import Engine

import app.models  # noqa: F401 - every command may touch any table: register them all
from app.config import Settings, get_settings
from app.db import make_engine, make_sessionmaker

Command = Callable[[argparse.Namespace, Settings], int]


QUIET_LIBRARIES = (
    "fontTools",
    "matplotlib",
    "PIL",
    "openpyxl",
    "multipart",
    "python_multipart",
    "httpx",
    "httpcore",
    "asyncio",
    "aiosmtpd",
    "mail.log",
)


def logging_config(settings: Settings) -> dict[str, Any]:
    """One logging set-up for the CLI and every uvicorn process (workers re-apply it)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"handlers": ["stderr"], "level": settings.log_level.upper()},
        "loggers": {
            # Alembic's plugin set-up chatter is noise on every start; uvicorn's own
            # access log is off in favour of ours, which redacts private links.
            "alembic": {"level": "WARNING"},
            "uvicorn": {"level": "WARNING"},
            "uvicorn.access": {"level": "WARNING"},
            # Libraries that narrate their work at INFO (fontTools lists every glyph
            # it subsets on each PDF chart).
            **{name: {"level": "WARNING"} for name in QUIET_LIBRARIES},
        },
    }


def _configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from app.migrate import DataLossRefused, downgrade, upgrade

    url = settings.database_url
    if getattr(args, "downgrade", None):
        try:
            downgrade(url, args.downgrade, force=args.force)
        except DataLossRefused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"database downgraded to {args.downgrade} ({_safe_url(url)})")
        return 0
    upgrade(url, default_language=settings.default_language)
    print(f"database is at the latest schema ({_safe_url(url)})")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.main import create_app

    if args.migrate:
        cmd_migrate(args, settings)
    if args.workers > 1 and settings.is_sqlite:
        print(
            "error: several app processes need PostgreSQL (SQLite has one writer)", file=sys.stderr
        )
        return 2
    if args.workers > 1 and args.with_worker:
        print("error: run the worker as its own process with --workers", file=sys.stderr)
        return 2
    # Forwarded headers (client address, scheme) are believed only from the proxies
    # named in FORWARDED_ALLOW_IPS. Uvicorn's default trusts 127.0.0.1, so any local
    # client could pick its own address and slip past the per-client limits.
    trusted_proxies = settings.forwarded_allow_ips
    app = create_app(settings)
    if (refused := _foreign_secret_key(app.state.engine, settings)) is not None:
        return refused
    worker = None
    if args.with_worker:
        from app.worker import start_background_worker

        worker = start_background_worker(settings, app.state.engine)
    _print_banner(settings, args.host, args.port)
    # Uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler it found. Python's defaults would then kill the process (exit -15, or a
    # KeyboardInterrupt traceback) before the worker thread below is stopped.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _already_stopping)
    try:
        # access_log off: our own access log redacts private rating links.
        if args.workers > 1:
            # Several stateless processes; each builds its app from the environment.
            uvicorn.run(
                "app.main:create_app",
                factory=True,
                workers=args.workers,
                host=args.host,
                port=args.port,
                access_log=False,
                log_config=logging_config(settings),
                proxy_headers=bool(trusted_proxies),
                forwarded_allow_ips=trusted_proxies or None,
            )
        else:
            uvicorn.run(
                app,
                host=args.host,
                port=args.port,
                access_log=False,
                log_config=logging_config(settings),
                proxy_headers=bool(trusted_proxies),
                forwarded_allow_ips=trusted_proxies or None,
            )
    finally:
        if worker is not None:
            worker.stop()
    return 0


def _already_stopping(_signum: int, _frame: FrameType | None) -> None:
    """Uvicorn has shut down by now; returning lets ``serve`` end normally."""


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from app.worker import run_worker

    engine = make_engine(settings.database_url)
    if (refused := _foreign_secret_key(engine, settings)) is not None:
        return refused
    stop = threading.Event()

    def finish_pass(_signum: int, _frame: FrameType | None) -> None:
        # SIGTERM (docker stop, systemd) or Ctrl+C: end after the current pass, so no
        # message is left claimed and half sent.
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, finish_pass)
    run_worker(settings, engine, once=args.once, stop=stop)
    return 0


def _foreign_secret_key(engine: Engine, settings: Settings) -> int | None:
    """Exit status 3, with the reason, when SECRET_KEY cannot open pending answers."""
    from app.lifecycle import ForeignSecretKey, refuse_foreign_secret_key

    try:
        refuse_foreign_secret_key(engine, settings)
    except ForeignSecretKey as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return None


def cmd_seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from app.demo import seed_demo

    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        created = seed_demo(session, settings, only_if_empty=args.if_empty)
        session.commit()
    print("demo company seeded" if created else "database already has data; demo not seeded")
    return 0


def cmd_create_api_key(args: argparse.Namespace, settings: Settings) -> int:
    from app.auth import service as auth_service

    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        key, plaintext = auth_service.create_api_key(
            session, name=args.name, scopes=args.scopes, created_by="cli"
        )
        session.commit()
    print(f"API key {key.name!r} with scopes {', '.join(key.scopes)}")
    print(f"  {plaintext}")
    print("Store it now: it is shown only once.")
    return 0


def cmd_create_user(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from app.auth import service as auth_service
    from app.auth.models import Role

    password = args.password or getpass.getpass("Password: ")
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        user = auth_service.create_user(
            session,
            email=args.email,
            password=password,
            role=Role(args.role),
            full_name=args.name or "",
        )
        session.commit()
    print(f"created {user.role} user {user.email}")
    return 0


def cmd_new_cycle(args: argparse.Namespace, settings: Settings) -> int:
    from app.cycles import service as cycles_service

    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        cycle = cycles_service.create_quarter_cycle(session, quarter=args.quarter)
        session.commit()
    print(f"created cycle {cycle.name} (id {cycle.id}), state {cycle.state}")
    return 0


def cmd_erase_employee(args: argparse.Namespace, settings: Settings) -> int:
    from app.privacy import service as privacy_service

    if not args.yes:
        answer = input(
            f"Erase the personal data of employee {args.external_id!r}"
            f"{' and delete their results' if args.delete_results else ''}? "
            "This cannot be undone. Type yes: "
        )
        if answer.strip().lower() != "yes":
            print("nothing erased", file=sys.stderr)
            return 1
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        report = privacy_service.erase_employee(
            session,
            external_id=args.external_id,
            delete_results=args.delete_results,
            actor="cli",
        )
        session.commit()
    print(
        f"erased: the employee is now {report.pseudonym}; "
        + (
            f"{report.results_deleted} results and {report.ballots_about_them_deleted} "
            "ballots about them deleted"
            if args.delete_results
            else "their results were kept"
        )
    )
    return 0


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _print_banner(settings: Settings, host: str, port: int) -> None:
    from app.demo import read_demo_credentials

    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104
    lines = [
        "",
        "Peer360 is running.",
        f"  HR web app:      {base}/",
        f"  API docs:        {base}/api/docs",
        f"  Local outbox:    {base}/outbox   (no SMTP configured: mail is kept here)"
        if not settings.smtp_host
        else f"  Mail via SMTP:   {settings.smtp_host}:{settings.smtp_port}",
    ]
    lines.append(
        "  Anonymity:       answers stay encrypted in a pool until their cycle closes, then"
        f" show only over k = {settings.anonymity_min_raters} raters who count"
        " (README: Anonymity)"
    )
    creds = read_demo_credentials(settings)
    if creds:
        lines.append("  Demo logins and API key:")
        lines.extend(f"    {line}" for line in creds)
    lines.append("Press Ctrl+C to stop.")
    print("\n".join(lines), flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="Peer360 service")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the web server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--with-worker", action="store_true", help="also run the mail worker in-process")
    p.add_argument("--migrate", action="store_true", help="migrate the database first")
    p.add_argument("--workers", type=int, default=1, help="app processes (PostgreSQL only)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="deliver mail, send reminders, close due cycles")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("migrate", help="upgrade the database to the latest schema")
    p.add_argument("--downgrade", metavar="REVISION", help="go back to REVISION (base: empty)")
    p.add_argument("--force", action="store_true", help="allow a downgrade that deletes data")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed-demo", help="load the demo company")
    p.add_argument("--if-empty", action="store_true", help="only when the database is empty")
    p.set_defaults(func=cmd_seed_demo)

    p = sub.add_parser("create-api-key", help="create an API key for the HRIS")
    p.add_argument("--name", required=True)
    p.add_argument("--scopes", nargs="+", required=True, help="e.g. org:read org:write")
    p.set_defaults(func=cmd_create_api_key)

    p = sub.add_parser("create-user", help="create an HR web app user")
    p.add_argument("--email", required=True)
    p.add_argument("--role", required=True, choices=["admin", "hr", "manager"])
    p.add_argument("--name")
    p.add_argument("--password", help="prompted for when omitted")
    p.set_defaults(func=cmd_create_user)

    p = sub.add_parser("new-cycle", help="create the draft cycle of a quarter, e.g. 2026Q4")
    p.add_argument("--quarter", required=True)
    p.set_defaults(func=cmd_new_cycle)

    p = sub.add_parser("erase-employee", help="erase one person's personal data (GDPR)")
    p.add_argument("--external-id", required=True, help="the employee's external id")
    p.add_argument(
        "--delete-results", action="store_true", help="also delete the results about them"
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_erase_employee)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    _configure_logging(settings)
    try:
        result: int = args.func(args, settings)
    except Exception as exc:  # a clear one-line message rather than a traceback
        from app.errors import DomainError

        if isinstance(exc, DomainError):
            print(f"error: {exc.detail}", file=sys.stderr)
            return 2
        raise
    return result
