"""Anonymous ballots and the mixing pool they wait in while a cycle is open.

A ballot deliberately has no column, key or foreign key that points at the rater or the
invitation, and no timestamp: with those, anyone with database access could read how a
colleague voted. Nor is a ballot written when its rater submits: the submit transaction
also marks the invitation, and the database's own history (PostgreSQL's WAL, SQLite's
``-wal`` file, replicas, point-in-time backups) keeps the two side by side. A submit
writes one encrypted :class:`PendingSubmission` instead; the close decrypts the pool and
writes every ballot of the cycle in one transaction, grouped by supplier and in random
order within each (see
``ratings.service.release_pool``).
"""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.db.types import ScoreList


class Ballot(Base):
    """One customer's answers about one supplier in one cycle (the rater is not recorded)."""

    __tablename__ = "ballot"
    __table_args__ = (Index("ix_ballot_cycle_id_supplier_id", "cycle_id", "supplier_id"),)

    # A counter (migration 0017): the close writes a cycle's ballots at once in an order
    # drawn at random, so the numbers say nothing about raters. SQLite's rowid itself.
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No foreign keys (migration 0015): their triggers were half the database's cost of
    # the close's bulk write. Whoever deletes a cycle or a person deletes ballots first.
    cycle_id: Mapped[int] = mapped_column(Integer)
    supplier_id: Mapped[int] = mapped_column(Integer)
    nps: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    # One score per competency of the cycle, in the order of their ids (see
    # ``cycle_competency_order``); None means "can't judge". In the row, not a row per
    # score: the close reads every score of a cycle in one scan of this table. NULL is
    # allowed (and read as "no scores"): PostgreSQL's NOT NULL error quotes the whole
    # row, comment included, in its text.
    scores: Mapped[list[int | None] | None] = mapped_column(ScoreList)


class PendingSubmission(Base):
    """One rater's whole submission, sealed until the cycle closes.

    ``sealed`` is AES-GCM under a key derived from ``SECRET_KEY`` and the cycle (see
    ``app.crypto``), padded to a size that the number of suppliers and competencies
    decides, so its length does not tell which comments are the rater's. The row has a
    random key and no timestamp; the rater is nowhere in it, not even encrypted.
    """

    __tablename__ = "pending_submission"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # The foreign key stays: its share lock on the cycle row is what makes a submit wait
    # for a close that holds that row (see ``service.pool_sealed``).
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"), index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
