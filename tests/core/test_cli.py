"""The command line as an operator runs it: every command in a fresh process, on a fresh
database of its own (a temporary SQLite file, or a PostgreSQL database created for the
test and dropped after), in production mode where the command allows it."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.auth import service as auth_service
from app.auth.models import User
from app.cycles.models import Cycle
from app.db import make_engine, make_sessionmaker
from app.org.models import Competency, Department, Employee
from tests.conftest import SmtpServer
from tests.core.helpers import PASSWORD, ROOT, Cli, ServeStarter, log_in, stop, wait_for_stderr
from tests.factories import make_message

# --- each command ----------------------------------------------------------------------


def test_fresh_install_gets_its_first_login(migrated: Cli) -> None:
    # The crash of issue 12: create-user imported only the auth models, so the flush
    # could not resolve app_user.employee_id -> employee.
    result = migrated.run(
        "create-user", "--email", "First@Example.com", "--role", "admin", "--password", PASSWORD
    )
    assert result.returncode == 0, result.stderr
    assert "created admin user first@example.com" in result.stdout
    engine = make_engine(migrated.url)
    with make_sessionmaker(engine)() as session:
        user = auth_service.authenticate_user(session, email="first@example.com", password=PASSWORD)
        assert user is not None and user.role == "admin"
    engine.dispose()

    again = migrated.run(
        "create-user", "--email", "first@example.com", "--role", "hr", "--password", PASSWORD
    )
    assert again.returncode == 2
    assert "already exists" in again.stderr
    short = migrated.run(
        "create-user", "--email", "b@example.com", "--role", "hr", "--password", "x"
    )
    assert short.returncode == 2
    assert "at least 10 characters" in short.stderr


def test_create_user_prompts_for_the_password(migrated: Cli) -> None:
    result = migrated.run(
        "create-user", "--email", "hr@example.com", "--role", "hr", stdin=PASSWORD + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert migrated.count(User, User.email == "hr@example.com") == 1


def test_migrate_is_idempotent_and_creates_the_default_competencies(cli: Cli) -> None:
    # On a fresh database of its own: the other tests start from a copy of a migrated one.
    first = cli.run("migrate")
    assert first.returncode == 0, first.stderr
    assert "latest schema" in first.stdout
    assert cli.count(Competency) == 6
    again = cli.run("migrate")
    assert again.returncode == 0, again.stderr
    assert cli.count(Competency) == 6


def test_create_api_key(migrated: Cli) -> None:
    result = migrated.run("create-api-key", "--name", "HRIS", "--scopes", "org:read", "org:write")
    assert result.returncode == 0, result.stderr
    plaintext = next(w for w in result.stdout.split() if w.startswith("p360_"))
    engine = make_engine(migrated.url)
    with make_sessionmaker(engine)() as session:
        key = auth_service.authenticate_api_key(session, plaintext)
        assert key is not None and key.scopes == ["org:read", "org:write"]
        assert key.key_hash != plaintext  # stored only as a hash
    engine.dispose()

    bad = migrated.run("create-api-key", "--name", "x", "--scopes", "org:everything")
    assert bad.returncode == 2
    assert "Unknown scope" in bad.stderr


def test_new_cycle(migrated: Cli) -> None:
    result = migrated.run("new-cycle", "--quarter", "2026Q4")
    assert result.returncode == 0, result.stderr
    assert "created cycle 2026-Q4" in result.stdout
    assert migrated.count(Cycle) == 1
    bad = migrated.run("new-cycle", "--quarter", "2026Q5")
    assert bad.returncode == 2
    assert "is not a quarter" in bad.stderr
    assert migrated.count(Cycle) == 1


def test_seed_demo_once(migrated: Cli) -> None:
    result = migrated.run("seed-demo", "--if-empty", ENVIRONMENT="development")
    assert result.returncode == 0, result.stderr
    assert "demo company seeded" in result.stdout
    assert migrated.count(Employee) >= 30
    assert migrated.count(Department) >= 7
    assert migrated.count(Competency) == 6  # the migration's set, not a second one
    credentials = (migrated.cwd / "data" / "demo-credentials.txt").read_text()
    assert "HRIS API key (all scopes): p360_" in credentials

    again = migrated.run("seed-demo", "--if-empty", ENVIRONMENT="development")
    assert again.returncode == 0
    assert "already has data" in again.stdout


def test_serve_answers_pages_and_stops_on_sigterm(
    migrated: Cli, serve: ServeStarter, db_kind: str
) -> None:
    created = migrated.run(
        "create-user", "--email", "admin@example.com", "--role", "admin", "--password", PASSWORD
    )
    assert created.returncode == 0, created.stderr
    # PostgreSQL: several app processes, as the Docker image runs them.
    workers = ["--workers", "2"] if db_kind == "postgresql" else []
    process, url = serve(*workers)
    with httpx.Client(base_url=url, timeout=10) as client:
        assert log_in(client, "admin@example.com", "wrong password!").status_code == 400
        response = log_in(client, "admin@example.com", PASSWORD)
        assert response.status_code == 303, response.text
        home = client.get("/")
        assert home.status_code == 200
        assert "text/html" in home.headers["content-type"]
    code, err = stop(process)
    assert code == 0, err
    assert "Traceback" not in err


def test_serve_refuses_several_processes_on_sqlite(tmp_path: Path) -> None:
    cli = Cli(url=f"sqlite:///{tmp_path / 'one.sqlite3'}", cwd=tmp_path)
    result = cli.run("serve", "--workers", "2", "--port", "1")
    assert result.returncode == 2
    assert "need PostgreSQL" in result.stderr


def test_worker_runs_a_pass_and_stops_cleanly_on_sigterm(
    migrated: Cli, smtp_server: SmtpServer
) -> None:
    engine = make_engine(migrated.url)
    with make_sessionmaker(engine)() as session:
        make_message(
            session,
            to_address="someone@example.com",
            subject="Hello from the worker",
            body_text="Delivered by one pass.",
            secret_key=migrated.environment()["SECRET_KEY"],
        )
        session.commit()
    engine.dispose()
    process = migrated.start(
        "worker",
        SMTP_HOST=smtp_server.host,
        SMTP_PORT=str(smtp_server.port),
        WORKER_POLL_SECONDS="0.2",
    )
    try:
        messages = smtp_server.wait_for(1, timeout=60)
        assert [m["Subject"] for m in messages] == ["Hello from the worker"]
    finally:
        code, err = stop(process)
    assert code == 0, err
    assert "worker stopped" in err
    assert "Traceback" not in err


def test_worker_once(migrated: Cli) -> None:
    result = migrated.run("worker", "--once")
    assert result.returncode == 0, result.stderr
    assert "worker stopped" in result.stderr


# --- downgrades ------------------------------------------------------------------------


def test_migrate_refuses_a_downgrade_that_deletes_data(migrated: Cli) -> None:
    refused = migrated.run("migrate", "--downgrade", "base")
    assert refused.returncode == 2
    assert "refusing a downgrade that deletes data" in refused.stderr
    assert migrated.count(Competency) == 6  # nothing happened

    # Alembic's own command line is guarded the same way.
    alembic = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "downgrade", "base"],
        cwd=migrated.cwd,
        env=migrated.environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert alembic.returncode != 0
    assert "refusing a downgrade that deletes data" in alembic.stderr + alembic.stdout
    assert migrated.count(Competency) == 6

    forced = migrated.run("migrate", "--downgrade", "base", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "downgraded to base" in forced.stdout
    assert migrated.run("migrate").returncode == 0


# --- the README, as written ------------------------------------------------------------

COMMAND = re.compile(r"^(?:docker exec (?:-it )?peer360 )?(python -m app .+?)(?:\s+#.*)?$")


def readme_commands(section: str) -> list[str]:
    """The ``python -m app`` lines of the README section's code blocks (``docker exec``
    lines run the same command inside the container)."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", body, flags=re.S)
    return [
        m.group(1) for block in blocks for line in block.splitlines() if (m := COMMAND.match(line))
    ]


