"""Attacks on anonymity, made as an attacker would make them, on the real database files.

* Someone with the database's files or its write-ahead log (a DBA, a backup, a replica)
  reads the WAL written around each submit, looking for the rater's answers beside the
  invitation the same transaction marked.
* HR, with the API's write scopes, makes up customers it controls for a supplier, answers
  as them and subtracts its own answers from the published mean.
* After close, someone scans the database files for who answered and for the links.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import lifecycle
from app.auth.models import AuditEntry
from app.config import Settings
from app.cycles import service as cycles_service
from app.cycles.models import Cycle, CycleResponse, Invitation
from app.db import utcnow, writer_session
from app.org.models import Employee
from app.ratings import service as ratings_service
from app.ratings.models import BallotBox, PendingSubmission
from app.ratings.schemas import SupplierAnswer
from app.reports.models import EmployeeComment, EmployeeResult
from tests.cycles.helpers import (
    cycle_competency_ids,
    finish_close_jobs,
    launched_cycle,
    links_by_customer,
    make_company,
    token_of,
    vacuum_eventually,
)
from tests.factories import auth_header, link, make_api_key, make_competency, make_employee

pytestmark = pytest.mark.uses_db


# --- reading the database's history -------------------------------------------------------


def _read_elsewhere(path: Path) -> bytes:
    """The file's bytes, read by another process, as an attacker copying it would.

    Not in this process: closing any file descriptor of a SQLite database drops every
    POSIX lock the process holds on it, SQLite's own included. Another process (a
    worker started by a later test) could then take the file for its last user and
    delete the WAL under this process's open connections.
    """
    return subprocess.run(["cat", str(path)], check=True, capture_output=True).stdout


class History:
    """The bytes the database wrote between two marks, as an attacker reads them."""

    def __init__(self, engine: Engine, database_url: str) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.path = Path(database_url.split("///", 1)[-1]) if self.sqlite else None

    def mark(self) -> object:
        if self.sqlite:
            return None
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT pg_current_wal_insert_lsn()").scalar_one()

    def table_files(self, *tables: str) -> bytes:
        """What a copy of the files holds of ``tables``. SQLite: the whole database and
        ``-wal`` file. PostgreSQL: each table's file and its TOAST table's, after a
        checkpoint (what sits in shared buffers reaches the files then)."""
        if self.sqlite:
            return self.written_since(None)
        with self.engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
            paths = conn.execute(
                text(
                    "SELECT pg_relation_filepath(oid) FROM pg_class "
                    "WHERE relname = ANY(:tables) "
                    "UNION SELECT pg_relation_filepath(reltoastrelid) FROM pg_class "
                    "WHERE relname = ANY(:tables) AND reltoastrelid <> 0"
                ),
                {"tables": list(tables)},
            ).scalars()
            return b"".join(
                bytes(
                    conn.execute(
                        text("SELECT pg_read_binary_file(:p, 0, 100000000, true)"), {"p": p}
                    ).scalar_one()
                    or b""
                )
                for p in paths
                if p
            )

    def written_since(self, start: object) -> bytes:
        """SQLite: the whole ``-wal`` file and database file (what a copy holds).
        PostgreSQL: the WAL bytes from ``start`` to now, read from the segment files."""
        if self.sqlite:
            assert self.path is not None
            wal = Path(f"{self.path}-wal")
            return _read_elsewhere(self.path) + (_read_elsewhere(wal) if wal.exists() else b"")
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_switch_wal()")  # flush the partial segment
            end = conn.exec_driver_sql("SELECT pg_current_wal_insert_lsn()").scalar_one()
            chunks = []
            rows = conn.execute(
                text(
                    "SELECT (pg_walfile_name_offset(CAST(:start AS pg_lsn))).*, "
                    "(pg_walfile_name_offset(CAST(:end AS pg_lsn))).*, "
                    "CAST(:end AS pg_lsn) - CAST(:start AS pg_lsn)"
                ),
                {"start": start, "end": end},
            ).one()
            first_file, first_offset, last_file, _last_offset, size = rows
            assert first_file == last_file or int(size) < 64 * 2**20, "WAL range too large"
            remaining = int(size)
            name, offset = first_file, int(first_offset)
            segment = 16 * 2**20
            while remaining > 0:
                length = min(remaining, segment - offset)
                chunks.append(
                    conn.execute(
                        text("SELECT pg_read_binary_file(:path, :offset, :length, true)"),
                        {"path": f"pg_wal/{name}", "offset": offset, "length": length},
                    ).scalar_one()
                    or b""
                )
                remaining -= length
                offset = 0
                name = name[:16] + f"{int(name[16:], 16) + 1:08X}"
            return b"".join(bytes(c) for c in chunks)


@pytest.fixture
def history(engine: Engine, database_url: str, db_kind: str) -> History:
    if db_kind == "postgresql":
        with engine.connect() as conn:
            superuser = conn.exec_driver_sql("SHOW is_superuser").scalar_one()
        if superuser != "on":
            pytest.skip("reading the WAL needs a superuser, as the attacker would be")
    return History(engine, database_url)


def shown_means(db: Session, *, cycle_id: int, employee_id: int) -> dict[int, float]:
    """The competency means stored for one employee: cycle competency id -> mean."""
    stored = db.scalar(
        select(EmployeeResult.competency_means).where(
            EmployeeResult.cycle_id == cycle_id, EmployeeResult.employee_id == employee_id
        )
    )
    return {cid: mean for cid, mean, _answers in json.loads(stored or "[]")}


def _in_new_transaction(factory: sessionmaker[Session], work: Callable[[Session], object]) -> None:
    with writer_session(factory) as session, session.begin():
        work(session)


def test_the_wal_of_a_submit_holds_no_answer_only_the_close_does(
    committed_db: sessionmaker[Session], settings: Settings, history: History
) -> None:
    # Two suppliers, six customers; each customer's comment is a unique canary.
    with committed_db() as session, session.begin():
        company = make_company(session, suppliers=2, customers=6)
        cycle = launched_cycle(session, settings)
        comps = cycle_competency_ids(session, cycle)
        invitations = dict(
            session.execute(
                select(Invitation.customer_id, Invitation.id).where(Invitation.cycle_id == cycle.id)
            ).all()
        )
        cycle_id = cycle.id
        suppliers = [s.id for s in company.suppliers]
        customers = [c.id for c in company.customers]

    canaries = {c: f"CANARY-{uuid.uuid4().hex}" for c in customers}
    for customer in customers:
        before = history.mark()

        def submit(session: Session, customer: int = customer) -> None:
            ratings_service.submit_answers(
                session,
                invitation_id=invitations[customer],
                answers={
                    s: SupplierAnswer(
                        scores={c: 8 for c in comps}, nps=9, comment=canaries[customer]
                    )
                    for s in suppliers
                },
                secret_key=settings.secret_key,
            )

        _in_new_transaction(committed_db, submit)
        written = history.written_since(before)
        for canary in canaries.values():
            assert canary.encode() not in written, "an answer was written at submit time"

    before = history.mark()
    _in_new_transaction(
        committed_db,
        lambda s: lifecycle.close_cycle(
            s, cycle_id=cycle_id, min_raters=3, secret_key=settings.secret_key
        ),
    )
    assert vacuum_eventually(committed_db.kw["bind"])
    released = history.written_since(before)
    # Every comment leaves the pool in the close's one transaction, all together.
    assert all(canary.encode() in released for canary in canaries.values())
    with committed_db() as session:
        assert session.scalar(select(PendingSubmission.id).limit(1)) is None
        assert session.scalar(select(Invitation.id).where(Invitation.cycle_id == cycle_id)) is None


def with_history(db: Session, *, name: str) -> datetime:
    """An organisation that launched its first cycle long ago; returns that date, so
    records created then count toward k and records created now do not."""
    long_ago = utcnow() - timedelta(days=400)
    earlier = cycles_service.create_cycle(
        db,
        name=name,
        period_start=(long_ago - timedelta(days=80)).date(),
        period_end=long_ago.date(),
        opens_at=long_ago,
        closes_at=long_ago + timedelta(days=20),
    )
    earlier.launched_at = long_ago
    return long_ago


def test_a_fabricated_quorum_through_the_api_reveals_nothing(
    db: Session, client: TestClient, settings: Settings
) -> None:
    """HR's attack: victim + two mailboxes HR made and answers, k = 3, subtract."""
    long_ago = with_history(db, name="2025-Q1")
    supplier = make_employee(db, external_id="S-1", created_at=long_ago)
    victim = make_employee(db, external_id="T-1", created_at=long_ago)
    make_competency(db, name="Responsiveness")

    key = make_api_key(db, "org:write", "org:read", "cycles:write", "cycles:read", "results:read")
    headers = auth_header(key)
    for n in (1, 2):
        response = client.put(
            f"/api/v1/employees/FAKE-{n}",
            json={"email": f"fake{n}@hr-controlled.example", "full_name": f"Fake {n}"},
            headers=headers,
        )
        assert response.status_code == 201, response.text
    response = client.put(
        "/api/v1/suppliers/S-1/customers", json=["T-1", "FAKE-1", "FAKE-2"], headers=headers
    )
    assert response.status_code == 200, response.text
    response = client.post("/api/v1/cycles", json={"quarter": "2026Q4"}, headers=headers)
    assert response.status_code == 201, response.text
    cycle_id = response.json()["id"]
    response = client.post(f"/api/v1/cycles/{cycle_id}/launch", headers=headers)
    assert response.status_code == 200, response.text

    cycle = db.get_one(Cycle, cycle_id)
    # HR sees, before the answers come in, that this supplier will show nothing; the
    # audit log names the made-up raters with the launch that would have used them.
    coverage = cycles_service.cycle_coverage(db, cycle_id=cycle_id, k=3)
    assert [(c.supplier_id, c.counting, c.customers) for c in coverage.below_k] == [
        (supplier.id, 1, 3)
    ]
    audit = db.scalars(select(AuditEntry.detail).where(AuditEntry.action == "launch coverage"))
    assert any("FAKE-1" in (d or "") and "FAKE-2" in (d or "") for d in audit)
    changed = db.scalars(select(AuditEntry.entity_id).where(AuditEntry.entity == "matrix"))
    assert "S-1" in list(changed)  # the matrix change that set the trap is on record
    created = db.scalars(select(AuditEntry.entity_id).where(AuditEntry.action == "create employee"))
    assert {"FAKE-1", "FAKE-2"} <= set(created)
    comps = cycle_competency_ids(db, cycle)
    links = links_by_customer(db, cycle)
    fakes = db.scalars(select(Employee).where(Employee.external_id.like("FAKE-%"))).all()
    secret_comment = f"VICTIM-{uuid.uuid4().hex}"
    answers = {victim.id: (9, secret_comment), fakes[0].id: (2, None), fakes[1].id: (2, None)}
    for customer_id, (score, comment) in answers.items():
        invitation = cycles_service.find_invitation_by_token(db, token=token_of(links[customer_id]))
        assert invitation is not None
        ratings_service.submit_answers(
            db,
            invitation_id=invitation.id,
            answers={
                supplier.id: SupplierAnswer(
                    scores={c: score for c in comps}, nps=score, comment=comment
                )
            },
            secret_key=settings.secret_key,
        )
    response = client.post(f"/api/v1/cycles/{cycle_id}/close", headers=headers)
    assert response.status_code == 202, response.text
    assert finish_close_jobs(db, settings) == 1

    response = client.get(f"/api/v1/cycles/{cycle_id}/results/employees", headers=headers)
    assert response.status_code == 200, response.text
    rows = [r for r in response.json()["items"] if r["external_id"] == "S-1"]
    assert rows, response.json()
    (row,) = rows
    # Three answers, but two from raters HR made up a day ago: not enough that count.
    assert row["coefficient"] is None
    assert row.get("nps") is None
    assert shown_means(db, cycle_id=cycle_id, employee_id=supplier.id) == {}
    assert secret_comment not in str(
        db.scalars(select(EmployeeComment.text).where(EmployeeComment.cycle_id == cycle_id)).all()
    )
    # Nothing of the victim's ballot is kept either: it would never be shown.
    assert db.get(BallotBox, (cycle_id, supplier.id)) is None
    result = db.scalar(
        select(EmployeeResult).where(
            EmployeeResult.cycle_id == cycle_id, EmployeeResult.employee_id == supplier.id
        )
    )
    assert result is not None and not result.meets_k


