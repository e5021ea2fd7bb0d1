"""The benchmark pipeline at 60 employees, so the benchmark code cannot rot.

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
    db_kind: str,
    database_url: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # database_url is requested only for its reachability check (skip or fail like the
    # rest of the suite when PostgreSQL is down); the runner makes its own databases.
    request.node.add_marker("uses_db")
    # Half the forms over HTTP, the rest through the service, as at 50,000 employees.
    monkeypatch.setenv("BENCH_HTTP_FORMS", "20")
    config = RunConfig(
        sizes=[60],
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
    assert {f.metric for f in memory} >= {
        "peak RSS server (largest process)",
        "peak RSS worker (largest process)",
    }
    assert all(f.detail["all_processes_mib"] >= f.ours for f in memory)
    assert all(f.ours and f.ours > 10 for f in memory), memory  # a Python process is > 10 MiB
    assert steps >= set(STEPS_WITH_REFERENCE)
    # The close's full time waits for the purge after it (the pool's delete, the vacuum).
    (sealed,) = [f for f in figures if f.metric == "seal + compute"]
    assert sealed.detail["vacuum_observed"], sealed.detail
    assert sealed.ours >= sealed.detail["results_ready_seconds"]


def test_generated_company_has_the_agreed_shape() -> None:
    from collections import Counter

    from benchmarks.generator import generate

    company = generate(2000, seed=7)
    assert len(company.employees) == 2000
    assert max(d.level for d in company.departments) == 3  # four levels: 0..3
    per_supplier = Counter(s for s, _ in company.pairs)
    assert min(per_supplier.values()) >= 3
    assert max(per_supplier.values()) <= 15
    assert 9 <= sum(per_supplier.values()) / len(per_supplier) <= 11
    assert all(s != c for s, c in company.pairs)
    assert len(set(company.pairs)) == len(company.pairs)
    assert 0.82 <= len(company.responders) / len(company.customers) <= 0.88
    answers = [
        company.answer(c, s)
        for c in sorted(company.responders)[:200]
        for s in company.suppliers_of[c]
    ]
    scores = [x for a in answers for x in a.scores]
    assert len(answers[0].scores) == 8
    assert 0.02 < scores.count(None) / len(scores) < 0.12  # some "can't judge"
    assert any(a.comment for a in answers)
    assert all(1 <= x <= 10 for x in scores if x is not None)
    assert generate(2000, seed=7).pairs == company.pairs  # seeded: the same company again
