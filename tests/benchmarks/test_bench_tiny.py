"""The benchmark pipeline at 200 employees, so the benchmark code cannot rot.

It asserts that every step produced a figure and its reference, not the goals: timing
goals on a shared CI machine would make a flaky test. The run uses databases of its own
(created and dropped by the runner) because it starts real servers and workers.
"""

from __future__ import annotations

import pytest

from benchmarks.runner import RunConfig, run
from tests.conftest import PG_ADMIN_URL

STEPS_WITH_REFERENCE = ("1 import", "2 launch+send", "3 submit", "4 close", "5 read")


@pytest.mark.slow
def test_every_step_of_a_quarter_produces_figures(
    db_kind: str, database_url: str, request: pytest.FixtureRequest
) -> None:
    # database_url is requested only for its reachability check (skip or fail like the
    # rest of the suite when PostgreSQL is down); the runner makes its own databases.
    request.node.add_marker("uses_db")
    config = RunConfig(
        sizes=[200],
        dbs=[db_kind],
        concurrency=8,
        read_requests=5,
        postgres_url=PG_ADMIN_URL,
    )
    figures, contexts = run(config)

    not_measured = [f"{f.step} {f.metric}: {f.note}" for f in figures if f.ours is None]
    assert not not_measured, "\n".join(not_measured + contexts[0].log[-20:])
    steps = {f.step for f in figures}
    for step in STEPS_WITH_REFERENCE:
        measured = [f for f in figures if f.step == step]
        assert measured, f"step {step} produced no figure"
        assert all(f.ours and f.ours > 0 for f in measured), measured
        assert all(f.reference and f.reference > 0 for f in measured), measured
    memory = [f for f in figures if f.step.startswith("6 memory")]
    assert {f.metric for f in memory} >= {"peak RSS server", "peak RSS worker"}
    assert all(f.ours and f.ours > 10 for f in memory), memory  # a Python process is > 10 MiB
    assert steps >= set(STEPS_WITH_REFERENCE)
