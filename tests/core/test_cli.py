"""The command line, run as a real process against a temporary SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.auth import service as auth_service
from app.db import make_engine, make_sessionmaker
from app.org.models import Competency, Department, Employee

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "ENVIRONMENT": "development",
        "MAIL_DIR": str(tmp_path / "data" / "mail"),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=tmp_path,  # no stray .env, and ./data lands in the temp dir
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    result = run(tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert "latest schema" in result.stdout
    return tmp_path


def test_create_api_key(migrated: Path) -> None:
    result = run(migrated, "create-api-key", "--name", "HRIS", "--scopes", "org:read", "org:write")
    assert result.returncode == 0, result.stderr
    plaintext = next(w for w in result.stdout.split() if w.startswith("p360_"))
    engine = make_engine(f"sqlite:///{migrated / 'cli.sqlite3'}")
    with make_sessionmaker(engine)() as session:
        key = auth_service.authenticate_api_key(session, plaintext)
        assert key is not None and key.scopes == ["org:read", "org:write"]
        assert key.key_hash != plaintext  # stored only as a hash
    engine.dispose()

    bad = run(migrated, "create-api-key", "--name", "x", "--scopes", "org:everything")
    assert bad.returncode == 2
    assert "Unknown scope" in bad.stderr


def test_seed_demo_once(migrated: Path) -> None:
    result = run(migrated, "seed-demo", "--if-empty")
    assert result.returncode == 0, result.stderr
    assert "demo company seeded" in result.stdout
    engine = make_engine(f"sqlite:///{migrated / 'cli.sqlite3'}")
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Employee)) >= 30
        assert session.scalar(select(func.count()).select_from(Department)) >= 7
        assert session.scalar(select(func.count()).select_from(Competency)) == 6
    engine.dispose()
    credentials = (migrated / "data" / "demo-credentials.txt").read_text()
    assert "HRIS API key (all scopes): p360_" in credentials

    again = run(migrated, "seed-demo", "--if-empty")
    assert again.returncode == 0
    assert "already has data" in again.stdout


def test_serve_refuses_several_processes_on_sqlite(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", "--workers", "2", "--port", "1")
    assert result.returncode == 2
    assert "need PostgreSQL" in result.stderr