def test_readme_command_line_section_as_written(migrated: Cli, serve: ServeStarter) -> None:
    commands = readme_commands("Command line")
    assert [shlex.split(c)[3] for c in commands] == [
        "migrate",
        "create-user",
        "create-api-key",
        "new-cycle",
        "seed-demo",
        "serve",
        "worker",
    ]
    for command in commands:
        args = shlex.split(command)[3:]
        if args[0] == "serve":
            # The one change: a free port appended (the last --port wins), so the test
            # never meets a server already on 8000.
            process, url = serve(*args[1:])
            assert httpx.get(f"{url}/login", timeout=10).status_code == 200
            code, err = stop(process)
        elif args[0] == "worker":
            process = migrated.start(*args, WORKER_POLL_SECONDS="0.2")
            wait_for_stderr(process, "worker started")
            time.sleep(1)  # a few passes
            code, err = stop(process)
        else:
            env = {"ENVIRONMENT": "development"} if args[0] == "seed-demo" else {}
            result = migrated.run(*args, stdin=PASSWORD + "\n", **env)
            code, err = result.returncode, result.stderr
        assert code == 0, f"{command}: {err}"
    assert migrated.count(User) == 1 + 3  # ours and the demo's


def test_readme_docker_section_commands(migrated: Cli) -> None:
    commands = readme_commands("Running with Docker against PostgreSQL")
    assert any("create-user" in c for c in commands)
    for command in commands:
        result = migrated.run(*shlex.split(command)[3:], stdin=PASSWORD + "\n")
        assert result.returncode == 0, f"{command}: {result.stderr}"
    assert migrated.count(User) == 1
