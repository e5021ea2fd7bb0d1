"""Chart layout and rendering, without a database.

Every label inside the figure, labels around the axes not running into each other, long
names cut short, no text below 9 pt, PNG at twice screen resolution, and value axes that
show the data and its intervals rather than the whole scale.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
from collections.abc import Callable
from datetime import date

import matplotlib.image
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from app.reports import charts
from app.reports.schemas import (
    CompanyResultRead,
    CompetencyMean,
    CycleRef,
    DepartmentResultRead,
    EmployeeResultRead,
    HistogramRead,
    TrendPoint,
)

LONG = "Business Applications and Integration Services of the Northern Region and Beyond"
CYRILLIC = "Департамент обслуживания ключевых клиентов Северо-Западного региона"
CODES = [
    ("professionalism", "Professionalism"),
    ("responsiveness", "Responsiveness"),
    ("quality", "Quality of work"),
    ("communication", "Communication"),
    ("teamwork", "Teamwork"),
    ("reliability", "Reliability"),
    ("initiative", "Initiative"),
    ("ownership", "Ownership"),
]


def cycle(n: int = 2, name: str | None = None, scale: tuple[int, int] = (1, 10)) -> CycleRef:
    return CycleRef(
        id=n,
        name=name or f"C-2026-Q{n}",
        period_start=date(2026, 1, 1),
        period_end=date(2026, 3, 31),
        scale_min=scale[0],
        scale_max=scale[1],
        min_raters=3,
    )


def means(codes: list[tuple[str, str]], seed: int) -> list[CompetencyMean]:
    # deterministic values across the scale, some competencies missing
    return [
        CompetencyMean(code=c, name=n, mean=1 + (seed * 7 + j * 3) % 90 / 10, count=5)
        for j, (c, n) in enumerate(codes)
        if (seed + j) % 5
    ]


def departments(
    n: int, name: Callable[[int], str] = lambda i: f"Team {i}.{i + 1}"
) -> list[DepartmentResultRead]:
    return [
        DepartmentResultRead(
            department_id=i + 1,
            external_id=f"D{i}",
            name=name(i),
            parent_id=None if i == 0 else 1,
            level=1 if i == 0 else 2,
            suppliers=10,
            employees_included=5 + i,
            coefficient=None if i % 7 == 5 else 4 + i % 6,
            competencies=[] if i % 7 == 5 else means(CODES, i),
        )
        for i in range(n)
    ]


def company() -> CompanyResultRead:
    return CompanyResultRead(
        cycle=cycle(),
        suppliers=50000,
        employees_included=48000,
        coefficient=7.1,
        invited=50000,
        responded=48000,
        distribution=HistogramRead(
            edges=[1 + i * 0.9 for i in range(11)],
            counts=[0, 500, 1000, 2500, 5000, 10000, 15000, 10000, 3000, 1000],
        ),
        competencies=[CompetencyMean(code=c, name=n, mean=6.5, count=99) for c, n in CODES],
    )


def employee(full_name: str = "Margaret Hale") -> EmployeeResultRead:
    return EmployeeResultRead(
        employee_id=1,
        external_id="E1",
        full_name=full_name,
        department_id=1,
        status="ok",
        raters=7,
        coefficient=7.3,
        competencies=means(CODES, 3),
    )


def trend(n: int) -> list[TrendPoint]:
    return [
        TrendPoint(
            cycle=cycle(i + 1, scale=(1, 5) if i == 0 else (1, 10)),
            status="not_enough_responses" if i == 1 else "ok",
            coefficient=None if i == 1 else (3.0 if i == 0 else 5 + i % 4),
            ci_low=None if i == 1 else 4.5,
            ci_high=None if i == 1 else 8.5,
        )
        for i in range(n)
    ]


def focus_trend(n: int) -> list[TrendPoint]:
    """A trend whose points carry competency means (for the focus panel)."""
    return [
        p.model_copy(update={"competencies": means(CODES, i)} if p.coefficient else {})
        for i, p in enumerate(trend(n))
    ]


FIGURES: dict[str, Callable[[], Figure]] = {
    "departments-1": lambda: charts.departments_chart(cycle(), departments(1), 7.0),
    "departments-30-long": lambda: charts.departments_chart(
        cycle(), departments(30, lambda i: f"{LONG} {i}" if i % 3 == 0 else f"Team {i}"), 7.0
    ),
    "departments-40-long-cyrillic": lambda: charts.departments_chart(
        cycle(name="Quarterly review 2026 Q3 — all staff, all sites"),
        departments(40, lambda i: f"{CYRILLIC} {i}" if i % 2 else f"Ж{'Ш' * 40}"),
        7.0,
        note="the 40 largest of 57 departments",
    ),
    "heatmap-1": lambda: charts.heatmap_chart(cycle(), departments(1), CODES),
    "heatmap-14": lambda: charts.heatmap_chart(cycle(), departments(14), CODES),
    "heatmap-30-long": lambda: charts.heatmap_chart(
        cycle(name="Quarterly review 2026 Q3 — all staff, all sites"),
        departments(30, lambda i: f"{LONG} {i}" if i % 3 == 0 else f"Team {i}"),
        [(c, f"{n} and Stakeholder Management") for c, n in CODES],
    ),
    "heatmap-40-long-cyrillic": lambda: charts.heatmap_chart(
        cycle(name="Quarterly review 2026 Q3 — all staff, all sites"),
        departments(40, lambda i: f"{CYRILLIC} {i}" if i % 2 else f"Ж{'Ш' * 40}"),
        [(c, f"Ответственность и {n}") for c, n in CODES],
        note="the 40 largest of 57 departments",
    ),
    "heatmap-short-names-long-competencies": lambda: charts.heatmap_chart(
        cycle(), departments(2, lambda i: "HR"), [(c, f"{n} and Delivery") for c, n in CODES]
    ),
    "heatmap-2-competencies": lambda: charts.heatmap_chart(cycle(), departments(3), CODES[:2]),
    "distribution": lambda: charts.distribution_chart(cycle(), company()),
    "employee": lambda: charts.employee_profile(cycle(), employee(), company()),
    "employee-long-name": lambda: charts.employee_profile(
        cycle(), employee("Maximilian " + LONG), company()
    ),
    "trend-2": lambda: charts.trend_chart("company", trend(2), cycle()),
    "trend-12": lambda: charts.trend_chart(LONG, trend(12), cycle()),
    "trend-40": lambda: charts.trend_chart("company", trend(40), cycle()),
    "trend-focus-3": lambda: charts.trend_chart(
        "Margaret Hale", focus_trend(3), cycle(), focus=CODES[:3]
    ),
    "trend-focus-12-long": lambda: charts.trend_chart(
        LONG, focus_trend(12), cycle(), focus=[(c, f"{n} and {LONG}") for c, n in CODES[:3]]
    ),
    "employee-focus": lambda: charts.employee_profile(
        cycle(), employee(), company(), focus=["quality", "teamwork"]
    ),
    "message": lambda: charts.heatmap_chart(cycle(), [], CODES),
}


def drawn_texts(fig: Figure) -> list[Text]:
    """The visible, non-empty texts of a figure rendered to PNG (so laid out at PNG dpi),
    leaving out the labels of ticks outside the axes' limits, which are not drawn."""
    fig.set_dpi(charts.PNG_DPI)
    fig.canvas.draw()
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = (high - low) * 1e-9
            for tick in axis.get_major_ticks():
                if not low - slack <= tick.get_loc() <= high + slack:
                    hidden |= {id(tick.label1), id(tick.label2)}
    return [
        t for t in fig.findobj(Text) if t.get_visible() and t.get_text() and id(t) not in hidden
    ]


