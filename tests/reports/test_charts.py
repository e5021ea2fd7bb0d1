"""Charts are valid PNG / SVG / PDF files, carry the cycle and k, and are cached."""

from __future__ import annotations

import io
import os
import random
import time
from datetime import date
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import matplotlib.image
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import lifecycle, processes
from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.errors import Invalid, NotFound
from app.migrate import upgrade
from app.reports import charts, service
from app.reports.filenames import slug
from app.reports.models import DepartmentResult
from tests.reports.factories import build_three_levels, close, random_company, random_org


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


def test_charts_are_rendered_once_then_read_from_disk(
    db: Session, two_cycles: dict[str, Any], tmp_path: Path
) -> None:
    cycle = two_cycles["cycle"]
    first = charts.chart_bytes(
        db, cycle_id=cycle.id, chart="heatmap", fmt="png", cache_dir=tmp_path
    )
    files = list(tmp_path.rglob("*.png"))
    assert len(files) == 1 and files[0].read_bytes() == first
    assert files[0].parts[-3] == f"cycle-{cycle.id}"
    # The second request reads the file: what is on disk is what comes back.
    files[0].write_bytes(b"from disk")
    assert (
        charts.chart_bytes(db, cycle_id=cycle.id, chart="heatmap", fmt="png", cache_dir=tmp_path)
        == b"from disk"
    )
    # Other parameters are other files; selectors never become path parts.
    charts.chart_bytes(
        db,
        cycle_id=cycle.id,
        chart="heatmap",
        fmt="png",
        department=two_cycles["department"].external_id,
        cache_dir=tmp_path,
    )
    assert len(list(tmp_path.rglob("*.png"))) == 2
    assert not list(tmp_path.rglob("*.part"))
    # Recomputed results: a new directory, the old one removed.
    close(db, cycle)
    again = charts.chart_bytes(
        db, cycle_id=cycle.id, chart="heatmap", fmt="png", cache_dir=tmp_path
    )
    assert again != b"from disk"
    assert len(list((tmp_path / f"cycle-{cycle.id}").iterdir())) == 1


def _departments_with_results(session: Session, cycle_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(DepartmentResult)
            .where(DepartmentResult.cycle_id == cycle_id)
        )
        or 0
    )


def test_the_worker_renders_every_department_chart_ahead(
    db: Session, two_cycles: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cycle = two_cycles["cycle"]
    departments = _departments_with_results(db, cycle.id)
    # A budget too small for the whole cycle: it stops, and the next pass resumes.
    assert not charts.prerender_department_charts(
        db, cycle_id=cycle.id, cache_dir=tmp_path, seconds=0
    )
    assert charts.prerender_department_charts(
        db, cycle_id=cycle.id, cache_dir=tmp_path, seconds=600
    )
    assert len(list(tmp_path.rglob("*.png"))) == departments * len(charts.DEPARTMENT_CHARTS)

    # Every request for those charts is now read from disk, by id or by external id.
    def no_rendering(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("rendered although the chart was on disk")

    monkeypatch.setattr(charts, "render", no_rendering)
    department = two_cycles["department"]
    for selector in (str(department.id), department.external_id):
        for chart in charts.DEPARTMENT_CHARTS:
            data = charts.chart_bytes(
                db,
                cycle_id=cycle.id,
                chart=chart,
                fmt="png",
                department=selector,
                cache_dir=tmp_path,
            )
            assert_valid(data, "png")
    # Done is remembered: the next pass does nothing.
    assert charts.prerender_department_charts(db, cycle_id=cycle.id, cache_dir=tmp_path, seconds=0)
    with pytest.raises(AssertionError):
        charts.chart_bytes(db, cycle_id=cycle.id, chart="heatmap", fmt="svg", cache_dir=tmp_path)


def test_department_chart_shows_the_departments_of_the_table(
    db: Session, two_cycles: dict[str, Any]
) -> None:
    cycle_id = two_cycles["cycle"].id
    table = service.department_results(db, cycle_id=cycle_id, max_level=2)
    shown, total = charts.chart_departments(db, cycle_id=cycle_id, department=None)
    assert [d.department_id for d in shown] == [d.department_id for d in table]
    assert total == len(table)
    svg = charts.chart_bytes(db, cycle_id=cycle_id, chart="departments", fmt="svg").decode()
    for d in table:
        assert d.name[:30] in svg


def test_download_names_say_what_the_file_is(db: Session, two_cycles: dict[str, Any]) -> None:
    cycle, emp = two_cycles["cycle"], two_cycles["employee"]
    dept = two_cycles["department"]
    name = charts.download_name(
        db, cycle_id=cycle.id, chart="trend-employee", fmt="png", employee=emp.external_id
    )
    assert name == f"c-2026-q2-{slug(emp.full_name)}-trend-employee.png"
    assert (
        charts.download_name(db, cycle_id=cycle.id, chart="heatmap", fmt="svg")
        == "c-2026-q2-company-heatmap.svg"
    )
    assert (
        charts.download_name(
            db, cycle_id=cycle.id, chart="departments", fmt="pdf", department=dept.external_id
        )
        == f"c-2026-q2-{slug(dept.name)}-departments.pdf"
    )


def test_chart_processes_draw_every_department_chart_at_a_lower_priority(
    fresh_database_url: str, settings: Settings, tmp_path: Path
) -> None:
    """The worker's job hands the drawing to low-priority processes (spawned, with their
    own database connections) and only checks on them; the cycle is marked done once
    every department's charts are on disk. A database of the test's own: the processes
    open it by its URL, as the worker's do."""
    upgrade(fresh_database_url)
    engine = make_engine(fresh_database_url)
    factory = make_sessionmaker(engine)
    with factory() as session:
        cycle_id = int(build_three_levels(session, name="P-2026-Q3")["cycle"].id)
        session.commit()
        departments = _departments_with_results(session, cycle_id)
    drawing = settings.model_copy(
        update={
            "database_url": fresh_database_url,
            "chart_processes": 2,
            "chart_cache_dir": tmp_path,
        }
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.rglob(charts.PRERENDERED)):
            assert time.monotonic() < deadline, "the chart processes did not finish"
            lifecycle.prerender_charts_job(drawing, engine, factory)
            time.sleep(0.1)
        drawn = list(tmp_path.rglob("*.png"))
        assert len(drawn) == departments * len(charts.DEPARTMENT_CHARTS)
        for path in drawn:
            assert_valid(path.read_bytes(), "png")
        # The processes that drew run behind the web server for the CPU.
        theirs = processes.low_priority_pool(2).submit(os.nice, 0).result(timeout=60)
        assert theirs >= min(19, os.nice(0) + processes.LOWER_PRIORITY)
    finally:
        processes.shut_down()
        engine.dispose()
