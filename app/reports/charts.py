"""Charts of the stored results (matplotlib, Agg backend), rendered to PNG, SVG or PDF bytes.

Every chart reads the same suppressed results as the tables, so nothing below k can
appear on a chart either; each carries the cycle's name and k in its footer. Figures
are built with the object API (no pyplot state), so rendering is thread-safe.
"""

from __future__ import annotations

import io
import itertools
import textwrap
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib import rc_context
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
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
}
ACCENT = "#2f5bd3"
MUTED = "#9aa3b5"


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
            # PNG is for screens (print uses the vector PDF/SVG); a lighter zlib level
            # halves the encoding time for a few percent more bytes.
            fig.savefig(
                buffer,
                format=fmt,
                dpi=120,
                metadata=_metadata(fmt),
                pil_kwargs={"compress_level": 3},
            )
        else:
            fig.savefig(buffer, format=fmt, dpi=100, metadata=_metadata(fmt))
    return buffer.getvalue()


def _metadata(fmt: str) -> dict[str, Any]:
    # Fixed metadata: no creation date, so the same chart gives the same bytes.
    if fmt == "png":
        return {"Software": "Peer360"}
    if fmt == "pdf":
        return {"Creator": "Peer360", "CreationDate": None}
    return {"Creator": "Peer360", "Date": None}


def _figure(width: float, height: float) -> Figure:
    with rc_context(RC):
        return Figure(figsize=(width, height), layout="constrained")


def _footer(fig: Figure, cycle: CycleRef, extra: str = "") -> None:
    text = (
        f"Peer360 · cycle {cycle.name} · scale {cycle.scale_min}–{cycle.scale_max} · "
        f"shown only with at least k = {cycle.min_raters} raters"
    )
    # supxlabel, not fig.text: the constrained layout keeps room for it under the axes.
    fig.supxlabel(
        text + (f" · {extra}" if extra else ""), x=0.01, ha="left", fontsize=7.5, color="#5b6478"
    )


def _message(fig: Figure, message: str) -> None:
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=13, color="#5b6478", wrap=True)


def _label(d: DepartmentResultRead, shown: Sequence[DepartmentResultRead]) -> str:
    # Right-aligned tick labels swallow indentation: mark sub-departments instead.
    top = min(x.level for x in shown)
    return ("↳ " * (d.level - top)) + d.name


# --- the charts -----------------------------------------------------------------------


def departments_bar(
    cycle: CycleRef, departments: Sequence[DepartmentResultRead], company: float | None
) -> Figure:
    """Department coefficients as horizontal bars (company mean dashed)."""
    fig = _figure(8.5, max(3.0, 0.42 * len(departments) + 1.6))
    with rc_context(RC):
        if not departments:
            _message(fig, "No departments in this cycle")
            _footer(fig, cycle)
            return fig
        ax = fig.add_subplot()
        labels = [_label(d, departments) for d in departments]
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
                    color="#5b6478",
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
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlim(cycle.scale_min, cycle.scale_max + (cycle.scale_max - cycle.scale_min) * 0.18)
        ax.set_xlabel("Customer-orientation coefficient (mean of the employees' coefficients)")
        ax.set_title(f"Department coefficients — {cycle.name}")
    _footer(fig, cycle, "n = employees included")
    return fig


def heatmap_chart(
    cycle: CycleRef, departments: Sequence[DepartmentResultRead], codes: Sequence[tuple[str, str]]
) -> Figure:
    """Departments x competencies, each cell the rolled-up competency mean."""
    fig = _figure(max(7.0, 1.2 * len(codes) + 3.5), max(3.0, 0.42 * len(departments) + 2.0))
    with rc_context(RC):
        if not departments or not codes:
            _message(fig, "No data to show")
            _footer(fig, cycle)
            return fig
        ax = fig.add_subplot()
        nan = float("nan")
        matrix = []
        for d in departments:
            means = {m.code: m.mean for m in d.competencies}
            matrix.append([means.get(code, nan) for code, _ in codes])
        cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#e4e8f2")
        image = ax.imshow(
            matrix, cmap=cmap, vmin=cycle.scale_min, vmax=cycle.scale_max, aspect="auto"
        )
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(
                    j,
                    i,
                    "–" if value != value else f"{value:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="#1d2433",
                )
        ax.set_xticks(range(len(codes)), [name for _, name in codes], rotation=30, ha="right")
        ax.set_yticks(range(len(departments)), [_label(d, departments) for d in departments])
        ax.spines[:].set_visible(False)
        fig.colorbar(image, ax=ax, label="Mean score", shrink=0.8)
        ax.set_title(f"Department × competency — {cycle.name}")
    _footer(fig, cycle, "– = not enough responses")
    return fig


