"""Charts of the stored results (matplotlib, Agg backend), rendered to PNG, SVG or PDF bytes.

Every chart reads the same suppressed results as the tables, so nothing below k can
appear on a chart either; each carries the cycle's name and k in its footer. Figures
are built with the object API (no pyplot state), so rendering is thread-safe.

Plain matplotlib. Charts of a closed cycle never change, so each is rendered once and
then served from the disk cache (``CHART_CACHE_DIR``, see :func:`chart_bytes`). The
department charts (heatmap, departments), which the worker renders for every department
after a close, are laid out up front from measured label widths (:class:`_Ruler`):
matplotlib's constrained layout cost them a second, hidden draw and ~40% of the render.
The other charts keep the constrained layout.

Designed for reading: no text below 9 pt at the exported size, PNG at twice a screen's
resolution, value axes that span the data and its 95% intervals (not the whole scale,
which flattened 7.6 vs 7.9 into one bar length), and point-and-interval plots instead of
bars that would have to start at the scale minimum.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib
import numpy

matplotlib.use("Agg")

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.image import BboxImage
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.markers import TICKDOWN
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox, ScaledTranslation, TransformedBbox
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.cycles.models import Cycle, CycleDepartment
from app.errors import Invalid, NotFound
from app.reports import coefficients as calc
from app.reports import personal, service
from app.reports.filenames import chart_filename
from app.reports.schemas import (
    CompanyResultRead,
    CycleRef,
    DepartmentResultRead,
    EmployeeResultRead,
    TrendPoint,
)

FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
CHARTS = (
    "departments",
    "heatmap",
    "distribution",
    "employee",
    "trend-company",
    "trend-department",
    "trend-employee",
)
# The department chart shows what the department table beside it shows (three levels);
# beyond this many rows it keeps the largest departments and says so in its footer.
MAX_DEPARTMENTS = 40
# The charts of one department that the worker renders ahead after a close.
DEPARTMENT_CHARTS = ("heatmap", "departments")
TABLE_LEVELS = 2
FONT = 10.0  # tick labels, axis labels, legends
SMALL = 9.0  # footer, cell values, notes: the smallest text on any chart
TITLE = 12.0
RC: dict[Any, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller files, searchable, printable
    "svg.hashsalt": "peer360",  # stable ids: the same chart gives the same bytes
    "pdf.fonttype": 42,
    "font.size": FONT,
    "axes.titlesize": TITLE,
    "axes.labelsize": FONT,
    "xtick.labelsize": FONT,
    "ytick.labelsize": FONT,
    "legend.fontsize": FONT,
    "figure.titlesize": TITLE,
    "figure.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.constrained_layout.h_pad": 0.06,
    "figure.constrained_layout.w_pad": 0.06,
    # Names are data, not TeX: a department called "$x$" is drawn as typed.
    "text.parse_math": False,
}
ACCENT = "#2f5bd3"
MUTED = "#8a93a6"
GREY = "#4d5566"  # 7.4:1 on white: footers and notes stay readable
INK = "#1d2433"
COMPANY = "#b42318"
DEPARTMENT = "#b54708"
HEAT_COLORS = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#e4e8f2")
PNG_DPI = 192  # twice a 96-dpi screen: sharp on high-density displays and when zoomed
VECTOR_DPI = 72
WIDTH = 8.0  # inches: a chart card on the page, and the text width of an A4 report
MAX_LABEL = 40  # characters of a department or competency name before "…"
MAX_COLUMN_LABEL = 22  # heatmap competency names (turned)
MAX_CYCLE_LABEL = 16  # trend cycle names
MAX_FOCUS_LABEL = 26  # focus competency names in the trend chart's legend
# Up to three focus areas, each in a colour of its own, none the coefficient's blue.
FOCUS_COLOURS = ("#7a2bd3", "#0f7b55", "#c4320a")
FOCUS_BACKGROUND = "#f6f8fe"
# Fixed layouts, in inches: white round the chart, and between the plot and the texts
# above and below it (the constrained layout's 0.06 in pads, a little wider).
EDGE = 0.08
GAP = 0.1
TICK_PAD = 3.5 / 72  # matplotlib's default tick length and tick label pad, 3.5 pt each
LABEL_PAD = 4.0 / 72  # axis label to tick labels
TURN = 30.0  # heatmap column names, degrees


def render(fig: Figure, fmt: str) -> bytes:
    """The figure as PNG, SVG or PDF bytes."""
    if fmt not in FORMATS:
        raise Invalid(f"Unknown chart format {fmt!r}; use png, svg or pdf.")
    buffer = io.BytesIO()
    # zlib's fastest level: deflate at the default level took as long as drawing the
    # chart, for files only a third smaller.
    extra: dict[str, Any] = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
    with rc_context(RC):
        fig.savefig(
            buffer,
            format=fmt,
            dpi=PNG_DPI if fmt == "png" else VECTOR_DPI,
            metadata=_metadata(fmt),
            **extra,
        )
    return buffer.getvalue()


def _metadata(fmt: str) -> dict[str, Any]:
    # Fixed metadata: no creation date, so the same chart gives the same bytes.
    if fmt == "png":
        return {"Software": "Peer360"}
    if fmt == "pdf":
        return {"Creator": "Peer360", "CreationDate": None}
    return {"Creator": "Peer360", "Date": None}


# --- building blocks ---------------------------------------------------------------------


def _figure(width: float, height: float, *, fixed: bool = False) -> Figure:
    """``fixed``: the chart places its axes itself (see :class:`_Ruler`); at the PNG's
    dpi, so the text it measures is the text that is drawn."""
    if fixed:
        fig = Figure(figsize=(width, height), dpi=PNG_DPI)
    else:
        fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


class _Ruler:
    """Text sizes in inches for a fixed layout, from the font metrics the Agg renderer
    draws with (a 1x1 renderer: measuring only, nothing is drawn)."""

    def __init__(self, fig: Figure) -> None:
        self.fig = fig
        self.renderer = RendererAgg(1, 1, fig.dpi)

    def width(self, texts: Sequence[str], size: float = FONT) -> float:
        """The widest of one-line ``texts``."""
        prop = FontProperties(size=size)
        widths = (
            self.renderer.get_text_width_height_descent(t, prop, ismath=False)[0] for t in texts
        )
        return max(widths, default=0.0) / self.fig.dpi

    def height(self, artist: Any) -> float:
        """An artist's height as drawn (a title, a footer of several lines, a legend)."""
        return float(artist.get_window_extent(self.renderer).height) / self.fig.dpi

    def width_of(self, artist: Any) -> float:
        return float(artist.get_window_extent(self.renderer).width) / self.fig.dpi

    def line(self, size: float = FONT, *, spaced: bool = False) -> float:
        """One line of text, ascender to descender (``spaced``: the font's line height,
        what ``linespacing`` multiplies)."""
        probe = Text(
            0, 0, "0" if spaced else "Ág", fontsize=size, linespacing=1.0 if spaced else None
        )
        probe.set_figure(self.fig)
        return self.height(probe)


