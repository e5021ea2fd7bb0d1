"""Charts of the stored results (matplotlib, Agg backend), rendered to PNG, SVG or PDF bytes.

Every chart reads the same suppressed results as the tables, so nothing below k can
appear on a chart either; each carries the cycle's name and k in its footer. Figures
are built with the object API (no pyplot state), so rendering is thread-safe.

Charts are drawn on request (a department's heatmap at most a few tens of milliseconds),
so they avoid matplotlib's costly conveniences: each chart sizes its figure and places
its axes from the measured widths of its labels (no constrained layout), row and column
names are plain texts rather than ticks, heatmap values are one artist, and the PNG
canvas draws text from cached glyph outlines and is written without Pillow.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import struct
import textwrap
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import matplotlib
import numpy

matplotlib.use("Agg")

from matplotlib import rc_context
from matplotlib.artist import Artist, allow_rasterization
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.markers import TICKDOWN, TICKLEFT
from matplotlib.path import Path
from matplotlib.text import Text
from matplotlib.textpath import TextPath, TextToPath
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Affine2D, ScaledTranslation
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.cycles.models import Cycle, CycleDepartment
from app.errors import Invalid, NotFound
from app.reports import service
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
MAX_DEPARTMENTS = 30
RC: dict[Any, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller files, searchable, printable
    "pdf.fonttype": 42,
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titleweight": "bold",
    # Names are data, not TeX: a department called "$x$" is drawn as typed.
    "text.parse_math": False,
}
ACCENT = "#2f5bd3"
MUTED = "#9aa3b5"
GREY = "#5b6478"
INK = "#1d2433"
HEAT_COLORS = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#e4e8f2")
PNG_DPI = 120  # PNG is for screens; print uses the vector SVG/PDF
VECTOR_DPI = 100

# Layout. The charts place their axes themselves, from the measured widths of the labels
# around them: matplotlib's constrained layout measured every artist on an extra draw pass
# per render, which was most of a chart's time. Lengths in inches, font sizes in points.
PAD = 0.1  # white space along the figure's edges
GAP = 0.08  # between the footer and the axis labels above it
FONT = 10.0  # tick labels, axis labels, legends (RC font.size)
TITLE = 12.0  # axes titles ("large")
TITLE_SPACE = 6 / 72  # axes.titlepad
TICKS = (3.5 + 3.5) / 72  # tick length + tick label pad
LABEL_SPACE = 4 / 72  # axes.labelpad
FOOTER = 7.5
CELL = 8.0  # heatmap cell values
MAX_ROW_LABEL = 3.8  # department / competency names longer than this end in "…"
MAX_COLUMN_LABEL = 2.0  # heatmap competency names (rotated) and trend cycle names
ROTATION = 30  # degrees of rotated x tick labels
_SIN, _COS = math.sin(math.radians(ROTATION)), math.cos(math.radians(ROTATION))
_TEXT_PATHS = TextToPath()


class ChartCache:
    """A small LRU of rendered charts. Results of a closed cycle never change, and the
    key carries the time they were computed, so a recompute never serves a stale image."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: bytes) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def render(fig: Figure, fmt: str) -> bytes:
    """The figure as PNG, SVG or PDF bytes."""
    if fmt not in FORMATS:
        raise Invalid(f"Unknown chart format {fmt!r}; use png, svg or pdf.")
    buffer = io.BytesIO()
    with rc_context(RC):
        if fmt == "png":
            _write_png(fig, buffer)
        else:
            fig.savefig(buffer, format=fmt, dpi=VECTOR_DPI, metadata=_metadata(fmt))
    return buffer.getvalue()


def _write_png(fig: Figure, buffer: io.BytesIO) -> None:
    """Draw the figure on an Agg canvas and write it as an RGB PNG.

    Written here rather than by savefig (Pillow): the background is opaque, so the alpha
    channel goes, and the rows are stored unfiltered with a fast zlib level. Pillow's
    per-row adaptive filtering took two to three times as long for files within a few
    percent of the size (charts are mostly flat colour)."""
    fig.set_dpi(PNG_DPI)
    canvas = _Canvas(fig)
    canvas.draw()
    pixels = numpy.asarray(canvas.buffer_rgba())
    height, width = pixels.shape[:2]
    pixels = pixels.reshape(height, 4 * width)
    rows = numpy.zeros((height, 1 + 3 * width), dtype=numpy.uint8)  # filter byte 0: none
    for channel in range(3):  # red, green, blue; not alpha
        rows[:, 1 + channel :: 3] = pixels[:, channel::4]
    per_metre = round(PNG_DPI / 0.0254)

    def chunk(kind: bytes, data: bytes) -> None:
        buffer.write(struct.pack(">I", len(data)) + kind + data)
        buffer.write(struct.pack(">I", zlib.crc32(kind + data)))

    buffer.write(b"\x89PNG\r\n\x1a\n")
    chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))  # 8-bit RGB
    for key, value in _metadata("png").items():
        chunk(b"tEXt", f"{key}\0{value}".encode("latin-1"))
    chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1))
    chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
    chunk(b"IEND", b"")


