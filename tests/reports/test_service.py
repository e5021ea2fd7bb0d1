"""The SQL aggregation: hand-computed cases, equality with the pure module on a random
company, and the anonymity rules as they reach storage."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from app.cycles.models import CycleState
from app.errors import Conflict, NotFound
from app.reports import coefficients as calc
from app.reports import service
from app.reports.models import (
    EmployeeComment,
    EmployeeResult,
    WebhookDelivery,
)
from tests.factories import make_department, make_employee
from tests.reports.factories import (
    build_three_levels,
    close,
    make_cycle,
    random_company,
    random_org,
    rate,
    snapshot_competency,
    snapshot_department,
    snapshot_employee,
)
from tests.reports.helpers import FIGURES


def test_three_level_tree_hand_computed(db: Session) -> None:
    t = build_three_levels(db)
    cycle = t["cycle"]
    departments = {d.name: d for d in service.department_results(db, cycle_id=cycle.id)}
    assert departments["Grandchild"].coefficient == 5.0
    assert departments["Grandchild"].employees_included == 1
    assert departments["Grandchild"].suppliers == 2
    assert departments["Child"].coefficient == 6.0
    assert departments["Root"].coefficient == pytest.approx(20 / 3)
    assert departments["Other root"].coefficient == 9.0
    assert [d.name for d in service.department_results(db, cycle_id=cycle.id)] == [
        "Other root",
        "Root",
        "Child",
        "Grandchild",
    ]
    company = service.company_results(db, cycle_id=cycle.id)
    assert (
        company.coefficient == 7.25 and company.employees_included == 4 and company.suppliers == 6
    )
    assert company.delta is None  # first cycle
    assert company.cycle.min_raters == 3
    e2 = service.employee_result(db, cycle_id=cycle.id, employee_id=t["e2"].id)
    assert e2.coefficient == 7.0 and e2.raters == 3 and e2.sd == pytest.approx(1.0)
    assert e2.nps == pytest.approx(100 / 3)
    assert (e2.company_rank, e2.department_rank) == (3, 1)
    assert e2.delta is None


def test_hidden_figures_are_never_stored(db: Session) -> None:
    t = build_three_levels(db)
    cycle_id = t["cycle"].id
    for name in ("e4", "e6"):
        row = db.get(EmployeeResult, (cycle_id, t[name].id))
        assert row is not None and row.meets_k is False
        assert (row.raters, row.coefficient, row.nps, row.sd, row.company_rank) == (None,) * 5
        assert row.competency_means is None
    texts = set(db.scalars(select(EmployeeComment.text)))
    assert texts == {"Always helps", "x"}
    assert "secret praise" not in texts
    read = service.employee_result(db, cycle_id=cycle_id, employee_id=t["e4"].id)
    assert read.status == "not_enough_responses"
    assert read.model_dump(
        exclude={
            "employee_id",
            "external_id",
            "full_name",
            "department_id",
            "department_external_id",
            "department_name",
            "status",
            "competencies",
        }
    ) == dict.fromkeys(FIGURES)
    assert service.comments(db, cycle_id=cycle_id, employee_id=t["e4"].id) == []


def test_webhook_delivery_is_queued_and_results_marked_ready(db: Session) -> None:
    t = build_three_levels(db)
    cycle = t["cycle"]
    assert cycle.results_ready_at is not None
    rows = db.scalars(select(WebhookDelivery).where(WebhookDelivery.cycle_id == cycle.id)).all()
    assert len(rows) == 1 and rows[0].event == "cycle.results_ready"


def test_recomputing_replaces_results(db: Session) -> None:
    t = build_three_levels(db)
    cycle = t["cycle"]
    service.compute_cycle_results(db, cycle_id=cycle.id, min_raters=3)
    count = db.scalar(
        select(func.count()).select_from(EmployeeResult).where(EmployeeResult.cycle_id == cycle.id)
    )
    assert count == 6


def test_unknown_and_open_cycles_have_no_results(db: Session) -> None:
    with pytest.raises(NotFound):
        service.company_results(db, cycle_id=987654)
    with pytest.raises(NotFound):
        service.compute_cycle_results(db, cycle_id=987654, min_raters=3)
    open_cycle = make_cycle(db, state=CycleState.open)
    with pytest.raises(Conflict):
        service.employee_results(db, cycle_id=open_cycle.id)
    closed_not_computed = make_cycle(db, state=CycleState.closed)
    with pytest.raises(Conflict):
        service.department_results(db, cycle_id=closed_not_computed.id)


def test_k_above_three_suppresses_more(db: Session) -> None:
    dept = make_department(db)
    emp = make_employee(db, department=dept)
    cycle = make_cycle(db, state=CycleState.open)
    q = snapshot_competency(db, cycle, code="q")
    snapshot_department(db, cycle, dept)
    snapshot_employee(db, cycle, emp)
    rate(db, cycle, emp, [[5], [6], [7], [8]], [q])
    close(db, cycle, k=5)
    assert (
        service.employee_result(db, cycle_id=cycle.id, employee_id=emp.id).status
        == "not_enough_responses"
    )
    assert service.company_results(db, cycle_id=cycle.id).cycle.min_raters == 5


def _assert_same(sql: service.EmployeeResultRead, pure: calc.EmployeeFigures) -> None:
    assert sql.status == ("ok" if pure.meets_k else "not_enough_responses")
    # The significance flag is a bool, compared on its own below.
    for name in (f for f in FIGURES if f != "delta_significant"):
        got, want = getattr(sql, name), getattr(pure, name)
        if want is None:
            assert got is None, name
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9), name
    if pure.delta_significant is not None:
        assert sql.delta_significant == pure.delta_significant
    assert {m.code: (m.count, pytest.approx(m.mean)) for m in sql.competencies} == pure.competencies


@pytest.mark.parametrize("seed", [7, 2026])
def test_sql_equals_pure_module_on_a_random_company(db: Session, seed: int) -> None:
    rng = random.Random(seed)
    org = random_org(db, rng, employees=70, departments=10)
    first = random_company(db, rng, org=org, name=f"R{seed}-Q1", period_start=date(2026, 1, 1))
    close(db, first.cycle)
    # The second cycle uses another scale, so deltas go through the rescaling too.
    second = random_company(
        db, rng, org=org, name=f"R{seed}-Q2", period_start=date(2026, 4, 1), scale=(0, 5)
    )
    close(db, second.cycle)

    pure_first = calc.compute_cycle(first.data, k=3)
    pure_second = calc.compute_cycle(second.data, k=3, previous=pure_first)
    assert any(e.delta is not None for e in pure_second.employees.values())
    assert any(d.delta is not None for d in pure_second.departments.values())

    for company, pure in ((first, pure_first), (second, pure_second)):
        cycle_id = company.cycle.id
        total, rows = service.employee_results(db, cycle_id=cycle_id, limit=None)
        assert total == len(pure.employees) == len(rows)
        assert (
            sum(1 for e in pure.employees.values() if not e.meets_k) > 0
        )  # the test covers suppression
        for row in rows:
            _assert_same(row, pure.employees[row.employee_id])
            assert sorted(
                service.comments(db, cycle_id=cycle_id, employee_id=row.employee_id)
            ) == sorted(c.strip() for c in pure.employees[row.employee_id].comments if c.strip())
        for dept in service.department_results(db, cycle_id=cycle_id):
            want = pure.departments[dept.department_id]
            assert dept.employees_included == want.employees_included
            assert dept.suppliers == want.suppliers
            assert dept.coefficient == pytest.approx(want.coefficient)
            assert dept.sd == pytest.approx(want.sd)
            assert dept.nps == pytest.approx(want.nps)
            assert dept.delta == pytest.approx(want.delta)
            assert {
                m.code: (m.count, pytest.approx(m.mean)) for m in dept.competencies
            } == want.competencies
        summary = service.company_results(db, cycle_id=cycle_id)
        assert summary.coefficient == pytest.approx(pure.company.coefficient)
        assert summary.sd == pytest.approx(pure.company.sd)
        assert (summary.ci_low, summary.ci_high) == (
            pytest.approx(pure.ci_low),
            pytest.approx(pure.ci_high),
        )
        assert summary.nps == pytest.approx(pure.company.nps)
        assert summary.delta == pytest.approx(pure.company.delta)
        assert summary.employees_included == pure.company.employees_included
        assert (summary.invited, summary.responded) == (pure.invited, pure.responded)
        assert summary.distribution.counts == pure.distribution["counts"]
        assert pure.icc is not None and summary.icc == pytest.approx(pure.icc)
        assert {
            m.code: (m.count, pytest.approx(m.mean)) for m in summary.competencies
        } == pure.company.competencies


def test_department_figure_is_the_mean_of_visible_employee_figures(db: Session) -> None:
    """Recomputing from what is shown reveals nothing hidden: every department figure is
    exactly the mean of the *visible* employee figures of its subtree."""
    rng = random.Random(11)
    org = random_org(db, rng, employees=80, departments=12)
    company = random_company(db, rng, org=org, name="V-Q1", period_start=date(2026, 1, 1))
    close(db, company.cycle)
    cycle_id = company.cycle.id
    _total, employees = service.employee_results(db, cycle_id=cycle_id, limit=None)
    departments = service.department_results(db, cycle_id=cycle_id)
    tree = calc.subtree({d.department_id: d.parent_id for d in departments})
    hidden = [e for e in employees if e.status != "ok"]
    assert hidden, "the random company must contain employees below k"
    for dept in departments:
        visible = [
            e
            for e in employees
            if e.department_id in tree[dept.department_id] and e.coefficient is not None
        ]
        assert dept.employees_included == len(visible)
        if visible:
            assert dept.coefficient == pytest.approx(
                sum(e.coefficient or 0 for e in visible) / len(visible)
            )
            for m in dept.competencies:
                shown = [c.mean for e in visible for c in e.competencies if c.code == m.code]
                assert m.count == len(shown)
                assert m.mean == pytest.approx(sum(shown) / len(shown))
            npss = [e.nps for e in visible if e.nps is not None]
            assert dept.nps == (pytest.approx(sum(npss) / len(npss)) if npss else None)
        else:
            assert dept.coefficient is None and dept.competencies == []
    company_figures = service.company_results(db, cycle_id=cycle_id)
    visible_all = [e.coefficient for e in employees if e.coefficient is not None]
    assert company_figures.coefficient == pytest.approx(sum(visible_all) / len(visible_all))
    assert sum(company_figures.distribution.counts) == len(visible_all)


def test_trends_follow_closed_cycles(db: Session) -> None:
    rng = random.Random(3)
    org = random_org(db, rng, employees=40, departments=5)
    one = random_company(db, rng, org=org, name="T-Q1", period_start=date(2026, 1, 1))
    close(db, one.cycle)
    two = random_company(db, rng, org=org, name="T-Q2", period_start=date(2026, 4, 1))
    close(db, two.cycle)
    still_open = make_cycle(db, name="T-Q3", period_start=date(2026, 7, 1), state=CycleState.open)
    points = service.company_trend(db)
    names = [p.cycle.name for p in points]
    assert names.index("T-Q1") < names.index("T-Q2") and still_open.name not in names
    assert [p.cycle.name for p in service.company_trend(db, up_to=one.cycle)][-1] == "T-Q1"
    emp_id = next(iter(two.data.suppliers))
    emp_points = service.employee_trend(db, employee_id=emp_id)
    assert emp_points and all(p.cycle.name in ("T-Q1", "T-Q2") for p in emp_points)
    dept_id = next(iter(two.data.departments))
    assert [p.cycle.name for p in service.department_trend(db, department_id=dept_id)][-2:] == [
        "T-Q1",
        "T-Q2",
    ]


def test_table_orders_leaderboard_and_decliners(db: Session) -> None:
    # The orders are written so that an index can serve them (no NULL term where the
    # column cannot be NULL); this holds them to what the table promises.
    rng = random.Random(7)
    org = random_org(db, rng, employees=60, departments=8)
    first = random_company(db, rng, org=org, name="O-Q1", period_start=date(2026, 1, 1))
    close(db, first.cycle)
    second = random_company(db, rng, org=org, name="O-Q2", period_start=date(2026, 4, 1))
    close(db, second.cycle)
    cycle_id = second.cycle.id
    _total, everyone = service.employee_results(db, cycle_id=cycle_id, limit=None)
    assert any(r.coefficient is None for r in everyone)

    by_name = [(r.full_name, r.employee_id) for r in everyone]
    assert by_name == sorted(by_name)
    # Pages in name order add up to the whole table, each row once.
    pages = [
        r.employee_id
        for offset in range(0, len(everyone), 7)
        for r in service.employee_results(db, cycle_id=cycle_id, limit=7, offset=offset)[1]
    ]
    assert pages == [r.employee_id for r in everyone]

    for descending in (True, False):
        _t, rows = service.employee_results(
            db, cycle_id=cycle_id, sort="coefficient", descending=descending, limit=None
        )
        values = [r.coefficient for r in rows]
        shown = [v for v in values if v is not None]
        # Suppressed rows last, whichever the direction.
        assert values == shown + [None] * (len(values) - len(shown))
        assert shown == sorted(shown, reverse=descending)

    leaders = service.leaderboard(db, cycle_id=cycle_id, limit=5)
    best = sorted(
        (r for r in everyone if r.coefficient is not None),
        key=lambda r: (-r.coefficient, r.full_name, r.employee_id),  # type: ignore[operator]
    )
    assert [r.employee_id for r in leaders] == [r.employee_id for r in best[:5]]

    falling = service.decliners(db, cycle_id=cycle_id, limit=5)
    worst = sorted(
        (r for r in everyone if r.delta is not None and r.delta < 0 and r.coefficient is not None),
        key=lambda r: (r.delta, r.full_name, r.employee_id),
    )
    assert worst, "the data must have someone whose coefficient fell"
    assert [r.employee_id for r in falling] == [r.employee_id for r in worst[:5]]


def test_close_leaves_statistics_for_the_planner(db: Session) -> None:
    # Without statistics SQLite walked the coefficient index once per department in the
    # department rollup (46 s at 50,000 employees instead of 0.2 s).
    t = build_three_levels(db)
    analyzed: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("ANALYZE"):
            analyzed.append(statement)

    engine = db.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        close(db, t["cycle"])
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    if db.get_bind().dialect.name != "sqlite":
        # ANALYZE in the closing transaction: the estimate is the table as it is now.
        estimate = db.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = 'employee_result'")
        ).scalar_one()
        assert estimate == db.scalar(select(func.count()).select_from(EmployeeResult)) > 0
        # Statistics for what the pages look up and sort by; not for figures only read.
        (results,) = [s for s in analyzed if s.startswith("ANALYZE employee_result ")]
        columns = set(results.split("(", 1)[1].rstrip(")").split(", "))
        assert {"cycle_id", "employee_id", "department_id", "coefficient", "name_order"} <= columns
        assert not columns & {"competency_means", "sd", "company_rank"}
        (departments,) = [s for s in analyzed if s.startswith("ANALYZE department_result ")]
        assert {"parent_id", "level"} <= set(departments.split("(", 1)[1].rstrip(")").split(", "))
        with_stats = set(
            db.execute(
                text(
                    "SELECT attname FROM pg_stats WHERE tablename = 'employee_result' "
                    "AND schemaname = current_schema()"
                )
            ).scalars()
        )
        assert columns <= with_stats
        return
    tables = set(db.execute(text("SELECT tbl FROM sqlite_stat1")).scalars())
    assert {"employee_result", "department_closure", "department_result"} <= tables
    assert db.execute(text("PRAGMA analysis_limit")).scalar_one() == 1000


def test_employee_rows_list_the_shown_competency_means_in_display_order(db: Session) -> None:
    # Display order is not id order; a competency without k answers leaves a gap.
    dept = make_department(db, name="Ops")
    alice = make_employee(db, department=dept, full_name="Alice")
    cycle = make_cycle(db, state=CycleState.open)
    first, second, third = (snapshot_competency(db, cycle, code=c) for c in ("a", "b", "c"))
    first.display_order, third.display_order = third.display_order, first.display_order
    snapshot_department(db, cycle, dept)
    snapshot_employee(db, cycle, alice)
    rate(db, cycle, alice, [[5, None, 1], [5, None, 2], [5, 4, 3]], [first, second, third])
    close(db, cycle)
    _total, rows = service.employee_rows(db, cycle_id=cycle.id)
    assert [(m["code"], m["mean"], m["count"]) for m in rows[0]["competencies"]] == [
        ("c", 2.0, 3),
        ("a", 5.0, 3),
    ]


def test_the_close_writes_every_column_of_the_employee_results() -> None:
    # The rows are tuples in this order: a column added to the model must be added here.
    assert set(service.EMPLOYEE_RESULT_COLUMNS) == set(EmployeeResult.__table__.columns.keys())


def test_a_results_page_reads_the_readiness_and_the_competencies_once(db: Session) -> None:
    # A page asks for the company, departments, employees, leaderboard and decliners;
    # each checks that the results are ready and most name the competencies.
    t = build_three_levels(db)
    cycle_id = t["cycle"].id
    close(db, t["cycle"])
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()))

    engine = db.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        service.company_results(db, cycle_id=cycle_id)
        service.department_results(db, cycle_id=cycle_id)
        service.employee_results(db, cycle_id=cycle_id)
        service.leaderboard(db, cycle_id=cycle_id)
        service.decliners(db, cycle_id=cycle_id)
        service.competencies(db, cycle_id=cycle_id)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    # The readiness check, and the company's own figures.
    assert sum(s.startswith("SELECT company_result.") for s in statements) == 2
    assert sum(s.startswith("SELECT cycle_competency.") for s in statements) == 1
    # Each call hands out its own list (callers may change theirs).
    service.competencies(db, cycle_id=cycle_id).clear()
    assert service.competencies(db, cycle_id=cycle_id) != []
