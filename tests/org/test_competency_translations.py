"""Competency texts per language: API, CSV/XLSX import, HR screens, the launch snapshot,
the rater's page in their language (falling back to the organisation's), the note for HR,
and the migration that translates the untouched default set."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.cycles.models import CycleCompetency
from app.db import make_engine
from app.migrate import upgrade
from app.org.default_competencies import DEFAULT_COMPETENCIES
from app.org.models import Competency
from app.uploads.parsing import XLSX_TYPE
from tests.auth.helpers import sign_in
from tests.cycles.helpers import launched_cycle, links_by_customer, token_of
from tests.factories import link, make_competency, make_department, make_employee
from tests.org.test_api import assert_problem, headers
from tests.uploads.workbooks import workbook

API = "/api/v1"
RU = {
    "name": "Оперативность",
    "description": "Быстро реагирует на запросы.",
    "indicators": ["Отвечает в течение дня"],
}


def _put(client: TestClient, h: dict[str, str], code: str, **body: object):  # type: ignore[no-untyped-def]
    return client.put(
        f"{API}/competencies/{code}", json={"name": "Responsiveness", **body}, headers=h
    )


def test_api_sets_keeps_and_clears_translations(client: TestClient, db: Session) -> None:
    h = headers(db, "org:read", "org:write")
    r = _put(client, h, "responsiveness", translations={"ru": RU})
    assert r.status_code == 201, r.text
    assert r.json()["translations"] == {"ru": RU}
    # A client that knows nothing of translations keeps them.
    r = _put(client, h, "responsiveness", description="Reacts quickly")
    assert r.status_code == 200 and r.json()["translations"] == {"ru": RU}
    listed = client.get(f"{API}/competencies", headers=h).json()
    assert listed[0]["translations"]["ru"]["name"] == "Оперативность"
    # A translation needs its name; only languages raters can use.
    body = assert_problem(_put(client, h, "responsiveness", translations={"ru": {"name": ""}}), 422)
    assert any(e["field"] == "translations.ru.name" for e in body["errors"])
    body = assert_problem(_put(client, h, "responsiveness", translations={"de": RU}), 422)
    assert "languages raters can use" in body["detail"]
    # {} removes them.
    r = _put(client, h, "responsiveness", translations={})
    assert r.status_code == 200 and r.json()["translations"] == {}


CSV = (
    "code,name,indicators,name_ru,description_ru,indicators_ru\n"
    'responsiveness,Responsiveness,Answers fast,Оперативность,Быстро реагирует.,"Отвечает быстро\n'
    'Предупреждает заранее"\n'
    "teamwork,Teamwork,,,,\n"
)


def test_csv_and_xlsx_import_translation_columns(client: TestClient, db: Session) -> None:
    h = headers(db, "org:write")
    url = f"{API}/import/competencies"
    r = client.post(url, content=CSV.encode(), headers={**h, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    db.expire_all()
    stored = {c.code: c.translations for c in db.scalars(select(Competency))}
    assert stored == {
        "responsiveness": {
            "ru": {
                "name": "Оперативность",
                "description": "Быстро реагирует.",
                "indicators": ["Отвечает быстро", "Предупреждает заранее"],
            }
        },
        "teamwork": {},
    }
    again = client.post(url, content=CSV.encode(), headers={**h, "content-type": "text/csv"})
    assert again.json()["unchanged"] == 2
    # A file without translation columns keeps them.
    plain = "code,name,indicators\nresponsiveness,Responsiveness,Answers fast\n"
    r = client.post(url, content=plain.encode(), headers={**h, "content-type": "text/csv"})
    assert r.json()["unchanged"] == 1
    # The same columns in a workbook; a description without a name is refused.
    book = workbook(
        [
            ["code", "name", "name_ru", "description_ru"],
            ["teamwork", "Teamwork", "Командная работа", ""],
            ["quality", "Quality", "", "Без имени"],
        ]
    )
    r = client.post(url, content=book, headers={**h, "content-type": XLSX_TYPE})
    body = assert_problem(r, 422)
    assert [(e["line"], e["field"]) for e in body["errors"]] == [(3, "translations.ru.name")]
    book = workbook([["code", "name", "name_ru"], ["teamwork", "Teamwork", "Командная работа"]])
    r = client.post(url, content=book, headers={**h, "content-type": XLSX_TYPE})
    assert r.status_code == 200 and r.json()["updated"] == 1
    db.expire_all()
    teamwork = db.scalar(select(Competency).where(Competency.code == "teamwork"))
    assert teamwork is not None
    assert teamwork.translations == {
        "ru": {"name": "Командная работа", "description": "", "indicators": []}
    }


def test_hr_form_saves_translation_and_list_notes_what_is_missing(
    client: TestClient, db: Session
) -> None:
    comp = make_competency(db, name="Responsiveness", indicators=["Answers fast"])
    other = make_competency(db, name="Teamwork")
    make_employee(db, full_name="Reads Russian", language="ru")
    signed = sign_in(client, db)
    page = client.get("/org/competencies")
    assert "1 active employee reads Russian" in page.text
    assert "Responsiveness, Teamwork" in page.text
    form = client.get(f"/org/competencies/{comp.id}")
    assert 'name="name_ru"' in form.text and "In Russian" in form.text
    data = {
        "csrf_token": signed.csrf,
        "name": "Responsiveness",
        "description": "",
        "indicators": "Answers fast",
        "weight": "1",
        "display_order": "1",
        "active": "on",
        "name_ru": "",
        "description_ru": "Только описание",
        "indicators_ru": "",
    }
    r = client.post(f"/org/competencies/{comp.id}", data=data)
    assert r.status_code == 422 and 'id="name_ru-error"' in r.text
    assert "Только описание" in r.text  # nothing typed is lost
    data.update(name_ru=RU["name"], indicators_ru="Отвечает в течение дня\n\n")
    r = client.post(f"/org/competencies/{comp.id}", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    db.refresh(comp)
    assert comp.translations == {
        "ru": {
            "name": "Оперативность",
            "description": "Только описание",
            "indicators": ["Отвечает в течение дня"],
        }
    }
    page = client.get("/org/competencies")
    assert re.search(r"no text in it.*: Teamwork\.", page.text)
    assert other.name in page.text


def test_rater_sees_their_language_from_the_snapshot(
    client: TestClient, db: Session, settings: Settings
) -> None:
    it = make_department(db, name="IT")
    supplier = make_employee(db, department=it, full_name="Supplier")
    russian = make_employee(db, full_name="Иван", language="ru")
    english = make_employee(db, full_name="John", language="en")
    make_competency(
        db,
        name="Responsiveness",
        description="Reacts fast",
        indicators=["Answers"],
        translations={"ru": {"name": "Оперативность", "description": "", "indicators": []}},
    )
    make_competency(db, name="Teamwork", description="Works together", indicators=["Shares"])
    for customer in (russian, english):
        link(db, supplier=supplier, customer=customer)
    cycle = launched_cycle(db, settings)
    links = links_by_customer(db, cycle)
    snapshot = db.scalars(
        select(CycleCompetency.translations).where(CycleCompetency.cycle_id == cycle.id)
    ).all()
    assert {"ru": {"name": "Оперативность", "description": "", "indicators": []}} in snapshot
    # HR edits after launch never reach the running cycle.
    comp = db.scalar(select(Competency).where(Competency.name == "Responsiveness"))
    assert comp is not None
    comp.translations = {"ru": {"name": "Другое", "description": "", "indicators": []}}
    db.flush()

    client.get(f"/r/{token_of(links[russian.id])}")
    page = client.get("/rate").text
    assert "Оперативность" in page and "Другое" not in page
    # Empty translated fields fall back to the organisation's texts; no translation at all
    # shows the competency in the organisation's language.
    assert "Reacts fast" in page and "Answers" in page and "Teamwork" in page
    client.cookies.clear()
    client.get(f"/r/{token_of(links[english.id])}")
    page = client.get("/rate").text
    assert "Responsiveness" in page and "Оперативность" not in page


def test_migration_translates_the_untouched_default_set(fresh_database_url: str) -> None:
    upgrade(fresh_database_url)
    engine = make_engine(fresh_database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Competency.code, Competency.translations)).all()
    finally:
        engine.dispose()
    assert len(rows) == len(DEFAULT_COMPETENCIES)
    for code, translations in rows:
        assert translations == {"ru": DEFAULT_COMPETENCIES[code]["ru"]}