class _Renderer(RendererAgg):
    """Agg, drawing text from cached glyph outlines.

    matplotlib's Agg text loads, hints and rasterises every glyph from the font file for
    every string on every draw (and measures it on a second pass), which was most of a
    chart's drawing time. Here each distinct line of text is turned into an outline once
    per process and filled like any other path; measurements come from the same unhinted
    outlines, so alignment stays exact. Mathtext is off (RC), so every string is plain.
    """

    def draw_text(
        self,
        gc: Any,
        x: float,
        y: float,
        s: str,
        prop: Any,
        angle: float,
        ismath: Any = False,
        mtext: Any = None,
    ) -> None:
        if ismath:
            super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
            return
        path = _glyphs(s, prop.copy())
        if path is None:  # blank
            return
        scale = self.points_to_pixels(prop.get_size_in_points()) / _TEXT_PATHS.FONT_SCALE
        transform = Affine2D().scale(scale).rotate_deg(angle).translate(x, self.height - y)
        gc.set_linewidth(0.0)
        self.draw_path(gc, path, transform, rgbFace=gc.get_rgb())

    def get_text_width_height_descent(
        self, s: str, prop: Any, ismath: Any
    ) -> tuple[float, float, float]:
        if ismath:
            return super().get_text_width_height_descent(s, prop, ismath)
        width, height, descent = _metrics(s, prop.copy())
        scale = self.points_to_pixels(1.0)
        return width * scale, height * scale, descent * scale


class _Canvas(FigureCanvasAgg):
    def get_renderer(self) -> RendererAgg:
        renderer = getattr(self, "renderer", None)
        if not isinstance(renderer, _Renderer):
            width, height = self.get_width_height(physical=True)
            renderer = self.renderer = _Renderer(width, height, self.figure.dpi)
        return renderer


@functools.lru_cache(maxsize=1024)  # about 0.5 kB per character
def _glyphs(text: str, prop: FontProperties) -> Path | None:
    """The outline of one line of text at TextToPath's FONT_SCALE points (None if blank)."""
    vertices, codes = _TEXT_PATHS.get_text_path(prop, text)
    return Path(vertices, codes, readonly=True) if len(codes) else None


@functools.lru_cache(maxsize=8192)
def _metrics(text: str, prop: FontProperties) -> tuple[float, float, float]:
    """Width, height and descent of one line of text, in points."""
    width, height, descent = _TEXT_PATHS.get_text_width_height_descent(text, prop, ismath=False)
    return float(width), float(height), float(descent)


def _metadata(fmt: str) -> dict[str, Any]:
    # Fixed metadata: no creation date, so the same chart gives the same bytes.
    if fmt == "png":
        return {"Software": "Peer360"}
    if fmt == "pdf":
        return {"Creator": "Peer360", "CreationDate": None}
    return {"Creator": "Peer360", "Date": None}


# --- measuring and placing ------------------------------------------------------------------


def _width(text: str, size: float = FONT, bold: bool = False) -> float:
    """The width in inches of one line of ``text`` in the charts' font."""
    return _metrics(text, _font(size, bold))[0] / 72


@functools.lru_cache(maxsize=64)
def _font(size: float, bold: bool) -> FontProperties:
    return FontProperties(size=size, weight="bold" if bold else "normal")


def _line(size: float = FONT, lines: int = 1) -> float:
    """The height in inches of ``lines`` lines of text (matplotlib's line spacing, 1.2)."""
    return lines * size * 1.2 / 72


def _fit(text: str, limit: float, size: float = FONT, bold: bool = False) -> str:
    """``text``, cut short with "…" to at most ``limit`` inches."""
    if _width(text, size, bold) <= limit:
        return text
    low, high = 0, len(text) - 1  # the longest prefix that fits with the ellipsis
    while low < high:
        mid = (low + high + 1) // 2
        if _width(text[:mid].rstrip() + "…", size, bold) <= limit:
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip() + "…"


def _widest(texts: Iterable[str], size: float = FONT) -> float:
    return max((_width(t, size) for t in texts), default=0.0)


def _tick_labels_width(axis: Axis) -> float:
    """The width of the widest tick label ``axis`` will draw at its current limits."""
    low, high = sorted(axis.get_view_interval())
    slack = (high - low) * 1e-9
    locs = [v for v in axis.get_major_locator()() if low - slack <= v <= high + slack]
    return _widest(axis.get_major_formatter().format_ticks(locs))


def _rotated_height(labels: Sequence[str]) -> float:
    """The height of the widest x tick label turned by ROTATION degrees."""
    return _widest(labels) * _SIN + _line() * _COS


