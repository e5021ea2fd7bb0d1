"""Column types whose storage differs per database, decided here and nowhere else."""

from __future__ import annotations

from typing import Any

from sqlalchemy import LargeBinary, SmallInteger
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# SQLite stores a score as one byte; this byte means "no score" (can't judge).
NO_SCORE_BYTE = 0xFF
MAX_SCORE = NO_SCORE_BYTE - 1


class ScoreList(TypeDecorator[list[int | None]]):
    """A short list of small scores (``None`` allowed), kept in one column.

    PostgreSQL: ``smallint[]``. SQLite: one byte per score (``0xFF`` for ``None``), the
    most compact form it has. The form of a ballot's scores from migration 0006 until
    0020 (ballot boxes), which read and write it; no model uses it any more.
    """

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(SmallInteger()))
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return None if value is None else list(value)
        return encode_scores(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> list[int | None] | None:
        if value is None or dialect.name == "postgresql":
            return None if value is None else list(value)
        return decode_scores(value)


def encode_scores(scores: Any) -> bytes:
    """The SQLite form of a score list."""
    out = bytearray()
    for score in scores:
        if score is None:
            out.append(NO_SCORE_BYTE)
        elif 0 <= score <= MAX_SCORE:
            out.append(score)
        else:
            raise ValueError("a score must be between 0 and 254")
    return bytes(out)


def decode_scores(data: bytes | memoryview) -> list[int | None]:
    return [None if b == NO_SCORE_BYTE else b for b in bytes(data)]
