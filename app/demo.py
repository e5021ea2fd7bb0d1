"""The demo company that ``make run`` loads on first start."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.org.models import Department, Employee

CREDENTIALS_FILE = "demo-credentials.txt"


def seed_demo(session: Session, settings: Settings, *, only_if_empty: bool = True) -> bool:
    """Load the demo company; returns False when the database already had data."""
    if only_if_empty and session.scalar(select(func.count()).select_from(Department)):
        return False
    credentials: list[str] = []
    seed_org(session)
    credentials += seed_accounts(session)
    seed_past_cycles(session, settings)
    seed_focus_plans(session)
    seed_open_cycle(session, settings)
    seed_nomination_cycle(session, settings)
    seed_rhythm(session)
    seed_service_map(session)
    write_demo_credentials(settings, credentials)
    return True


# (external id, name, parent external id): Company > divisions > teams.
DEMO_DEPARTMENTS = [
    ("CO", "Northwind Group", None),
    ("OPS", "Operations", "CO"),
    ("TECH", "Technology", "CO"),
    ("PEOPLE", "People & Finance", "CO"),
    ("OPS-LOG", "Logistics", "OPS"),
    ("OPS-CS", "Customer Service", "OPS"),
    ("TECH-PLAT", "Platform", "TECH"),
    ("TECH-APPS", "Business Applications", "TECH"),
    ("PEOPLE-HR", "HR", "PEOPLE"),
    ("PEOPLE-FIN", "Finance", "PEOPLE"),
]
# (external id, full name, department, manager, language)
DEMO_EMPLOYEES = [
    ("E001", "Margaret Hale", "CO", None, "en"),
    ("E002", "Daniel Brooks", "OPS", "E001", "en"),
    ("E003", "Priya Raman", "TECH", "E001", "en"),
    ("E004", "Olga Smirnova", "PEOPLE", "E001", "ru"),
    ("E010", "Tom Fischer", "OPS-LOG", "E002", "en"),
    ("E011", "Lucia Romero", "OPS-LOG", "E010", "en"),
    ("E012", "Ivan Petrov", "OPS-LOG", "E010", "ru"),
    ("E013", "Grace Okafor", "OPS-LOG", "E010", "en"),
    ("E014", "Henrik Larsen", "OPS-LOG", "E010", "en"),
    ("E020", "Sofia Marino", "OPS-CS", "E002", "en"),
    ("E021", "James Carter", "OPS-CS", "E020", "en"),
    ("E022", "Mei Tanaka", "OPS-CS", "E020", "en"),
    ("E023", "Anna Kuznetsova", "OPS-CS", "E020", "ru"),
    ("E024", "Leo Dubois", "OPS-CS", "E020", "en"),
    ("E025", "Hannah Schmidt", "OPS-CS", "E020", "en"),
    ("E030", "Marcus Lee", "TECH-PLAT", "E003", "en"),
    ("E031", "Elena Volkova", "TECH-PLAT", "E030", "ru"),
    ("E032", "Ravi Shah", "TECH-PLAT", "E030", "en"),
    ("E033", "Chloe Martin", "TECH-PLAT", "E030", "en"),
    ("E034", "Nikolai Orlov", "TECH-PLAT", "E030", "ru"),
    ("E035", "Sara Lindqvist", "TECH-PLAT", "E030", "en"),
    ("E040", "Aisha Bello", "TECH-APPS", "E003", "en"),
    ("E041", "Peter Novak", "TECH-APPS", "E040", "en"),
    ("E042", "Julia Costa", "TECH-APPS", "E040", "en"),
    ("E043", "Kenji Watanabe", "TECH-APPS", "E040", "en"),
    ("E044", "Emma Wilson", "TECH-APPS", "E040", "en"),
    ("E050", "Rachel Green", "PEOPLE-HR", "E004", "en"),
    ("E051", "Omar Haddad", "PEOPLE-HR", "E050", "en"),
    ("E052", "Natalia Sokolova", "PEOPLE-HR", "E050", "ru"),
    ("E053", "Ben Taylor", "PEOPLE-HR", "E050", "en"),
    ("E060", "Victor Almeida", "PEOPLE-FIN", "E004", "en"),
    ("E061", "Laura Becker", "PEOPLE-FIN", "E060", "en"),
    ("E062", "Dmitri Sokolov", "PEOPLE-FIN", "E060", "ru"),
    ("E063", "Fatima Zahra", "PEOPLE-FIN", "E060", "en"),
    ("E064", "George Evans", "PEOPLE-FIN", "E060", "en"),
    ("E065", "Isabel Ruiz", "PEOPLE-FIN", "E060", "en"),
    ("E070", "Chen Wei", "OPS-LOG", "E010", "en"),
    ("E071", "Marta Kowalska", "OPS-CS", "E020", "en"),
    ("E072", "Samuel Adeyemi", "TECH-APPS", "E040", "en"),
    ("E073", "Yuki Sato", "TECH-PLAT", "E030", "en"),
]
# The warehouse floor has no mailboxes: these get printed letters (the paper channel).
DEMO_PAPER_CHANNEL = {"E011", "E012", "E013", "E070"}
# Who serves whom, by team: a team's internal customers mostly sit in these teams.
DEMO_SERVES = {
    "OPS-LOG": ["OPS-CS", "PEOPLE-FIN"],
    "OPS-CS": ["OPS-LOG", "TECH-APPS"],
    "TECH-PLAT": ["TECH-APPS", "OPS-CS"],
    "TECH-APPS": ["OPS-CS", "PEOPLE-HR", "PEOPLE-FIN", "OPS-LOG"],
    "PEOPLE-HR": ["OPS-LOG", "OPS-CS", "TECH-PLAT", "TECH-APPS", "PEOPLE-FIN"],
    "PEOPLE-FIN": ["OPS", "TECH", "OPS-LOG", "PEOPLE-HR"],
    "OPS": ["TECH", "PEOPLE", "OPS-LOG", "OPS-CS"],
    "TECH": ["OPS", "PEOPLE", "TECH-PLAT", "TECH-APPS"],
    "PEOPLE": ["OPS", "TECH", "PEOPLE-HR", "PEOPLE-FIN"],
    "CO": ["OPS", "TECH", "PEOPLE"],
}


def seed_org(session: Session) -> None:
    """Departments, employees, competencies and the matrix (foundation issue).

    A 40-person company in a three-level tree, with line managers, a few Russian
    speakers, the default competencies, and a matrix in which every supplier has 3 to 8
    internal customers (so nearly everyone reaches the anonymity threshold of 3).
    """
    import random

    from app.matrix import service as matrix_service
    from app.org import service as org_service

    for external_id, name, parent in DEMO_DEPARTMENTS:
        org_service.upsert_department(
            session, external_id=external_id, name=name, parent_external_id=parent
        )
    for external_id, full_name, dept, manager, language in DEMO_EMPLOYEES:
        first, last = full_name.lower().split(" ", 1)
        org_service.upsert_employee(
            session,
            external_id=external_id,
            email=f"{first}.{last.replace(' ', '')}@northwind.example",
            full_name=full_name,
            department_external_id=dept,
            manager_external_id=manager,
            language=language,
            paper_channel=external_id in DEMO_PAPER_CHANNEL,
        )
    org_service.seed_default_competencies(session)

    rnd = random.Random(360)  # the same demo matrix on every machine
    by_dept: dict[str, list[str]] = {}
    for external_id, _name, dept, _manager, _language in DEMO_EMPLOYEES:
        by_dept.setdefault(dept, []).append(external_id)
    everyone = [e[0] for e in DEMO_EMPLOYEES]
    for supplier, _name, dept, _manager, _language in DEMO_EMPLOYEES:
        near = [e for d in DEMO_SERVES.get(dept, []) for e in by_dept.get(d, [])]
        near += [e for e in by_dept[dept] if e != supplier]  # teammates rely on them too
        wanted = rnd.randint(3, 8)
        pool = [e for e in dict.fromkeys(near) if e != supplier]
        rnd.shuffle(pool)
        customers = pool[:wanted]
        while len(customers) < 3:  # small corners of the tree borrow from anywhere
            extra = rnd.choice(everyone)
            if extra != supplier and extra not in customers:
                customers.append(extra)
        matrix_service.replace_customers(
            session, supplier_external_id=supplier, customer_external_ids=customers
        )
    session.flush()


def seed_accounts(session: Session) -> list[str]:
    """Demo HR/admin/manager logins and an HRIS API key; returns lines to print."""
    lines: list[str] = []
    lines += _seed_demo_users(session)
    lines += _seed_demo_api_key(session)
    return lines


def _seed_demo_api_key(session: Session) -> list[str]:
    """A demo HRIS key with every scope, so the API can be tried from the docs page."""
    from app.auth import service as auth_service

    _key, plaintext = auth_service.create_api_key(
        session, name="Demo HRIS", scopes=auth_service.SCOPES, created_by="demo"
    )
    return [f"HRIS API key (all scopes): {plaintext}"]


def _seed_demo_users(session: Session) -> list[str]:
    """An admin, an HR user and a manager linked to the demo employee with the biggest team.

    Passwords are random per database, so a demo left running is not open to a guess.
    """
    from sqlalchemy.orm import aliased

    from app.auth import service as auth_service
    from app.auth.models import Role

    lines = []
    for label, email, role, name in (
        ("Admin", "admin@demo.example", Role.admin, "Demo Admin"),
        ("HR", "hr@demo.example", Role.hr, "Demo HR"),
    ):
        password = auth_service.new_secret(9)
        auth_service.create_user(session, email=email, password=password, role=role, full_name=name)
        lines.append(f"{label} login: {email} / {password}")
    report = aliased(Employee)
    boss = session.execute(
        select(Employee.id, Employee.full_name)
        .join(report, report.manager_id == Employee.id)
        .where(Employee.active, report.active)
        .group_by(Employee.id, Employee.full_name)
        .order_by(func.count().desc(), Employee.id)
        .limit(1)
    ).first()
    if boss is not None:
        password = auth_service.new_secret(9)
        auth_service.create_user(
            session,
            email="manager@demo.example",
            password=password,
            role=Role.manager,
            full_name=str(boss.full_name),
            employee_id=int(boss.id),
        )
        lines.append(
            f"Manager login: manager@demo.example / {password} (sees {boss.full_name}'s team)"
        )
    return lines


# Comments demo raters leave, by how well the colleague served them.
_PRAISE = [
    "Always answers quickly and explains the why, not just the what.",
    "Reliable: when they say Friday, it is Friday.",
    "Goes out of their way to unblock us.",
    "Clear, friendly and well prepared in every meeting.",
    "Thinks about how their work lands on our side.",
]
_CONCERNS = [
    "Hard to reach when something is urgent.",
    "Requests sometimes sit for a week without an answer.",
    "Would help to get a heads-up before changes go live.",
    "Good work, but priorities are not always clear to us.",
]


def seed_past_cycles(session: Session, settings: Settings) -> None:
    """Two closed quarters with ballots, so results and trends show real data (reports).

    2026-Q2 and 2026-Q3 go through the real services with historical clocks: created,
    launched (snapshot and invitations), answered by most customers through
    ``submit_answers``, and closed with ``close_cycle`` (sealing and results). About a
    third of the suppliers improve visibly in Q3 and a few slip, so the trend, the
    deltas and the "biggest declines" list have something to show.
    """
    import random
    from datetime import date, datetime

    from app import lifecycle
    from app.cycles import service as cycles_service
    from app.cycles.models import Cycle, CycleCompetency, CyclePair, Invitation
    from app.mail import service as mail_service
    from app.matrix.models import MatrixLink
    from app.ratings import service as ratings_service
    from app.ratings.schemas import SupplierAnswer

    if not session.scalar(select(func.count()).select_from(MatrixLink)):
        return
    # The demo's people were there before its first quarter, as in a company with
    # history: otherwise, as raters created after that launch, none would count toward k.
    session.execute(update(Employee).values(created_at=datetime(2026, 1, 5)))
    rnd = random.Random(2026)
    quarters = [
        (
            "2026-Q2",
            date(2026, 4, 1),
            date(2026, 6, 30),
            datetime(2026, 6, 8, 9),
            datetime(2026, 6, 29, 17),
        ),
        (
            "2026-Q3",
            date(2026, 7, 1),
            date(2026, 9, 30),
            datetime(2026, 9, 7, 9),
            datetime(2026, 9, 28, 17),
        ),
    ]
    level: dict[int, float] = {}  # each supplier's "true" service level, drifting per quarter
    for index, (name, start, end, opens, closes) in enumerate(quarters):
        if session.scalar(select(Cycle.id).where(Cycle.name == name)) is not None:
            continue
        cycle = cycles_service.create_cycle(
            session, name=name, period_start=start, period_end=end, opens_at=opens, closes_at=closes
        )
        cycles_service.launch_cycle(session, cycle_id=cycle.id, settings=settings, now=opens)
        competencies = list(
            session.scalars(select(CycleCompetency).where(CycleCompetency.cycle_id == cycle.id))
        )
        quirk = {c.id: rnd.uniform(-0.6, 0.6) for c in competencies}
        suppliers = set(
            session.scalars(select(CyclePair.supplier_id).where(CyclePair.cycle_id == cycle.id))
        )
        for supplier in sorted(suppliers):
            if supplier not in level:
                level[supplier] = rnd.uniform(5.5, 8.6)
            elif index > 0:
                roll = rnd.random()
                level[supplier] += (
                    rnd.uniform(0.8, 1.6)
                    if roll < 0.33
                    else (-rnd.uniform(0.6, 1.2) if roll > 0.88 else rnd.uniform(-0.3, 0.3))
                )
        invitations = list(
            session.scalars(
                select(Invitation).where(Invitation.cycle_id == cycle.id).order_by(Invitation.id)
            )
        )
        for invitation in invitations:
            if rnd.random() > 0.85:
                continue  # this customer never answered
            served_by = session.scalars(
                select(CyclePair.supplier_id).where(
                    CyclePair.cycle_id == cycle.id, CyclePair.customer_id == invitation.customer_id
                )
            ).all()
            answers = {}
            for supplier in served_by:
                mood = level[supplier] + rnd.gauss(0, 0.7)  # this rater's view of them
                scores: dict[int, int | None] = {
                    c.id: None
                    if rnd.random() < 0.08  # "can't judge"
                    else max(
                        cycle.scale_min,
                        min(cycle.scale_max, round(rnd.gauss(mood + quirk[c.id], 0.9))),
                    )
                    for c in competencies
                }
                nps = max(0, min(10, round(rnd.gauss(mood, 1.4)))) if rnd.random() < 0.8 else None
                comment = None
                if rnd.random() < 0.18:
                    comment = rnd.choice(_PRAISE if mood >= 7 else _CONCERNS)
                answers[supplier] = SupplierAnswer(scores=scores, nps=nps, comment=comment)
            ratings_service.submit_answers(
                session,
                invitation_id=invitation.id,
                answers=answers,
                now=opens.replace(day=opens.day + 3),
                secret_key=settings.secret_key,
            )
        lifecycle.close_cycle(
            session,
            cycle_id=cycle.id,
            now=closes,
            min_raters=settings.anonymity_min_raters,
            secret_key=settings.secret_key,
        )
        # These quarters are history: their invitations must never be mailed now.
        mail_service.delete_messages_by_tags(
            session, tags=[cycles_service.mail_tag(cycle.id)], now=closes
        )
        session.flush()


def seed_open_cycle(session: Session, settings: Settings) -> None:
    """The current quarter, launched, with its invitations in the outbox (cycles issue).

    Open now and closing in three weeks; the worker of ``make run`` then delivers the
    invitations as .eml files, and /outbox shows them with their links.
    """
    from datetime import timedelta

    from app.cycles import service as cycles_service
    from app.cycles.models import Cycle
    from app.db import utcnow
    from app.matrix.models import MatrixLink

    if not session.scalar(select(func.count()).select_from(MatrixLink)):
        return  # no matrix, nobody to invite
    now = utcnow().replace(second=0, microsecond=0)
    year, number = cycles_service.quarter_of(now.date())
    name = cycles_service.quarter_name(year, number)
    if session.scalar(select(Cycle.id).where(Cycle.name == name)) is not None:
        return
    start, end = cycles_service.quarter_period(year, number)
    cycle = cycles_service.create_cycle(
        session,
        name=name,
        period_start=start,
        period_end=end,
        opens_at=now,
        closes_at=now + timedelta(days=21),
    )
    cycles_service.launch_cycle(session, cycle_id=cycle.id, settings=settings)


def seed_nomination_cycle(session: Session, settings: Settings) -> None:
    """Next quarter's cycle in its confirmation round (issue 15): every supplier's and
    line manager's link is in the outbox, and Tom Fischer has already confirmed his list
    with two changes, approved by his manager."""
    from app.cycles import nomination, nomination_approval
    from app.cycles import service as cycles_service
    from app.cycles.models import Cycle, NominationList, NominationTeam
    from app.db import utcnow
    from app.matrix.models import MatrixLink
    from app.org.models import Employee

    if not session.scalar(select(func.count()).select_from(MatrixLink)):
        return
    year, number = cycles_service.quarter_of(utcnow().date())
    year, number = (year + 1, 1) if number == 4 else (year, number + 1)
    if session.scalar(
        select(Cycle.id).where(Cycle.name == cycles_service.quarter_name(year, number))
    ):
        return
    cycle = cycles_service.create_quarter_cycle(session, quarter=f"{year}Q{number}")
    nomination.start_round(session, cycle_id=cycle.id, settings=settings)
    ids = dict(session.execute(select(Employee.external_id, Employee.id)).all())
    tom = session.scalar(
        select(NominationList).where(
            NominationList.cycle_id == cycle.id, NominationList.supplier_id == ids["E010"]
        )
    )
    if tom is None:
        return
    current = nomination.customer_list(session, nomination=tom)
    if current:
        nomination.propose_remove(
            session,
            nomination=tom,
            customer_id=current[0].id,
            reason="Moved to another site; we no longer work together",
        )
    nomination.propose_add(session, nomination=tom, customer_id=ids["E063"])
    nomination.confirm(session, nomination=tom)
    # His line manager approved it: the team link is in the outbox with the others.
    team = session.scalar(
        select(NominationTeam).where(
            NominationTeam.cycle_id == cycle.id,
            NominationTeam.manager_id
            == select(Employee.manager_id).where(Employee.id == tom.supplier_id).scalar_subquery(),
        )
    )
    if team is not None:
        nomination_approval.approve(session, team=team, nomination=tom)


def seed_rhythm(session: Session) -> None:
    """The quarterly rhythm, on, starting each cycle's confirmation round a week before
    it opens: the dashboard says when the next quarter's cycle and its round come."""
    from app.cycles import rhythm

    rhythm.update_rhythm(
        session, fields=rhythm.RhythmFields(enabled=True, nomination_days=7), actor="demo"
    )