def _place(fig: Figure, ax: Axes, *, left: float, right: float, top: float, bottom: float) -> None:
    """Put the axes inside these margins (inches)."""
    width, height = fig.get_size_inches()
    ax.set_position(
        (left / width, bottom / height, 1 - (left + right) / width, 1 - (top + bottom) / height)
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _title(fig: Figure, text: str) -> Text:
    # About 0.6 em per character: keep the title inside the figure's width.
    limit = int(fig.get_figwidth() * 72 / (TITLE * 0.62))
    title = fig.suptitle(_short(text, limit), x=0.01, ha="left")
    if fig.get_layout_engine() is None:  # fixed layout: at the top edge
        title.set_position((EDGE / fig.get_figwidth(), 1 - EDGE / fig.get_figheight()))
    return title


def _footer(fig: Figure, cycle: CycleRef, *extra: str) -> Text:
    parts = [
        f"Peer360 · cycle {cycle.name}",
        f"scale {cycle.scale_min}–{cycle.scale_max}",
        f"shown only with at least k = {cycle.min_raters} raters",
        *(e for e in extra if e),
    ]
    limit = int(fig.get_figwidth() * 72 / (SMALL * 0.58))
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 3 + len(part) <= limit:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    footer = fig.supxlabel("\n".join(lines), x=0.01, ha="left", fontsize=SMALL, color=GREY)
    if fig.get_layout_engine() is None:  # fixed layout: at the bottom edge
        footer.set_position((EDGE / fig.get_figwidth(), EDGE / fig.get_figheight()))
    return footer


def _message(cycle: CycleRef, message: str, *, height: float = 3.0) -> Figure:
    """A figure that only says why there is no chart."""
    fig = _figure(WIDTH, height, fixed=True)
    with rc_context(RC):
        fig.text(0.5, 0.55, message, ha="center", va="center", fontsize=13, color=GREY)
        _footer(fig, cycle)
    return fig


def _value_range(values: Sequence[float | None], cycle: CycleRef) -> tuple[float, float]:
    """Axis limits that hold every value and interval with a margin, inside the scale.

    A zoomed axis shows differences the full scale flattens; it never extends past the
    scale, where no mean can lie.
    """
    shown = [v for v in values if v is not None and math.isfinite(v)]
    low, high = (min(shown), max(shown)) if shown else (cycle.scale_min, cycle.scale_max)
    span = max(high - low, 0.1 * (cycle.scale_max - cycle.scale_min))
    return (
        max(cycle.scale_min, low - 0.12 * span),
        min(cycle.scale_max, high + 0.12 * span),
    )


def _interval(
    center: float | None, sd: float | None, n: int | None, cycle: CycleRef
) -> tuple[float | None, float | None]:
    return calc.confidence_interval(
        center, sd, n, scale=calc.Scale(cycle.scale_min, cycle.scale_max)
    )


def _label(d: DepartmentResultRead, shown: Sequence[DepartmentResultRead]) -> str:
    # Right-aligned tick labels swallow indentation: mark sub-departments instead.
    top = min(x.level for x in shown)
    return _short(("↳ " * (d.level - top)) + d.name, MAX_LABEL)


def _right_labels(ax: Axes, positions: Sequence[float], texts: Sequence[str]) -> None:
    """Values in a column right of the plot: they never collide with points or bars."""
    right = ax.secondary_yaxis("right")
    right.set_yticks(list(positions), list(texts))
    right.tick_params(length=0)
    right.spines["right"].set_visible(False)


def _legend(ax: Axes, handles: Sequence[Any] | None = None) -> Legend:
    """A one-row legend just above the plot, left-aligned: the layout keeps it clear of
    the title, and it covers no data."""
    kwargs: dict[str, Any] = {"handles": list(handles)} if handles is not None else {}
    return ax.legend(
        loc="lower left",
        bbox_to_anchor=(0, 1.01),
        ncols=3,
        frameon=False,
        borderaxespad=0,
        handletextpad=0.4,
        columnspacing=1.2,
        **kwargs,
    )


def _ink_on(rgba: Sequence[float]) -> str:
    """Black or white, whichever contrasts more with a cell's colour (WCAG luminance)."""

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgba[:3])
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return INK if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "white"


# --- the charts -----------------------------------------------------------------------


