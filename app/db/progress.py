"""How far a long job has got, where the database cannot say it while the job runs.

PostgreSQL: the job writes its step to its own row from a second connection. SQLite has
one write lock for the whole database and the close holds it until it commits, so a
second writer would wait until the end. There the step goes to a small file beside the
database file, which every process of the (single-machine) installation can read.
Steps and percentages only: nothing about who answered what.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url


def _directory(bind: Engine | Connection) -> Path | None:
    url = make_url(str(bind.engine.url))
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(f"{url.database}.progress")


def write(engine: Engine | Connection, key: str, *, step: str, percent: int) -> None:
    """Record a running job's step (atomically: a reader sees the old or the new one)."""
    directory = _directory(engine)
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".part")
    with os.fdopen(handle, "w") as out:
        json.dump({"step": step, "percent": percent}, out)
    os.replace(temporary, directory / f"{key}.json")


def read(engine: Engine | Connection, key: str) -> tuple[str, int] | None:
    """The step and percent last written for ``key``, or None."""
    directory = _directory(engine)
    if directory is None:
        return None
    try:
        data = json.loads((directory / f"{key}.json").read_text())
        return str(data["step"]), int(data["percent"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear(engine: Engine | Connection, key: str) -> None:
    directory = _directory(engine)
    if directory is not None:
        (directory / f"{key}.json").unlink(missing_ok=True)