def test_counting_raters_reach_k_and_new_ones_still_count_in_the_figures(
    db: Session, settings: Settings
) -> None:
    long_ago = with_history(db, name="2025-Q2")
    supplier = make_employee(db, created_at=long_ago)
    old = [make_employee(db, created_at=long_ago) for _ in range(3)]
    new = make_employee(db)  # joined yesterday: answers, but does not count toward k
    for customer in [*old, new]:
        link(db, supplier=supplier, customer=customer)
    make_competency(db)
    cycle = launched_cycle(db, settings)
    coverage = {c.supplier_id: c for c in cycles_service.supplier_coverage(db, cycle_id=cycle.id)}
    assert coverage[supplier.id].customers == 4
    assert coverage[supplier.id].counting == 3
    assert coverage[supplier.id].not_counting == {cycles_service.NOT_COUNTING_NEW: 1}
    comps = cycle_competency_ids(db, cycle)
    for customer, score in [*((c, 6) for c in old), (new, 10)]:
        invitation = db.scalar(
            select(Invitation).where(
                Invitation.cycle_id == cycle.id, Invitation.customer_id == customer.id
            )
        )
        assert invitation is not None
        ratings_service.submit_answers(
            db,
            invitation_id=invitation.id,
            answers={supplier.id: SupplierAnswer(scores={c: score for c in comps})},
            secret_key=settings.secret_key,
        )
    lifecycle.close_cycle(db, cycle_id=cycle.id, min_raters=3, secret_key=settings.secret_key)
    result = db.scalar(
        select(EmployeeResult).where(
            EmployeeResult.cycle_id == cycle.id, EmployeeResult.employee_id == supplier.id
        )
    )
    assert result is not None and result.meets_k
    assert result.raters == 4
    assert result.coefficient == pytest.approx((6 * 3 + 10) / 4)
    # Who answered is gone; what remains is counts per department.
    assert db.scalar(select(Invitation.id).where(Invitation.cycle_id == cycle.id)) is None
    kept = db.scalars(select(CycleResponse).where(CycleResponse.cycle_id == cycle.id)).all()
    assert sum(r.invited for r in kept) == 4 and sum(r.responded for r in kept) == 4


