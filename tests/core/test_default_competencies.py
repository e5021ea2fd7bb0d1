"""The default competency set: created once by the migrations on a fresh database, in
the organisation's language, and never recreated once HR has changed it."""

from __future__ import annotations

from datetime import datetime
from typing import get_args

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy import delete, select, update

from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.migrate import alembic_config, downgrade, upgrade
from app.org.default_competencies import DEFAULT_COMPETENCIES, LANGUAGES
from app.org.models import Competency
from tests.core.helpers import Cli


def below_the_data_migration() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    below = script.get_revision("0005").down_revision
    assert isinstance(below, str)
    return below


def competencies(url: str) -> list[tuple[str, str, int, bool]]:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            rows = session.scalars(select(Competency).order_by(Competency.display_order))
            return [(c.code, c.name, c.display_order, c.active) for c in rows]
    finally:
        engine.dispose()


def test_a_fresh_database_gets_the_set_in_english_by_default(fresh_database_url: str) -> None:
    upgrade(fresh_database_url)
    assert competencies(fresh_database_url) == [
        ("professionalism", "Professionalism", 10, True),
        ("responsiveness", "Responsiveness", 20, True),
        ("quality", "Quality of work", 30, True),
        ("communication", "Communication", 40, True),
        ("teamwork", "Teamwork", 50, True),
        ("reliability", "Reliability", 60, True),
    ]
    engine = make_engine(fresh_database_url)
    with make_sessionmaker(engine)() as session:
        teamwork = session.scalar(select(Competency).where(Competency.code == "teamwork"))
        assert teamwork is not None and teamwork.weight == 1.0
        assert teamwork.indicators[0] == "Looks for solutions that work for both teams"
    engine.dispose()


def test_the_organisation_language_chooses_the_texts(cli: Cli) -> None:
    result = cli.run("migrate", DEFAULT_LANGUAGE="ru")
    assert result.returncode == 0, result.stderr
    names = [name for _code, name, _order, _active in competencies(cli.url)]
    assert names == [
        "Профессионализм",
        "Оперативность",
        "Качество работы",
        "Коммуникация",
        "Командная работа",
        "Надёжность",
    ]


def test_hr_edits_and_deletions_are_never_undone(fresh_database_url: str) -> None:
    upgrade(fresh_database_url)
    engine = make_engine(fresh_database_url)
    with make_sessionmaker(engine)() as session:
        session.execute(update(Competency).where(Competency.code == "quality").values(name="Craft"))
        session.execute(delete(Competency).where(Competency.code == "teamwork"))
        session.commit()
    engine.dispose()
    edited = competencies(fresh_database_url)
    assert len(edited) == 5 and ("quality", "Craft", 30, True) in edited

    upgrade(fresh_database_url)  # migrate again: already at head
    assert competencies(fresh_database_url) == edited
    # Even going below the data migration and up again (it runs a second time) keeps
    # HR's set: it only fills a database that has no competency at all.
    # (Forced: later revisions, such as 0007 and 0010, drop data of their own on the way
    # down.)
    downgrade(fresh_database_url, below_the_data_migration(), force=True)
    upgrade(fresh_database_url)
    assert competencies(fresh_database_url) == edited


def test_a_database_in_use_gets_none(fresh_database_url: str) -> None:
    upgrade(fresh_database_url, below_the_data_migration())
    engine = make_engine(fresh_database_url)
    # The table as that revision has it (the model has columns of later revisions).
    table = sa.table(
        "competency",
        *(sa.column(name) for name in ("code", "name", "description", "indicators")),
        *(sa.column(name) for name in ("weight", "display_order", "active")),
        sa.column("created_at", sa.DateTime),
        sa.column("updated_at", sa.DateTime),
    )
    now = datetime(2026, 12, 1)
    with engine.begin() as conn:
        conn.execute(
            table.insert().values(
                code="ownership",
                name="Ownership",
                description="",
                indicators=sa.text("'[]'"),
                weight=1.0,
                display_order=0,
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
    engine.dispose()
    upgrade(fresh_database_url)
    assert [code for code, *_ in competencies(fresh_database_url)] == ["ownership"]


def test_every_language_the_setting_allows_has_every_text() -> None:
    allowed = get_args(Settings.model_fields["default_language"].annotation)
    assert set(allowed) == set(LANGUAGES)
    for code, texts in DEFAULT_COMPETENCIES.items():
        for language in LANGUAGES:
            spec = texts[language]
            assert spec["name"] and spec["description"] and spec["indicators"], (code, language)
            assert len(spec["indicators"]) == len(texts["en"]["indicators"]), (code, language)
