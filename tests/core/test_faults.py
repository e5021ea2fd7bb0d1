"""The database goes away and comes back: 503 with Retry-After meanwhile, no restart after.

On PostgreSQL a small TCP proxy sits between the app and the server and cuts every
connection; on SQLite the database's folder disappears (a volume not mounted yet).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import database_unavailable, make_engine
from app.errors import PROBLEM_JSON
from app.main import create_app
from app.migrate import upgrade
from tests.factories import auth_header, make_api_key


class TcpProxy:
    """Forwards loopback connections to ``target``; ``cut()`` drops them all and refuses
    new ones until ``restore()``. Threads, one pair per connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.up = True
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if not self.up:
                client.close()  # as a server that is down: the connection ends at once
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.open |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _drop(self, *sockets: socket.socket) -> None:
        for s in sockets:
            with self.lock:
                self.open.discard(s)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def cut(self) -> None:
        self.up = False
        with self.lock:
            sockets = list(self.open)
        self._drop(*sockets)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _expect_unavailable(client: TestClient, headers: dict[str, str]) -> None:
    api = client.get("/api/v1/cycles", headers=headers)
    assert api.status_code == 503, api.text
    assert api.headers["retry-after"].isdigit()
    assert api.headers["content-type"].startswith(PROBLEM_JSON)
    assert api.json()["request_id"] == api.headers["x-request-id"]
    # A rater's link: the friendly page, not JSON.
    page = client.get("/r/" + "x" * 43)
    assert page.status_code == 503
    assert page.headers["retry-after"].isdigit()
    assert page.headers["content-type"].startswith("text/html")


@pytest.fixture
def proxy(engine: Engine) -> Iterator[TcpProxy]:
    url = engine.url
    if url.get_backend_name() != "postgresql":
        pytest.skip("the TCP proxy stands between the app and PostgreSQL")
    tcp = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield tcp
    finally:
        tcp.close()


def test_postgresql_outage_answers_503_then_recovers(
    proxy: TcpProxy,
    engine: Engine,
    settings: Settings,
    committed_db: sessionmaker[Session],
) -> None:
    with committed_db() as session:
        headers = auth_header(make_api_key(session))
        session.commit()
    proxied = make_engine(
        engine.url.set(port=proxy.port).render_as_string(hide_password=False), pool_size=2
    )
    try:
        with TestClient(create_app(settings, engine=proxied)) as client:
            assert client.get("/api/v1/cycles", headers=headers).status_code == 200
            proxy.cut()  # the pooled connection dies, new ones are refused
            _expect_unavailable(client, headers)
            proxy.restore()
            assert client.get("/api/v1/cycles", headers=headers).status_code == 200
    finally:
        proxied.dispose()


def test_sqlite_file_out_of_reach_answers_503_then_recovers(
    db_kind: str, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if db_kind != "sqlite":
        pytest.skip("a database file is SQLite's")
    folder = tmp_path / "volume"
    url = f"sqlite:///{folder / 'peer360.sqlite3'}"
    upgrade(url)
    sqlite_engine = make_engine(url)
    try:
        with sessionmaker(sqlite_engine)() as session:
            headers = auth_header(make_api_key(session))
            session.commit()
        sqlite_engine.dispose()
        app = create_app(settings.model_copy(update={"database_url": url}), engine=sqlite_engine)
        with TestClient(app) as client:
            folder.rename(tmp_path / "unmounted")
            with caplog.at_level(logging.WARNING, logger="app.errors"):
                _expect_unavailable(client, headers)
            # The log names SQLite's error code, so an operator can tell a lost file
            # from a lock.
            assert "OperationalError SQLITE_CANTOPEN" in caplog.text
            (tmp_path / "unmounted").rename(folder)
            assert client.get("/api/v1/cycles", headers=headers).status_code == 200
    finally:
        sqlite_engine.dispose()


def test_bad_sql_on_sqlite_is_not_an_outage() -> None:
    """SQLite reports bad SQL as an OperationalError too: that one is a bug (a 500 with
    its traceback), not a 503 that would hide it."""
    bad = make_engine("sqlite://")
    with bad.connect() as conn, pytest.raises(OperationalError) as raised:
        conn.execute(text("SELEC 1"))
    assert not database_unavailable(raised.value)