@functools.cache
def drawn(name: str) -> tuple[Figure, list[Text]]:
    """Each figure drawn once for the module: drawing is the slow part of these tests."""
    fig = FIGURES[name]()
    return fig, drawn_texts(fig)


def extent(text: Text) -> Bbox:
    return text.get_window_extent(text.get_figure(root=True).canvas.get_renderer())


@pytest.mark.parametrize("name", FIGURES)
def test_every_label_is_inside_the_figure(name: str) -> None:
    fig, texts = drawn(name)
    assert texts
    box = fig.bbox
    for text in texts:
        e = extent(text)
        assert e.x0 >= box.x0 - 1 and e.x1 <= box.x1 + 1, (text.get_text(), e, box)
        assert e.y0 >= box.y0 - 1 and e.y1 <= box.y1 + 1, (text.get_text(), e, box)


@pytest.mark.parametrize("name", FIGURES)
def test_labels_around_the_axes_do_not_overlap(name: str) -> None:
    fig, texts = drawn(name)
    plots = [ax.bbox for ax in fig.axes]
    # texts outside every axes: tick labels, titles, axis labels, footer, legends
    outside = [t for t in texts if not any(extent(t).overlaps(p) for p in plots)]
    level = [t for t in outside if t.get_rotation() in (0, 90)]
    for i, a in enumerate(level):
        for b in level[i + 1 :]:
            assert not extent(a).shrunk(0.98, 0.98).overlaps(extent(b).shrunk(0.98, 0.98)), (
                a.get_text(),
                b.get_text(),
            )
    # turned labels side by side: far enough apart across their slant
    turned = sorted(
        (t for t in outside if t.get_rotation() not in (0, 90)), key=lambda t: extent(t).x1
    )
    for a, b in itertools.pairwise(turned):
        angle = math.radians(a.get_rotation())
        gap = (extent(b).x1 - extent(a).x1) * math.sin(angle)
        assert gap >= a.get_fontsize() * fig.dpi / 72, (a.get_text(), b.get_text(), gap)