def _reach(labels: Sequence[str], spacing: float) -> float:
    """How far turned x tick labels reach left of the axes: each ends at its tick, ticks
    ``spacing`` inches apart from half a spacing in. They pass under the y tick labels
    but must not leave the figure."""
    return max(
        (_width(t) * _COS + _line() * _SIN - (j + 0.5) * spacing for j, t in enumerate(labels)),
        default=0.0,
    )


def _figure(width: float, height: float) -> Figure:
    with rc_context(RC):
        return Figure(figsize=(width, height), dpi=PNG_DPI)


def _place(fig: Figure, ax: Axes, *, left: float, right: float, top: float, bottom: float) -> None:
    """Put the axes' frame ``left``/``right``/``top``/``bottom`` inches in from the edges."""
    width, height = fig.get_size_inches()
    ax.set_position(
        (left / width, bottom / height, 1 - (left + right) / width, 1 - (top + bottom) / height)
    )


def _axes(fig: Figure, *, left: float, right: float, top: float, bottom: float) -> Axes:
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    _place(fig, ax, left=left, right=right, top=top, bottom=bottom)
    return ax


def _names(fig: Figure, ax: Axes, axis: str, labels: Sequence[str], rotation: float = 0) -> None:
    """Tick marks and labels at 0, 1, 2… along the left (``axis="y"``) or the bottom
    (``"x"``) of the axes, where matplotlib's ticks would put them.

    Drawn as one line of markers and a plain text per label: a matplotlib tick is two
    lines and two texts, created, copied and laid out one by one, which made the ticks a
    large share of a chart with many rows."""
    marks: dict[str, Any] = {
        "linestyle": "none",
        "color": "black",
        "markersize": 3.5,
        "markeredgewidth": 0.8,
        "clip_on": False,
    }
    at = list(range(len(labels)))
    if axis == "y":
        ax.set_yticks([])
        transform = ax.get_yaxis_transform()  # x along the axes, y in data
        ax.plot([0.0] * len(at), at, marker=TICKLEFT, transform=transform, **marks)
        shift = ScaledTranslation(-TICKS, 0, fig.dpi_scale_trans)
        for y, label in zip(at, labels, strict=True):
            ax.text(
                0,
                y,
                label,
                transform=transform + shift,
                ha="right",
                va="center_baseline",
                fontsize=FONT,
                clip_on=False,
            )
    else:
        ax.set_xticks([])
        transform = ax.get_xaxis_transform()  # x in data, y along the axes
        ax.plot(at, [0.0] * len(at), marker=TICKDOWN, transform=transform, **marks)
        shift = ScaledTranslation(0, -TICKS, fig.dpi_scale_trans)
        for x, label in zip(at, labels, strict=True):
            if not label:
                continue
            ax.text(
                x,
                0,
                label,
                transform=transform + shift,
                ha="right" if 0 < rotation < 90 else "center",
                va="top",
                rotation=rotation,
                fontsize=FONT,
                clip_on=False,
            )


def _top() -> float:
    """The space above the axes for their title."""
    return PAD + _line(TITLE) + TITLE_SPACE


def _title(fig: Figure, ax: Axes, text: str, *, left: float, right: float) -> None:
    """The bold axes title, centred over the axes as far as it stays inside the figure;
    smaller (and at worst cut short) when it is wider than the figure."""
    width, height = fig.get_size_inches()
    room = width - 2 * PAD
    size = TITLE
    if _width(text, size, bold=True) > room:
        size = max(9.0, size * room / _width(text, size, bold=True))
        text = _fit(text, room, size, bold=True)
    half = _width(text, size, bold=True) / 2
    centre = min(max(left + (width - left - right) / 2, PAD + half), width - PAD - half)
    pad = TITLE_SPACE
    if centre - half < left or centre + half > width - right:
        # Wider than the axes, it passes over the top y tick label: lift it clear.
        pad += _line() / 2
        box = ax.get_position()
        ax.set_position((box.x0, box.y0, box.width, box.height - _line() / 2 / height))
    ax.set_title(text, fontsize=size, x=(centre - left) / (width - left - right), pad=pad * 72)


def _footer_lines(cycle: CycleRef, extra: str, width: float) -> list[str]:
    """The footer, wrapped at its " · " separators when the figure is too narrow for it."""
    parts = [
        f"scale {cycle.scale_min}–{cycle.scale_max}",
        f"shown only with at least k = {cycle.min_raters} raters",
        *([extra] if extra else []),
    ]
    room = width - 2 * PAD
    lines = [_fit(f"Peer360 · cycle {cycle.name}", room, FOOTER)]
    for part in parts:
        joined = f"{lines[-1]} · {part}"
        if _width(joined, FOOTER) <= room:
            lines[-1] = joined
        else:
            lines.append(part)
    return lines


def _bottom(lines: Sequence[str]) -> float:
    """The space the footer takes at the bottom of the figure."""
    return PAD + _line(FOOTER, len(lines)) + GAP


def _footer(fig: Figure, lines: Sequence[str]) -> None:
    width, height = fig.get_size_inches()
    fig.text(
        PAD / width,
        PAD / height,
        "\n".join(lines),
        ha="left",
        va="bottom",
        fontsize=FOOTER,
        color=GREY,
    )


