"""Charts are valid PNG / SVG / PDF files, carry the cycle and k, and are cached."""

from __future__ import annotations

import io
import random
import re
from datetime import date
from typing import Any
from xml.etree import ElementTree

import matplotlib.image
import pytest
from sqlalchemy.orm import Session

from app.errors import Invalid, NotFound
from app.reports import charts
from tests.reports.factories import close, random_company, random_org


@pytest.fixture
def two_cycles(db: Session) -> dict[str, Any]:
    rng = random.Random(5)
    org = random_org(db, rng, employees=50, departments=8)
    first = random_company(db, rng, org=org, name="C-2026-Q1", period_start=date(2026, 1, 1))
    close(db, first.cycle)
    second = random_company(db, rng, org=org, name="C-2026-Q2", period_start=date(2026, 4, 1))
    close(db, second.cycle)
    _depts, _parents, emps = org
    supplier = next(
        e
        for e in emps
        if e.id in second.data.suppliers and len(second.data.ballots.get(e.id, ())) >= 3
    )
    return {"cycle": second.cycle, "employee": supplier, "department": org[0][0]}


def assert_valid(data: bytes, fmt: str) -> None:
    if fmt == "png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    elif fmt == "svg":
        root = ElementTree.fromstring(data)  # noqa: S314 - our own chart
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    else:
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")


@pytest.mark.parametrize("chart", charts.CHARTS)
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_every_chart_in_every_format(
    db: Session, two_cycles: dict[str, Any], chart: str, fmt: str
) -> None:
    data = charts.chart_bytes(
        db,
        cycle_id=two_cycles["cycle"].id,
        chart=chart,
        fmt=fmt,
        department=two_cycles["department"].external_id,
        employee=two_cycles["employee"].external_id,
    )
    assert_valid(data, fmt)
    if fmt == "svg":
        text = data.decode()
        assert "C-2026-Q2" in text and "k = 3" in text


def test_trend_shows_both_quarters(db: Session, two_cycles: dict[str, Any]) -> None:
    svg = charts.chart_bytes(
        db, cycle_id=two_cycles["cycle"].id, chart="trend-company", fmt="svg"
    ).decode()
    assert "C-2026-Q1" in svg and "C-2026-Q2" in svg


def test_unknown_chart_or_format(db: Session, two_cycles: dict[str, Any]) -> None:
    cycle_id = two_cycles["cycle"].id
    with pytest.raises(NotFound):
        charts.chart_bytes(db, cycle_id=cycle_id, chart="pie", fmt="png")
    with pytest.raises(NotFound):
        charts.chart_bytes(db, cycle_id=cycle_id, chart="heatmap", fmt="jpg")
    with pytest.raises(Invalid):
        charts.chart_bytes(db, cycle_id=cycle_id, chart="employee", fmt="png")
    with pytest.raises(NotFound):
        charts.chart_bytes(
            db, cycle_id=cycle_id, chart="trend-department", fmt="png", department="zzz"
        )


def test_cache_serves_the_same_bytes(db: Session, two_cycles: dict[str, Any]) -> None:
    cache = charts.ChartCache(size=2)
    cycle_id = two_cycles["cycle"].id
    first = charts.chart_bytes(db, cycle_id=cycle_id, chart="heatmap", fmt="png", cache=cache)
    assert (
        charts.chart_bytes(db, cycle_id=cycle_id, chart="heatmap", fmt="png", cache=cache) is first
    )
    charts.chart_bytes(db, cycle_id=cycle_id, chart="departments", fmt="png", cache=cache)
    charts.chart_bytes(db, cycle_id=cycle_id, chart="distribution", fmt="png", cache=cache)
    assert len(cache._items) == 2  # the oldest was evicted


def test_feedback_report_is_a_multi_page_pdf(db: Session, two_cycles: dict[str, Any]) -> None:
    data = charts.feedback_report(
        db, cycle_id=two_cycles["cycle"].id, employee_id=two_cycles["employee"].id
    )
    assert_valid(data, "pdf")
    # summary, competency profile, trend, comments
    assert len(re.findall(rb"/Type\s*/Page(?!s)", data)) == 4
