"""Run Alembic migrations from code (CLI, tests, start-up)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RangeNotAncestorError
from alembic.util import CommandError

ROOT = Path(__file__).resolve().parent.parent
# A migration whose downgrade deletes rows says so in this module attribute (a phrase
# naming what is lost); such a downgrade runs only when forced.
DATA_LOSS_ATTRIBUTE = "downgrade_drops"


class DataLossRefused(CommandError):
    """A downgrade would delete data and was not forced (the alembic CLI prints it)."""


def alembic_config(
    database_url: str, *, force: bool = False, default_language: str | None = None
) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    # Alembic's ini interpolation treats % specially.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["force"] = force
    # The app configured logging already (app.cli); alembic.ini's would replace the
    # process's handlers, and every later line would leave in alembic's format.
    cfg.attributes["configure_logger"] = False
    if default_language is not None:
        cfg.attributes["default_language"] = default_language
    return cfg


def upgrade(
    database_url: str, revision: str = "head", *, default_language: str | None = None
) -> None:
    command.upgrade(alembic_config(database_url, default_language=default_language), revision)


def downgrade(database_url: str, revision: str = "base", *, force: bool = False) -> None:
    """Downgrade; refused (:class:`DataLossRefused`) when a step deletes data, unless forced."""
    command.downgrade(alembic_config(database_url, force=force), revision)


def refuse_data_loss(
    script: ScriptDirectory, current: Iterable[str], destination: str | None
) -> None:
    """Raise when going from ``current`` to ``destination`` undoes a migration that drops
    data. Called by migrations/env.py before anything runs, so a refused downgrade
    changes nothing (SQLite commits each step on its own)."""
    losses = [
        f"{rev.revision} drops {getattr(rev.module, DATA_LOSS_ATTRIBUTE)}"
        for rev in _revisions_undone(script, tuple(current), destination)
        if getattr(rev.module, DATA_LOSS_ATTRIBUTE, None)
    ]
    if losses:
        raise DataLossRefused(
            "refusing a downgrade that deletes data ("
            + "; ".join(losses)
            + "). Back the database up, then run it again with --force "
            "(python -m app migrate) or -x force=1 (alembic)."
        )


def _revisions_undone(
    script: ScriptDirectory, current: tuple[str, ...], destination: str | None
) -> list[Script]:
    if not current:
        return []
    try:
        return [
            rev
            for rev in script.iterate_revisions(current, destination or "base")
            if isinstance(rev, Script)
        ]
    except RangeNotAncestorError:  # the destination is above: an upgrade
        return []
