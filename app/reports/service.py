"""Reports: computing and reading the results of closed cycles (reports issue)."""

from __future__ import annotations

from sqlalchemy.orm import Session


def compute_cycle_results(session: Session, *, cycle_id: int) -> None:
    """Compute and store every result of a cycle that has just closed (stub for now)."""
