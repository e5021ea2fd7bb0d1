"""Anonymous ballots and the mixing pool they wait in while a cycle is open.

A ballot deliberately has no column, key or foreign key that points at the rater or the
invitation, and no timestamp: with those, anyone with database access could read how a
colleague voted. Nor is a ballot written when its rater submits: the submit transaction
also marks the invitation, and the database's own history (PostgreSQL's WAL, SQLite's
``-wal`` file, replicas, point-in-time backups) keeps the two side by side. A submit
writes one encrypted :class:`PendingSubmission` instead; the close decrypts the pool and
writes every ballot of the cycle in one transaction, a :class:`BallotBox` per supplier
with the ballots in random order inside (see ``ratings.service.release_pool``).
"""

from __future__ import annotations

import uuid

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class BallotBox(Base):
    """Every ballot about one supplier in one cycle, as one row written once at close.

    The ballots sit in the row in an order drawn at random, so no rowid, key, ``ctid`` or
    row order exists per ballot at all, and the close writes ~45,000 rows at 50,000
    employees instead of ~400,000 (see :mod:`app.ratings.ballots` for the format). The
    comments are a list of their own, in another random order: a comment is not tied to
    the scores it came with.
    """

    __tablename__ = "ballot_box"

    # No foreign keys (migration 0015): whoever deletes a cycle or a person deletes its
    # boxes first. The key is what every row names anyway: no counter.
    cycle_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    supplier_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ballots: Mapped[int] = mapped_column(Integer)
    # Little-endian int16 arrays: an NPS per ballot, and ``ballots`` x competencies
    # scores (row-major, the cycle's competencies in the order of their ids, see
    # ``cycle_competency_order``); ``ballots.NO_ANSWER`` where there is none. The arrays
    # and the comments may be NULL (read as no answers): PostgreSQL's NOT NULL error
    # quotes the whole row, comments included, in its text.
    nps: Mapped[bytes | None] = mapped_column(LargeBinary)
    scores: Mapped[bytes | None] = mapped_column(LargeBinary)
    # SQL NULL, not JSON null, when there is none: ``comments IS NULL`` finds them.
    comments: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))


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