def departments_chart(
    cycle: CycleRef,
    departments: Sequence[DepartmentResultRead],
    company: float | None,
    *,
    note: str = "",
) -> Figure:
    """Department coefficients with their 95% intervals, the company mean dashed
    (``note``: one more part of the footer)."""
    if not departments:
        return _message(cycle, "No departments in this cycle")
    rows = len(departments)
    width, height = WIDTH, max(2.8, 0.3 * rows + 1.7)
    fig = _figure(width, height, fixed=True)
    intervals = [_interval(d.coefficient, d.sd, d.employees_included, cycle) for d in departments]
    low, high = _value_range(
        [d.coefficient for d in departments] + [v for pair in intervals for v in pair] + [company],
        cycle,
    )
    ruler = _Ruler(fig)
    labels, names = _fit(ruler, [_label(d, departments) for d in departments], 0.45 * width)
    values = [
        "–" if d.coefficient is None else f"{d.coefficient:.2f} (n={d.employees_included})"
        for d in departments
    ]
    with rc_context(RC):
        ax = fig.add_subplot()
        ax.set_xlim(low, high)
        ax.set_ylim(rows - 0.5, -0.5)  # first department on top
        # All intervals in one collection and all points in one line: the same marks as
        # an artist or two per department, at a fraction of the cost.
        spans: list[tuple[int, float, float]] = []
        points: list[tuple[float, int]] = []
        for i, (d, (ci_low, ci_high)) in enumerate(zip(departments, intervals, strict=True)):
            if d.coefficient is None:
                ax.text(low, i, "  not enough responses", va="center", fontsize=SMALL, color=GREY)
                continue
            if ci_low is not None and ci_high is not None:
                spans.append((i, ci_low, ci_high))
            points.append((d.coefficient, i))
        if spans:
            ys, starts, ends = zip(*spans, strict=True)
            ax.hlines(ys, starts, ends, color=MUTED, linewidth=2.5)
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, "o", color=ACCENT, markersize=7)
        handles: list[Any] = [
            Line2D([], [], marker="o", color=ACCENT, linestyle="none", label="department"),
            Line2D([], [], color=MUTED, linewidth=2.5, label="95% interval"),
        ]
        if company is not None:
            ax.axvline(company, color=COMPANY, linestyle="--", linewidth=1)
            handles.append(
                Line2D([], [], color=COMPANY, linestyle="--", label=f"company {company:.2f}")
            )
        _row_labels(fig, ax, labels, values)
        _value_ticks(fig, ax, grid="#e4e8f2")
        ax.set_xlabel(
            "Coefficient: mean of the employees' coefficients",
            # below the tick labels, which the axis no longer knows of
            labelpad=(LABEL_PAD + 2 * TICK_PAD + ruler.line()) * 72,
        )
        legend = _legend(ax, handles)
        title = _title(fig, f"Departments — {cycle.name}")
        footer = _footer(fig, cycle, "n = employees included", note)
        # Fixed layout: names left, values right, x ticks, their label and the footer
        # below, the title and the legend above.
        line = ruler.line()
        left = EDGE + names + TICK_PAD
        right = EDGE + ruler.width(values) + TICK_PAD
        bottom = EDGE + ruler.height(footer) + GAP + line + LABEL_PAD + line + 2 * TICK_PAD
        above = EDGE + ruler.height(title) + GAP + ruler.height(legend)
        # The legend stands 1% of the plot's height above it.
        plot = (height - bottom - above) / 1.01
        _place(fig, ax, left=left, right=right, top=height - bottom - plot, bottom=bottom)
        # A legend wider than the room right of the names moves left, over their column.
        plot_width = width - left - right
        spare = width - EDGE - left - ruler.width_of(legend)
        if spare < 0:
            legend.set_bbox_to_anchor((spare / plot_width, 1.01), ax.transAxes)
        # So does an axis label wider than the plot, to end at the figure's edge.
        label = ax.xaxis.label
        spare = width - EDGE - left - (plot_width + ruler.width([label.get_text()])) / 2
        if spare < 0:
            label.set_x(0.5 + spare / plot_width)
    return fig


def _value_ticks(fig: Figure, ax: Axes, *, grid: str) -> None:
    """The x axis' ticks, numbers and grid lines (under the data) as a few plain artists,
    from the axis' own locator and formatter: the axis itself makes five artists per
    tick and lays them out twice, a tenth of a small chart's render."""
    low, high = ax.get_xlim()
    values = [v for v in ax.xaxis.get_major_locator().tick_values(low, high) if low <= v <= high]
    numbers = ax.xaxis.get_major_formatter().format_ticks(values)
    ax.set_xticks([])
    along = ax.get_xaxis_transform()  # x in data, y in axes
    ax.vlines(values, 0, 1, transform=along, color=grid, linewidth=0.8, zorder=0.5)
    # Tick marks are markers, as the axis draws them: 3.5 pt down, 0.8 pt wide.
    ax.plot(
        values,
        [0] * len(values),
        transform=along,
        linestyle="none",
        color="black",
        marker=TICKDOWN,
        markersize=3.5,
        markeredgewidth=0.8,
        clip_on=False,
    )
    below = along - ScaledTranslation(0, 2 * TICK_PAD, fig.dpi_scale_trans)
    for value, number in zip(values, numbers, strict=True):
        fig.text(value, 0, number, transform=below, ha="center", va="top")


def _fit(ruler: _Ruler, names: Sequence[str], room: float) -> tuple[list[str], float]:
    """``names`` cut shorter where wider than ``room`` (inches), and the widest width:
    40 wide letters (Ш, W) would take half the figure from the plot."""
    fitted, widest = [], 0.0
    for name in names:
        wide, limit = ruler.width([name]), len(name)
        while wide > room and limit > 8:
            limit -= 2
            name = _short(name, limit)
            wide = ruler.width([name])
        fitted.append(name)
        widest = max(widest, wide)
    return fitted, widest