def test_after_close_the_files_hold_no_link_and_no_answered_mark(
    committed_db: sessionmaker[Session], settings: Settings, history: History
) -> None:
    with committed_db() as session, session.begin():
        make_company(session, suppliers=1, customers=4)
        cycle = launched_cycle(session, settings)
        tokens = [token_of(u) for u in links_by_customer(session, cycle).values()]
        cycle_id = cycle.id
        first = session.scalar(
            select(Invitation.id).where(Invitation.cycle_id == cycle_id).limit(1)
        )
    assert tokens and first is not None
    with committed_db() as session, session.begin():
        cycles_service.send_reminders(
            session, cycle_id=cycle_id, settings=settings, now=utcnow() + timedelta(days=1)
        )
    _in_new_transaction(
        committed_db,
        lambda s: lifecycle.close_cycle(
            s, cycle_id=cycle_id, min_raters=3, secret_key=settings.secret_key
        ),
    )
    assert vacuum_eventually(committed_db.kw["bind"])
    data = history.table_files("outbox_message", "outbox_body", "invitation", "pending_submission")
    for token in tokens:
        assert token.encode() not in data
        assert cycles_service.hash_link_token(token).encode() not in data
    with committed_db() as session:
        # Who answered is not in the database any more, only how many per department.
        assert session.scalar(select(Invitation.id).limit(1)) is None
        assert session.scalars(select(CycleResponse.responded)).all()


