"""The paper channel: no email at launch, printed letters, /code end to end, throttling."""

from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry
from app.config import Settings
from app.cycles import paper
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CycleEmployee, Invitation
from app.mail.models import OutboxMessage
from tests.auth.helpers import SignedIn, sign_in
from tests.cycles.helpers import (
    Company,
    form_for,
    invitation_of,
    launched_cycle,
    make_company,
    pooled_ballots,
)

CODE_ON_PAGE = re.compile(r"\b([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})\b")
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


@pytest.fixture
def paper_company(db: Session, settings: Settings) -> tuple[Company, Cycle]:
    """Three customers in Sales rate two suppliers; two of the customers are on paper."""
    company = make_company(db, suppliers=2, customers=3, competencies=2)
    company.customers[0].full_name = "Пётр Бумажный"
    company.customers[0].language = "ru"
    for customer in company.customers[:2]:
        customer.paper_channel = True
    db.flush()
    return company, launched_cycle(db, settings)


def _print(client: TestClient, signed: SignedIn, cycle: Cycle, key: str) -> PdfReader:
    r = client.post(f"/cycles/{cycle.id}/letters/{key}", data={"csrf_token": signed.csrf})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["cache-control"] == "no-store"
    assert "attachment" in r.headers["content-disposition"]
    return PdfReader(io.BytesIO(r.content))


def _codes(reader: PdfReader) -> list[str]:
    codes = []
    for pdf_page in reader.pages:
        found = CODE_ON_PAGE.findall(pdf_page.extract_text())
        assert len(found) == 1
        codes.append(found[0])
    return codes


def test_code_alphabet_and_typing() -> None:
    codes = {paper.new_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(c) == paper.CODE_LENGTH and set(c) <= set(paper.ALPHABET) for c in codes)
    # 32 symbols, 12 of them: at least 50 bits.
    assert paper.CODE_LENGTH * (len(paper.ALPHABET).bit_length() - 1) >= 50
    assert not set("ILOU") & set(paper.ALPHABET)
    code = "AB0D1FGH2JKM"
    assert paper.normalize_code(" abod-ifgh 2jkm ") == code  # o -> 0, i -> 1
    assert paper.normalize_code(paper.display_code(code)) == code
    assert paper.normalize_code("AB0D1FGH2JK") is None
    assert paper.normalize_code("AB0D1FGH2JKU") is None  # U is not in the alphabet
    assert paper.normalize_code("x" * 1000) is None


def test_paper_customers_get_no_email_and_no_reminder(
    db: Session, settings: Settings, paper_company: tuple[Company, Cycle]
) -> None:
    company, cycle = paper_company
    addressees = set(db.scalars(select(OutboxMessage.to_address)))
    assert addressees == {company.customers[2].email}
    for customer in company.customers[:2]:
        inv = invitation_of(db, cycle, customer)
        assert inv.by_paper and inv.token_hash is None and inv.code_hash is None
    assert cycles_service.send_reminders(db, cycle_id=cycle.id, settings=settings) == 1


def test_letters_pdf_has_a_page_per_person_and_only_hashes_are_kept(
    client: TestClient, db: Session, settings: Settings, paper_company: tuple[Company, Cycle]
) -> None:
    company, cycle = paper_company
    signed = sign_in(client, db)
    page = client.get(f"/cycles/{cycle.id}/letters")
    assert page.status_code == 200
    sales = company.departments[0]
    assert f"/cycles/{cycle.id}/letters/{sales.id}" in page.text
    it = company.departments[1]
    assert f"/letters/{it.id}" not in page.text  # suppliers are not on paper

    reader = _print(client, signed, cycle, str(sales.id))
    assert len(reader.pages) == 2
    texts = [p.extract_text() for p in reader.pages]
    assert "Пётр Бумажный" in texts[1] and "Ваш личный код" in texts[1]
    assert company.customers[1].full_name in texts[0] and "Your personal code" in texts[0]
    assert all(f"{settings.base_url}/code" in text for text in texts)
    codes = _codes(reader)
    stored = set(db.scalars(select(Invitation.code_hash).where(Invitation.code_hash.is_not(None))))
    assert stored == {paper.hash_code(settings.secret_key, c.replace("-", "")) for c in codes}
    for code in codes:  # the code itself is nowhere in the database
        assert not db.scalar(
            select(func.count()).select_from(Invitation).where(Invitation.code_hash.contains(code))
        )
    audit = db.scalars(select(AuditEntry).where(AuditEntry.action == "print letters")).one()
    assert "2 letters" in (audit.detail or "") and "Sales" in (audit.detail or "")

    # Nobody on paper there; a key that is no department.
    r = client.post(f"/cycles/{cycle.id}/letters/{it.id}", data={"csrf_token": signed.csrf})
    assert r.status_code == 404
    r = client.post(f"/cycles/{cycle.id}/letters/x1", data={"csrf_token": signed.csrf})
    assert r.status_code in (404, 422)