def seed_focus_plans(session: Session, *, people: int = 3) -> None:
    """Agreed focus areas after the first past quarter (each person's two weakest
    competencies), so the second quarter's pages and report open with their change."""
    from app.reports import personal
    from app.reports import service as reports_service

    closed = reports_service.closed_cycles(session)
    if len(closed) < 2:
        return
    earlier = closed[-1]
    _total, rows = reports_service.employee_results(
        session, cycle_id=earlier.id, limit=None, only_included=True
    )
    managers = dict(session.execute(select(Employee.id, Employee.manager_id)).all())
    emails = dict(session.execute(select(Employee.id, Employee.email)).all())
    for row in sorted(rows, key=lambda r: r.full_name)[:people]:
        weakest = sorted(row.competencies, key=lambda m: m.mean)[:2]
        if len(weakest) < 2:
            continue
        manager = managers.get(row.employee_id)
        personal.choose_focus(
            session,
            cycle_id=earlier.id,
            employee_id=row.employee_id,
            codes=[m.code for m in weakest],
            chosen_by=emails.get(manager, "demo") if manager else "demo",
            agree=True,
        )


# The department service map HR keeps: the matrix suggestions expand it to people.
DEMO_SERVICE_MAP = [
    ("TECH-PLAT", "TECH-APPS"),
    ("TECH-APPS", "OPS-CS"),
    ("PEOPLE-HR", "OPS"),
    ("PEOPLE-FIN", "OPS-LOG"),
]


def seed_service_map(session: Session) -> None:
    """A few lines of the service map, so /matrix/suggestions has something to show."""
    from app.matrix.models import DepartmentService

    ids = dict(session.execute(select(Department.external_id, Department.id)).all())
    for supplier, customer in DEMO_SERVICE_MAP:
        session.add(
            DepartmentService(
                supplier_department_id=ids[supplier], customer_department_id=ids[customer]
            )
        )
    session.flush()


def _credentials_path(settings: Settings) -> str:
    return str(settings.mail_dir.parent / CREDENTIALS_FILE)


def write_demo_credentials(settings: Settings, lines: list[str]) -> None:
    # Development convenience only: the demo's secrets, so `make run` can print them.
    if settings.environment == "production" or not lines:
        return
    settings.mail_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(_credentials_path(settings), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def read_demo_credentials(settings: Settings) -> list[str]:
    try:
        with open(_credentials_path(settings), encoding="utf-8") as fh:
            return [line.rstrip("\n") for line in fh if line.strip()]
    except OSError:
        return []
