"""python -m app erase-employee, run as an operator runs it (a process of its own)."""

from __future__ import annotations

from sqlalchemy import func, select

from app.auth.models import AuditEntry
from app.db import make_engine, make_sessionmaker
from app.org.models import Employee
from app.reports.models import EmployeeResult
from tests.core.helpers import Cli
from tests.reports.factories import build_three_levels


def test_erase_employee_command(migrated: Cli) -> None:
    engine = make_engine(migrated.url)
    factory = make_sessionmaker(engine)
    with factory() as session:
        org = build_three_levels(session)
        person_id, external_id = org["e1"].id, org["e1"].external_id
        session.commit()
    try:
        refused = migrated.run("erase-employee", "--external-id", external_id, stdin="no\n")
        assert refused.returncode == 1 and "nothing erased" in refused.stderr
        unknown = migrated.run("erase-employee", "--external-id", "NOPE", "--yes")
        assert unknown.returncode == 2 and "NOPE" in unknown.stderr

        done = migrated.run(
            "erase-employee", "--external-id", external_id, "--delete-results", "--yes"
        )
        assert done.returncode == 0, done.stderr
        assert f"erased-{person_id}" in done.stdout
        with factory() as session:
            person = session.get(Employee, person_id)
            assert person is not None and person.external_id == f"erased-{person_id}"
            assert person.email.endswith("@erased.invalid") and not person.active
            results = session.scalar(
                select(func.count())
                .select_from(EmployeeResult)
                .where(EmployeeResult.employee_id == person_id)
            )
            assert results == 0
            actors = session.scalars(
                select(AuditEntry.actor).where(AuditEntry.action == "erase employee")
            ).all()
            assert actors == ["cli"]
    finally:
        engine.dispose()