def test_long_names_are_cut_short_not_the_axes() -> None:
    fig = FIGURES["heatmap-30-long"]()
    texts = [t.get_text() for t in drawn_texts(fig)]
    cut = [t for t in texts if t.endswith("…")]
    assert any(t.startswith("Business Applications") for t in cut)
    assert any(t.startswith("Professionalism and") for t in cut)
    ax = fig.axes[0]
    assert ax.bbox.width > 0.4 * fig.bbox.width  # the cells keep the room


@pytest.mark.parametrize("name", ["heatmap-1", "heatmap-14", "heatmap-40-long-cyrillic"])
def test_heatmap_values_sit_in_their_cells(name: str) -> None:
    # The values of a column are the lines of one text, a row apart: the lines must
    # fill the plot's height exactly, so that each one is centred in its own cell.
    fig, texts = drawn(name)
    ax = fig.axes[0]
    box = ax.bbox
    columns = round(ax.get_xlim()[1] + 0.5)
    values = [t for t in texts if t.get_fontsize() == charts.SMALL and extent(t).overlaps(box)]
    assert values
    for text in values:
        e = extent(text)
        assert abs(e.y0 - box.y0) <= 1 and abs(e.y1 - box.y1) <= 1, (e, box)
        column = box.x0 + box.width * (text.get_position()[0] + 0.5) / columns
        assert abs((e.x0 + e.x1) / 2 - column) <= 1, (text.get_text(), e, column)


def test_names_are_text_not_mathtext() -> None:
    svg = charts.render(
        charts.heatmap_chart(cycle(), departments(2, lambda i: f"R&D $x_{i}$"), CODES), "svg"
    ).decode()
    assert "R&amp;D $x_0$" in svg and "$x_1$" in svg


def test_heatmap_cell_values_are_text_in_svg_and_pdf() -> None:
    rows = departments(8)
    svg = charts.render(charts.heatmap_chart(cycle(), rows, CODES), "svg").decode()
    values = {f"{m.mean:.1f}" for d in rows for m in d.competencies}
    for value in values:
        assert f">{value}<" in svg
    pdf = charts.render(charts.heatmap_chart(cycle(), rows, CODES), "pdf")
    assert pdf.startswith(b"%PDF-")


def test_png_cell_values_are_drawn() -> None:
    # an all-missing row shows "–" in every cell: dark marks on the light "bad" colour
    rows = departments(6)[5:]  # department 5 has no results
    assert not rows[0].competencies
    fig = charts.heatmap_chart(cycle(), rows, CODES)
    pixels = matplotlib.image.imread(io.BytesIO(charts.render(fig, "png")), format="png")
    box = fig.axes[0].bbox
    top, bottom = round(fig.bbox.height - box.y1) + 4, round(fig.bbox.height - box.y0) - 4
    cells = pixels[top:bottom, round(box.x0) + 4 : round(box.x1) - 4, :3]
    assert cells.min() < 0.5  # the dashes


@pytest.mark.parametrize("name", FIGURES)
def test_no_text_below_nine_points(name: str) -> None:
    _fig, texts = drawn(name)
    for text in texts:
        assert text.get_fontsize() >= 9, (text.get_text(), text.get_fontsize())


@pytest.mark.parametrize("name", ["distribution", "trend-2"])
def test_png_at_twice_screen_resolution(name: str) -> None:
    fig = FIGURES[name]()
    data = charts.render(fig, "png")
    height, width = matplotlib.image.imread(io.BytesIO(data), format="png").shape[:2]
    inches = fig.get_size_inches()
    assert abs(width - inches[0] * 192) <= 1 and abs(height - inches[1] * 192) <= 1
    assert width >= 1500  # was 960 at 120 dpi


def test_value_axes_show_the_intervals_not_the_whole_scale() -> None:
    # Means 7.6 and 7.9 with intervals: the axis spans them, not 1..10.
    rows = [
        DepartmentResultRead(
            department_id=i,
            external_id=f"D{i}",
            name=f"Team {i}",
            parent_id=None,
            level=0,
            suppliers=10,
            employees_included=8,
            coefficient=value,
            sd=0.3,
        )
        for i, value in enumerate([7.6, 7.9])
    ]
    fig = charts.departments_chart(cycle(), rows, 7.75)
    low, high = fig.axes[0].get_xlim()
    # t(0.975, 7) * 0.3 / sqrt(8) = 0.2508: intervals 7.35..7.85 and 7.65..8.15
    assert 6.5 < low < 7.35 and 8.15 < high < 9.0
    points = trend(3)
    fig = charts.trend_chart("company", points, cycle())
    low, high = fig.axes[0].get_ylim()
    assert low < 4.5 and high > 8.5 and (low > 1 or high < 10)
    profile = charts.employee_profile(cycle(), employee(), company())
    low, high = profile.axes[0].get_xlim()
    assert low >= 1 and high <= 10


def test_heatmap_text_contrasts_with_its_cell() -> None:
    assert charts._ink_on(charts.HEAT_COLORS(0.0)) == "white"  # dark red
    assert charts._ink_on(charts.HEAT_COLORS(0.5)) == charts.INK  # pale yellow
