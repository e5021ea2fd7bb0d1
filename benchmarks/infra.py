"""The machinery a run needs: throw-away databases, real server processes, an SMTP
server on loopback, and peak-memory readings from /proc."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BENCH_SECRET = "bench-secret-" + "x" * 40


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- databases -------------------------------------------------------------------------


@contextmanager
def scratch_database(
    kind: str, workdir: Path, label: str, admin_url: str = PG_ADMIN_URL, *, keep: bool = False
) -> Iterator[str]:
    """A fresh, empty database of ``kind`` that is dropped (or deleted) afterwards.

    ``keep`` leaves it in place (its URL is printed) for profiling a later step on it.
    """
    if kind == "sqlite":
        path = workdir / f"{label}.sqlite3"
        yield f"sqlite:///{path}"
        if keep:
            return
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"peer360_bench_{label}_{secrets.token_hex(5)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        if keep:
            print(f"database kept: {url}", flush=True)
        else:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def driver_connect(url: str) -> Any:
    """A bare DB-API connection (sqlite3 or psycopg) to ``url``, as the app configures it."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(
            url.split("///", 1)[1], timeout=30, isolation_level=None, check_same_thread=False
        )
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}")
        return conn
    import psycopg

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(plain)


# --- processes -------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def app_env(database_url: str, base_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment the app's processes run with (no .env file from the checkout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "SMTP_"))}
    env.update(
        DATABASE_URL=database_url,
        BASE_URL=base_url,
        SECRET_KEY=BENCH_SECRET,
        ENVIRONMENT="production",
        MAIL_DIR=str(workdir / "mail"),
        # Shared by the server and the worker, which renders department charts ahead.
        CHART_CACHE_DIR=str(workdir / "charts"),
        # One log line per request to a file would be realistic but adds noise; the
        # reference endpoints do not log either.
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def spawn(name: str, argv: Sequence[str], env: dict[str, str], workdir: Path) -> Proc:
    log_path = workdir / f"{name}.log"
    log = log_path.open("ab")
    popen = subprocess.Popen(list(argv), cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Proc(name, popen, log_path)


def start_uvicorn(
    name: str,
    target: str,
    *,
    env: dict[str, str],
    workdir: Path,
    workers: int = 1,
    factory: bool = True,
    port: int | None = None,
) -> tuple[Proc, str]:
    """A real uvicorn serving ``target`` on loopback; waits until it answers."""
    port = port or free_port()
    argv = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--no-access-log", "--log-level", "warning", "--workers", str(workers)]
    # Longer than uvicorn's 5 s default, so a client never reuses a connection the server
    # is just closing while it is busy (a ReadError on a loaded two-core machine).
    argv += ["--timeout-keep-alive", "60"]
    if factory:
        argv.append("--factory")
    env = {**env, "PYTHONPATH": str(ROOT)}
    proc = spawn(name, argv, env, workdir)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc)
    return proc, url


def wait_http(url: str, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer {url} in {timeout}s:\n{proc.log_tail()}")


# --- CPU -------------------------------------------------------------------------------


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process and its live descendants, from ``/proc/<pid>/stat``.

    The load generator shares the two cores with the server, so CPU per request is a
    fairer comparison than latency (it does not count time spent waiting for a core).
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in [root, *_children(root)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Fields 14 and 15 of stat (utime, stime), counted after "pid (comm)".
        total += int(fields[11]) + int(fields[12])
    return total / ticks


# --- memory ----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        for child in text.split():
            found.append(int(child))
            found.extend(_children(int(child)))
    return found


def _status_kib(pid: int, key: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else 0


class PeakMemory:
    """Peak RSS of process trees during one step.

    At the start the kernel's high-water mark is reset (``echo 5 > clear_refs``); at the
    end VmHWM is read. A sampler also records VmRSS every 50 ms, which catches children
    created mid-step and covers kernels where the reset is not allowed. The goal is per
    process, so a tree's figure is its largest process (uvicorn's supervisor and each
    worker apart); the sum over the tree is kept beside it.
    """

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.sampled: dict[str, int] = dict.fromkeys(roots, 0)
        self.hwm: dict[str, dict[int, int]] = {name: {} for name in roots}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _tree(self, root: int) -> list[int]:
        return [root, *_children(root)]

    def __enter__(self) -> PeakMemory:
        for root in self.roots.values():
            for pid in self._tree(root):
                # Not allowed everywhere; the sampler covers that case.
                with contextlib.suppress(OSError):
                    Path(f"/proc/{pid}/clear_refs").write_text("5")
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for name, root in self.roots.items():
                tree = self._tree(root)
                rss = {pid: _status_kib(pid, "VmRSS") for pid in tree}
                self.sampled[name] = max(self.sampled[name], sum(rss.values()))
                for pid in tree:
                    self.hwm[name][pid] = max(
                        self.hwm[name].get(pid, 0), rss[pid], _status_kib(pid, "VmHWM")
                    )

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for name, root in self.roots.items():
            for pid in self._tree(root):
                self.hwm[name][pid] = max(self.hwm[name].get(pid, 0), _status_kib(pid, "VmHWM"))

    def peak_mib(self) -> dict[str, tuple[float, float]]:
        """Per tree: (the largest process's peak, the peak of the tree's sum) in MiB."""
        return {
            name: (
                round(max(self.hwm[name].values(), default=0) / 1024, 1),
                round(max(self.sampled[name], sum(self.hwm[name].values())) / 1024, 1),
            )
            for name in self.roots
        }


# --- SMTP ------------------------------------------------------------------------------


@dataclass
class Received:
    at: float
    to: str
    raw: bytes


class _Collector:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        with self.lock:
            self.messages.append(Received(time.perf_counter(), envelope.rcpt_tos[0], raw))
        return "250 Message accepted for delivery"


@dataclass
class SmtpSink:
    """A real aiosmtpd server on loopback that keeps what it receives."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    collector: _Collector = field(default_factory=_Collector)
    controller: Any = None

    def __enter__(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        self.controller = Controller(
            self.collector, hostname=self.host, port=self.port, data_size_limit=0
        )
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[Received]:
        return self.collector.messages

    def clear(self) -> None:
        with self.collector.lock:
            self.collector.messages.clear()

    def wait_for(self, count: int, *, timeout: float, watch: Sequence[Proc] = ()) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                return False
            for proc in watch:
                if proc.popen.poll() is not None:
                    raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
            time.sleep(0.02)
        return True


LINK = re.compile(rb"/r/([A-Za-z0-9_\-]{16,})")


def links_by_recipient(messages: Sequence[Received]) -> dict[str, str]:
    """Recipient address -> the token of the private link in their email."""
    result: dict[str, str] = {}
    for message in messages:
        parsed = message_from_bytes(message.raw)
        for part in parsed.walk():
            if part.get_content_maintype() != "text":
                continue
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            match = LINK.search(payload)
            if match:
                result[message.to.lower()] = match.group(1).decode()
                break
    return result


def workdir(prefix: str = "peer360-bench-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
