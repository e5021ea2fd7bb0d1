"""Test infrastructure shared by every domain.

* ``--db sqlite|postgresql`` picks the database for the whole run; ``make test`` runs the
  suite once per database. PostgreSQL runs get a database of their own with a random
  name, created and dropped here, so runs never collide.
* ``db`` is a session inside a transaction that is rolled back after the test; the
  ``client`` fixture's app uses that same session, so API tests are isolated too.
* ``committed_db`` is for tests that need real commits across connections (workers,
  concurrency, the live server for the browser); it empties every table afterwards.
* ``smtp_server`` is a real aiosmtpd server on loopback; ``live_server`` a real uvicorn;
  ``page`` a real headless Chromium driven by Playwright.

With ``REQUIRE_POSTGRES=1`` / ``REQUIRE_BROWSER=1`` (set by ``.ci/run``) a missing
PostgreSQL or Chromium fails the run instead of skipping.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import get_session, make_engine, make_sessionmaker, run_deferred_writes
from app.main import create_app
from app.migrate import upgrade
from app.models import metadata
from app.org.models import Competency

PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TEST_SECRET_KEY = "test-secret-" + "x" * 32

try:  # FastAPI >= 0.160 nests included routers; older ones list every route flat
    from fastapi.routing import iter_route_contexts as _iter_routes
except ImportError:  # pragma: no cover - the lowest-versions CI job

    def _iter_routes(routes: Any) -> Any:
        yield from routes


def app_routes(app: FastAPI) -> list[Any]:
    """Every route of the app, whatever the FastAPI version (the lowest allowed too)."""
    return list(_iter_routes(app.routes))


REPORT_DIR = Path(os.environ.get("TEST_REPORT_DIR", "test-reports"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default=os.environ.get("TEST_DB", "sqlite"),
        choices=["sqlite", "postgresql"],
        help="database the suite runs on",
    )


def _required(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


# --- run summary for .ci/run -----------------------------------------------------------


@dataclass
class _Tally:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    db_passed: int = 0
    browser_passed: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)


_tally = _Tally()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if getattr(report, "context", None) is not None:
        return  # a subtest's report: counted through its test
    if report.when == "call" and report.passed:
        _tally.passed += 1
        if "uses_db" in report.keywords:
            _tally.db_passed += 1
        if "browser" in report.keywords:
            _tally.browser_passed += 1
    elif report.failed:
        _tally.failed += 1
    elif report.skipped:
        _tally.skipped += 1
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else "skipped"
        _tally.skip_reasons[reason] = _tally.skip_reasons.get(reason, 0) + 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # xdist workers: the controller writes the summary
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    db = session.config.getoption("--db")
    (REPORT_DIR / f"{db}.json").write_text(
        json.dumps({"db": db, "exitstatus": int(exitstatus), **_tally.__dict__}, indent=2)
    )


# Fixtures that reach a database; a test needing none of them is a unit test, which CI
# also runs against the lowest dependency versions pyproject.toml allows.
_DATABASE_FIXTURES = {"database_url", "fresh_database_url", "migrated_database_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not _DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("unit")


# --- databases -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def db_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.config.getoption("--db")
    return kind


@contextmanager
def new_database(
    db_kind: str, folder: Path, name: str, *, template: str | None = None
) -> Iterator[str]:
    """The URL of an empty database: a SQLite file in ``folder``, or a PostgreSQL
    database with a random name, created here and dropped afterwards. With ``template``
    (a database made by this function, no longer connected to), a copy of that one."""
    if db_kind == "sqlite":
        path = folder / f"{name}.sqlite3"
        if template is not None:
            source = Path(make_url(template).database or "")
            shutil.copyfile(source, path)
            # WAL mode: pages the last process did not checkpoint live in the -wal file.
            wal = source.with_name(source.name + "-wal")
            if wal.exists():
                shutil.copyfile(wal, path.with_name(path.name + "-wal"))
        yield f"sqlite:///{path}"
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        conn = admin.connect()
    except OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc.orig}"
        if _required("REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    database = f"peer360_{name}_{secrets.token_hex(6)}"
    copy_of = f' TEMPLATE "{make_url(template).database}"' if template is not None else ""
    conn.exec_driver_sql(f'CREATE DATABASE "{database}"{copy_of}')
    try:
        yield make_url(PG_ADMIN_URL).set(database=database).render_as_string(hide_password=False)
    finally:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.close()
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with new_database(db_kind, tmp_path_factory.mktemp("db"), "test") as url:
        yield url


@pytest.fixture
def fresh_database_url(
    db_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """An empty database of the test's own, never the session's (CLI, migrations)."""
    request.node.add_marker("uses_db")
    with new_database(db_kind, tmp_path, "fresh") as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """The test database, migrated to head once per run (so migrations are tested too).

    Tests build the competencies they rate, so the default set the migrations add is
    removed here; tests/core/test_default_competencies.py checks it on fresh databases.
    """
    upgrade(database_url)
    eng = make_engine(database_url)
    with eng.begin() as conn:
        conn.execute(delete(Competency))
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine, request: pytest.FixtureRequest) -> Iterator[Session]:
    """A session in a transaction that is rolled back after the test."""
    request.node.add_marker("uses_db")
    connection = engine.connect()
    transaction = connection.begin()
    session = Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield session
    finally:
        session.close()
        transaction.rollback()
        connection.close()


# Sequences of the current schema back to their start, as TRUNCATE ... RESTART IDENTITY.
_RESTART_SEQUENCES = """
SELECT setval(c.oid::regclass, s.seqstart, false)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE c.relkind = 'S' AND n.nspname = current_schema()
"""


def _empty_all_tables(engine: Engine) -> None:
    # DELETE, not TRUNCATE, on PostgreSQL too: the tables hold a test's few rows, and a
    # TRUNCATE of every table (new files for each table and index) costs 0.3-0.6 s a
    # time, twice per committed_db test.
    tables = list(reversed(metadata.sorted_tables))
    with engine.begin() as conn:
        # ON DELETE RESTRICT fires per row on SQLite: cut self-references (a department
        # tree) first so a parent row is never deleted while its child still exists.
        for table in tables:
            for fk in table.foreign_keys:
                if fk.column.table is table and fk.parent.nullable:
                    conn.execute(
                        table.update().where(fk.parent.is_not(None)).values({fk.parent.name: None})
                    )
        for table in tables:
            conn.execute(table.delete())
        if engine.dialect.name == "postgresql":
            conn.execute(text(_RESTART_SEQUENCES))


@pytest.fixture
def committed_db(engine: Engine, request: pytest.FixtureRequest) -> Iterator[sessionmaker[Session]]:
    """A session factory whose commits are real; every table is emptied afterwards."""
    request.node.add_marker("uses_db")
    _empty_all_tables(engine)
    try:
        yield make_sessionmaker(engine)
    finally:
        _empty_all_tables(engine)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=database_url,
        base_url="http://testserver",
        secret_key=TEST_SECRET_KEY,
        smtp_host=None,
        mail_dir=tmp_path / "mail",
        chart_cache_dir=tmp_path / "charts",
        # Worker loops in tests draw in their own process (one test covers the others).
        chart_processes=0,
        anonymity_min_raters=3,
    )


@pytest.fixture
def app(settings: Settings, engine: Engine, db: Session) -> FastAPI:
    """The app, sharing the test's rolled-back session (commit = release a savepoint)."""
    application = create_app(settings, engine=engine)

    def _test_session() -> Iterator[Session]:
        # Each request gets a savepoint of its own, so a failed request rolls back only
        # its own work, never the test's setup (as a real request's rollback would).
        request_savepoint = db.begin_nested()
        try:
            yield db
            if request_savepoint.is_active:
                request_savepoint.commit()
        except BaseException:
            if request_savepoint.is_active:
                request_savepoint.rollback()
            raise
        finally:
            # Bookkeeping queued by the request runs after it, as in production.
            run_deferred_writes(db, db)

    application.dependency_overrides[get_session] = _test_session
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def live_app(settings: Settings, engine: Engine, committed_db: sessionmaker[Session]) -> FastAPI:
    """The app with real commits (its own sessions), for servers and concurrency tests."""
    return create_app(settings, engine=engine)


# --- real servers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    url: str
    app: FastAPI


@pytest.fixture
def live_server(live_app: FastAPI) -> Iterator[LiveServer]:
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        live_app, host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", app=live_app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list[Message]
    handler: Any

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.messages)


class _CollectingHandler:
    """Stores every message; ``fail_with`` makes the server answer RCPT with an error."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.fail_with: str | None = None
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if self.fail_with:
            return self.fail_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    from aiosmtpd.controller import Controller

    handler = _CollectingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(host="127.0.0.1", port=port, messages=handler.messages, handler=handler)
    finally:
        controller.stop()


# --- browser ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if _required("REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    request.node.add_marker("browser")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    try:
        yield pg
    finally:
        context.close()


SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR", "test-reports/screenshots"))


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot for a person to look at (test-reports/screenshots)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
