"""Reading uploads within limits, tried as an attacker would: no database needed."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import DomainError, Invalid, TooLarge
from app.uploads.parsing import XLSX_TYPE, ParsedUpload, UploadLimits, parse_upload
from tests.uploads.workbooks import rewrite_sheet, workbook, wrong_dimension, zip_bomb

COLUMNS = ("external_id", "email", "full_name", "active")
REQUIRED = COLUMNS[:3]


def parse(data: bytes, content_type: str, **limits: object) -> ParsedUpload:
    return parse_upload(
        data,
        content_type=content_type,
        columns=COLUMNS,
        required=REQUIRED,
        limits=UploadLimits(**limits),  # type: ignore[arg-type]
    )


def refused(data: bytes, content_type: str, **limits: object) -> DomainError:
    with pytest.raises(DomainError) as caught:
        parse(data, content_type, **limits)
    return caught.value


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bytes]:
    """About 1.2 MiB that unpacks to 300 MiB of sheet XML."""
    path = zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.xlsx", unpacked_mib=300)
    data = path.read_bytes()
    assert 1024 * 1024 < len(data) < 2 * 1024 * 1024
    yield data
    path.unlink()


# --- XLSX ------------------------------------------------------------------------------


def test_every_row_is_read_whatever_the_dimension_tag_claims() -> None:
    rows = [["external_id", "email", "full_name"]]
    rows += [[f"E{i}", f"e{i}@x.io", f"Name {i}"] for i in range(1, 501)]
    data = wrong_dimension(rows, "A1:D101")
    parsed = parse(data, XLSX_TYPE)
    assert len(parsed.rows) == 500
    assert parsed.rows[-1].line == 501
    assert parsed.rows[-1].values == {
        "external_id": "E500",
        "email": "e500@x.io",
        "full_name": "Name 500",
    }
    # A tag claiming more (or less) than there is changes nothing either.
    assert len(parse(wrong_dimension(rows, "A1:A1"), XLSX_TYPE).rows) == 500
    assert len(parse(wrong_dimension(rows, "A1:XFD1048576"), XLSX_TYPE).rows) == 500


def test_zip_bomb_is_refused_from_the_directory_fast_and_in_little_memory(bomb: bytes) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        error = refused(bomb, XLSX_TYPE)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(error, TooLarge) and error.status == 413
    assert error.extra["limit"] == "XLSX_MAX_UNPACKED_BYTES"
    assert "XLSX_MAX_UNPACKED_BYTES" in error.detail and "unpacks to" in error.detail
    # Nothing was inflated: the whole refusal is a read of the central directory.
    assert elapsed < 2, elapsed
    assert peak < 20 * 1024 * 1024, peak


def test_compression_ratio_is_bounded_even_under_the_size_limit(bomb: bytes) -> None:
    error = refused(bomb, XLSX_TYPE, xlsx_max_unpacked_bytes=1024**3)
    assert error.status == 413
    assert error.extra["limit"] == "XLSX_MAX_COMPRESSION_RATIO"
    assert "XLSX_MAX_COMPRESSION_RATIO" in error.detail


def test_file_over_the_size_limit_is_413_naming_it() -> None:
    data = workbook([["external_id", "email", "full_name"], ["E1", "a@x.io", "A"]])
    error = refused(data, XLSX_TYPE, max_bytes=len(data) - 1)
    assert error.status == 413 and error.extra["limit"] == "MAX_REQUEST_BYTES"
    csv_error = refused(
        b"external_id,email,full_name\n" + b"E,a@x.io,A\n" * 100, "text/csv", max_bytes=100
    )
    assert csv_error.status == 413


def test_workbook_rows_and_cells_have_limits() -> None:
    rows = [["external_id", "email", "full_name"]] + [["E", "a@x.io", "A"]] * 20
    error = refused(workbook(rows), XLSX_TYPE, max_rows=10)
    assert error.status == 413 and error.extra["limit"] == "UPLOAD_MAX_ROWS"
    long = workbook([["external_id", "email", "full_name"], ["E1", "a@x.io", "x" * 20_000]])
    error = refused(long, XLSX_TYPE)
    assert error.status == 422 and error.extra["limit"] == "UPLOAD_MAX_CELL_CHARS"
    wide = workbook([["external_id", "email", "full_name", *[f"c{i}" for i in range(200)]]])
    assert refused(wide, XLSX_TYPE).extra["limit"] == "UPLOAD_MAX_COLUMNS"


# --- CSV -------------------------------------------------------------------------------


def test_wide_csv_header_is_refused_fast() -> None:
    header = "external_id,email,full_name," + ",".join(f"c{i}" for i in range(100_000))
    data = (header + "\nE1,a@x.io,A\n").encode()
    started = time.perf_counter()
    error = refused(data, "text/csv")
    elapsed = time.perf_counter() - started
    assert error.status == 422 and error.extra["limit"] == "UPLOAD_MAX_COLUMNS"
    assert "100,003 columns" in error.detail and "UPLOAD_MAX_COLUMNS" in error.detail
    assert elapsed < 2, elapsed  # was 154 s of CPU: the duplicate check was quadratic


def test_wide_header_check_is_linear_even_without_the_column_limit() -> None:
    # Every name repeated: the duplicate check itself must stay linear (100,000 columns
    # took minutes when each name was counted across the whole header).
    header = ",".join(["external_id", "email", "full_name"] + ["x"] * 100_000)
    started = time.perf_counter()
    error = refused(header.encode() + b"\n", "text/csv", max_columns=10**9)
    assert time.perf_counter() - started < 5
    assert "repeated column(s) x" in error.detail


def test_long_cells_too_many_rows_and_too_many_problems() -> None:
    head = b"external_id,email,full_name\n"
    long = refused(head + b"E1,a@x.io," + b"x" * 20_000 + b"\n", "text/csv")
    assert long.status == 422 and long.extra["limit"] == "UPLOAD_MAX_CELL_CHARS"
    assert long.errors == [{"line": 2, "field": "row", "message": "cell too long"}]
    # Beyond csv's own field limit (131,072) too.
    huge = refused(head + b"E1,a@x.io," + b"x" * 200_000 + b"\n", "text/csv")
    assert huge.extra["limit"] == "UPLOAD_MAX_CELL_CHARS"
    rows = refused(head + b"E,a@x.io,A\n" * 11, "text/csv", max_rows=10)
    assert rows.status == 413 and rows.extra["limit"] == "UPLOAD_MAX_ROWS"
    # Rows with too many fields: checking stops at the limit and says so.
    bad = head + b"E,a@x.io,A,extra\n" * 5000
    started = time.perf_counter()
    many = refused(bad, "text/csv", max_problems=100)
    assert time.perf_counter() - started < 2
    assert isinstance(many, Invalid) and len(many.errors or []) == 100
    assert "stopped after 100 problems" in many.detail and "UPLOAD_MAX_PROBLEMS" in many.detail
    assert many.extra["error_count_is_complete"] is False


def test_json_limits() -> None:
    rows = refused(b'[{"external_id": "E"}]' * 1 + b"", "application/json", max_rows=0)
    assert rows.status == 413
    long = refused(b'[{"external_id": "' + b"x" * 20_000 + b'"}]', "application/json")
    assert long.extra["limit"] == "UPLOAD_MAX_CELL_CHARS"
    junk = b"[" + b",".join([b"5"] * 50) + b"]"
    many = refused(junk, "application/json", max_problems=10)
    assert len(many.errors or []) == 10


def test_limits_come_from_the_settings(tmp_path: Path) -> None:
    from app.config import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        upload_max_columns=7,
        xlsx_max_compression_ratio=12,
        max_request_bytes=1234,
    )
    limits = UploadLimits.of(settings)
    assert (limits.max_columns, limits.xlsx_max_ratio, limits.max_bytes) == (7, 12, 1234)


def test_entity_expansion_in_a_sheet_is_refused_fast() -> None:
    """ "Billion laughs": ten levels of entities, each ten times the one below."""
    data = workbook([["external_id", "email", "full_name"], ["E1", "a@x.io", "A"]])
    entities = b'<!ENTITY lol0 "lolololololololololol">' + b"".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">'.encode() for i in range(1, 10)
    )
    doctype = b'<?xml version="1.0"?><!DOCTYPE worksheet [' + entities + b"]>"
    bad = rewrite_sheet(data, {rb"^(<\?xml[^>]*\?>)?": doctype, rb"<t>A</t>": b"<t>&lol9;</t>"})
    started = time.perf_counter()
    error = refused(bad, XLSX_TYPE)
    assert time.perf_counter() - started < 3
    assert error.status == 422 and "workbook" in error.detail