def test_a_code_is_used_end_to_end_and_only_once(
    client: TestClient, db: Session, settings: Settings, paper_company: tuple[Company, Cycle]
) -> None:
    company, cycle = paper_company
    signed = sign_in(client, db)
    codes = _codes(_print(client, signed, cycle, str(company.departments[0].id)))
    client.cookies.clear()

    entry = client.get("/code")
    assert entry.status_code == 200 and 'name="code"' in entry.text
    typed = codes[0].lower().replace("-", " ")
    r = client.post("/code", data={"code": typed}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/rate"
    form = client.get("/rate")
    assert form.status_code == 200
    assert company.customers[1].full_name in form.text  # pages are in name order
    assert 'data-progress-key=""' in form.text  # nothing kept in a shared browser
    token = FORM_TOKEN.search(form.text)
    assert token
    data = form_for(db, cycle, company.suppliers, form_token=token.group(1))
    done = client.post("/rate", data=data)
    assert done.status_code == 200, done.text
    assert 'href="/code"' in done.text
    assert "storage" in done.headers["clear-site-data"]
    assert not client.cookies  # the session is forgotten
    assert len(pooled_ballots(db, settings)) == 2

    again = client.post("/code", data={"code": codes[0]}, follow_redirects=False)
    assert again.status_code == 200 and "Already submitted" in again.text
    assert client.get("/rate").status_code == 404


def test_printing_again_replaces_the_earlier_codes(
    client: TestClient, db: Session, paper_company: tuple[Company, Cycle]
) -> None:
    company, cycle = paper_company
    signed = sign_in(client, db)
    key = str(company.departments[0].id)
    first = _codes(_print(client, signed, cycle, key))
    second = _codes(_print(client, signed, cycle, key))
    assert not set(first) & set(second)
    assert client.post("/code", data={"code": first[0]}).status_code == 404
    r = client.post("/code", data={"code": second[0]}, follow_redirects=False)
    assert r.status_code == 303


def test_wrong_codes_are_throttled_and_then_even_a_right_one_waits(
    client: TestClient, db: Session, settings: Settings, paper_company: tuple[Company, Cycle]
) -> None:
    company, cycle = paper_company
    signed = sign_in(client, db)
    right = _codes(_print(client, signed, cycle, str(company.departments[0].id)))[0]
    limit = settings.bad_code_limit_per_minute
    statuses = [
        client.post("/code", data={"code": f"ZZZZ-ZZZZ-{i:04d}"}).status_code
        for i in range(limit + 1)
    ]
    assert statuses == [404] * limit + [429]
    blocked = client.post("/code", data={"code": right}, follow_redirects=False)
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "60"
    assert "Too many codes" in blocked.text


def test_paper_raters_need_not_count_toward_k(
    db: Session, settings: Settings, paper_company: tuple[Company, Cycle]
) -> None:
    company, _cycle = paper_company
    strict = settings.model_copy(update={"paper_raters_count_toward_k": False})
    cycle = launched_cycle(db, strict)
    reasons = dict(
        db.execute(
            select(CycleEmployee.employee_id, CycleEmployee.not_counting_reason).where(
                CycleEmployee.cycle_id == cycle.id,
                CycleEmployee.employee_id.in_([c.id for c in company.customers]),
            )
        ).all()
    )
    assert reasons == {
        company.customers[0].id: cycles_service.NOT_COUNTING_PAPER,
        company.customers[1].id: cycles_service.NOT_COUNTING_PAPER,
        company.customers[2].id: None,
    }
