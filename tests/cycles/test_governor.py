"""The rater-load governor: the pure choice on generated companies, and the launch."""

from __future__ import annotations

import random
from collections import Counter, defaultdict, deque

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.cycles import governor, rater_load
from app.cycles import service as cycles_service
from app.cycles.models import CyclePair
from app.mail.models import OutboxMessage
from benchmarks.generator import generate
from tests.auth.helpers import sign_in
from tests.cycles.helpers import make_cycle
from tests.factories import link, make_competency, make_department, make_employee
from tests.org.test_api import assert_problem, headers


def _company_pairs(size: int, seed: int = 7) -> list[tuple[int, int]]:
    """The benchmark generator's matrix, external ids turned into ints."""
    company = generate(size, seed=seed)
    return [(int(s[1:]), int(c[1:])) for s, c in company.pairs]


def _max_coverage(pairs: list[tuple[int, int]], *, cap: int, target: int) -> int:
    """Σ min(raters, target) that the best choice reaches: an independent max flow
    (Edmonds-Karp), customers capped, suppliers capped at target. A customer under the
    cap keeps every link in some best choice (a link never lowers coverage), so those
    links are counted first and only the capped customers go through the flow."""
    per_customer = Counter(c for _, c in pairs)
    fixed = Counter(s for s, c in pairs if per_customer[c] <= cap)
    graph: dict[object, dict[object, int]] = defaultdict(dict)
    for c, n in per_customer.items():
        if n > cap:
            graph["src"][("c", c)] = cap
    for s, c in pairs:
        if per_customer[c] > cap:
            graph[("c", c)][("s", s)] = 1
    suppliers = {s for s, _ in pairs}
    for s in suppliers:
        graph[("s", s)]["sink"] = max(0, target - fixed[s])
    flow = sum(min(fixed[s], target) for s in suppliers)
    while True:
        parent: dict[object, object] = {"src": None}
        queue = deque(["src"])
        while queue and "sink" not in parent:
            u = queue.popleft()
            for v, capacity in graph[u].items():
                if capacity > 0 and v not in parent:
                    parent[v] = u
                    queue.append(v)
        if "sink" not in parent:
            return flow
        v: object = "sink"
        while parent[v] is not None:
            u = parent[v]
            graph[u][v] -= 1
            graph[v][u] = graph[v].get(u, 0) + 1
            v = u
        flow += 1


def _check(pairs: list[tuple[int, int]], result: governor.Governed, *, cap: int, target: int):  # type: ignore[no-untyped-def]
    degree = Counter(s for s, _ in pairs)
    per_customer = Counter(c for _, c in pairs)
    kept = governor.kept_pairs(pairs, result)
    kept_per_customer = Counter(c for _, c in kept)
    kept_per_supplier = Counter(s for s, _ in kept)
    assert sorted(kept + result.dropped) == sorted(pairs)
    assert set(result.dropped) <= set(pairs)
    # No customer over the cap; nobody loses a place the cap does not force.
    for customer, n in per_customer.items():
        assert kept_per_customer[customer] == min(n, cap)
    # Coverage never below what the matrix allows: exactly the suppliers listed as
    # short fall under min(target, their raters), and the total coverage is the best
    # any choice can reach.
    short = {s for s, d in degree.items() if kept_per_supplier[s] < min(target, d)}
    assert short == set(result.short)
    reached = sum(min(kept_per_supplier[s], target) for s in degree)
    assert reached == _max_coverage(pairs, cap=cap, target=target)
    return kept_per_supplier


@pytest.mark.parametrize("cap", [12, 6])
def test_generated_company(cap: int) -> None:
    pairs = _company_pairs(400)
    target = 5
    result = governor.govern(pairs, cap=cap, target=target, seed=1)
    assert result.capped_customers > 0
    _check(pairs, result, cap=cap, target=target)
    # Same seed, same subsets; another seed spreads the load differently.
    assert governor.govern(list(reversed(pairs)), cap=cap, target=target, seed=1) == result
    assert governor.govern(pairs, cap=cap, target=target, seed=2).dropped != result.dropped


def test_dense_random_matrices_reach_the_best_coverage() -> None:
    for seed in range(6):
        rng = random.Random(seed)
        pairs = sorted(
            {(rng.randrange(30), 100 + rng.randrange(25)) for _ in range(rng.randint(150, 400))}
        )
        result = governor.govern(pairs, cap=6, target=5, seed=seed)
        _check(pairs, result, cap=6, target=5)


def test_a_scarce_supplier_keeps_every_rater_it_needs() -> None:
    # Supplier 0 has exactly 5 customers, each of whom also serves 12 popular suppliers:
    # a random 12 of 13 would drop supplier 0 for about 2 of them.
    pairs = [(0, c) for c in range(100, 105)]
    pairs += [(s, c) for s in range(1, 13) for c in range(100, 140)]
    for seed in range(20):
        result = governor.govern(pairs, cap=12, target=5, seed=seed)
        kept = _check(pairs, result, cap=12, target=5)
        assert kept[0] == 5 and result.short == {}


def test_when_the_matrix_forces_a_shortfall_it_is_listed() -> None:
    # One customer rates 14 suppliers who have nobody else: with a cap of 12, two of
    # them keep no rater at all; nothing can be done, and those two are named.
    pairs = [(s, 100) for s in range(14)]
    result = governor.govern(pairs, cap=12, target=5, seed=3)
    _check(pairs, result, cap=12, target=5)
    assert sorted(result.short.values()) == [(0, 1), (0, 1)]
    assert set(result.short) == {s for s, _ in result.dropped}


