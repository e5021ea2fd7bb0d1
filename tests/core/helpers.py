"""Running ``python -m app`` as an operator does: a fresh process per command, on a
fresh database of the test's own (a temporary SQLite file, or a PostgreSQL database
created for the test and dropped after)."""

from __future__ import annotations

import os
import re
import secrets
import select as selectors_
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.db import make_engine, make_sessionmaker
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Fresh-Install-Pw-2026"


@dataclass
class Cli:
    """Runs ``python -m app`` against one database, from an empty working directory."""

    url: str
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def environment(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": self.url,
            "MAIL_DIR": str(self.cwd / "data" / "mail"),
            "LOG_LEVEL": "INFO",
            **self.env,
            **extra,
        }

    def run(
        self, *args: str, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            cwd=self.cwd,  # no stray .env; ./data lands in the temp dir
            env=self.environment(**env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            # No controlling terminal: getpass reads the password from stdin, as in a pipe.
            start_new_session=True,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "app", *args],
            cwd=self.cwd,
            env=self.environment(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def count(self, model: type, *where: object) -> int:
        engine = make_engine(self.url)
        try:
            with make_sessionmaker(engine)() as session:
                query = select(func.count()).select_from(model)
                for condition in where:
                    query = query.where(condition)  # type: ignore[arg-type]
                return int(session.scalar(query) or 0)
        finally:
            engine.dispose()


PRODUCTION = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": secrets.token_urlsafe(48),
    "BASE_URL": "http://127.0.0.1:8000",
    # Production refuses local mail mode; nothing is sent unless a test queues mail.
    "SMTP_HOST": "127.0.0.1",
    "SMTP_PORT": "1",
}


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Send ``sig``; the exit code and stderr once the process has ended."""
    process.send_signal(sig)
    try:
        _out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _out, err = process.communicate()
        pytest.fail(f"the process ignored signal {sig}:\n{err}")
    return process.returncode, err


def wait_for_stderr(process: subprocess.Popen[str], text: str, timeout: float = 60) -> str:
    """Read the process's stderr until ``text`` appears; returns what was read (which
    :func:`stop` then no longer sees)."""
    assert process.stderr is not None
    fd = process.stderr.fileno()  # raw reads: the text wrapper has buffered nothing yet
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        if time.monotonic() > deadline or process.poll() is not None:
            pytest.fail(f"no {text!r} on stderr (exit {process.poll()}):\n{seen.decode()}")
        ready, _, _ = selectors_.select([fd], [], [], 0.2)
        if ready:
            seen += os.read(fd, 65536)
    return seen.decode()


class ServeStarter:
    def __init__(self, cli: Cli) -> None:
        self.cli = cli
        self.processes: list[subprocess.Popen[str]] = []

    def __call__(self, *args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
        """Start ``python -m app serve`` on a free port; returns it once it answers."""
        port = free_port()
        process = self.cli.start("serve", *args, "--port", str(port), **env)
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"serve exited with {process.returncode}:\n{process.stderr.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return process, url
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail("serve did not answer within 60 s")


def log_in(client: httpx.Client, email: str, password: str) -> httpx.Response:
    form = client.get("/login")
    assert form.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token.group(1)}
    )
