"""The rating page's radio groups (built in Python) and the submit's single form load.

The radios used to be a Jinja loop; ``LOOP_*`` below are that loop, kept as the
reference the Python groups must match (apart from blank lines).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import Markup
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.cycles.models import Cycle, Invitation
from app.errors import Invalid
from app.ratings import rendering
from app.ratings import service as ratings_service
from app.ratings.models import BallotBox
from app.ratings.schemas import SupplierAnswer
from app.templating import environment
from tests.cycles.helpers import (
    cycle_competency_ids,
    form_for,
    invitation_of,
    launched_cycle,
    links_by_customer,
    make_company,
    pooled_ballots,
    token_of,
)

FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')

# The template's loops before the radios moved to rendering.py, verbatim.
LOOP_SCORE = """{% for v in scale %}
        <span class="choice"><input type="radio" name="{{ f }}" id="{{ f }}-{{ v }}" value="{{ v }}" required{% if err %} aria-invalid="true"{% endif %}{% if values.get(f) == v|string %} checked{% endif %}><label for="{{ f }}-{{ v }}">{{ v }}</label></span>
        {% endfor %}
        <span class="choice cant-judge"><input type="radio" name="{{ f }}" id="{{ f }}-{{ cant_judge }}" value="{{ cant_judge }}" required{% if err %} aria-invalid="true"{% endif %}{% if values.get(f) == cant_judge %} checked{% endif %}><label for="{{ f }}-{{ cant_judge }}">{{ label }}</label></span>"""  # noqa: E501
LOOP_NPS = """{% set current = values.get(f, "") %}{% for v in nps_scale %}
        <span class="choice"><input type="radio" name="{{ f }}" id="{{ f }}-{{ v }}" value="{{ v }}"{% if current == v|string %} checked{% endif %}><label for="{{ f }}-{{ v }}">{{ v }}</label></span>
        {% endfor %}
        <span class="choice no-answer"><input type="radio" name="{{ f }}" id="{{ f }}-none" value=""{% if current not in nps_scale|map("string")|list %} checked{% endif %}><label for="{{ f }}-none">{{ label }}</label></span>"""  # noqa: E501
NPS_SCALE = list(range(11))
ODD_VALUES = [None, "", "1", "5", "10", "na", "0", "11", " 7 ", "seven", '"><script>x</script>']


def same_html(a: str, b: str) -> bool:
    """Equal apart from the amount of whitespace (blank lines the loop left)."""
    return re.sub(r"\s+", " ", a).strip() == re.sub(r"\s+", " ", b).strip()


@pytest.mark.parametrize("scale", [list(range(1, 11)), list(range(1, 6)), list(range(0, 4))])
@pytest.mark.parametrize("current", ODD_VALUES)
@pytest.mark.parametrize("err", [None, "Choose a score or “can't judge”."])
@pytest.mark.parametrize("label", ["can't judge", "не могу оценить", 'say "<no>" & go'])
def test_score_group_matches_the_template_loop(
    scale: list[int], current: str | None, err: str | None, label: str
) -> None:
    field = "s12-c345"
    values = {} if current is None else {field: current}
    expected = (
        environment()
        .from_string(LOOP_SCORE)
        .render(scale=scale, f=field, err=err, values=values, cant_judge="na", label=label)
    )
    group = rendering.score_group(scale, "na", label)
    html = group.render(field, values.get(field), invalid=err)
    assert isinstance(html, Markup)
    assert same_html(html, expected), (html, expected)
    # The same group again (it is cached per process) gives the same answer.
    assert (
        rendering.score_group(scale, "na", label).render(field, values.get(field), invalid=err)
        == html
    )


@pytest.mark.parametrize("current", ODD_VALUES)
@pytest.mark.parametrize("label", ["no answer", "<i>none</i>"])
def test_nps_group_matches_the_template_loop(current: str | None, label: str) -> None:
    field = "s12-nps"
    values = {} if current is None else {field: current}
    expected = (
        environment()
        .from_string(LOOP_NPS)
        .render(nps_scale=NPS_SCALE, f=field, values=values, label=label)
    )
    html = rendering.nps_group(NPS_SCALE, label).render(field, values.get(field, ""))
    assert same_html(html, expected), (html, expected)
    assert html.count(" checked") == 1


def test_group_escapes_names_labels_and_keeps_markup_labels() -> None:
    group = rendering.score_group([1, 2], "na", "<b>can't</b>")
    html = group.render('x"><script>alert(1)</script>', "na")
    assert "<script>" not in html and "<b>" not in html
    assert 'name="x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert "&lt;b&gt;can&#39;t&lt;/b&gt;" in html
    safe = rendering.score_group([1, 2], "na", Markup("<b>can't</b>"))
    assert safe is not group  # a Markup label is a different group, not a cache hit
    assert "<b>can't</b>" in safe.render("s1-c1")


def test_unknown_answers_do_not_grow_the_cache() -> None:
    group = rendering.score_group([1, 2, 3], "na", "can't judge")
    for i in range(200):
        group.render("s1-c1", f"junk-{i}", invalid=i % 2)
    assert len(group._segments) <= 2 * (len(group.choices) + 1)
    with pytest.raises(ValueError, match="fallback"):
        rendering.RadioGroup([rendering.Choice("1", "1", "1")], required=False, fallback="x")


# --- the page ------------------------------------------------------------------------------


class Radios(HTMLParser):
    """Every radio, label and id of a page, plus the text of its error summary."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.radios: list[dict[str, str]] = []
        self.labels: dict[str, str] = {}
        self.ids: list[str] = []
        self._label: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v if v is not None else "" for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "input" and a.get("type") == "radio":
            self.radios.append(a)
        elif tag == "label" and "for" in a:
            self._label = a["for"]
            self.labels[a["for"]] = ""

    def handle_data(self, data: str) -> None:
        if self._label is not None:
            self.labels[self._label] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label = None

    def checked(self) -> dict[str, str]:
        return {r["name"]: r["value"] for r in self.radios if "checked" in r}