def _row_labels(fig: Figure, ax: Axes, names: Sequence[str], values: Sequence[str] = ()) -> None:
    """Row names left of the plot and values right of it, one per row (y = 0, 1, …),
    where tick labels would be: plain texts cost a fraction of a tick (five artists,
    copied properties) and of a secondary axis for the values.

    Here and for the heatmap's other texts: figure texts placed by the axes' transforms,
    a quarter of the cost of an axes' text (which sets up a clip path it never uses)."""
    ax.set_yticks([])
    pad = ScaledTranslation(TICK_PAD, 0, fig.dpi_scale_trans)
    rows = ax.get_yaxis_transform()  # x in axes, y in data
    for i, name in enumerate(names):
        fig.text(0, i, name, transform=rows - pad, ha="right", va="center_baseline")
    for i, value in enumerate(values):
        fig.text(1, i, value, transform=rows + pad, ha="left", va="center_baseline")


def heatmap_chart(
    cycle: CycleRef,
    departments: Sequence[DepartmentResultRead],
    codes: Sequence[tuple[str, str]],
    *,
    note: str = "",
) -> Figure:
    """Departments x competencies, each cell the rolled-up competency mean (``note``: one
    more part of the footer)."""
    if not departments or not codes:
        return _message(cycle, "No data to show")
    columns = [_short(name, MAX_COLUMN_LABEL) for _, name in codes]
    width = max(WIDTH, 3.6 + 0.75 * len(codes))
    height = max(3.6, 0.34 * len(departments) + 2.6)
    fig = _figure(width, height, fixed=True)
    ruler = _Ruler(fig)
    rows, names = _fit(ruler, [_label(d, departments) for d in departments], 0.4 * width)
    nan = float("nan")
    matrix = numpy.array(
        [
            [{m.code: m.mean for m in d.competencies}.get(code, nan) for code, _ in codes]
            for d in departments
        ],
        dtype=float,
    )
    norm = Normalize(vmin=cycle.scale_min, vmax=cycle.scale_max)
    colours = HEAT_COLORS(norm(matrix))  # every cell in one call
    with rc_context(RC):
        ax = fig.add_subplot()
        ax.pcolormesh(
            numpy.arange(len(codes) + 1) - 0.5,
            numpy.arange(len(rows) + 1) - 0.5,
            numpy.ma.masked_invalid(matrix),
            cmap=HEAT_COLORS,
            norm=norm,
        )
        ax.set_xlim(-0.5, len(codes) - 0.5)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xticks([])
        _row_labels(fig, ax, rows)
        pad = ScaledTranslation(0, TICK_PAD, fig.dpi_scale_trans)
        for j, name in enumerate(columns):  # where turned tick labels would be
            fig.text(
                j,
                0,
                name,
                transform=ax.get_xaxis_transform() - pad,
                rotation=TURN,
                ha="right",
                va="top",
                rotation_mode="anchor",
            )
        ax.spines[:].set_visible(False)
        title = _title(fig, f"Department × competency — {cycle.name}")
        footer = _footer(fig, cycle, "– = not enough responses", note)
        # Fixed layout: row names left, turned column names and the footer below, the
        # title above, the colour bar (ticks, numbers, its label) right.
        line = ruler.line()
        turn = math.radians(TURN)
        turned = [ruler.width([c]) for c in columns]
        # A turned name hangs from its top right corner, below and left of its cell.
        drop = max(turned) * math.sin(turn) + line * math.cos(turn)
        bottom = EDGE + ruler.height(footer) + GAP + drop + TICK_PAD
        top = EDGE + ruler.height(title) + GAP
        bar, bar_gap = 0.13, 0.22
        scale = _scale_ticks(norm)
        numbers = ruler.width([label for _, label in scale])
        right = bar_gap + bar + 2 * TICK_PAD + numbers + LABEL_PAD + line + EDGE
        left = EDGE + names + TICK_PAD
        # The first columns' names must not run out of the figure's left edge either.
        for j, wide in enumerate(turned):
            share = (j + 0.5) / len(turned)  # of the plot's width, to the column's centre
            reach = EDGE + wide * math.cos(turn) - share * (width - right)
            left = max(left, reach / (1 - share))
        _place(fig, ax, left=left, right=right, top=top, bottom=bottom)
        plot = height - top - bottom
        _cell_values(
            fig, ax, matrix, colours, spacing=plot / len(rows) / ruler.line(SMALL, spaced=True)
        )
        _colour_scale(
            fig,
            norm,
            Bbox.from_bounds(width - right + bar_gap, bottom + 0.1 * plot, bar, 0.8 * plot),
            scale,
            label_at=width - right + bar_gap + bar + 2 * TICK_PAD + numbers + LABEL_PAD,
        )
    return fig


def _scale_ticks(norm: Normalize) -> list[tuple[float, str]]:
    """The colour scale's ticks and their labels: whole numbers, never crowded."""
    low, high = float(norm.vmin or 0), float(norm.vmax or 0)
    values = MaxNLocator(nbins=5, integer=True).tick_values(low, high)
    return [(v, f"{v:.0f}".replace("-", "−")) for v in values if low <= v <= high]


