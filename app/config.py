"""Settings, read from the environment (and an optional .env file).

Settings are built by :func:`get_settings` (cached) or directly by tests, never at
import time, so a test can choose its own database without environment tricks.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev-secret-change-me"}
DEV_SECRET = "dev-secret-change-me"  # noqa: S105 - refused outside development
DATA_DIR = Path("data")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = f"sqlite:///./{DATA_DIR}/peer360.sqlite3"
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEV_SECRET

    # Mail. With no SMTP_HOST the worker writes every message as an .eml file under
    # MAIL_DIR and HR sees it on the local outbox page, so nothing is silently dropped.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 30.0
    mail_from: str = "Peer360 <no-reply@peer360.local>"
    mail_dir: Path = DATA_DIR / "mail"
    mail_max_attempts: int = 8

    # Charts of closed cycles never change: each is rendered on its first request and
    # kept here (one directory per cycle), so later requests read a file.
    chart_cache_dir: Path = DATA_DIR / "charts"
    # Processes the worker starts, at a lower CPU priority, to draw a closed cycle's
    # department charts ahead; 0 draws them in the worker itself, a few seconds a pass.
    chart_processes: int = Field(default=2, ge=0, le=32)
    # The feedback report leads with development, not standing: it shows the employee's
    # rank in the company only where the organisation wants that.
    report_show_rank: bool = False

    # Anonymity: results are shown only for employees with at least this many raters.
    # Never below 3: with two raters each could deduce the other's scores.
    anonymity_min_raters: int = Field(default=3, ge=3)
    # A rater counts toward k only if their employee record and email address were this
    # many days old at launch (or there before the first launch): HR cannot make up
    # raters it controls just before a cycle. Deliberately not settable from the app.
    anonymity_rater_min_age_days: int = Field(default=30, ge=0)
    # When set (comma-separated), only addresses on these domains count toward k.
    allowed_email_domains: Annotated[list[str], NoDecode] = Field(default_factory=list)

    reminder_days_before_close: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [3])
    rating_session_minutes: int = 60
    hr_session_idle_minutes: int = 30
    login_max_failures: int = 5
    login_lockout_minutes: int = 15
    bad_token_limit_per_minute: int = 10
    # Who gets the confirmation round's links unless HR chooses when starting it: each
    # supplier, or their line manager (see app.cycles.nomination_approval).
    nomination_links_to: Literal["supplier", "line_manager"] = "supplier"
    # The paper channel (printed letters with one-time codes, see app.cycles.paper).
    bad_code_limit_per_minute: int = Field(default=10, ge=1)
    kiosk_session_minutes: int = Field(default=15, ge=1, le=240)
    paper_raters_count_toward_k: bool = True
    # How long the private link to one's own results works after it is emailed.
    personal_results_link_days: int = Field(default=90, ge=1, le=3650)
    max_request_bytes: int = 10 * 1024 * 1024
    # Rating submits checked and stored at once in one app process; the others wait
    # their turn in the order they came. More threads only fight over the GIL and the
    # database's locks (measured on two cores, both databases); raise it for a database
    # many milliseconds away.
    submit_concurrency: int = Field(default=2, ge=1, le=64)

    # Uploads (CSV, JSON, XLSX imports): each limit is refused with a 4xx naming it.
    upload_max_rows: int = Field(default=1_000_000, ge=1)
    upload_max_columns: int = Field(default=50, ge=1)
    upload_max_cell_chars: int = Field(default=10_000, ge=100)
    upload_max_problems: int = Field(default=1000, ge=1)
    xlsx_max_unpacked_bytes: int = Field(default=100 * 1024 * 1024, ge=1024 * 1024)
    xlsx_max_compression_ratio: float = Field(default=100.0, gt=1)
    # A full employee import ("deactivate missing") that would deactivate more than this
    # share of the active employees is refused unless confirmed: a truncated HRIS export
    # must not empty the company.
    import_max_deactivate_fraction: float = Field(default=0.2, ge=0, le=1)

    results_webhook_url: str | None = None
    results_webhook_secret: str | None = None

    # Reverse proxies whose X-Forwarded-For/-Proto are believed (comma-separated IPs or
    # networks, "*" for any). Empty: none, the connecting address is the client's.
    forwarded_allow_ips: str = ""

    # The organisation's language: the default competency set that the first
    # ``migrate`` creates is written in it.
    default_language: Literal["en", "ru"] = "en"
    # The organisation's time zone (IANA name): every date on pages, emails and letters
    # is shown in it, and times typed into forms are read in it. The database keeps UTC.
    org_time_zone: str = "UTC"

    # Single sign-on through OpenID Connect (authorization code + PKCE). Unset issuer:
    # no SSO. OIDC_ROLE_MAP maps values of the OIDC_ROLE_CLAIM claim to roles, e.g.
    # "peer360-admins=admin,peer360-hr=hr,peer360-managers=manager".
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scopes: str = "openid email profile"
    oidc_role_claim: str = "groups"
    oidc_role_map: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # False: only single sign-on logs in (the password form is refused).
    local_password_login: bool = True

    # Retention (days; 0 keeps for ever). Closed cycles (results, ballots, snapshot),
    # their comments, and audit entries older than this are deleted by the worker.
    retention_results_days: int = Field(default=1095, ge=0)
    retention_comments_days: int = Field(default=365, ge=0)
    retention_audit_days: int = Field(default=730, ge=0)

    worker_poll_seconds: float = 2.0
    log_level: str = "INFO"

    @field_validator("org_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Moscow)") from exc
        return value

    @field_validator("allowed_email_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.replace(";", ",").split(",")]
        if isinstance(value, list):
            return [str(part).strip().lower().lstrip("@") for part in value if str(part).strip()]
        return value

    @field_validator("reminder_days_before_close", mode="before")
    @classmethod
    def _split_days(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("oidc_role_map", mode="before")
    @classmethod
    def _split_role_map(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [part.partition("=") for part in value.split(",") if part.strip()]
            value = {claim.strip(): role.strip().lower() for claim, _eq, role in pairs}
        if isinstance(value, dict):
            bad = {k: v for k, v in value.items() if v not in ("admin", "hr", "manager") or not k}
            if bad:
                raise ValueError(f"OIDC_ROLE_MAP: roles are admin, hr or manager, not {bad}")
        return value

    @model_validator(mode="after")
    def _sso_is_complete(self) -> Settings:
        if self.oidc_issuer and not (self.oidc_client_id and self.oidc_role_map):
            raise ValueError("OIDC_ISSUER needs OIDC_CLIENT_ID and OIDC_ROLE_MAP too")
        if not self.local_password_login and not self.oidc_issuer:
            # Nobody could log in at all.
            raise ValueError("LOCAL_PASSWORD_LOGIN=false needs single sign-on (OIDC_ISSUER)")
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.environment == "production" and (
            self.secret_key.strip().lower() in PLACEHOLDER_SECRETS or len(self.secret_key) < 32
        ):
            raise ValueError(
                "SECRET_KEY must be set to a random value of at least 32 characters in production"
            )
        if self.environment == "production" and not self.smtp_host:
            # Local mail mode shows every private rating link to HR on the outbox page:
            # fine for a demo, never for real raters.
            raise ValueError("SMTP_HOST must be set in production (local mail is for demos)")
        return self

    @property
    def sso_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def https(self) -> bool:
        return self.base_url.startswith("https://")


@lru_cache
def get_settings() -> Settings:
    return Settings()