def parse(html: str) -> Radios:
    parser = Radios()
    parser.feed(html)
    return parser


NASTY_NAME = '<script>alert("x")</script> O\'Brien & Co'


@pytest.fixture
def nasty(db: Session, settings: Settings) -> tuple[Any, Cycle, str]:
    company = make_company(db, suppliers=3, customers=1, competencies=4)
    company.suppliers[1].full_name = NASTY_NAME
    company.competencies[0].name = 'Q&A "quoted" <i>'
    company.competencies[0].indicators = ["<b>bold</b>", "a & b"]
    db.flush()
    cycle = launched_cycle(db, settings)
    return company, cycle, links_by_customer(db, cycle)[company.customers[0].id]


def open_form(client: TestClient, link_url: str) -> tuple[str, str]:
    assert client.get("/r/" + token_of(link_url), follow_redirects=False).status_code == 303
    page = client.get("/rate")
    assert page.status_code == 200
    match = FORM_TOKEN.search(page.text)
    assert match
    return page.text, match.group(1)


def test_page_structure_and_escaping(
    client: TestClient, db: Session, nasty: tuple[Any, Cycle, str]
) -> None:
    company, cycle, url = nasty
    html, _token = open_form(client, url)
    page = parse(html)
    comps = cycle_competency_ids(db, cycle)
    scale = list(range(cycle.scale_min, cycle.scale_max + 1))
    per_question = len(scale) + 1
    assert len(page.radios) == 3 * (4 * per_question + len(NPS_SCALE) + 1)
    # Ids are unique, every radio has its label, and ids follow f"{field}-{value}".
    assert len(page.ids) == len(set(page.ids))
    for radio in page.radios:
        suffix = radio["value"] or "none"
        assert radio["id"] == f"{radio['name']}-{suffix}"
        assert radio["id"] in page.labels
    for supplier in company.suppliers:
        for comp in comps:
            group = [r for r in page.radios if r["name"] == f"s{supplier.id}-c{comp}"]
            assert [r["value"] for r in group] == [*map(str, scale), "na"]
            assert all("required" in r and "aria-invalid" not in r for r in group)
            assert page.labels[f"s{supplier.id}-c{comp}-na"] == "can't judge"
        nps = [r for r in page.radios if r["name"] == f"s{supplier.id}-nps"]
        assert [r["value"] for r in nps] == [*map(str, NPS_SCALE), ""]
        assert not any("required" in r for r in nps)
    # Nothing answered yet, except the NPS's "no answer".
    assert set(page.checked().values()) == {""}
    # Names are text, never markup.
    assert "<script>" not in html and "<i>" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; O&#39;Brien &amp; Co" in html
    assert "Q&amp;A &#34;quoted&#34; &lt;i&gt;" in html