def distribution_chart(cycle: CycleRef, company: CompanyResultRead) -> Figure:
    """The distribution of the included employees' coefficients."""
    fig = _figure(8.0, 4.0)
    with rc_context(RC):
        edges, counts = company.distribution.edges, company.distribution.counts
        if not counts or not sum(counts):
            _message(fig, "Not enough responses")
            _footer(fig, cycle)
            return fig
        ax = fig.add_subplot()
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
        ax.set_title(
            f"Distribution of coefficients — {cycle.name} ({company.employees_included} employees)"
        )
    _footer(fig, cycle)
    return fig


def employee_profile(
    cycle: CycleRef, employee: EmployeeResultRead, company: CompanyResultRead
) -> Figure:
    """One employee's competency means next to the company's."""
    fig = _figure(8.0, max(3.2, 0.5 * len(company.competencies) + 1.8))
    with rc_context(RC):
        if employee.status != "ok":
            _message(fig, f"{employee.full_name}: not enough responses")
            _footer(fig, cycle)
            return fig
        ax = fig.add_subplot()
        mine = {m.code: m.mean for m in employee.competencies}
        rows = company.competencies
        y = list(range(len(rows)))
        for i, c in enumerate(rows):
            value = mine.get(c.code)
            if value is None:
                ax.text(
                    cycle.scale_min + 0.05,
                    i,
                    "not enough answers",
                    va="center",
                    fontsize=8,
                    color="#5b6478",
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
            label="company mean",
        )
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_yticks(y, [c.name for c in rows])
        ax.invert_yaxis()
        ax.set_xlim(cycle.scale_min, cycle.scale_max + (cycle.scale_max - cycle.scale_min) * 0.1)
        coefficient = f"{employee.coefficient:.2f}" if employee.coefficient is not None else "–"
        title = f"{employee.full_name} — {cycle.name}: coefficient {coefficient}"
        ax.set_title(f"{title} ({employee.raters} raters)")
        ax.set_xlabel("Mean score")
    _footer(fig, cycle)
    return fig


def trend_chart(title: str, points: Sequence[TrendPoint], cycle: CycleRef) -> Figure:
    """A coefficient over quarters, on the scale of the latest cycle (earlier cycles on
    another scale are mapped onto it), with 95% intervals where known."""
    fig = _figure(8.0, 4.0)
    with rc_context(RC):
        shown = [p for p in points if p.coefficient is not None]
        if not shown:
            _message(fig, f"{title}: not enough responses")
            _footer(fig, cycle)
            return fig
        target = points[-1].cycle
        ax = fig.add_subplot()

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
                ax.text(
                    x,
                    target.scale_min + 0.1,
                    "not enough\nresponses",
                    ha="center",
                    fontsize=7,
                    color="#5b6478",
                )
                continue
            low, high = on_target(p.ci_low, p.cycle), on_target(p.ci_high, p.cycle)
            if low is not None and high is not None:
                ax.vlines(x, low, high, color=MUTED, linewidth=3, alpha=0.7)
            ax.annotate(
                f"{v:.2f}",
                (x, v),
                textcoords="offset points",
                xytext=(8, 0),
                va="center",
                fontsize=8,
            )
        ax.set_xticks(xs, [p.cycle.name for p in points])
        ax.set_xlim(-0.5, len(points) - 0.5)
        ax.set_ylim(target.scale_min, target.scale_max)
        ax.set_ylabel(f"Coefficient (scale {target.scale_min}–{target.scale_max})")
        ax.grid(axis="y", color="#e4e8f2")
        ax.set_title(f"Trend — {title}")
    rescaled = any(
        (p.cycle.scale_min, p.cycle.scale_max)
        != (points[-1].cycle.scale_min, points[-1].cycle.scale_max)
        for p in points
    )
    _footer(
        fig,
        cycle,
        "bars: 95% interval" + (" · earlier scales mapped onto this one" if rescaled else ""),
    )
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


def _summary_page(cycle: CycleRef, e: EmployeeResultRead) -> Figure:
    fig = _figure(8.27, 11.69)  # A4 portrait
    with rc_context(RC):
        ax = fig.add_subplot()
        ax.axis("off")
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
    _footer(fig, cycle)
    return fig


def _comments_page(cycle: CycleRef, e: EmployeeResultRead, texts: Sequence[str]) -> Figure:
    fig = _figure(8.27, 11.69)
    with rc_context(RC):
        ax = fig.add_subplot()
        ax.axis("off")
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
    _footer(fig, cycle)
    return fig
