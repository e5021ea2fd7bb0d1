"""Fixtures for running the command line as separate processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.helpers import PRODUCTION, Cli, ServeStarter


@pytest.fixture
def cli(fresh_database_url: str, tmp_path: Path) -> Cli:
    return Cli(url=fresh_database_url, cwd=tmp_path, env=dict(PRODUCTION))


@pytest.fixture
def migrated(cli: Cli) -> Cli:
    result = cli.run("migrate")
    assert result.returncode == 0, result.stderr
    assert "latest schema" in result.stdout
    return cli


@pytest.fixture
def serve(cli: Cli) -> Iterator[ServeStarter]:
    starter = ServeStarter(cli)
    yield starter
    for process in starter.processes:
        if process.poll() is None:
            process.kill()
            process.communicate()
