"""The public rating page: link -> cookie -> form -> ballots, and every way it can go wrong."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.cycles.models import Cycle, CycleState, Invitation
from app.ratings import pages as rating_pages
from app.ratings.models import BallotBox, PendingSubmission
from tests.cycles.helpers import (
    Company,
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


def ballots(db: Session, settings: Settings) -> int:
    """Answers submitted so far (they wait, sealed, in the pool until close)."""
    assert db.scalar(select(func.count()).select_from(BallotBox)) == 0  # none before close
    return len(pooled_ballots(db, settings))


def stored(db: Session) -> int:
    """Rows that hold answers, pooled or released."""
    pending = db.scalar(select(func.count()).select_from(PendingSubmission)) or 0
    return pending + (db.scalar(select(func.count()).select_from(BallotBox)) or 0)


def scores(db: Session, settings: Settings) -> int:
    return sum(len(answer.scores) for _s, answer in pooled_ballots(db, settings))


@pytest.fixture
def setup(db: Session, settings: Settings) -> tuple[Company, Cycle, dict[int, str]]:
    company = make_company(db, suppliers=2, customers=3, competencies=2)
    cycle = launched_cycle(db, settings)
    return company, cycle, links_by_customer(db, cycle)


def open_page(client: TestClient, link_url: str) -> str:
    """Follow a private link as a browser would; returns the form's token."""
    r = client.get("/r/" + token_of(link_url), follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/rate"
    page = client.get("/rate")
    assert page.status_code == 200
    match = FORM_TOKEN.search(page.text)
    assert match
    return match.group(1)


def test_link_sets_cookie_and_redirects_without_token(
    client: TestClient,
    setup: tuple[Company, Cycle, dict[int, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    company, _cycle, links = setup
    url = links[company.customers[0].id]
    token = token_of(url)
    with caplog.at_level(logging.DEBUG):
        r = client.get("/r/" + token, follow_redirects=False)
        assert r.status_code == 303
        assert token not in r.headers["location"]
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
        cookie = r.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        assert token not in cookie
        page = client.get("/rate")
    assert page.status_code == 200
    assert token not in str(page.url)
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "Supplier 0" in page.text and "Supplier 1" in page.text
    assert "Competency 0" in page.text and "Does A" in page.text  # indicators as hints
    assert "IT" in page.text  # the supplier's department
    # httpx logs the URL it requested: that is the browser's side, not the server's.
    server_log = "\n".join(
        f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith("httpx")
    )
    assert token not in server_log
    assert "/r/[redacted]" in server_log


def test_full_submit_stores_ballots_without_rater(
    client: TestClient,
    db: Session,
    settings: Settings,
    setup: tuple[Company, Cycle, dict[int, str]],
) -> None:
    company, cycle, links = setup
    form_token = open_page(client, links[company.customers[0].id])
    data = form_for(db, cycle, company.suppliers, score="8", form_token=form_token)
    comp = cycle_competency_ids(db, cycle)[0]
    data[f"s{company.suppliers[0].id}-c{comp}"] = "na"
    data[f"s{company.suppliers[0].id}-nps"] = "9"
    data[f"s{company.suppliers[0].id}-comment"] = "  Always helpful  "
    r = client.post("/rate", data=data)
    assert r.status_code == 200, r.text
    assert "were stored anonymously" in r.text
    assert "data-clear-progress" in r.text
    assert ballots(db, settings) == 2 and scores(db, settings) == 4
    pooled = dict(pooled_ballots(db, settings))
    first = pooled[company.suppliers[0].id]
    assert first.nps == 9 and first.comment == "Always helpful"
    assert first.scores[comp] is None
    # The pool row holds nothing readable without SECRET_KEY, and no rater column.
    (row,) = db.scalars(select(PendingSubmission)).all()
    assert b"Always helpful" not in row.sealed
    assert set(PendingSubmission.__table__.columns.keys()) == {"id", "cycle_id", "sealed"}
    invitation = invitation_of(db, cycle, company.customers[0])
    db.refresh(invitation)
    assert invitation.used is True
    # Ballot boxes have no column that could point at a rater, and no timestamp.
    assert set(BallotBox.__table__.columns.keys()) == {
        "cycle_id",
        "supplier_id",
        "ballots",
        "scores",
        "nps",
        "comments",
    }
    # Reopening the link: "already submitted"; a second submit stores nothing.
    again = client.get("/r/" + token_of(links[company.customers[0].id]))
    assert again.status_code == 200 and "Already submitted" in again.text
    r2 = client.post("/rate", data=data)
    assert "Already submitted" in r2.text or r2.status_code == 404
    assert ballots(db, settings) == 2


def test_second_submit_with_the_same_cookie_stores_nothing(
    client: TestClient,
    db: Session,
    settings: Settings,
    setup: tuple[Company, Cycle, dict[int, str]],
) -> None:
    company, cycle, links = setup
    form_token = open_page(client, links[company.customers[1].id])
    cookies = dict(client.cookies)
    data = form_for(db, cycle, company.suppliers, form_token=form_token)
    assert client.post("/rate", data=data).status_code == 200
    client.cookies.update(cookies)  # replay the old cookie
    r = client.post("/rate", data=data)
    assert "Already submitted" in r.text
    assert ballots(db, settings) == 2


BAD_TOKENS = ["unknown-token-0123456789abcdef", "x", "%00", "a" * 300, "ÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿ"]


def test_bad_tokens_get_one_generic_page(
    client: TestClient, db: Session, setup: tuple[Company, Cycle, dict[int, str]]
) -> None:
    company, cycle, links = setup
    good = token_of(links[company.customers[0].id])
    altered = good[:-1] + ("A" if good[-1] != "A" else "B")
    pages = []
    for token in [*BAD_TOKENS[:3], altered]:
        r = client.get("/r/" + token, follow_redirects=False)
        pages.append((r.status_code, r.text))
        assert "set-cookie" not in r.headers or 'p360_rating=""' in r.headers["set-cookie"]
    # The closed-cycle case gives the very same answer.
    cycle.state = CycleState.closed
    db.flush()
    r = client.get("/r/" + token_of(links[company.customers[1].id]), follow_redirects=False)
    pages.append((r.status_code, r.text))
    assert {status for status, _ in pages} == {404}
    assert len({text for _, text in pages}) == 1
    assert "This link does not work" in pages[0][1]


def test_expired_cycle_link_is_generic_too(
    client: TestClient, db: Session, setup: tuple[Company, Cycle, dict[int, str]]
) -> None:
    company, cycle, links = setup
    unknown = client.get("/r/unknown-token-0123456789abcdef")
    cycle.closes_at = cycle.opens_at.replace(year=cycle.opens_at.year - 1)
    cycle.opens_at = cycle.closes_at.replace(day=1, month=1)
    db.flush()
    expired = client.get("/r/" + token_of(links[company.customers[0].id]))
    assert expired.status_code == unknown.status_code == 404
    assert expired.text == unknown.text


def test_too_many_bad_tokens_are_rate_limited(
    client: TestClient, settings: Settings, setup: tuple[Company, Cycle, dict[int, str]]
) -> None:
    _setup = setup
    limit = settings.bad_token_limit_per_minute
    statuses = [
        client.get(f"/r/bad-token-{i:04d}-0123456789").status_code for i in range(limit + 2)
    ]
    assert statuses[:limit] == [404] * limit
    assert statuses[limit:] == [429, 429]
    blocked = client.get("/r/bad-token-9999-0123456789", follow_redirects=False)
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"] == "60"


def test_a_valid_link_opens_even_when_its_network_is_over_the_bad_link_limit(
    client: TestClient, settings: Settings, setup: tuple[Company, Cycle, dict[int, str]]
) -> None:
    # Behind one NAT or proxy, colleagues' mistyped links must not lock every rater out:
    # only failed lookups count, and a good 256-bit link cannot be guessed anyway.
    company, _cycle, links = setup
    limit = settings.bad_token_limit_per_minute
    for i in range(limit + 3):
        client.get(f"/r/mistyped-{i:04d}-0123456789")
    assert client.get("/r/mistyped-again-0123456789").status_code == 429
    for customer in company.customers[:2]:
        r = client.get("/r/" + token_of(links[customer.id]), follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/rate"
        assert client.get("/rate").status_code == 200
    # The good links did not reset the count for bad ones.
    assert client.get("/r/mistyped-still-0123456789").status_code == 429


def test_rate_without_cookie_or_with_forged_cookie(client: TestClient, settings: Settings) -> None:
    assert client.get("/rate").status_code == 404
    client.cookies.set("p360_rating", "1.99999999999.forged")
    assert client.get("/rate").status_code == 404
    for odd in ("1.²³.x", "².1.x", "1.2.ÿ", "", "..", "1.2.3.4"):
        assert rating_pages.read_rating_cookie(settings, odd) is None
    assert client.post("/rate", data={"form_token": "x"}).status_code == 404


def test_expired_rating_cookie_is_refused(
    db: Session, settings: Settings, setup: tuple[Company, Cycle, dict[int, str]]
) -> None:
    company, cycle, _links = setup
    invitation = invitation_of(db, cycle, company.customers[0])
    value = rating_pages.sign_rating_cookie(settings, invitation.id, now=1_000_000)
    assert rating_pages.read_rating_cookie(settings, value) is None
    fresh = rating_pages.sign_rating_cookie(settings, invitation.id)
    assert rating_pages.read_rating_cookie(settings, fresh) == invitation.id
    # Opaque: a new random value each time, naming no invitation to whoever logs it.
    assert rating_pages.sign_rating_cookie(settings, invitation.id) != fresh
    assert f"{invitation.id}." not in fresh
    assert (
        rating_pages.read_rating_cookie(
            settings, fresh[:-2] + ("AA" if fresh[-2:] != "AA" else "BB")
        )
        is None
    )


def test_form_token_is_required(
    client: TestClient, db: Session, setup: tuple[Company, Cycle, dict[int, str]]
) -> None:
    company, cycle, links = setup
    open_page(client, links[company.customers[0].id])
    data = form_for(db, cycle, company.suppliers, form_token="wrong")
    assert client.post("/rate", data=data).status_code == 403
    del data["form_token"]
    assert client.post("/rate", data=data).status_code == 403
    assert stored(db) == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Choose a score"),
        ("11", "Choose one of the scores shown"),
        ("0", "Choose one of the scores shown"),
        ("-3", "Choose one of the scores shown"),
        ("seven", "Choose one of the scores shown"),
        ("7.5", "Choose one of the scores shown"),
        ("1e1", "Choose one of the scores shown"),
    ],
)
def test_bad_scores_show_errors_keep_input_and_store_nothing(
    client: TestClient,
    db: Session,
    setup: tuple[Company, Cycle, dict[int, str]],
    value: str,
    message: str,
) -> None:
    company, cycle, links = setup
    form_token = open_page(client, links[company.customers[0].id])
    data = form_for(db, cycle, company.suppliers, score="6", form_token=form_token)
    comp = cycle_competency_ids(db, cycle)[1]
    bad = f"s{company.suppliers[1].id}-c{comp}"
    data[bad] = value
    data[f"s{company.suppliers[0].id}-comment"] = "Keep <this> text"
    r = client.post("/rate", data=data)
    assert r.status_code == 422
    assert message in r.text
    assert f'id="{bad}-error"' in r.text
    # Everything typed is still there.
    assert "Keep &lt;this&gt; text</textarea>" in r.text
    other = f"s{company.suppliers[0].id}-c{comp}"
    assert f'id="{other}-6" value="6" required checked' in r.text
    assert stored(db) == 0
    invitation = invitation_of(db, cycle, company.customers[0])
    db.refresh(invitation)
    assert invitation.used is False


def test_missing_supplier_answers_store_nothing(
    client: TestClient, db: Session, setup: tuple[Company, Cycle, dict[int, str]]
) -> None:
    company, cycle, links = setup
    form_token = open_page(client, links[company.customers[0].id])
    data = form_for(db, cycle, company.suppliers[:1], form_token=form_token)
    r = client.post("/rate", data=data)
    assert r.status_code == 422
    assert "answers need your attention" in r.text
    assert stored(db) == 0


@pytest.mark.parametrize("field", ["nps", "comment"])
def test_bad_nps_or_too_long_comment(
    client: TestClient, db: Session, setup: tuple[Company, Cycle, dict[int, str]], field: str
) -> None:
    company, cycle, links = setup
    form_token = open_page(client, links[company.customers[0].id])
    data = form_for(db, cycle, company.suppliers, form_token=form_token)
    key = f"s{company.suppliers[0].id}-{field}"
    data[key] = "11" if field == "nps" else "x" * 2001
    r = client.post("/rate", data=data)
    assert r.status_code == 422
    assert f'id="{key}-error"' in r.text
    assert stored(db) == 0


def test_foreign_supplier_is_rejected_and_nothing_stored(
    client: TestClient, db: Session, setup: tuple[Company, Cycle, dict[int, str]]
) -> None:
    company, cycle, links = setup
    form_token = open_page(client, links[company.customers[0].id])
    data = form_for(db, cycle, company.suppliers, form_token=form_token)
    stranger = company.customers[2]  # exists, but is not this customer's supplier
    for comp in cycle_competency_ids(db, cycle):
        data[f"s{stranger.id}-c{comp}"] = "1"
    r = client.post("/rate", data=data)
    assert r.status_code == 422
    assert "The form was changed" in r.text
    assert stored(db) == 0
    data = form_for(db, cycle, company.suppliers, form_token=form_token)
    data[f"s{company.suppliers[0].id}-c999999"] = "5"  # an unknown competency
    assert client.post("/rate", data=data).status_code == 422
    assert stored(db) == 0


def test_rating_page_in_russian(db: Session, settings: Settings, client: TestClient) -> None:
    company = make_company(db, suppliers=1, customers=1, language="ru")
    cycle = launched_cycle(db, settings)
    open_page(client, links_by_customer(db, cycle)[company.customers[0].id])
    page = client.get("/rate")
    assert '<html lang="ru">' in page.text
    assert "Оцените своих коллег" in page.text
    assert "не могу оценить" in page.text


def test_invalid_page_follows_accept_language(client: TestClient) -> None:
    r = client.get("/r/nothing-here-0123456789", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert "Эта ссылка не работает" in r.text


def test_malformed_posts_never_500(
    client: TestClient, db: Session, setup: tuple[Company, Cycle, dict[int, str]]
) -> None:
    company, _cycle, links = setup
    form_token = open_page(client, links[company.customers[0].id])
    for body in (b"\xff\xfe=\x00", b"a=%ZZ&&&=", b"s1-c1=" + b"9" * 5000):
        r = client.post(
            "/rate",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code < 500
    r = client.post("/rate", files={"file": ("a.txt", b"x")}, data={"form_token": form_token})
    assert r.status_code < 500
    assert stored(db) == 0
    invitation = db.scalar(
        select(Invitation).where(Invitation.customer_id == company.customers[0].id)
    )
    assert invitation is not None and invitation.used is False
