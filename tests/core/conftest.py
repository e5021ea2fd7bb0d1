"""Fixtures for running the command line as separate processes."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import new_database
from tests.core.helpers import PRODUCTION, Cli, ServeStarter


@pytest.fixture
def cli(fresh_database_url: str, tmp_path: Path) -> Cli:
    return Cli(url=fresh_database_url, cwd=tmp_path, env=dict(PRODUCTION))


@pytest.fixture(scope="session")
def migrated_template_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated by ``python -m app migrate``, once per run and worker: each
    ``migrated`` test gets a copy instead of a migrate process of its own (seconds each).
    The command itself is tested on fresh databases in test_cli.py."""
    folder = tmp_path_factory.mktemp("migrated")
    with new_database(db_kind, folder, "template") as url:
        result = Cli(url=url, cwd=folder, env=dict(PRODUCTION)).run("migrate")
        assert result.returncode == 0, result.stderr
        assert "latest schema" in result.stdout
        yield url


@pytest.fixture
def migrated_database_url(
    migrated_template_url: str, db_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A database of the test's own, as ``python -m app migrate`` leaves a fresh one."""
    request.node.add_marker("uses_db")
    with new_database(db_kind, tmp_path, "migrated", template=migrated_template_url) as url:
        yield url


@pytest.fixture
def migrated(migrated_database_url: str, tmp_path: Path) -> Cli:
    return Cli(url=migrated_database_url, cwd=tmp_path, env=dict(PRODUCTION))


@pytest.fixture
def serve(migrated: Cli) -> Iterator[ServeStarter]:
    starter = ServeStarter(migrated)
    yield starter
    for process in starter.processes:
        # The whole process group: a server's worker processes hold its output pipes open,
        # and a test that failed before stopping it would otherwise hang here.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