def _message(width: float, height: float, cycle: CycleRef, message: str, extra: str = "") -> Figure:
    """A figure that only says why there is no chart."""
    fig = _figure(width, height)
    lines = _footer_lines(cycle, extra, width)
    middle = (_bottom(lines) + (height - _bottom(lines)) / 2) / height
    with rc_context(RC):
        fig.text(0.5, middle, message, ha="center", va="center", fontsize=13, color=GREY, wrap=True)
    _footer(fig, lines)
    return fig


def _label(d: DepartmentResultRead, shown: Sequence[DepartmentResultRead]) -> str:
    # Right-aligned tick labels swallow indentation: mark sub-departments instead.
    top = min(x.level for x in shown)
    return _fit(("↳ " * (d.level - top)) + d.name, MAX_ROW_LABEL)


@functools.lru_cache(maxsize=512)
def _outline(label: str, size: float) -> Path:
    """The glyph outline of ``label`` in points, placed around the origin as a Text with
    ha="center", va="center" would be."""
    prop = _font(size, False)
    path = TextPath((0, 0), label, prop=prop)
    xs = path.vertices[:, 0]
    centre = (xs.min() + xs.max()) / 2 if len(xs) else 0.0
    _advance, height, descent = _metrics("lp", prop)
    return Path(path.vertices - (centre, height / 2 - descent), path.codes, readonly=True)


class _CellLabels(Artist):
    """Short labels centred on data points, e.g. the values in the heatmap's cells.

    On the raster (Agg) canvas they are one collection of cached glyph outlines, a single
    draw call, where a Text per cell (created, laid out and drawn one by one) was most of
    a large heatmap's time. SVG and PDF get real text, so the values stay searchable.
    """

    zorder = 3  # as Text: above images and patches

    def __init__(
        self, points: Sequence[tuple[float, float]], labels: Sequence[str], *, size: float
    ) -> None:
        super().__init__()
        self.points = list(points)
        self.labels = list(labels)
        self.size = size

    @allow_rasterization
    def draw(self, renderer: Any) -> None:
        if not self.get_visible() or not self.labels:
            return
        parts = [self._outlines()] if isinstance(renderer, RendererAgg) else self._texts()
        figure = self.get_figure(root=False)
        for part in parts:
            if figure is not None:
                part.set_figure(figure)
            part.set_clip_path(self.get_clip_path())
            part.draw(renderer)
        self.stale = False

    def _outlines(self) -> PathCollection:
        # sizes=[1]: each outline scaled from points to pixels at the figure's dpi
        return PathCollection(
            [_outline(label, self.size) for label in self.labels],
            sizes=[1.0],
            offsets=self.points,
            offset_transform=self.get_transform(),
            facecolors=INK,
            edgecolors="none",
            linewidths=0.0,
        )

    def _texts(self) -> list[Artist]:
        return [
            Text(
                x,
                y,
                label,
                ha="center",
                va="center",
                fontsize=self.size,
                color=INK,
                transform=self.get_transform(),
            )
            for (x, y), label in zip(self.points, self.labels, strict=True)
        ]


# --- the charts -----------------------------------------------------------------------


def departments_bar(
    cycle: CycleRef, departments: Sequence[DepartmentResultRead], company: float | None
) -> Figure:
    """Department coefficients as horizontal bars (company mean dashed)."""
    height = max(3.0, 0.42 * len(departments) + 1.6)
    if not departments:
        return _message(8.5, height, cycle, "No departments in this cycle")
    labels = [_label(d, departments) for d in departments]
    xlabel = "Customer-orientation coefficient (mean of the employees' coefficients)"
    left = PAD + _widest(labels) + TICKS
    right = PAD + 0.15  # half the last x tick label at most
    width = max(8.5, left + max(4.5, _width(xlabel)) + right)
    lines = _footer_lines(cycle, "n = employees included", width)
    bottom = _bottom(lines) + TICKS + _line() + LABEL_SPACE + _line()
    fig = _figure(width, height)
    with rc_context(RC):
        ax = _axes(fig, left=left, right=right, top=_top(), bottom=bottom)
        values = [d.coefficient if d.coefficient is not None else 0.0 for d in departments]
        y = list(range(len(departments)))
        bars = ax.barh(
            y, [v - cycle.scale_min for v in values], left=cycle.scale_min, color=ACCENT, height=0.6
        )
        for bar, d in zip(bars, departments, strict=True):
            if d.coefficient is None:
                bar.set_visible(False)
                ax.text(
                    cycle.scale_min + 0.05,
                    bar.get_y() + 0.3,
                    "not enough responses",
                    va="center",
                    fontsize=8,
                    color=GREY,
                )
            else:
                ax.text(
                    d.coefficient + 0.05,
                    bar.get_y() + 0.3,
                    f"{d.coefficient:.2f}  (n={d.employees_included})",
                    va="center",
                    fontsize=8,
                )
        if company is not None:
            ax.axvline(
                company,
                color="#b42318",
                linestyle="--",
                linewidth=1,
                label=f"company {company:.2f}",
            )
            ax.legend(frameon=False, loc="lower right", fontsize=8)
        _names(fig, ax, "y", labels)
        ax.invert_yaxis()
        ax.set_xlim(cycle.scale_min, cycle.scale_max + (cycle.scale_max - cycle.scale_min) * 0.18)
        ax.set_xlabel(xlabel)
        _title(fig, ax, f"Department coefficients — {cycle.name}", left=left, right=right)
    _footer(fig, lines)
    return fig


