"""The demo's past quarters go through the real services and leave results behind."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.demo import seed_org, seed_past_cycles
from app.mail.models import OutboxMessage
from app.reports import service


def test_two_closed_quarters_with_results_and_no_mail_left(db: Session, settings: Settings) -> None:
    seed_org(db)
    seed_past_cycles(db, settings)
    cycles = service.closed_cycles(db)
    assert [c.name for c in cycles] == ["2026-Q3", "2026-Q2"]
    q3 = service.company_results(db, cycle_id=cycles[0].id)
    assert q3.employees_included >= 30 and q3.delta is not None
    assert 0.7 < (q3.response_rate or 0) < 1.0
    _total, rows = service.employee_results(db, cycle_id=cycles[0].id, limit=None)
    assert any(r.delta_significant and (r.delta or 0) > 0 for r in rows)  # visible improvers
    assert service.decliners(db, cycle_id=cycles[0].id)
    assert any(service.comments(db, cycle_id=cycles[0].id, employee_id=r.employee_id) for r in rows)
    assert all(len(service.employee_trend(db, employee_id=r.employee_id)) == 2 for r in rows[:5])
    # History is not mailed: no outbox rows for the past quarters.
    tags = [f"cycle:{c.id}" for c in cycles]
    assert not db.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.tag.in_(tags))
    )
    # Running it again adds nothing.
    seed_past_cycles(db, settings)
    assert len(service.closed_cycles(db)) == 2


def test_next_quarter_is_in_its_confirmation_round(db: Session, settings: Settings) -> None:
    from app.cycles import nomination
    from app.cycles.models import Cycle, CycleState
    from app.demo import seed_nomination_cycle

    seed_org(db)
    seed_nomination_cycle(db, settings)
    cycle = db.scalar(select(Cycle).where(Cycle.state == CycleState.nominating))
    assert cycle is not None
    found = nomination.coverage(db, cycle_id=cycle.id, k=settings.anonymity_min_raters)
    assert found.confirmed == 1 and len(found.lists) > 10
    (tom,) = [row for row in found.lists if row.confirmed_at is not None]
    assert (tom.full_name, tom.added, tom.removed) == ("Tom Fischer", 1, 1)
    mails = db.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "nomination")
    )
    assert mails == len([row for row in found.lists if row.link_to == "supplier"])
    # His manager approved it; every manager of a supplier has their team link.
    assert tom.approved_at is not None and found.approved == 1
    team_mails = db.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.kind == "nomination-team")
    )
    assert team_mails == nomination.team_links(db, cycle_id=cycle.id) > 0


def test_focus_areas_agreed_after_the_first_quarter_come_first_in_the_second(
    db: Session, settings: Settings
) -> None:
    from app.demo import seed_focus_plans
    from app.reports import personal

    seed_org(db)
    seed_past_cycles(db, settings)
    seed_focus_plans(db)
    q3, q2 = service.closed_cycles(db)
    _total, rows = service.employee_results(db, cycle_id=q3.id, limit=None, only_included=True)
    views = [
        personal.focus_view(db, cycle_id=q3.id, employee_id=r.employee_id, result=r) for r in rows
    ]
    shown = [v for v in views if v.changes]
    assert len(shown) == 3
    assert all(v.earlier_cycle == q2.name and v.earlier_agreed for v in shown)
    assert all(len(v.changes) == 2 and v.changes[0].change is not None for v in shown)