def test_error_page_keeps_every_answer(
    client: TestClient, db: Session, nasty: tuple[Any, Cycle, str]
) -> None:
    company, cycle, url = nasty
    _html, token = open_form(client, url)
    comps = cycle_competency_ids(db, cycle)
    data = form_for(db, cycle, company.suppliers, score="4", form_token=token)
    first, second, third = (s.id for s in company.suppliers)
    data[f"s{first}-c{comps[0]}"] = "na"
    data[f"s{first}-c{comps[1]}"] = "10"
    data[f"s{first}-nps"] = "0"
    data[f"s{second}-nps"] = "11"  # out of range: an error, and "no answer" shown
    data[f"s{first}-comment"] = '</textarea><script>alert("x")</script>'
    missing = f"s{third}-c{comps[2]}"
    del data[missing]
    r = client.post("/rate", data=data)
    assert r.status_code == 422
    page = parse(r.text)
    checked = page.checked()
    scores = {k: v for k, v in data.items() if re.fullmatch(r"s\d+-c\d+", k)}
    assert len(scores) == 3 * 4 - 1
    for key, value in scores.items():
        assert checked[key] == value, key
    assert missing not in checked
    assert checked[f"s{first}-nps"] == "0"
    assert checked[f"s{second}-nps"] == "" and checked[f"s{third}-nps"] == ""
    invalid = {r["name"] for r in page.radios if r.get("aria-invalid") == "true"}
    assert invalid == {missing}  # the NPS group never carries aria-invalid
    assert f'id="{missing}-error"' in r.text and f'id="s{second}-nps-error"' in r.text
    # The error summary links to the first radio of the question and to the NPS group.
    assert f'href="#{missing}-{cycle.scale_min}"' in r.text
    assert f'href="#s{second}-nps-none"' in r.text
    assert f"{missing}-{cycle.scale_min}" in page.ids and f"s{second}-nps-none" in page.ids
    assert "&lt;/textarea&gt;&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</textarea>" in r.text
    assert db.scalar(select(BallotBox.supplier_id)) is None


# --- the submit loads the form once ---------------------------------------------------------


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]).lower())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_submit_loads_invitation_and_form_once(
    client: TestClient,
    db: Session,
    settings: Settings,
    nasty: tuple[Any, Cycle, str],
    statements: list[str],
) -> None:
    company, cycle, url = nasty
    _html, token = open_form(client, url)
    data = form_for(db, cycle, company.suppliers, form_token=token)
    statements.clear()
    r = client.post("/rate", data=data)
    assert r.status_code == 200 and "Thank you" in r.text
    selects = [s for s in statements if s.lstrip().startswith("select")]
    assert sum("from invitation" in s for s in selects) == 1, selects
    assert sum("from cycle_pair" in s for s in selects) == 1, selects
    assert sum("from cycle_competency" in s for s in selects) == 1, selects
    assert len(pooled_ballots(db, settings)) == 3