def heatmap_chart(
    cycle: CycleRef, departments: Sequence[DepartmentResultRead], codes: Sequence[tuple[str, str]]
) -> Figure:
    """Departments x competencies, each cell the rolled-up competency mean."""
    if not departments or not codes:
        return _message(8.0, 3.0, cycle, "No data to show")
    rows = [_label(d, departments) for d in departments]
    columns = [_fit(name, MAX_COLUMN_LABEL) for _, name in codes]
    cell = max(0.8, 3.0 / len(codes))  # column width; rows are 0.42 in
    plot_width, plot_height = cell * len(codes), max(1.4, 0.42 * len(rows))
    left = PAD + max(_widest(rows) + TICKS, _reach(columns, cell))
    bar_space, bar_width = 0.2, 0.15
    scale_labels = _widest([str(cycle.scale_min), str(cycle.scale_max)])
    right = PAD + bar_space + bar_width + TICKS + scale_labels + LABEL_SPACE + _line()
    width = left + plot_width + right
    lines = _footer_lines(cycle, "– = not enough responses", width)
    bottom = _bottom(lines) + TICKS + _rotated_height(columns)
    height = _top() + plot_height + bottom
    fig = _figure(width, height)
    with rc_context(RC):
        ax = _axes(fig, left=left, right=right, top=_top(), bottom=bottom)
        nan = float("nan")
        matrix = []
        for d in departments:
            means = {m.code: m.mean for m in d.competencies}
            matrix.append([means.get(code, nan) for code, _ in codes])
        # Cells as a mesh of quads, not an image: an image is resampled and colour-mapped
        # pixel by pixel at the output size. Missing means are masked: the "bad" colour.
        mesh = ax.pcolormesh(
            numpy.arange(len(codes) + 1) - 0.5,
            numpy.arange(len(rows) + 1) - 0.5,
            numpy.ma.masked_invalid(matrix),
            cmap=HEAT_COLORS,
            vmin=cycle.scale_min,
            vmax=cycle.scale_max,
        )
        ax.set_xlim(-0.5, len(codes) - 0.5)
        ax.set_ylim(len(rows) - 0.5, -0.5)  # first department on top
        ax.add_artist(
            _CellLabels(
                [(j, i) for i, row in enumerate(matrix) for j in range(len(row))],
                ["–" if v != v else f"{v:.1f}" for row in matrix for v in row],
                size=CELL,
            )
        )
        _names(fig, ax, "x", columns, rotation=ROTATION)
        _names(fig, ax, "y", rows)
        ax.spines[:].set_visible(False)
        _title(fig, ax, f"Department × competency — {cycle.name}", left=left, right=right)
        # the colour bar: 80% of the axes' (final) height, centred, right of the axes
        box = ax.get_position()
        bar = fig.add_axes(
            (
                box.x1 + bar_space / width,
                box.y0 + 0.1 * box.height,
                bar_width / width,
                0.8 * box.height,
            )
        )
        colorbar = fig.colorbar(mesh, cax=bar, label="Mean score")
        # whole numbers, a label every 0.22 in at most (matplotlib's choice runs to 2.5s)
        colorbar.locator = MaxNLocator(
            nbins=max(2, int(0.8 * box.height * height / 0.22)), steps=[1, 2, 5, 10], integer=True
        )
    _footer(fig, lines)
    return fig


def distribution_chart(cycle: CycleRef, company: CompanyResultRead) -> Figure:
    """The distribution of the included employees' coefficients."""
    width, height = 8.0, 4.0
    edges, counts = company.distribution.edges, company.distribution.counts
    if not counts or not sum(counts):
        return _message(width, height, cycle, "Not enough responses")
    lines = _footer_lines(cycle, "", width)
    right = PAD + 0.15
    bottom = _bottom(lines) + TICKS + _line() + LABEL_SPACE + _line()
    fig = _figure(width, height)
    with rc_context(RC):
        ax = _axes(fig, left=1.0, right=right, top=_top(), bottom=bottom)
        widths = [b - a for a, b in itertools.pairwise(edges)]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color=ACCENT, edgecolor="white")
        if company.coefficient is not None:
            ax.axvline(
                company.coefficient,
                color="#b42318",
                linestyle="--",
                linewidth=1,
                label=f"company mean {company.coefficient:.2f}",
            )
            ax.legend(frameon=False)
        ax.set_xlabel("Customer-orientation coefficient")
        ax.set_ylabel("Employees")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(cycle.scale_min, cycle.scale_max)
        left = PAD + _line() + LABEL_SPACE + _tick_labels_width(ax.yaxis) + TICKS
        _place(fig, ax, left=left, right=right, top=_top(), bottom=bottom)
        _title(
            fig,
            ax,
            f"Distribution of coefficients — {cycle.name} ({company.employees_included} employees)",
            left=left,
            right=right,
        )
    _footer(fig, lines)
    return fig


