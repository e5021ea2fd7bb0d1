"""Focus areas first: the next cycle's report, trend chart and pages open with the change
on the competencies agreed after the previous cycle."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app import lifecycle
from app.config import Settings
from app.cycles.models import Cycle
from app.mail import service as mail_service
from app.mail.models import OutboxMessage
from app.matrix.models import MatrixLink
from app.ratings import service as ratings_service
from app.ratings.schemas import SupplierAnswer
from app.reports import charts, feedback, personal
from app.reports.schemas import CompetencyMean, CycleRef, TrendPoint
from app.reports.service import competencies, employee_result
from tests.auth.helpers import sign_in
from tests.conftest import TEST_SECRET_KEY
from tests.cycles.helpers import (
    Company,
    cycle_competency_ids,
    invitation_of,
    launched_cycle,
    make_company,
)
from tests.factories import make_employee

# Competency 0, 1, 2: the first quarter, then the second.
FIRST = [5, 6, 4]
SECOND = [9, 8, 7]


def _run_cycle(
    db: Session,
    settings: Settings,
    company: Company,
    *,
    start: date,
    scores: list[int],
    scale_max: int = 10,
) -> Cycle:
    """Every customer rates supplier 0 (4 raters); supplier 1 has two (below k = 3)."""
    cycle = launched_cycle(
        db,
        settings,
        period_start=start,
        period_end=start + timedelta(days=89),
        scale_max=scale_max,
    )
    ids = cycle_competency_ids(db, cycle)
    for i, customer in enumerate(company.customers):
        suppliers = company.suppliers if i < 2 else company.suppliers[:1]
        answer = {
            s.id: SupplierAnswer(scores=dict(zip(ids, scores, strict=True))) for s in suppliers
        }
        ratings_service.submit_answers(
            db, invitation_id=invitation_of(db, cycle, customer).id, answers=answer
        )
    return lifecycle.close_cycle(db, cycle_id=cycle.id, min_raters=3)


@pytest.fixture
def quarters(db: Session, settings: Settings) -> dict[str, Any]:
    return _quarters(db, settings)


def _quarters(
    db: Session, settings: Settings, *, first_scores: list[int] = FIRST, first_scale: int = 10
) -> dict[str, Any]:
    """Two closed quarters; after the first, supplier 0 and their manager agreed on
    Competency 2 and Competency 1."""
    company = make_company(db, suppliers=2, customers=4, competencies=3)
    boss = make_employee(db, department=company.departments[1], full_name="Boss")
    company.suppliers[0].manager_id = boss.id
    db.execute(
        delete(MatrixLink).where(
            MatrixLink.supplier_id == company.suppliers[1].id,
            MatrixLink.customer_id.in_([c.id for c in company.customers[2:]]),
        )
    )
    db.flush()
    first = _run_cycle(
        db, settings, company, start=date(2026, 4, 1), scores=first_scores, scale_max=first_scale
    )
    codes = {c.name: c.code for c in competencies(db, cycle_id=first.id)}
    supplier = company.suppliers[0]
    personal.choose_focus(
        db,
        cycle_id=first.id,
        employee_id=supplier.id,
        codes=[codes["Competency 2"], codes["Competency 1"]],
        chosen_by="boss@example.com",
        agree=True,
    )
    db.execute(delete(OutboxMessage))
    second = _run_cycle(db, settings, company, start=date(2026, 7, 1), scores=SECOND)
    return {
        "company": company,
        "first": first,
        "second": second,
        "supplier": supplier,
        "codes": codes,
    }


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_feedback_report_opens_with_the_focus_areas_agreed_last_cycle(
    db: Session, quarters: dict[str, Any]
) -> None:
    first, second, supplier = quarters["first"], quarters["second"], quarters["supplier"]
    report = feedback.feedback_report(db, cycle_id=second.id, employee_id=supplier.id)
    reader = PdfReader(io.BytesIO(report.content))
    first_page = _flat(reader.pages[0].extract_text())
    text = _flat("\n".join(page.extract_text() for page in reader.pages))

    focus_at = first_page.index("Focus areas agreed last cycle")
    assert focus_at < first_page.index("Customer-orientation coefficient")
    assert focus_at < text.index("Competency profile")
    section = first_page[focus_at : first_page.index("Customer-orientation coefficient")]
    # Then and now, with the change: 6 -> 8 and 4 -> 7; the other competency is not here.
    assert re.search(r"Competency 1 6\.00 8\.00 \+2\.00", section), section
    assert re.search(r"Competency 2 4\.00 7\.00 \+3\.00", section), section
    assert "Competency 0" not in section
    assert f"{first.name}" in section and f"{second.name}" in section
    # Honest about uncertainty: no interval for a competency, the coefficient's instead.
    assert "without an interval" in section and "95% interval" in section

    # The profile table lists the focus competencies first, marked.
    profile = text[text.index("Competency profile") :]
    assert (
        profile.index("Competency 1")
        < profile.index("Competency 2")
        < profile.index("Competency 0")
    )
    assert "(focus area)" in profile

    # The earlier report has no such section: nothing was agreed before it.
    earlier = feedback.feedback_report(db, cycle_id=first.id, employee_id=supplier.id)
    earlier_text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(earlier.content)).pages)
    assert "Focus areas agreed last cycle" not in earlier_text


def test_below_k_the_report_has_no_focus_section(db: Session, quarters: dict[str, Any]) -> None:
    below = quarters["company"].suppliers[1]
    report = feedback.feedback_report(db, cycle_id=quarters["second"].id, employee_id=below.id)
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(report.content)).pages)
    assert "Not enough responses" in text and "Focus areas" not in text


def test_trend_chart_gets_the_focus_competencies_first(
    db: Session, quarters: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    second, supplier, codes = quarters["second"], quarters["supplier"], quarters["codes"]
    passed: list[Any] = []
    real = charts.trend_chart

    def spy(*args: Any, **kwargs: Any) -> Any:
        passed.append(kwargs.get("focus", ()))
        return real(*args, **kwargs)

    monkeypatch.setattr(charts, "trend_chart", spy)
    fig = charts.build_chart(
        db, cycle_id=second.id, chart="trend-employee", employee=supplier.external_id
    )
    assert passed == [
        [(codes["Competency 1"], "Competency 1"), (codes["Competency 2"], "Competency 2")]
    ]
    # The focus panel is drawn first (on top), one labelled line per focus area.
    focus_ax, coefficient_ax = fig.axes[0], fig.axes[1]
    assert focus_ax.get_position().y0 > coefficient_ax.get_position().y0
    lines = [line for line in focus_ax.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in lines] == [
        "focus area: Competency 1",
        "focus area: Competency 2",
    ]
    assert list(lines[0].get_ydata()) == [6.0, 8.0]
    assert list(lines[1].get_ydata()) == [4.0, 7.0]
    png = charts.render(fig, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_a_new_focus_choice_is_a_new_chart_not_a_cached_one(
    db: Session, quarters: dict[str, Any], tmp_path: Path
) -> None:
    """The first cycle has no earlier plan: its chart shows the areas chosen on it."""
    first, supplier, codes = quarters["first"], quarters["supplier"], quarters["codes"]
    args = {"cycle_id": first.id, "chart": "trend-employee", "fmt": "svg"}
    with_plan = charts.chart_bytes(
        db,
        **args,
        employee=supplier.external_id,
        cache_dir=tmp_path,  # type: ignore[arg-type]
    )
    assert b"focus area: Competency 1" in with_plan
    personal.choose_focus(
        db,
        cycle_id=first.id,
        employee_id=supplier.id,
        codes=[codes["Competency 0"], codes["Competency 2"]],
        chosen_by=personal.EMPLOYEE_CHOICE,
    )
    changed = charts.chart_bytes(
        db,
        **args,
        employee=supplier.external_id,
        cache_dir=tmp_path,  # type: ignore[arg-type]
    )
    assert b"focus area: Competency 0" in changed and b"focus area: Competency 1" not in changed


def _rows(page: str) -> list[str]:
    table = page[page.index('id="competencies-h"') :]
    table = table[: table.index("</table>")]
    return re.findall(r'<th scope="row">(Competency \d)', table)


def test_pages_list_the_focus_competencies_first(
    client: TestClient, db: Session, settings: Settings, quarters: dict[str, Any]
) -> None:
    second, supplier = quarters["second"], quarters["supplier"]
    sign_in(client, db)
    hr_page = client.get(f"/results/{second.id}/employees/{supplier.id}").text
    assert _rows(hr_page) == ["Competency 1", "Competency 2", "Competency 0"]
    assert hr_page.count('class="focus-row"') == 2
    client.cookies.clear()

    personal.send_personal_results(db, cycle_id=second.id, settings=settings)
    secret = db.scalar(
        select(OutboxMessage.secret_link).where(
            OutboxMessage.kind == "results", OutboxMessage.to_address == supplier.email
        )
    )
    link = str(mail_service.open_link(TEST_SECRET_KEY, secret))
    db.commit()
    token = link.rsplit("/my-results/", 1)[1]
    assert client.get(f"/my-results/{token}", follow_redirects=False).status_code == 303
    own = client.get("/my-results").text
    assert _rows(own) == ["Competency 1", "Competency 2", "Competency 0"]
    assert own.index("Focus areas since") < own.index('id="competencies-h"')


# --- without a database ---------------------------------------------------------------------


def _ref(n: int, scale: tuple[int, int] = (1, 10)) -> CycleRef:
    return CycleRef(
        id=n,
        name=f"2026-Q{n}",
        period_start=date(2026, 1, 1),
        period_end=date(2026, 3, 31),
        scale_min=scale[0],
        scale_max=scale[1],
        min_raters=3,
    )


def _mean(code: str, mean: float) -> CompetencyMean:
    return CompetencyMean(code=code, name=code.title(), mean=mean, count=4)


def test_focus_first_keeps_the_others_in_their_order() -> None:
    rows = [_mean(c, 5) for c in ("a", "b", "c", "d")]
    assert [m.code for m in personal.focus_first(rows, ["c", "a"])] == ["c", "a", "b", "d"]
    assert [m.code for m in personal.focus_first(rows, [])] == ["a", "b", "c", "d"]


def test_focus_series_rescales_and_skips_what_was_not_shown() -> None:
    points = [
        TrendPoint(cycle=_ref(1, (1, 5)), status="ok", coefficient=3, competencies=[_mean("a", 3)]),
        TrendPoint(cycle=_ref(2), status="not_enough_responses"),
        TrendPoint(cycle=_ref(3), status="ok", coefficient=7, competencies=[_mean("a", 8)]),
    ]
    series = charts.focus_series(points, [("b", "B"), ("a", "A")])
    assert [(s.code, s.means) for s in series] == [("a", [5.5, None, 8.0])]  # b: never shown


def test_areas_the_manager_did_not_confirm_are_called_so(
    db: Session, quarters: dict[str, Any]
) -> None:
    first, second, supplier, codes = (
        quarters["first"],
        quarters["second"],
        quarters["supplier"],
        quarters["codes"],
    )
    russian = feedback.feedback_report(db, cycle_id=second.id, employee_id=supplier.id, lang="ru")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(russian.content)).pages)
    assert "Направления развития, согласованные в прошлом цикле" in _flat(text)
    # The person changes the areas afterwards: the manager's agreement is withdrawn.
    personal.choose_focus(
        db,
        cycle_id=first.id,
        employee_id=supplier.id,
        codes=[codes["Competency 0"], codes["Competency 1"]],
        chosen_by=personal.EMPLOYEE_CHOICE,
    )
    report = feedback.feedback_report(db, cycle_id=second.id, employee_id=supplier.id)
    first_page = _flat(PdfReader(io.BytesIO(report.content)).pages[0].extract_text())
    assert "Focus areas chosen last cycle" in first_page
    assert "not confirmed by the manager" in first_page
    assert re.search(r"Competency 0 5\.00 9\.00 \+4\.00", first_page)


def test_an_earlier_cycle_on_another_scale_is_mapped_onto_this_one(
    db: Session, settings: Settings
) -> None:
    data = _quarters(db, settings, first_scores=[3, 4, 2], first_scale=5)
    second, supplier = data["second"], data["supplier"]
    result = employee_result(db, cycle_id=second.id, employee_id=supplier.id)
    view = personal.focus_view(db, cycle_id=second.id, employee_id=supplier.id, result=result)
    assert view.rescaled
    # 4 of 1-5 is 7.75 of 1-10; 2 of 1-5 is 3.25.
    assert [(c.name, c.before, c.now) for c in view.changes] == [
        ("Competency 1", 7.75, 8.0),
        ("Competency 2", 3.25, 7.0),
    ]
    report = feedback.feedback_report(db, cycle_id=second.id, employee_id=supplier.id)
    first_page = _flat(PdfReader(io.BytesIO(report.content)).pages[0].extract_text())
    assert re.search(r"Competency 1 7\.75 8\.00 \+0\.25", first_page)
    assert "mapped onto this cycle's scale" in first_page