def test_after_the_vacuum_the_files_hold_nothing_of_the_pool(
    committed_db: sessionmaker[Session], settings: Settings, history: History
) -> None:
    # On SQLite the close frees the pool's pages without zeroing them (ciphertext); the
    # vacuum after it must still leave no byte of a sealed submission in the files.
    with committed_db() as session, session.begin():
        company = make_company(session, suppliers=1, customers=4)
        cycle = launched_cycle(session, settings)
        cycle_id, supplier_id = cycle.id, company.suppliers[0].id
        comps = cycle_competency_ids(session, cycle)
        for customer in company.customers:
            invitation_id = session.scalar(
                select(Invitation.id).where(
                    Invitation.cycle_id == cycle_id, Invitation.customer_id == customer.id
                )
            )
            assert invitation_id is not None
            ratings_service.submit_answers(
                session,
                invitation_id=invitation_id,
                answers={supplier_id: SupplierAnswer(scores={c: 4 for c in comps})},
                secret_key=settings.secret_key,
            )
    with committed_db() as session:
        sealed = [bytes(b) for b in session.scalars(select(PendingSubmission.sealed))]
    assert len(sealed) == 4
    _in_new_transaction(
        committed_db,
        lambda s: lifecycle.close_cycle(
            s, cycle_id=cycle_id, min_raters=3, secret_key=settings.secret_key
        ),
    )
    assert vacuum_eventually(committed_db.kw["bind"])
    data = history.table_files("pending_submission")
    for blob in sealed:
        # The nonce and the start of the ciphertext, a slice of the middle, the tag.
        for piece in (blob[:48], blob[len(blob) // 2 : len(blob) // 2 + 48], blob[-48:]):
            assert piece not in data


def test_a_transaction_in_another_database_postpones_the_purge(
    committed_db: sessionmaker[Session], settings: Settings, db_kind: str
) -> None:
    """An idle transaction anywhere in the cluster keeps VACUUM FULL from purging here."""
    if db_kind != "postgresql":
        pytest.skip("PostgreSQL's cluster-wide transaction horizon")
    from sqlalchemy import create_engine

    from tests.conftest import PG_ADMIN_URL

    with committed_db() as session, session.begin():
        make_company(session, suppliers=1, customers=3)
        cycle = launched_cycle(session, settings)
        tokens = [token_of(u) for u in links_by_customer(session, cycle).values()]
        cycle_id = cycle.id
    other = create_engine(PG_ADMIN_URL)
    engine = committed_db.kw["bind"]
    try:
        with other.connect() as elsewhere:
            elsewhere.exec_driver_sql("SELECT pg_current_xact_id()")  # holds an xid, idle
            _in_new_transaction(
                committed_db,
                lambda s: lifecycle.close_cycle(
                    s, cycle_id=cycle_id, min_raters=3, secret_key=settings.secret_key
                ),
            )
            assert lifecycle.vacuum_after_close(engine, wait_seconds=1) is False
            elsewhere.rollback()
        assert vacuum_eventually(engine)
    finally:
        other.dispose()
    with engine.connect() as conn:
        path = conn.exec_driver_sql("SELECT pg_relation_filepath('outbox_message')").scalar_one()
        data = bytes(
            conn.execute(
                text("SELECT pg_read_binary_file(:p, 0, 100000000, true)"), {"p": path}
            ).scalar_one()
            or b""
        )
    assert not any(token.encode() in data for token in tokens)


def test_a_figure_needs_k_answers_from_raters_who_count(db: Session, settings: Settings) -> None:
    """Competency means and NPS: answers of a made-up rater never make up the k."""
    long_ago = with_history(db, name="2025-Q3")
    supplier = make_employee(db, created_at=long_ago)
    old = [make_employee(db, created_at=long_ago) for _ in range(3)]
    new = make_employee(db)  # does not count toward k
    for customer in [*old, new]:
        link(db, supplier=supplier, customer=customer)
    make_competency(db, code="clear")
    make_competency(db, code="thin")
    cycle = launched_cycle(db, settings)
    clear, thin = cycle_competency_ids(db, cycle)
    # One counting rater cannot judge "thin" and gives no NPS; the new one answers both:
    # three answers each, but only two from raters who count.
    answers = {
        old[0].id: SupplierAnswer(scores={clear: 6, thin: None}, nps=None),
        old[1].id: SupplierAnswer(scores={clear: 6, thin: 6}, nps=7),
        old[2].id: SupplierAnswer(scores={clear: 6, thin: 6}, nps=7),
        new.id: SupplierAnswer(scores={clear: 2, thin: 2}, nps=0),
    }
    for customer_id, answer in answers.items():
        invitation = db.scalar(
            select(Invitation).where(
                Invitation.cycle_id == cycle.id, Invitation.customer_id == customer_id
            )
        )
        assert invitation is not None
        ratings_service.submit_answers(
            db,
            invitation_id=invitation.id,
            answers={supplier.id: answer},
            secret_key=settings.secret_key,
        )
    lifecycle.close_cycle(db, cycle_id=cycle.id, min_raters=3, secret_key=settings.secret_key)
    assert set(shown_means(db, cycle_id=cycle.id, employee_id=supplier.id)) == {clear}
    result = db.scalar(
        select(EmployeeResult).where(
            EmployeeResult.cycle_id == cycle.id, EmployeeResult.employee_id == supplier.id
        )
    )
    assert result is not None and result.meets_k and result.nps is None