def employee_profile(
    cycle: CycleRef, employee: EmployeeResultRead, company: CompanyResultRead
) -> Figure:
    """One employee's competency means next to the company's."""
    width, height = 8.0, max(3.2, 0.5 * len(company.competencies) + 1.8)
    if employee.status != "ok":
        return _message(width, height, cycle, f"{employee.full_name}: not enough responses")
    rows = company.competencies
    labels = [_fit(c.name, MAX_ROW_LABEL) for c in rows]
    legend = "company mean"
    # handle, its pads and the space to the axes, in font sizes (matplotlib's defaults)
    left = PAD + _widest(labels) + TICKS
    right = PAD + _width(legend) + (0.5 + 0.4 + 2.0 + 0.8 + 0.4) * FONT / 72
    lines = _footer_lines(cycle, "", width)
    bottom = _bottom(lines) + TICKS + _line() + LABEL_SPACE + _line()
    fig = _figure(width, height)
    with rc_context(RC):
        ax = _axes(fig, left=left, right=right, top=_top(), bottom=bottom)
        mine = {m.code: m.mean for m in employee.competencies}
        for i, c in enumerate(rows):
            value = mine.get(c.code)
            if value is None:
                ax.text(
                    cycle.scale_min + 0.05,
                    i,
                    "not enough answers",
                    va="center",
                    fontsize=8,
                    color=GREY,
                )
            else:
                ax.barh(i, value - cycle.scale_min, left=cycle.scale_min, color=ACCENT, height=0.55)
                ax.text(value + 0.05, i, f"{value:.2f}", va="center", fontsize=8)
            ax.plot([c.mean], [i], marker="|", markersize=22, markeredgewidth=3, color="#f79009")
        ax.plot(
            [],
            [],
            marker="|",
            linestyle="none",
            color="#f79009",
            markersize=12,
            markeredgewidth=3,
            label=legend,
        )
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        _names(fig, ax, "y", labels)
        ax.invert_yaxis()
        ax.set_xlim(cycle.scale_min, cycle.scale_max + (cycle.scale_max - cycle.scale_min) * 0.1)
        coefficient = f"{employee.coefficient:.2f}" if employee.coefficient is not None else "–"
        rest = f" — {cycle.name}: coefficient {coefficient} ({employee.raters} raters)"
        name = _fit(
            employee.full_name, max(1.0, width - 2 * PAD - _width(rest, TITLE, True)), TITLE, True
        )
        _title(fig, ax, name + rest, left=left, right=right)
        ax.set_xlabel("Mean score")
    _footer(fig, lines)
    return fig