def _colour_scale(
    fig: Figure,
    norm: Normalize,
    box: Bbox,
    ticks: Sequence[tuple[float, str]],
    *,
    label_at: float,
    label: str = "Mean score",
) -> None:
    """A colour bar in ``box`` (inches) with ticks, numbers and a turned label to the
    right, drawn as figure artists. Looks like ``fig.colorbar``, which costs a second
    axes with its own axis and ticks: a quarter of a small heatmap's render."""
    inches = fig.dpi_scale_trans
    low, high = float(norm.vmin or 0), float(norm.vmax or 0)
    # The scale's colours bottom to top, as the colorbar's 256 steps.
    gradient = BboxImage(
        TransformedBbox(box, inches),
        cmap=HEAT_COLORS,
        norm=norm,
        interpolation="nearest",
        origin="lower",
    )
    gradient.set_data(numpy.linspace(low, high, HEAT_COLORS.N).reshape(-1, 1))
    fig.add_artist(gradient)
    edge = {"color": matplotlib.rcParams["axes.edgecolor"], "linewidth": 0.8}
    fig.add_artist(
        Rectangle((box.x0, box.y0), box.width, box.height, transform=inches, fill=False, **edge)
    )
    xs: list[float] = []
    ys: list[float] = []
    for value, text in ticks:
        y = box.y0 + box.height * (value - low) / ((high - low) or 1.0)
        xs += [box.x1, box.x1 + TICK_PAD, math.nan]
        ys += [y, y, math.nan]
        fig.text(box.x1 + 2 * TICK_PAD, y, text, transform=inches, va="center_baseline")
    fig.add_artist(Line2D(xs, ys, transform=inches, solid_capstyle="butt", **edge))
    fig.text(
        label_at,
        box.y0 + box.height / 2,
        label,
        transform=inches,
        rotation=90,
        rotation_mode="anchor",
        ha="center",
        va="top",
    )


def _cell_values(fig: Figure, ax: Axes, matrix: Any, colours: Any, *, spacing: float) -> None:
    """Each cell's value centred in it, "–" where there is none.

    One text per column and ink rather than per cell (up to 320 of them were the most
    costly part of the chart): its lines are one row apart (``spacing``, in lines) and
    blank where the other ink draws, and each line is still its own text in SVG and PDF.
    """
    rows, columns = matrix.shape
    inks = [
        [INK if math.isnan(matrix[i, j]) else _ink_on(colours[i, j]) for j in range(columns)]
        for i in range(rows)
    ]
    for j in range(columns):
        for ink in (INK, "white"):
            lines = [
                ("–" if math.isnan(matrix[i, j]) else f"{matrix[i, j]:.1f}")
                if inks[i][j] == ink
                else ""
                for i in range(rows)
            ]
            if any(lines):
                fig.text(
                    j,
                    (rows - 1) / 2,  # the middle of the column: the lines fill it
                    "\n".join(lines),
                    transform=ax.transData,
                    ha="center",
                    va="center",
                    multialignment="center",
                    linespacing=spacing,
                    fontsize=SMALL,
                    color=ink,
                )


def distribution_chart(cycle: CycleRef, company: CompanyResultRead) -> Figure:
    """The distribution of the included employees' coefficients."""
    edges, counts = company.distribution.edges, company.distribution.counts
    if not counts or not sum(counts):
        return _message(cycle, "Not enough responses")
    fig = _figure(WIDTH, 4.2)
    used = [i for i, n in enumerate(counts) if n]
    low, high = edges[max(used[0] - 1, 0)], edges[min(used[-1] + 2, len(edges) - 1)]
    with rc_context(RC):
        ax = fig.add_subplot()
        widths = [b - a for a, b in itertools.pairwise(edges)]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color=ACCENT, edgecolor="white")
        if company.coefficient is not None:
            if company.ci_low is not None and company.ci_high is not None:
                ax.axvspan(
                    company.ci_low,
                    company.ci_high,
                    color=COMPANY,
                    alpha=0.12,
                    label=f"95% interval {company.ci_low:.2f}–{company.ci_high:.2f}",
                )
            ax.axvline(
                company.coefficient,
                color=COMPANY,
                linestyle="--",
                linewidth=1,
                label=f"company mean {company.coefficient:.2f}",
            )
            _legend(ax)
        ax.set_xlim(low, high)
        ax.set_xticks(edges[max(used[0] - 1, 0) : used[-1] + 3])
        ax.xaxis.set_major_formatter("{x:.1f}")
        ax.set_xlabel("Coefficient (bins include their left edge)")
        ax.set_ylabel("Employees")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _title(fig, f"Distribution — {cycle.name} ({company.employees_included} employees)")
        _footer(fig, cycle)
    return fig


def employee_profile(
    cycle: CycleRef,
    employee: EmployeeResultRead,
    company: CompanyResultRead,
    department: DepartmentResultRead | None = None,
    focus: Sequence[str] = (),
) -> Figure:
    """One employee's competency means next to their department's and the company's
    (``focus``: the codes of their focus competencies, listed first and in bold)."""
    rows = personal.focus_first(company.competencies, focus)
    height = max(3.2, 0.42 * len(rows) + 2.0)
    if employee.status != "ok":
        return _message(cycle, f"{_short(employee.full_name, 40)}: not enough responses")
    mine = {m.code: m.mean for m in employee.competencies}
    theirs = {m.code: m.mean for m in department.competencies} if department else {}
    low, high = _value_range([*mine.values(), *theirs.values(), *(c.mean for c in rows)], cycle)
    fig = _figure(WIDTH, height)
    with rc_context(RC):
        ax = fig.add_subplot()
        ax.set_xlim(low, high)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        for i, c in enumerate(rows):
            ax.plot([c.mean], [i], marker="|", markersize=16, markeredgewidth=2.5, color=COMPANY)
            if c.code in theirs:
                ax.plot([theirs[c.code]], [i], "D", color=DEPARTMENT, markersize=6)
            if c.code in mine:
                ax.plot([mine[c.code]], [i], "o", color=ACCENT, markersize=8)
            else:
                ax.text(low, i, "  not enough answers", va="center", fontsize=SMALL, color=GREY)
        ax.set_yticks(range(len(rows)), [_short(c.name, MAX_LABEL) for c in rows])
        for label, c in zip(ax.get_yticklabels(), rows, strict=True):
            if c.code in focus:
                label.set_fontweight("bold")
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="x", color="#e4e8f2")
        ax.set_axisbelow(True)
        _right_labels(
            ax, range(len(rows)), [f"{mine[c.code]:.2f}" if c.code in mine else "–" for c in rows]
        )
        handles = [
            Line2D([], [], marker="o", color=ACCENT, linestyle="none", label="this employee"),
            *(
                [Line2D([], [], marker="D", color=DEPARTMENT, linestyle="none", label="department")]
                if department
                else []
            ),
            Line2D(
                [], [], marker="|", color=COMPANY, linestyle="none", markersize=12, label="company"
            ),
        ]
        _legend(ax, handles)
        ax.set_xlabel("Mean score")
        coefficient = "–" if employee.coefficient is None else f"{employee.coefficient:.2f}"
        _title(fig, f"{employee.full_name} — coefficient {coefficient} ({employee.raters} raters)")
        _footer(fig, cycle)
    return fig


