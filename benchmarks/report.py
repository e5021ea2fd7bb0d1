"""Results: one row per figure, printed as a table and saved as JSON."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    """One measured figure next to its reference.

    ``ratio`` is always oriented so that the goal reads naturally: for rates and
    throughput it is ours / reference (goal: at least x), for durations it is
    ours / reference too (goal: at most x). ``ours`` is None when the step could not
    run (its feature is missing); ``note`` then says why.
    """

    step: str
    db: str
    size: int
    metric: str
    unit: str
    ours: float | None
    reference: float | None = None
    reference_name: str = ""
    goal: str = ""
    passed: bool | None = None
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.reference:
            return None
        return self.ours / self.reference


def at_least_ratio(fig: Figure, minimum: float) -> Figure:
    fig.goal = f"ratio >= {minimum:g}"
    fig.passed = None if fig.ratio is None else fig.ratio >= minimum
    return fig


def at_most_ratio(fig: Figure, maximum: float) -> Figure:
    fig.goal = f"ratio <= {maximum:g}"
    fig.passed = None if fig.ratio is None else fig.ratio <= maximum
    return fig


def at_most(fig: Figure, maximum: float) -> Figure:
    fig.goal = f"< {maximum:g} {fig.unit}"
    fig.passed = None if fig.ours is None else fig.ours < maximum
    return fig


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(figures: list[Figure]) -> str:
    """The run as a Markdown table (readable in a terminal and in the README)."""
    header = ["step", "db", "size", "figure", "ours", "reference", "ratio", "goal", "result"]
    rows = []
    # Group by run, then step (memory next to its step), keeping measurement order.
    order = {(f.size, f.db): i for i, f in reversed(list(enumerate(figures)))}

    def key(f: Figure) -> tuple[int, int, str]:
        step = f.step.split(": ", 1)[-1] if f.step.startswith("6 memory") else f.step
        rank = next((s for s in ("1", "2", "3", "4", "5", "7") if step.startswith(s)), "9")
        if f.step.startswith("6 memory"):
            rank = {
                "import": "1",
                "launch+send": "2",
                "submit": "3",
                "close": "4",
                "read": "5",
            }.get(step, "6") + "m"
        return f.size, order.get((f.size, f.db), 0), rank

    for f in sorted(figures, key=key):
        ref = f"{_fmt(f.reference)} ({f.reference_name})" if f.reference_name else _fmt(f.reference)
        if f.passed is None:
            result = f"n/a: {f.note}" if f.note else "-"
        else:
            result = "pass" if f.passed else "FAIL"
            if f.note:
                result += f" ({f.note})"
        rows.append(
            [
                f.step,
                f.db,
                f"{f.size:,}",
                f"{f.metric} ({f.unit})",
                _fmt(f.ours),
                ref,
                _fmt(f.ratio),
                f.goal or "-",
                result,
            ]
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def machine() -> dict[str, str]:
    """What the run ran on: numbers on shared machines mean little without it."""
    cpu = ""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match.group(1).strip() if match else ""
    except OSError:
        pass
    mem = ""
    try:
        mem = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
        mem = mem.splitlines()[1].split()[1] if mem else ""
    except (OSError, IndexError):
        pass
    return {
        "cpu": cpu or platform.processor(),
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def step_seconds(fig: Figure) -> tuple[str, float] | None:
    """(step, our time in seconds) that a figure records, for growth; None for the rest.

    Read from the figure itself (rates back to times, latencies' p50), so growth can
    also be computed between saved runs: ``python -m benchmarks.report a.json b.json``.
    """
    if fig.ours is None or fig.step.startswith(("6 ", "7 ")):
        return None
    detail = fig.detail or {}
    if fig.step == "1 import" and detail.get("rows"):
        return "import", detail["rows"] / fig.ours
    if fig.step in ("2 launch+send", "3 submit") and detail.get("seconds"):
        return fig.step.split(" ", 1)[1], float(detail["seconds"])
    if fig.step == "4 close":
        return "close", fig.ours
    if fig.step == "5 read" and detail.get("p50_ms"):
        return f"read {fig.metric.removesuffix(' p99')} p50", detail["p50_ms"] / 1000
    return None


# "About 10x for 10x the data, never much worse": time may grow 1.5x the data at most.
GROWTH_SLACK = 1.5


def growth(figures: list[Figure]) -> list[Figure]:
    """For each database, how each step's time grew from the smallest to the largest size."""
    times: dict[str, dict[int, dict[str, float]]] = {}
    for fig in figures:
        found = step_seconds(fig)
        if found is not None:
            times.setdefault(fig.db, {}).setdefault(fig.size, {})[found[0]] = found[1]
    out: list[Figure] = []
    for db, by_size in times.items():
        small, large = min(by_size), max(by_size)
        if small == large:
            continue
        data_ratio = large / small
        for step, seconds in by_size[large].items():
            before = by_size[small].get(step)
            if not before:
                continue
            ratio = seconds / before
            out.append(
                Figure(
                    step=f"7 growth: {step}",
                    db=db,
                    size=large,
                    metric=f"time x vs {small:,}",
                    unit="x",
                    ours=ratio,
                    reference=data_ratio,
                    reference_name="data x",
                    goal=f"ratio <= {GROWTH_SLACK:g}",
                    passed=ratio / data_ratio <= GROWTH_SLACK,
                )
            )
    return out


def save(figures: list[Figure], sizes: list[int], extra: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    label = "-".join(str(s) for s in sizes)
    dbs = sorted({f.db for f in figures})
    if len(dbs) == 1:  # a run of one database does not replace a run of both
        label += f"-{dbs[0]}"
    path = RESULTS_DIR / f"latest-{label}.json"
    document = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **extra,
        "figures": [{**asdict(f), "ratio": f.ratio} for f in figures],
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False))
    tmp.replace(path)
    return path


def load(path: Path) -> tuple[list[Figure], dict[str, Any]]:
    """Figures and the rest of a saved run."""
    document = json.loads(path.read_text())
    figures = []
    for raw in document.pop("figures"):
        fields = {k: v for k, v in raw.items() if k != "ratio"}
        figures.append(Figure(**fields))
    return figures, document


def main(paths: list[str]) -> str:
    """The table of one or more saved runs; with several sizes, how each step grew.

    ``python -m benchmarks.report benchmarks/results/latest-5000.json`` prints a run
    again; naming runs of different sizes (e.g. one per database) adds the growth rows.
    """
    figures: list[Figure] = []
    notes: list[str] = []
    for path in paths:
        figs, doc = load(Path(path))
        figures += [f for f in figs if not f.step.startswith("7 ")]
        notes.append(f"{path}: {doc['machine']}, {doc['created_at']}")
    return "\n".join([table(figures + growth(figures)), "", *notes])


if __name__ == "__main__":
    import sys

    print(main(sys.argv[1:]))