def trend_chart(title: str, points: Sequence[TrendPoint], cycle: CycleRef) -> Figure:
    """A coefficient over quarters, on the scale of the latest cycle (earlier cycles on
    another scale are mapped onto it), with 95% intervals where known."""
    width, height = 8.0, 4.0
    shown = [p for p in points if p.coefficient is not None]
    if not shown:
        return _message(width, height, cycle, f"{title}: not enough responses")
    target = points[-1].cycle
    rescaled = any(
        (p.cycle.scale_min, p.cycle.scale_max) != (target.scale_min, target.scale_max)
        for p in points
    )
    lines = _footer_lines(
        cycle,
        "bars: 95% interval" + (" · earlier scales mapped onto this one" if rescaled else ""),
        width,
    )
    names = [_fit(p.cycle.name, MAX_COLUMN_LABEL) for p in points]
    step = (width - 1.0) / len(points)  # about the distance between two points
    # values and "not enough responses" next to the points only while they fit between
    with_values = step >= 8 / 72 + _width("00.00", 8) + 0.04
    with_gaps = step >= _width("responses", 7) + 0.08
    # room for the last value's label, right of its point half a step in from the edge
    right = PAD + (max(0.0, 0.4 - step / 2) if with_values else 0.1)
    fig = _figure(width, height)
    with rc_context(RC):
        ax = _axes(fig, left=0.8, right=right, top=_top(), bottom=1.0)

        def on_target(value: float | None, ref: CycleRef) -> float | None:
            if value is None:
                return None
            return target.scale_min + (value - ref.scale_min) * (
                target.scale_max - target.scale_min
            ) / (ref.scale_max - ref.scale_min)

        xs = list(range(len(points)))
        ys = [on_target(p.coefficient, p.cycle) for p in points]
        ax.plot(
            [x for x, v in zip(xs, ys, strict=True) if v is not None],
            [v for v in ys if v is not None],
            marker="o",
            color=ACCENT,
            linewidth=2,
        )
        for x, p, v in zip(xs, points, ys, strict=True):
            if v is None:
                if with_gaps:
                    ax.text(
                        x,
                        target.scale_min + 0.1,
                        "not enough\nresponses",
                        ha="center",
                        fontsize=7,
                        color=GREY,
                    )
                continue
            low, high = on_target(p.ci_low, p.cycle), on_target(p.ci_high, p.cycle)
            if low is not None and high is not None:
                ax.vlines(x, low, high, color=MUTED, linewidth=3, alpha=0.7)
            if with_values:
                ax.annotate(
                    f"{v:.2f}",
                    (x, v),
                    textcoords="offset points",
                    xytext=(8, 0),
                    va="center",
                    fontsize=8,
                )
        ax.set_xlim(-0.5, len(points) - 0.5)
        ax.set_ylim(target.scale_min, target.scale_max)
        ax.set_ylabel(f"Coefficient (scale {target.scale_min}–{target.scale_max})")
        ax.grid(axis="y", color="#e4e8f2")
        left = PAD + _line() + LABEL_SPACE + _tick_labels_width(ax.yaxis) + TICKS
        # cycle names side by side while they fit under their points, turned when not,
        # upright (and only every few) when even turned ones would run into each other
        spacing = (width - left - right) / len(points)
        if _widest(names) + 0.1 <= spacing:
            _names(fig, ax, "x", names)
            names_height = _line()
        elif spacing * _SIN >= 1.2 * _line():
            _names(fig, ax, "x", names, rotation=ROTATION)
            names_height = _rotated_height(names)
            left = max(left, PAD + _reach(names, spacing))
        else:
            step = math.ceil(1.2 * _line() / spacing)
            names = [n if (len(names) - 1 - i) % step == 0 else "" for i, n in enumerate(names)]
            _names(fig, ax, "x", names, rotation=90)
            names_height = _widest(names)
        bottom = _bottom(lines) + TICKS + names_height
        _place(fig, ax, left=left, right=right, top=_top(), bottom=bottom)
        _title(fig, ax, f"Trend — {title}", left=left, right=right)
    _footer(fig, lines)
    return fig


# --- choosing the data ---------------------------------------------------------------------


def chart_departments(
    session: Session, *, cycle_id: int, department: str | None
) -> list[DepartmentResultRead]:
    """The departments a chart shows: one department and its children, or the top levels."""
    if department:
        chosen = service.department_in_cycle(session, cycle_id=cycle_id, department=department)
        children = session.scalars(
            select(CycleDepartment.department_id).where(
                CycleDepartment.cycle_id == cycle_id,
                CycleDepartment.parent_id == chosen.department_id,
            )
        )
        ids = [chosen.department_id, *children]
        picked = service.department_results(session, cycle_id=cycle_id, department_ids=ids)
    else:
        picked = service.department_results(session, cycle_id=cycle_id, max_level=1)
    if len(picked) > MAX_DEPARTMENTS:
        keep = {
            d.department_id for d in sorted(picked, key=lambda d: -d.suppliers)[:MAX_DEPARTMENTS]
        }
        picked = [d for d in picked if d.department_id in keep]
    return picked


def _employee(session: Session, *, cycle_id: int, employee: str | None) -> EmployeeResultRead:
    if not employee:
        raise Invalid(
            "This chart needs ?employee=<external id>.",
            errors=[{"field": "employee", "message": "required"}],
        )
    found = service.employee_by_external_id(session, external_id=employee)
    return service.employee_result(session, cycle_id=cycle_id, employee_id=found.id)


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
    if chart == "departments":
        company = service.company_results(session, cycle_id=cycle_id)
        return departments_bar(
            ref,
            chart_departments(session, cycle_id=cycle_id, department=department),
            company.coefficient,
        )
    if chart == "heatmap":
        codes = [(c.code, c.name) for c in service.competencies(session, cycle_id=cycle_id)]
        return heatmap_chart(
            ref, chart_departments(session, cycle_id=cycle_id, department=department), codes
        )
    if chart == "distribution":
        return distribution_chart(ref, service.company_results(session, cycle_id=cycle_id))
    if chart == "employee":
        return employee_profile(
            ref,
            _employee(session, cycle_id=cycle_id, employee=employee),
            service.company_results(session, cycle_id=cycle_id),
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
        )
    raise NotFound(f"There is no chart {chart!r}; charts: {', '.join(CHARTS)}.")


