"""Column types whose storage differs per database, decided here and nowhere else."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, LargeBinary, SmallInteger, type_coerce
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# SQLite stores a score as one byte; this byte means "no score" (can't judge).
NO_SCORE_BYTE = 0xFF
MAX_SCORE = NO_SCORE_BYTE - 1


class ScoreList(TypeDecorator[list[int | None]]):
    """A short list of small scores (``None`` allowed), kept in one column.

    PostgreSQL: ``smallint[]``. SQLite: one byte per score (``0xFF`` for ``None``), the
    most compact form it has. Why one column: the close reads every score of a cycle in
    one scan of one table, instead of a row (and an index entry) per score.
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


class _RawScoreList(ScoreList):
    """:class:`ScoreList` as the driver returns it (bytes or a list), for bulk reads."""

    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return value


def raw_scores(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """Select a :class:`ScoreList` column without converting each value in Python."""
    return type_coerce(column, _RawScoreList())


def score_matrix(raw: Sequence[Any], width: int) -> npt.NDArray[np.float64]:
    """The values of :func:`raw_scores` as a (rows x width) matrix, NaN for no score.

    One conversion for the whole lot: at 50,000 employees the close reads 380,000 lists.
    """
    if not raw:
        return np.empty((0, width))
    if all(isinstance(v, bytes) and len(v) == width for v in raw):
        packed = np.frombuffer(b"".join(raw), dtype=np.uint8).reshape(len(raw), width)
        matrix = packed.astype(np.float64)
        matrix[packed == NO_SCORE_BYTE] = np.nan
        return matrix
    if all(isinstance(v, list) and len(v) == width for v in raw):
        return np.array(raw, dtype=np.float64).reshape(len(raw), width)
    matrix = np.full((len(raw), width), np.nan)
    for i, value in enumerate(raw):
        # NULL (no scores at all) or, on SQLite, the packed bytes; a list on PostgreSQL.
        scores = decode_scores(value) if isinstance(value, bytes | memoryview) else value or []
        for j, score in enumerate(scores[:width]):
            if score is not None:
                matrix[i, j] = score
    return matrix


# --- column-wise stored forms, for bulk writes (``insert_rows(..., stored=...)``) ---------
# The close writes hundreds of thousands of ballots: converting each value through its
# column type cost more than the database's inserts. These make a whole column at once,
# in a form both databases parse for the column (and ``insert_rows`` passes on as is).


def stored_score_lists(matrix: npt.NDArray[np.float64], dialect: Dialect) -> Iterator[Any]:
    """Each row of a (rows x width) matrix, NaN for no score, as a stored :class:`ScoreList`.

    SQLite: the packed bytes. PostgreSQL: the array's text form (``{4,NULL,5}``), which
    ``COPY`` and a parameter of unknown type both read as ``smallint[]``, made as the
    rows are written: the client then formats while the server parses what it has.
    Values out of range raise at once, before any row is made.
    """
    rows, width = matrix.shape
    missing = np.isnan(matrix)
    if ((matrix[~missing] < 0) | (matrix[~missing] > MAX_SCORE)).any():
        raise ValueError("a score must be between 0 and 254")
    packed = np.where(missing, NO_SCORE_BYTE, np.nan_to_num(matrix)).astype(np.uint8)
    if dialect.name != "postgresql":
        if not width:
            return iter([b""] * rows)
        # Each row as one opaque value of ``width`` bytes: numpy makes the bytes objects.
        return iter(packed.view(np.dtype((np.void, width))).ravel().tolist())
    text = [str(v) for v in range(MAX_SCORE + 1)] + ["NULL"]
    return ("{" + ",".join([text[v] for v in row]) + "}" for row in packed.tolist())