def test_submit_checked_answers_checks_against_the_rules(
    db: Session, settings: Settings, nasty: tuple[Any, Cycle, str]
) -> None:
    company, cycle, _url = nasty
    invitation = invitation_of(db, cycle, company.customers[0])
    rules = ratings_service.load_form_rules(db, invitation_id=invitation.id)
    comps = cycle_competency_ids(db, cycle)
    good = {s.id: SupplierAnswer(scores=dict.fromkeys(comps, 5)) for s in company.suppliers}
    bad_cases: list[dict[int, SupplierAnswer]] = [
        {**good, company.customers[0].id: SupplierAnswer(scores=dict.fromkeys(comps, 5))},
        {k: v for k, v in good.items() if k != company.suppliers[0].id},
        {**good, company.suppliers[0].id: SupplierAnswer(scores=dict.fromkeys(comps[:-1], 5))},
        {**good, company.suppliers[0].id: SupplierAnswer(scores=dict.fromkeys(comps, 11))},
        {**good, company.suppliers[0].id: SupplierAnswer(scores=dict.fromkeys(comps, 5), nps=11)},
        {
            **good,
            company.suppliers[0].id: SupplierAnswer(
                scores=dict.fromkeys(comps, 5), comment="x" * 2001
            ),
        },
    ]
    for answers in bad_cases:
        with pytest.raises(Invalid):
            ratings_service.submit_checked_answers(
                db, rules=rules, answers=answers, secret_key=settings.secret_key
            )
    assert db.scalar(select(BallotBox.supplier_id)) is None
    assert not pooled_ballots(db, settings)
    assert invitation.used is False
    assert (
        ratings_service.submit_checked_answers(
            db, rules=rules, answers=good, secret_key=settings.secret_key
        )
        == 3
    )
    # The ORM's copy of the invitation is not left saying "unused".
    assert invitation.used is True
    with pytest.raises(ratings_service.AlreadySubmitted):
        ratings_service.submit_checked_answers(
            db, rules=rules, answers=good, secret_key=settings.secret_key
        )
    assert len(pooled_ballots(db, settings)) == 3
    assert db.scalar(select(Invitation.used).where(Invitation.id == invitation.id)) is True


def test_submit_holds_the_write_lock_for_the_two_writes_only(
    committed_db: sessionmaker[Session],
    live_app: FastAPI,
    engine: Engine,
    settings: Settings,
) -> None:
    """With the app's own sessions (real commits): the post is read, checked and sealed
    in a transaction that writes nothing, and the one that writes holds the claim and
    the pool row only. On SQLite that transaction is the one that takes the database's
    write lock (BEGIN IMMEDIATE), so every other submit waits for two statements."""
    with committed_db() as session:
        company = make_company(session, suppliers=3, customers=1, competencies=4)
        cycle = launched_cycle(session, settings)
        url = links_by_customer(session, cycle)[company.customers[0].id]
        data = form_for(session, cycle, company.suppliers)
        session.commit()
    transactions: list[list[str]] = [[]]

    def record(*args: Any) -> None:
        transactions[-1].append(" ".join(str(args[2]).lower().split()))

    def commit(*_args: Any) -> None:
        transactions.append([])

    with TestClient(live_app) as browser:
        _html, token = open_form(browser, url)
        event.listen(engine, "before_cursor_execute", record)
        event.listen(engine, "commit", commit)
        try:
            r = browser.post("/rate", data={**data, "form_token": token})
        finally:
            event.remove(engine, "before_cursor_execute", record)
            event.remove(engine, "commit", commit)
    assert r.status_code == 200 and "Thank you" in r.text
    writing = [t for t in transactions if any(not s.startswith(("select", "begin")) for s in t)]
    assert len(writing) == 1, transactions
    statements = [s for s in writing[0] if s != "begin"]
    if engine.dialect.name == "sqlite":
        assert statements[0] == "begin immediate", writing
        statements = statements[1:]
    assert [s.split(" (")[0].split(" set ")[0] for s in statements] == [
        "insert into pending_submission",
        "update invitation",
    ], writing
    reads = [t for t in transactions if any(s.startswith("select") for s in t)]
    assert reads and all("begin immediate" not in t for t in reads), transactions
    with committed_db() as session:
        assert len(pooled_ballots(session, settings)) == 3