def chart_bytes(
    session: Session,
    *,
    cycle_id: int,
    chart: str,
    fmt: str,
    department: str | None = None,
    employee: str | None = None,
    cache: ChartCache | None = None,
) -> bytes:
    """A rendered chart, from the cache when the same results were rendered before."""
    if fmt not in FORMATS:
        raise NotFound(f"Unknown chart format {fmt!r}; use png, svg or pdf.")
    if chart not in CHARTS:
        raise NotFound(f"There is no chart {chart!r}; charts: {', '.join(CHARTS)}.")
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    # Trends also depend on earlier cycles: the newest computation time covers them all.
    newest: datetime | None = session.scalar(select(func.max(Cycle.results_ready_at)))
    key = (cycle_id, cycle.results_ready_at, newest, chart, fmt, department, employee)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    fig = build_chart(
        session, cycle_id=cycle_id, chart=chart, department=department, employee=employee
    )
    data = render(fig, fmt)
    if cache is not None:
        cache.put(key, data)
    return data


def feedback_report(session: Session, *, cycle_id: int, employee_id: int) -> bytes:
    """A printable PDF for the feedback conversation: summary, profile, trend, comments."""
    cycle = service.results_cycle(session, cycle_id=cycle_id)
    ref = service.cycle_ref(session, cycle=cycle)
    employee = service.employee_result(session, cycle_id=cycle_id, employee_id=employee_id)
    company = service.company_results(session, cycle_id=cycle_id)
    pages = [_summary_page(ref, employee)]
    if employee.status == "ok":
        pages.append(employee_profile(ref, employee, company))
        pages.append(
            trend_chart(
                employee.full_name,
                service.employee_trend(session, employee_id=employee_id, up_to=cycle),
                ref,
            )
        )
        pages.append(
            _comments_page(
                ref, employee, service.comments(session, cycle_id=cycle_id, employee_id=employee_id)
            )
        )
    buffer = io.BytesIO()
    with (
        rc_context(RC),
        PdfPages(
            buffer,
            metadata={
                "Creator": "Peer360",
                "Title": f"Feedback report {employee.full_name} {ref.name}",
            },
        ) as pdf,
    ):
        for page in pages:
            pdf.savefig(page)
    return buffer.getvalue()


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def _page(cycle: CycleRef) -> tuple[Figure, Axes, list[str]]:
    """An A4 portrait page for text: the figure, an axes without frame filling it above
    the footer, and the footer's lines."""
    width, height = 8.27, 11.69
    fig = _figure(width, height)
    footer = _footer_lines(cycle, "", width)
    with rc_context(RC):
        ax = _axes(fig, left=0.0, right=0.0, top=0.0, bottom=_bottom(footer))
        ax.axis("off")
    return fig, ax, footer


def _summary_page(cycle: CycleRef, e: EmployeeResultRead) -> Figure:
    fig, ax, footer = _page(cycle)
    with rc_context(RC):
        lines = [
            f"Feedback report — {e.full_name}",
            f"{e.department_name or 'No department'} · cycle {cycle.name}",
            "",
        ]
        if e.status != "ok":
            lines += [
                f"Not enough responses: fewer than k = {cycle.min_raters} colleagues rated",
                "this employee, so no figures are shown.",
            ]
        else:
            delta = (
                "–"
                if e.delta is None
                else f"{e.delta:+.2f}"
                + (
                    " (larger than its uncertainty)"
                    if e.delta_significant
                    else " (within its uncertainty)"
                )
            )
            lines += [
                f"Customer-orientation coefficient: {_fmt(e.coefficient)}"
                f" on {cycle.scale_min}–{cycle.scale_max}",
                f"95% interval: {_fmt(e.ci_low)} – {_fmt(e.ci_high)}   (SD {_fmt(e.sd)})",
                f"Raters: {e.raters}",
                f"Internal NPS: {_fmt(e.nps, 0)}",
                f"Change since the previous cycle: {delta}",
                f"Rank in the company: {e.company_rank or '–'}"
                f" (percentile {_fmt(e.company_percentile, 0)})",
                f"Rank in the department: {e.department_rank or '–'}"
                f" (percentile {_fmt(e.department_percentile, 0)})",
                "",
                "Competencies:",
                *[f"  {m.name}: {m.mean:.2f}  ({m.count} answers)" for m in e.competencies],
            ]
        ax.text(
            0.02,
            0.98,
            "\n".join(lines),
            va="top",
            ha="left",
            fontsize=11,
            linespacing=1.6,
            family="DejaVu Sans",
        )
    _footer(fig, footer)
    return fig


def _comments_page(cycle: CycleRef, e: EmployeeResultRead, texts: Sequence[str]) -> Figure:
    fig, ax, footer = _page(cycle)
    with rc_context(RC):
        body = [
            f"What colleagues wrote about {e.full_name} ({cycle.name})",
            "(in random order, without dates)",
            "",
        ]
        if not texts:
            body.append("No comments.")
        for text in texts[:40]:
            wrapped = textwrap.wrap(text, 90) or [""]
            body += ["• " + wrapped[0], *["  " + w for w in wrapped[1:6]], ""]
        ax.text(0.02, 0.98, "\n".join(body), va="top", ha="left", fontsize=10, linespacing=1.5)
    _footer(fig, footer)
    return fig