@dataclass(frozen=True)
class FocusSeries:
    """One focus competency's mean over the trend's cycles, on the latest cycle's scale
    (None where it was not shown: the person below k, or the competency below k answers)."""

    code: str
    name: str
    means: list[float | None]


def focus_series(
    points: Sequence[TrendPoint], focus: Sequence[tuple[str, str]]
) -> list[FocusSeries]:
    """The focus competencies' lines, in the plan's order; one with no shown mean is left
    out (nothing to draw)."""
    if not points:
        return []
    target = calc.Scale(points[-1].cycle.scale_min, points[-1].cycle.scale_max)
    series = []
    for code, name in focus:
        means: list[float | None] = []
        for p in points:
            mean = next((m.mean for m in p.competencies if m.code == code), None)
            scale = calc.Scale(p.cycle.scale_min, p.cycle.scale_max)
            means.append(None if mean is None else calc.rescale(mean, scale, target))
        if any(m is not None for m in means):
            series.append(FocusSeries(code, name, means))
    return series


def _focus_panel(ax: Axes, series: Sequence[FocusSeries], ref: CycleRef, spacing: float) -> None:
    """The focus competencies over the cycles, drawn above the coefficient and in their
    own colours, so the change on what the person agreed to work on reads first."""
    low, high = _value_range([m for s in series for m in s.means], ref)
    for s, colour in zip(series, FOCUS_COLOURS, strict=False):
        xs = [x for x, m in enumerate(s.means) if m is not None]
        ys = [m for m in s.means if m is not None]
        ax.plot(
            xs,
            ys,
            marker="o",
            color=colour,
            linewidth=2.5,
            label=f"focus area: {_short(s.name, MAX_FOCUS_LABEL)}",
        )
        if spacing >= 0.6 and ys:
            ax.annotate(
                f"{ys[-1]:.2f}",
                (xs[-1], ys[-1]),
                textcoords="offset points",
                xytext=(7, 0),
                va="center",
                fontsize=SMALL,
                color=colour,
            )
    ax.set_ylim(low, high)
    ax.set_ylabel("Focus areas (mean)")
    ax.grid(axis="y", color="#e4e8f2")
    ax.set_facecolor(FOCUS_BACKGROUND)
    labels = sum(len(_short(s.name, MAX_FOCUS_LABEL)) + 14 for s in series)
    # One row while the labels fit the width (about 0.6 em a character), else one a row.
    one_row = labels * FONT * 0.6 / 72 <= WIDTH - 1.2
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0, 1.01),
        ncols=len(series) if one_row else 1,
        frameon=False,
        borderaxespad=0,
        handletextpad=0.4,
        columnspacing=1.2,
    )


def trend_chart(
    title: str,
    points: Sequence[TrendPoint],
    cycle: CycleRef,
    focus: Sequence[tuple[str, str]] = (),
) -> Figure:
    """A coefficient over quarters, on the scale of the latest cycle (earlier cycles on
    another scale are mapped onto it), with 95% intervals where known.

    With ``focus`` ((code, name) of a person's focus competencies), a panel above the
    coefficient draws those competencies first, each in its own colour.
    """
    shown = [p for p in points if p.coefficient is not None]
    if not shown:
        return _message(cycle, f"{_short(title, 40)}: not enough responses")
    target = calc.Scale(points[-1].cycle.scale_min, points[-1].cycle.scale_max)

    def on_target(value: float | None, ref: CycleRef) -> float | None:
        if value is None:
            return None
        return calc.rescale(value, calc.Scale(ref.scale_min, ref.scale_max), target)

    rescaled = any(
        (p.cycle.scale_min, p.cycle.scale_max) != (target.low, target.high) for p in points
    )
    ys = [on_target(p.coefficient, p.cycle) for p in points]
    lows = [on_target(p.ci_low, p.cycle) for p in points]
    highs = [on_target(p.ci_high, p.cycle) for p in points]
    ref = points[-1].cycle
    low, high = _value_range([*ys, *lows, *highs], ref)
    series = focus_series(points, focus)
    fig = _figure(WIDTH, 4.4 + (3.2 if series else 0.0))
    n = len(points)
    # Inches between two cycle names along the axis (about 1.2 in go to the y axis).
    spacing = (WIDTH - 1.2) / n
    with rc_context(RC):
        if series:
            focus_ax, ax = fig.subplots(2, 1, sharex=True, height_ratios=[1.0, 1.0])
            _focus_panel(focus_ax, series, ref, spacing)
        else:
            ax = fig.add_subplot()
        xs = [x for x, v in zip(range(n), ys, strict=True) if v is not None]
        ax.plot(xs, [v for v in ys if v is not None], marker="o", color=ACCENT, linewidth=2)
        for x, y, lo, hi in zip(range(n), ys, lows, highs, strict=True):
            if y is None:
                if spacing >= 0.8:
                    ax.text(
                        x,
                        low,
                        "not enough\nresponses",
                        ha="center",
                        va="bottom",
                        fontsize=SMALL,
                        color=GREY,
                    )
                continue
            if lo is not None and hi is not None:
                ax.vlines(x, lo, hi, color=MUTED, linewidth=3, alpha=0.8)
            if spacing >= 0.6:
                ax.annotate(
                    f"{y:.2f}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(7, 0),
                    va="center",
                    fontsize=SMALL,
                )
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(low, high)
        names = [_short(p.cycle.name, MAX_CYCLE_LABEL) for p in points]
        widest = max(len(name) for name in names) * FONT * 0.6 / 72
        if widest + 0.1 <= spacing:
            ax.set_xticks(range(n), names)
        elif spacing >= 2 * FONT / 72:  # turned by 30°, a line apart across the slant
            ax.set_xticks(range(n), names, rotation=30, ha="right", rotation_mode="anchor")
        else:  # upright, only every few
            step = math.ceil(1.3 * FONT / 72 / spacing)
            ax.set_xticks(
                range(n),
                [name if (n - 1 - i) % step == 0 else "" for i, name in enumerate(names)],
                rotation=90,
            )
        ax.set_ylabel(f"Coefficient (scale {target.low}–{target.high})")
        ax.grid(axis="y", color="#e4e8f2")
        _title(fig, f"Trend — {title}" + (" · focus areas first" if series else ""))
        extra = "bars: 95% interval" + (
            " · earlier scales mapped onto this one" if rescaled else ""
        )
        _footer(fig, cycle, extra)
    return fig


