"""Nothing that could tie a rater to answers reaches logs or error texts."""

from __future__ import annotations

import logging
import uuid

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from app.config import Settings
from app.main import create_app
from app.ratings.models import BallotBox


def test_sql_errors_never_carry_parameter_values(engine: Engine) -> None:
    assert engine.hide_parameters
    secret = "SECRET-COMMENT-" + uuid.uuid4().hex
    supplier_id = 2**30 + uuid.uuid4().int % 2**30  # a key no other test uses
    with engine.connect() as conn, pytest.raises(IntegrityError) as raised:
        # The same key twice: the insert fails inside a bulk write, as a real one might.
        box = {"cycle_id": -1, "supplier_id": supplier_id, "ballots": 1, "comments": [secret]}
        conn.execute(insert(BallotBox), [box, box])
    assert secret not in str(raised.value)


def test_unhandled_error_log_redacts_rating_tokens(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, engine=engine)

    @app.get("/r/{token}/boom")
    def boom(token: str) -> None:
        raise RuntimeError("boom")

    token = "tok" + uuid.uuid4().hex
    with caplog.at_level(logging.INFO), TestClient(app, raise_server_exceptions=False) as c:
        assert c.get(f"/r/{token}/boom").status_code == 500
    # (httpx is the test client here, logging its own request line.)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "httpx")
    assert "/r/[redacted]" in logged
    assert token not in logged


def test_production_refuses_local_mail_mode() -> None:
    with pytest.raises(ValidationError, match="SMTP_HOST"):
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment="production",
            secret_key="s" * 40,
            smtp_host=None,
        )
    ok = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="production",
        secret_key="s" * 40,
        smtp_host="smtp.example.com",
    )
    assert ok.smtp_host == "smtp.example.com"
