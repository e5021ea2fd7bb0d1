"""Growth between sizes, read back from the figures (also across saved runs)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from benchmarks.report import Figure, growth, main


def _run(db: str, size: int, scale: float) -> list[Figure]:
    """One run's figures whose times are ``scale`` x those of a 1,000-employee run."""
    return [
        Figure(
            "1 import", db, size, "rows/s", "rows/s", 10 * size / scale, detail={"rows": 10 * size}
        ),
        Figure("2 launch+send", db, size, "emails/s", "emails/s", 1.0, detail={"seconds": scale}),
        Figure("3 submit", db, size, "throughput", "req/s", 1.0, detail={"seconds": 2 * scale}),
        Figure("4 close", db, size, "seal + compute", "s", 3 * scale),
        Figure("5 read", db, size, "employee table (API) p99", "ms", 99.0, detail={"p50_ms": 50.0}),
        Figure("6 memory: close", db, size, "peak RSS server", "MiB", 300.0),
    ]


def test_growth_per_step_and_database() -> None:
    figures = _run("sqlite", 1000, 1.0) + _run("sqlite", 10_000, 12.0)
    figures += _run("postgresql", 1000, 1.0) + _run("postgresql", 10_000, 16.0)
    rows = {(f.db, f.step): f for f in growth(figures)}
    assert set(rows) == {
        (db, f"7 growth: {step}")
        for db in ("sqlite", "postgresql")
        for step in (
            "import",
            "launch+send",
            "submit",
            "close",
            "read employee table (API) p50",
        )
    }
    close = rows["sqlite", "7 growth: close"]
    assert close.ours == 12.0 and close.reference == 10.0 and close.passed is True
    # 16x the time for 10x the data is more than 1.5x the data ratio.
    assert rows["postgresql", "7 growth: close"].passed is False
    # Latency that does not grow at all is fine.
    assert rows["sqlite", "7 growth: read employee table (API) p50"].ours == 1.0
    # One size only: nothing to compare.
    assert growth(_run("sqlite", 1000, 1.0)) == []


def test_report_merges_saved_runs(tmp_path: Path) -> None:
    paths = []
    for size, scale in ((1000, 1.0), (10_000, 11.0)):
        path = tmp_path / f"latest-{size}.json"
        document = {
            "created_at": "2026-11-23T00:00:00+00:00",
            "machine": {"cpu": "test"},
            "figures": [{**asdict(f), "ratio": f.ratio} for f in _run("sqlite", size, scale)],
        }
        path.write_text(json.dumps(document))
        paths.append(str(path))
    text = main(paths)
    assert "7 growth: close" in text
    assert text.count("latest-") == 2