# --- choosing the data ---------------------------------------------------------------------


def chart_departments(
    session: Session, *, cycle_id: int, department: str | None
) -> tuple[list[DepartmentResultRead], int]:
    """(shown, of how many): one department and its children, or the same top levels as
    the department table on the results page, in the same tree order."""
    if department:
        chosen = service.department_in_cycle(session, cycle_id=cycle_id, department=department)
        picked = service.department_and_children(
            session, cycle_id=cycle_id, department_id=chosen.department_id
        )
    else:
        picked = service.department_results(session, cycle_id=cycle_id, max_level=TABLE_LEVELS)
    total = len(picked)
    if total > MAX_DEPARTMENTS:
        keep = {
            d.department_id for d in sorted(picked, key=lambda d: -d.suppliers)[:MAX_DEPARTMENTS]
        }
        picked = [d for d in picked if d.department_id in keep]
    return picked, total


def _employee(session: Session, *, cycle_id: int, employee: str | None) -> EmployeeResultRead:
    if not employee:
        raise Invalid(
            "This chart needs ?employee=<external id>.",
            errors=[{"field": "employee", "message": "required"}],
        )
    found = service.employee_by_external_id(session, external_id=employee)
    return service.employee_result(session, cycle_id=cycle_id, employee_id=found.id)


def _department_of(
    session: Session, *, cycle_id: int, employee: EmployeeResultRead
) -> DepartmentResultRead | None:
    if employee.department_id is None:
        return None
    found = service.department_results(
        session, cycle_id=cycle_id, department_ids=[employee.department_id]
    )
    return found[0] if found else None


def _departments_figure(
    session: Session, *, cycle_id: int, ref: CycleRef, department: str | None, heatmap: bool
) -> Figure:
    shown, total = chart_departments(session, cycle_id=cycle_id, department=department)
    # In the footer, where the layout leaves room for it: in a corner of its own it ran
    # into a long footer line.
    note = f"the {len(shown)} largest of {total} departments" if total > len(shown) else ""
    if heatmap:
        codes = [(c.code, c.name) for c in service.competencies(session, cycle_id=cycle_id)]
        return heatmap_chart(ref, shown, codes, note=note)
    company = service.company_results(session, cycle_id=cycle_id)
    return departments_chart(ref, shown, company.coefficient, note=note)


def build_chart(
    session: Session,
    *,
    cycle_id: int,
    chart: str,
    department: str | None = None,
    employee: str | None = None,
) -> Figure:
    """The figure for one chart of a closed cycle (404/409 as the results themselves)."""
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    ref = service.cycle_ref(session, cycle=cycle)
    if chart in ("departments", "heatmap"):
        return _departments_figure(
            session, cycle_id=cycle_id, ref=ref, department=department, heatmap=chart == "heatmap"
        )
    if chart == "distribution":
        return distribution_chart(ref, service.company_results(session, cycle_id=cycle_id))
    if chart == "employee":
        result = _employee(session, cycle_id=cycle_id, employee=employee)
        return employee_profile(
            ref,
            result,
            service.company_results(session, cycle_id=cycle_id),
            _department_of(session, cycle_id=cycle_id, employee=result),
            focus=[
                code
                for code, _name in personal.focus_to_show(
                    session, cycle_id=cycle_id, employee_id=result.employee_id
                )
            ],
        )
    if chart == "trend-company":
        return trend_chart("company", service.company_trend(session, up_to=cycle), ref)
    if chart == "trend-department":
        if not department:
            raise Invalid(
                "This chart needs ?department=<id or external id>.",
                errors=[{"field": "department", "message": "required"}],
            )
        dept = service.department_in_cycle(session, cycle_id=cycle_id, department=department)
        return trend_chart(
            dept.name,
            service.department_trend(session, department_id=dept.department_id, up_to=cycle),
            ref,
        )
    if chart == "trend-employee":
        result = _employee(session, cycle_id=cycle_id, employee=employee)
        return trend_chart(
            result.full_name,
            service.employee_trend(session, employee_id=result.employee_id, up_to=cycle),
            ref,
            focus=personal.focus_to_show(
                session, cycle_id=cycle_id, employee_id=result.employee_id
            ),
        )
    raise NotFound(f"There is no chart {chart!r}; charts: {', '.join(CHARTS)}.")


# --- serving: rendered once, then read from disk ---------------------------------------------


