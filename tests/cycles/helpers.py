"""Factories for cycle tests: a small company, a launched cycle, its private links."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.config import Settings
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CycleCompetency, Invitation
from app.db import utcnow
from app.mail import service as mail_service
from app.mail.models import OutboxMessage
from app.org.models import Competency, Department, Employee
from app.ratings.schemas import SupplierAnswer
from tests.conftest import TEST_SECRET_KEY
from tests.factories import link, make_competency, make_department, make_employee

_seq = itertools.count(1)


@dataclass
class Company:
    departments: list[Department]
    suppliers: list[Employee]
    customers: list[Employee]
    competencies: list[Competency]
    extra: dict[str, Any] = field(default_factory=dict)


def make_company(
    session: Session,
    *,
    suppliers: int = 2,
    customers: int = 3,
    competencies: int = 2,
    language: str = "en",
) -> Company:
    """Every customer rates every supplier; suppliers and customers sit in two departments."""
    sales = make_department(session, name="Sales")
    it = make_department(session, name="IT")
    sup = [
        make_employee(session, department=it, full_name=f"Supplier {i}") for i in range(suppliers)
    ]
    cus = [
        make_employee(session, department=sales, full_name=f"Customer {i}", language=language)
        for i in range(customers)
    ]
    comps = [make_competency(session, name=f"Competency {i}") for i in range(competencies)]
    for s in sup:
        for c in cus:
            link(session, supplier=s, customer=c)
    return Company(departments=[sales, it], suppliers=sup, customers=cus, competencies=comps)


def make_cycle(session: Session, *, name: str | None = None, **kw: Any) -> Cycle:
    now = utcnow()
    return cycles_service.create_cycle(
        session,
        name=name or f"Test-{next(_seq)}",
        period_start=kw.pop("period_start", (now - timedelta(days=80)).date()),
        period_end=kw.pop("period_end", (now + timedelta(days=10)).date()),
        opens_at=kw.pop("opens_at", now - timedelta(hours=1)),
        closes_at=kw.pop("closes_at", now + timedelta(days=14)),
        **kw,
    )


def launched_cycle(session: Session, settings: Settings, **kw: Any) -> Cycle:
    cycle = make_cycle(session, **kw)
    return cycles_service.launch_cycle(session, cycle_id=cycle.id, settings=settings)


def links_by_customer(
    session: Session, cycle: Cycle, *, kind: str = "invitation"
) -> dict[int, str]:
    """The private link queued for each customer (read from the outbox before sending)."""
    rows = session.execute(
        select(Employee.id, OutboxMessage.secret_link)
        .join(Employee, Employee.email == OutboxMessage.to_address)
        .where(OutboxMessage.tag == f"cycle:{cycle.id}", OutboxMessage.kind == kind)
        .order_by(OutboxMessage.id)
    ).all()
    return {
        customer_id: str(mail_service.open_link(TEST_SECRET_KEY, secret))
        for customer_id, secret in rows
        if secret
    }


def pooled_ballots(session: Session, settings: Settings) -> list[tuple[int, SupplierAnswer]]:
    """(supplier id, answer) for every answer waiting in any cycle's pool, read as the
    close reads them (with SECRET_KEY): ballots exist only after close."""
    from app.ratings import service as ratings_service
    from app.ratings.models import PendingSubmission

    cycles = session.scalars(
        select(Cycle).where(Cycle.id.in_(select(PendingSubmission.cycle_id)))
    ).all()
    return [
        (supplier_id, answer)
        for cycle in cycles
        for submission in ratings_service.open_pool(
            session, cycle=cycle, secret_key=settings.secret_key
        )
        for supplier_id, answer in submission.answers.items()
    ]


def vacuum_eventually(engine: Engine, *, within: float = 120.0) -> bool:
    """The post-close vacuum, retried as the worker would, until it succeeds.

    On PostgreSQL a transaction running anywhere in the cluster (the other test worker,
    another suite on the same server) postpones it, rightly: tests wait it out.
    """
    from app import lifecycle

    deadline = time.monotonic() + within
    while not lifecycle.vacuum_after_close(engine, wait_seconds=10):
        if time.monotonic() > deadline:
            return False
    return True


def token_of(link_url: str) -> str:
    return link_url.rsplit("/r/", 1)[1]


def invitation_of(session: Session, cycle: Cycle, customer: Employee) -> Invitation:
    inv = session.scalar(
        select(Invitation).where(
            Invitation.cycle_id == cycle.id, Invitation.customer_id == customer.id
        )
    )
    assert inv is not None
    return inv


def cycle_competency_ids(session: Session, cycle: Cycle) -> list[int]:
    return list(
        session.scalars(
            select(CycleCompetency.id)
            .where(CycleCompetency.cycle_id == cycle.id)
            .order_by(CycleCompetency.display_order, CycleCompetency.id)
        )
    )


def answers_for(
    session: Session, cycle: Cycle, suppliers: list[Employee], score: int | None = 7, **kw: Any
) -> dict[int, SupplierAnswer]:
    comp_ids = cycle_competency_ids(session, cycle)
    return {s.id: SupplierAnswer(scores={c: score for c in comp_ids}, **kw) for s in suppliers}


def form_for(
    session: Session, cycle: Cycle, suppliers: list[Employee], score: str = "7", **extra: str
) -> dict[str, str]:
    """A complete rating form as the page would post it (add form_token yourself)."""
    data = {}
    for s in suppliers:
        for c in cycle_competency_ids(session, cycle):
            data[f"s{s.id}-c{c}"] = score
    data.update(extra)
    return data


def finish_close_jobs(db: Session, settings: Settings) -> int:
    """Run every queued close job in the test's own session, as the worker would.

    HTTP closes only queue a job (202); this stands in for the worker in tests that
    share one rolled-back session. ``lifecycle.run_close_jobs`` is the worker's own
    path (its transactions, failure handling and vacuum), tested with real commits.
    """
    from app import lifecycle

    ran = 0
    while (job := cycles_service.claim_close_job(db)) is not None:
        lifecycle.run_close_job(db, job_id=job.id, settings=settings)
        ran += 1
    return ran
