"""The rater-load governor against the database: the launch preview and the launch step.

The choice itself is pure (``cycles.governor``); here the matrix is read, the cycle's
snapshot trimmed, and the figures HR sees before launching are put together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.orm import Session, aliased

from app.cycles import governor
from app.cycles.models import Cycle, CyclePair
from app.matrix.models import MatrixLink
from app.org.models import Competency, Employee

DELETE_CHUNK = 5000
SHOWN_SHORT = 50


def sample_seed(cycle: Cycle) -> int:
    """The cycle's seed (chosen at creation); cycles made before it existed use their id."""
    return cycle.rater_sample_seed if cycle.rater_sample_seed is not None else cycle.id


def target_raters(k: int) -> int:
    return k + governor.SPARE_RATERS


def apply_rater_cap(session: Session, *, cycle: Cycle, k: int) -> governor.Governed | None:
    """Launch step: trim the cycle's pair snapshot so no customer rates more than the
    cycle's cap. None when nobody is over it (nothing read, nothing changed)."""
    per_customer = (
        select(func.count().label("n"))
        .where(CyclePair.cycle_id == cycle.id)
        .group_by(CyclePair.customer_id)
        .subquery()
    )
    busiest = session.scalar(select(func.max(per_customer.c.n))) or 0
    if busiest <= cycle.max_suppliers_per_customer:
        return None
    pairs = session.execute(
        select(CyclePair.supplier_id, CyclePair.customer_id).where(CyclePair.cycle_id == cycle.id)
    ).all()
    result = governor.govern(
        [(s, c) for s, c in pairs],
        cap=cycle.max_suppliers_per_customer,
        target=target_raters(k),
        seed=sample_seed(cycle),
    )
    rows = [{"_s": s, "_c": c} for s, c in result.dropped]
    table = cast(Table, CyclePair.__table__)
    statement = table.delete().where(
        table.c.cycle_id == cycle.id,
        table.c.supplier_id == bindparam("_s"),
        table.c.customer_id == bindparam("_c"),
    )
    for start in range(0, len(rows), DELETE_CHUNK):
        session.connection().execute(statement, rows[start : start + DELETE_CHUNK])
    session.flush()
    return result


@dataclass(frozen=True)
class ShortSupplier:
    external_id: str
    full_name: str
    kept: int
    in_matrix: int


@dataclass(frozen=True)
class LoadPreview:
    """What the governor would do if the cycle launched now."""

    cap: int
    target: int
    before: governor.Load
    after: governor.Load
    capped_customers: int
    dropped_pairs: int
    short: list[ShortSupplier]  # the first SHOWN_SHORT, fewest kept raters first
    short_total: int


def _live_pairs(session: Session) -> list[tuple[int, int]]:
    """The pairs a launch now would snapshot (both employees active)."""
    supplier, customer = aliased(Employee), aliased(Employee)
    return [
        (s, c)
        for s, c in session.execute(
            select(MatrixLink.supplier_id, MatrixLink.customer_id)
            .join(supplier, supplier.id == MatrixLink.supplier_id)
            .join(customer, customer.id == MatrixLink.customer_id)
            .where(supplier.active, customer.active)
        )
    ]


def questions_per_supplier(session: Session, *, cycle: Cycle) -> int:
    """One question per active competency, plus the NPS question where the cycle asks it."""
    competencies = session.scalar(
        select(func.count()).select_from(Competency).where(Competency.active)
    )
    return int(competencies or 0) + (1 if cycle.ask_nps else 0)


def launch_preview(session: Session, *, cycle: Cycle, k: int) -> LoadPreview:
    """Questions per rater before and after the cap, and the suppliers it leaves short."""
    pairs = _live_pairs(session)
    result = governor.govern(
        pairs,
        cap=cycle.max_suppliers_per_customer,
        target=target_raters(k),
        seed=sample_seed(cycle),
    )
    per_question = questions_per_supplier(session, cycle=cycle)
    per_customer = Counter(c for _, c in pairs).values()

    def load(suppliers_per_customer: Iterable[int]) -> governor.Load:
        return governor.rater_load(
            suppliers_per_customer,
            questions_per_supplier=per_question,
            comments=cycle.ask_comment,
        )

    worst = sorted(result.short.items(), key=lambda item: (item[1][0], item[0]))[:SHOWN_SHORT]
    names = dict(
        (i, (ext, name))
        for i, ext, name in session.execute(
            select(Employee.id, Employee.external_id, Employee.full_name).where(
                Employee.id.in_([s for s, _ in worst])
            )
        )
    )
    return LoadPreview(
        cap=cycle.max_suppliers_per_customer,
        target=target_raters(k),
        before=load(per_customer),
        after=load(min(n, cycle.max_suppliers_per_customer) for n in per_customer),
        capped_customers=result.capped_customers,
        dropped_pairs=len(result.dropped),
        short=[
            ShortSupplier(names[s][0], names[s][1], kept, in_matrix)
            for s, (kept, in_matrix) in worst
        ],
        short_total=len(result.short),
    )


def describe_preview(preview: LoadPreview) -> list[str]:
    """Plain sentences for the launch confirmation page and the audit log."""

    def figures(load: governor.Load) -> str:
        return (
            f"median {load.median:g}, mean {load.mean:.1f}, 90th percentile {load.p90}, "
            f"most {load.max} questions; about {load.mean_minutes:.0f} minutes on average, "
            f"{load.max_minutes:.0f} at most"
        )

    lines = [f"Questions per rater as the matrix stands: {figures(preview.before)}"]
    if preview.capped_customers:
        lines.append(
            f"{preview.capped_customers} customers have more than {preview.cap} suppliers "
            f"and will rate a random {preview.cap} of them ({preview.dropped_pairs} pairs "
            f"left out this cycle); after the cap: {figures(preview.after)}"
        )
    else:
        lines.append(f"Nobody has more than {preview.cap} suppliers: the cap changes nothing")
    before, after = dict(preview.before.histogram), dict(preview.after.histogram)
    if before:
        lines.append(
            "Raters by number of questions (before → after the cap): "
            + "; ".join(
                f"{q}: {before.get(q, 0)} → {after.get(q, 0)}"
                for q in sorted(before.keys() | after.keys())
            )
        )
    if preview.short_total:
        names = ", ".join(f"{s.full_name} ({s.kept} of {s.in_matrix})" for s in preview.short)
        more = preview.short_total - len(preview.short)
        lines.append(
            f"{preview.short_total} suppliers will have fewer than {preview.target} raters "
            f"(k + 2) although the matrix has more (raters kept of raters in the matrix): "
            + names
            + (f" and {more} more" if more > 0 else "")
        )
    return lines