def test_nobody_over_the_cap_changes_nothing() -> None:
    pairs = [(s, c) for s in range(5) for c in range(10, 15)]
    result = governor.govern(pairs, cap=12, target=5, seed=0)
    assert result.dropped == [] and result.capped_customers == 0 and result.short == {}
    assert governor.kept_pairs(pairs, result) == sorted(pairs)


def test_rater_load_figures() -> None:
    load = governor.rater_load([2, 4, 4, 20], questions_per_supplier=7, comments=True)
    assert (load.raters, load.median, load.max) == (4, 28.0, 140)
    assert load.histogram == [(14, 1), (28, 2), (140, 1)]
    # 7 questions x 10 s + 20 s for the comment = 1.5 minutes per colleague.
    assert load.mean_minutes == pytest.approx(7.5 * 1.5) and load.max_minutes == 30.0


# --- at launch ---------------------------------------------------------------------------


def _busy_company(db: Session) -> dict[str, object]:
    """One customer with 15 suppliers; each supplier has 5 more, who rate 3 each."""
    dept = make_department(db, name="Ops")
    busy = make_employee(db, department=dept, full_name="Busy Bee")
    suppliers = [make_employee(db, department=dept, full_name=f"Sup {i:02d}") for i in range(15)]
    others = [make_employee(db, department=dept, full_name=f"Other {i}") for i in range(25)]
    for i, s in enumerate(suppliers):
        link(db, supplier=s, customer=busy)
        for j in range(5):  # each of the others rates 3 suppliers
            link(db, supplier=s, customer=others[(i + j * 5) % 25])
    make_competency(db)
    make_competency(db)
    return {"busy": busy, "suppliers": suppliers}


def test_launch_caps_the_busy_customer(db: Session, settings: Settings) -> None:
    people = _busy_company(db)
    busy = people["busy"]
    cycle = make_cycle(db, max_suppliers_per_customer=12)
    preview = rater_load.launch_preview(db, cycle=cycle, k=settings.anonymity_min_raters)
    assert (preview.capped_customers, preview.dropped_pairs, preview.short_total) == (1, 3, 0)
    assert (preview.before.max, preview.after.max) == (15 * 3, 12 * 3)  # 2 competencies + NPS
    cycles_service.launch_cycle(db, cycle_id=cycle.id, settings=settings)
    kept = db.scalars(
        select(CyclePair.supplier_id).where(
            CyclePair.cycle_id == cycle.id,
            CyclePair.customer_id == busy.id,  # type: ignore[attr-defined]
        )
    ).all()
    assert len(kept) == 12
    per_supplier = Counter(
        db.scalars(select(CyclePair.supplier_id).where(CyclePair.cycle_id == cycle.id))
    )
    assert min(per_supplier.values()) >= 5 and sum(per_supplier.values()) == 15 * 5 + 12
    # The launch picked what the preview computed (same seed, same matrix).
    again = governor.govern(
        [
            (s, c)
            for s, c in db.execute(
                select(CyclePair.supplier_id, CyclePair.customer_id).where(
                    CyclePair.cycle_id == cycle.id
                )
            )
        ],
        cap=12,
        target=5,
        seed=rater_load.sample_seed(cycle),
    )
    assert again.dropped == []
    mail = db.scalar(
        select(OutboxMessage).where(OutboxMessage.to_address == busy.email)  # type: ignore[attr-defined]
    )
    assert mail is not None and "12" in mail.body_text


def test_cap_through_api_and_hr_screens(client: TestClient, db: Session) -> None:
    _busy_company(db)
    h = headers(db)
    r = client.post(
        "/api/v1/cycles", json={"quarter": "2031Q1", "max_suppliers_per_customer": 0}, headers=h
    )
    assert_problem(r, 422)
    r = client.post(
        "/api/v1/cycles", json={"quarter": "2031Q1", "max_suppliers_per_customer": 10}, headers=h
    )
    assert r.status_code == 201, r.text
    assert r.json()["max_suppliers_per_customer"] == 10
    cycle_id = r.json()["id"]
    preview = client.get(f"/api/v1/cycles/{cycle_id}/launch-preview", headers=h).json()
    assert preview["max_suppliers_per_customer"] == 10 and preview["target_raters"] == 5
    assert preview["capped_customers"] == 1 and preview["dropped_pairs"] == 5
    assert preview["before"]["max"] == 45 and preview["after"]["max"] == 30
    assert preview["short_suppliers"] == [] and preview["after"]["histogram"][-1] == [30, 1]

    signed = sign_in(client, db)
    page = client.get(f"/cycles/{cycle_id}/launch")
    assert "1 customers have more than 10 suppliers" in page.text
    assert "Questions per rater as the matrix stands" in page.text
    assert "45: 1 → 0" in page.text
    form = {
        "csrf_token": signed.csrf,
        "name": "Capped",
        "period_start": "2031-04-01",
        "period_end": "2031-06-30",
        "opens_at": "2031-06-16T09:00",
        "closes_at": "2031-07-07T09:00",
        "scale_min": "1",
        "scale_max": "10",
        "max_suppliers_per_customer": "many",
    }
    r = client.post("/cycles/new", data=form)
    assert r.status_code == 422 and "Enter a whole number" in r.text
    r = client.post(
        "/cycles/new", data={**form, "max_suppliers_per_customer": "7"}, follow_redirects=False
    )
    assert r.status_code == 303
    assert ">7<" in client.get(r.headers["location"]).text
    count = db.scalar(select(func.count()).select_from(CyclePair))
    assert count == 0