def chart_bytes(
    session: Session,
    *,
    cycle_id: int,
    chart: str,
    fmt: str,
    department: str | None = None,
    employee: str | None = None,
    cache_dir: Path | None = None,
) -> bytes:
    """A rendered chart: read from ``cache_dir`` when it was rendered before.

    The results of a closed cycle never change, so the first request renders and writes
    the file and every later one reads it. The cache is keyed by the cycle and the time
    its results were computed: recomputing a cycle's results starts a new directory and
    removes the old one. Trend charts also show earlier cycles, so their key carries the
    newest computation time of all cycles.
    """
    if fmt not in FORMATS:
        raise NotFound(f"Unknown chart format {fmt!r}; use png, svg or pdf.")
    if chart not in CHARTS:
        raise NotFound(f"There is no chart {chart!r}; charts: {', '.join(CHARTS)}.")
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    path: Path | None = None
    if cache_dir is not None:
        newest: datetime | None = None
        if chart.startswith("trend-"):
            newest = session.scalar(select(func.max(Cycle.results_ready_at)))
        focus = ""
        if chart in ("employee", "trend-employee") and employee:
            # Focus areas are chosen after the results: a new choice is a new chart.
            person = service.employee_by_external_id(session, external_id=employee)
            focus = ",".join(
                code
                for code, _name in personal.focus_to_show(
                    session, cycle_id=cycle_id, employee_id=person.id
                )
            )
        path = _cache_path(
            cache_dir,
            cycle,
            chart,
            fmt,
            _department_key(session, cycle_id=cycle_id, chart=chart, department=department),
            _employee_key(session, chart=chart, employee=employee),
            newest,
            focus,
        )
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
    fig = build_chart(
        session, cycle_id=cycle_id, chart=chart, department=department, employee=employee
    )
    data = render(fig, fmt)
    if path is not None:
        _store(path, data)
    return data


_DEPARTMENT_KEY = "department:{}"


def _department_key(
    session: Session, *, cycle_id: int, chart: str, department: str | None
) -> str | None:
    # By id: ?department=12 and ?department=<its external id> are the same chart, and
    # the worker's pre-rendered file must serve both.
    if not department or chart not in (*DEPARTMENT_CHARTS, "trend-department"):
        return None
    found = service.department_in_cycle(session, cycle_id=cycle_id, department=department)
    return _DEPARTMENT_KEY.format(found.department_id)


def _employee_key(session: Session, *, chart: str, employee: str | None) -> str | None:
    if not employee or chart not in ("employee", "trend-employee"):
        return None
    return f"employee:{service.employee_by_external_id(session, external_id=employee).id}"


def _cache_path(
    cache_dir: Path,
    cycle: Cycle,
    chart: str,
    fmt: str,
    department: str | None,
    employee: str | None,
    newest: datetime | None,
    focus: str = "",
) -> Path:
    # Hashed: keys may carry user input, never path parts.
    key = "\x00".join(
        [department or "", employee or "", newest.isoformat() if newest else "", focus]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return _cycle_cache(cache_dir, cycle) / f"{chart}-{digest}.{fmt}"


def _cycle_cache(cache_dir: Path, cycle: Cycle) -> Path:
    ready = cycle.results_ready_at.strftime("%Y%m%dT%H%M%S%f") if cycle.results_ready_at else "0"
    return cache_dir / f"cycle-{cycle.id}" / ready


PRERENDERED = "prerendered"  # marker file: every department chart of the cycle is on disk


def prerender_department_charts(
    session: Session,
    *,
    cycle_id: int,
    cache_dir: Path,
    seconds: float,
    share: tuple[int, int] = (0, 1),
) -> bool:
    """Render the PNG department charts (heatmap, departments) of every department of a
    closed cycle into the cache, for at most about ``seconds``; True when all are there.

    Run by the worker after a close, so HR and the HRIS read every department's chart
    from disk instead of waiting for matplotlib. Resumes where it stopped: a chart whose
    file exists is skipped. ``share=(i, n)`` draws only the departments whose id is
    ``i`` modulo ``n`` (one of ``n`` processes drawing side by side); the whole cycle's
    marker is written only by a call for all of them.
    """
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    done = _cycle_cache(cache_dir, cycle) / PRERENDERED
    if done.exists():
        return True
    deadline = time.monotonic() + seconds
    part, parts = share
    departments = session.scalars(
        select(CycleDepartment.department_id)
        .where(CycleDepartment.cycle_id == cycle_id)
        .order_by(CycleDepartment.department_id)
    ).all()
    for department_id in departments:
        if department_id % parts != part:
            continue
        for chart in DEPARTMENT_CHARTS:
            # Charts drawn on an earlier pass: a stat, not two queries and a read each.
            key = _DEPARTMENT_KEY.format(department_id)
            if _cache_path(cache_dir, cycle, chart, "png", key, None, None).exists():
                continue
            if time.monotonic() > deadline:
                return False
            chart_bytes(
                session,
                cycle_id=cycle_id,
                chart=chart,
                fmt="png",
                department=str(department_id),
                cache_dir=cache_dir,
            )
    if parts == 1:
        done.parent.mkdir(parents=True, exist_ok=True)
        done.touch()
    return True


def _store(path: Path, data: bytes) -> None:
    """Write atomically (a reader sees the whole file or none) and drop the directories
    of earlier computations of the same cycle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.parent.iterdir():
        if stale != path.parent and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def download_name(
    session: Session,
    *,
    cycle_id: int,
    chart: str,
    fmt: str,
    department: str | None = None,
    employee: str | None = None,
) -> str:
    """``<cycle>-<department or employee>-<chart>.<fmt>`` (company-wide: ``company``)."""
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    subject: str | None = None
    if employee and chart in ("employee", "trend-employee"):
        subject = service.employee_by_external_id(session, external_id=employee).full_name
    elif department and chart in ("departments", "heatmap", "trend-department"):
        subject = service.department_in_cycle(
            session, cycle_id=cycle_id, department=department
        ).name
    return chart_filename(cycle.name, subject, chart, fmt)
