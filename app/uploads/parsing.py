"""Reading an upload (CSV, JSON or XLSX) into rows, with limits.

Everything here runs in time linear in the upload's size and refuses, with a 4xx naming
the limit, whatever is too big before spending more on it: the file, the columns of its
header, a cell, the rows, the problems worth listing, and for a workbook its unpacked
size and compression ratio (read from the zip's central directory before openpyxl opens
anything). A workbook's rows are read as they are in the sheet, whatever its
``<dimension>`` tag claims.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from app.errors import Invalid, TooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from app.config import Settings

CSV_TYPES = {"text/csv", "application/csv"}
JSON_TYPES = {"application/json"}
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ACCEPTED_TYPES = ", ".join([*sorted(CSV_TYPES), *sorted(JSON_TYPES), XLSX_TYPE])
# A workbook is a handful of parts; thousands of them is not a spreadsheet.
XLSX_MAX_PARTS = 1000
# Small parts (styles, a tiny sheet) compress far better than data without harm.
XLSX_RATIO_CHECKED_FROM = 1024 * 1024


@dataclass(frozen=True)
class UploadLimits:
    """What one upload may hold; each limit is named after its setting in refusals."""

    max_bytes: int = 10 * 1024 * 1024
    max_rows: int = 1_000_000
    max_columns: int = 50
    max_cell_chars: int = 10_000
    max_problems: int = 1000
    xlsx_max_unpacked_bytes: int = 100 * 1024 * 1024
    xlsx_max_ratio: float = 100.0

    @classmethod
    def of(cls, settings: Settings) -> UploadLimits:
        return cls(
            max_bytes=settings.max_request_bytes,
            max_rows=settings.upload_max_rows,
            max_columns=settings.upload_max_columns,
            max_cell_chars=settings.upload_max_cell_chars,
            max_problems=settings.upload_max_problems,
            xlsx_max_unpacked_bytes=settings.xlsx_max_unpacked_bytes,
            xlsx_max_ratio=settings.xlsx_max_compression_ratio,
        )


class UploadTooLarge(TooLarge):
    """An upload over one of the size limits (413); ``limit`` names the setting."""

    def __init__(self, detail: str, *, limit: str, value: float) -> None:
        super().__init__(detail, limit=limit, limit_value=value)


class UploadRefused(Invalid):
    """An upload whose shape breaks a limit (422); ``limit`` names the setting."""

    def __init__(self, detail: str, *, limit: str, value: float, **extra: Any) -> None:
        super().__init__(detail, limit=limit, limit_value=value, **extra)


class SourceRow(NamedTuple):
    """One record of an upload: its line (CSV/XLSX row, or 1-based JSON item) and values."""

    line: int
    values: dict[str, Any]


class Problems(list[dict[str, Any]]):
    """An import's problems, ``{line, field, message}``; collection stops at the limit.

    Past ``max_problems`` the import is refused at once: listing two million problems
    of a hostile file costs more than the file itself, and helps nobody.
    """

    def __init__(self, items: Iterable[dict[str, Any]] = (), *, limit: int, what: str) -> None:
        super().__init__()
        self.limit = limit
        self.what = what
        self.extend(items)

    def add(self, line: int, field_name: str, message: str) -> None:
        self.append({"line": line, "field": field_name, "message": message})

    def append(self, problem: dict[str, Any]) -> None:
        super().append(problem)
        if len(self) >= self.limit:
            self.refuse(stopped=True)

    def extend(self, problems: Iterable[dict[str, Any]]) -> None:
        for problem in problems:
            self.append(problem)

    def refuse(self, *, stopped: bool = False) -> None:
        """Reject the whole batch, listing its problems (no-op without problems)."""
        if not self:
            return
        listed = sorted(self, key=lambda e: (int(e.get("line", 0)), str(e.get("field", ""))))
        lines = len({e.get("line") for e in listed})
        if stopped:
            detail = (
                f"The {self.what} was rejected and nothing was saved: checking stopped "
                f"after {len(listed)} problems (UPLOAD_MAX_PROBLEMS). Fix these and send it "
                "again."
            )
        else:
            detail = (
                f"The {self.what} was rejected and nothing was saved: "
                f"{len(listed)} problem(s) on {lines} line(s)."
            )
        raise Invalid(
            detail, errors=listed, error_count=len(listed), error_count_is_complete=not stopped
        )


@dataclass
class ParsedUpload:
    rows: list[SourceRow] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def media_type_of(content_type: str | None) -> tuple[str, str | None]:
    """``text/csv; charset=windows-1251`` -> ("text/csv", "windows-1251")."""
    if not content_type:
        return "", None
    media, *params = content_type.split(";")
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"') or None
    return media.strip().lower(), charset


def kind_of(content_type: str | None) -> str:
    """ "csv", "json" or "xlsx"; any other content type is 415."""
    media, _ = media_type_of(content_type)
    if media in CSV_TYPES:
        return "csv"
    if media in JSON_TYPES or media.endswith("+json"):
        return "json"
    if media == XLSX_TYPE:
        return "xlsx"
    raise UnsupportedMediaType(
        f"Unsupported content type {media or 'none'!r}: send {ACCEPTED_TYPES}",
        headers={"Accept-Post": ACCEPTED_TYPES},
    )


def parse_upload(
    data: bytes,
    *,
    content_type: str | None,
    columns: Sequence[str],
    required: Sequence[str],
    ignored: Sequence[str] = (),
    limits: UploadLimits | None = None,
) -> ParsedUpload:
    """Rows of a JSON array, a CSV file or an XLSX workbook, chosen by content type.

    ``ignored`` columns are accepted and dropped (e.g. the names in our own CSV export);
    any other unknown column is refused, so a misspelt header cannot lose data silently.
    """
    limits = limits or UploadLimits()
    kind = kind_of(content_type)
    if len(data) > limits.max_bytes:
        raise UploadTooLarge(
            f"The file is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes "
            "(MAX_REQUEST_BYTES)",
            limit="MAX_REQUEST_BYTES",
            value=limits.max_bytes,
        )
    if not data.strip():
        raise Invalid(
            "The request body is empty: send at least one row",
            errors=[{"field": "body", "message": "empty"}],
        )
    reader = _Reader(columns=columns, required=required, ignored=ignored, limits=limits)
    if kind == "xlsx":
        return reader.from_xlsx(data)
    _, charset = media_type_of(content_type)
    text = decode_text(data, charset=charset if kind == "csv" else None)
    return reader.from_json(text) if kind == "json" else reader.from_csv(text)


def decode_text(data: bytes, *, charset: str | None = None) -> str:
    """Bytes to text: UTF-8 (a BOM is fine) unless a charset is declared."""
    encoding = "utf-8-sig"
    if charset and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        try:
            encoding = codecs.lookup(charset).name
        except LookupError:
            raise UnsupportedMediaType(
                f"Unknown charset {charset!r}: send UTF-8 or name a standard encoding"
            ) from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        shown = "UTF-8" if encoding == "utf-8-sig" else encoding
        raise Invalid(
            f"The file is not valid {shown} text (first bad byte on line {line}). "
            "Save it as 'CSV UTF-8', or declare its encoding, e.g. "
            "'Content-Type: text/csv; charset=windows-1251'.",
            errors=[{"line": line, "field": "body", "message": f"not valid {shown}"}],
        ) from None


def check_workbook_archive(data: bytes, *, limits: UploadLimits) -> None:
    """Refuse a zip bomb from the central directory alone, before anything is inflated.

    ``zipfile`` never inflates a part beyond the size the directory declares (and fails
    the CRC if it tried), so the declared sizes are a bound openpyxl cannot exceed.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        raise _not_a_workbook() from None
    if len(parts) > XLSX_MAX_PARTS:
        raise UploadRefused(
            f"The workbook has {len(parts):,} parts; a spreadsheet has far fewer "
            f"(at most {XLSX_MAX_PARTS})",
            limit="XLSX_MAX_PARTS",
            value=XLSX_MAX_PARTS,
        )
    unpacked = sum(part.file_size for part in parts)
    if unpacked > limits.xlsx_max_unpacked_bytes:
        raise UploadTooLarge(
            f"The workbook unpacks to {unpacked:,} bytes; the limit is "
            f"{limits.xlsx_max_unpacked_bytes:,} bytes (XLSX_MAX_UNPACKED_BYTES). "
            "Split it, or send CSV.",
            limit="XLSX_MAX_UNPACKED_BYTES",
            value=limits.xlsx_max_unpacked_bytes,
        )
    for part in parts:
        if part.file_size < XLSX_RATIO_CHECKED_FROM:
            continue
        ratio = part.file_size / max(part.compress_size, 1)
        if ratio > limits.xlsx_max_ratio:
            raise UploadTooLarge(
                f"A part of the workbook is compressed {ratio:,.0f} to 1; the limit is "
                f"{limits.xlsx_max_ratio:g} to 1 (XLSX_MAX_COMPRESSION_RATIO). It is not a "
                "plausible spreadsheet.",
                limit="XLSX_MAX_COMPRESSION_RATIO",
                value=limits.xlsx_max_ratio,
            )


def _not_a_workbook() -> Invalid:
    return Invalid(
        "The file is not a readable Excel workbook (.xlsx)",
        errors=[{"field": "body", "message": "not an .xlsx workbook"}],
    )


@dataclass
class _Reader:
    """Reads one upload's rows against the expected columns and the limits."""

    columns: Sequence[str]
    required: Sequence[str]
    ignored: Sequence[str]
    limits: UploadLimits
    out: ParsedUpload = field(default_factory=ParsedUpload)

    def __post_init__(self) -> None:
        self.out.errors = Problems(limit=self.limits.max_problems, what="upload")

    def problem(self, line: int, field_name: str, message: str) -> None:
        self.out.errors.append({"line": line, "field": field_name, "message": message})

    def too_many_rows(self) -> UploadTooLarge:
        return UploadTooLarge(
            f"Too many rows: at most {self.limits.max_rows:,} per import (UPLOAD_MAX_ROWS)",
            limit="UPLOAD_MAX_ROWS",
            value=self.limits.max_rows,
        )

    def long_cell(self, line: int, column: int | str) -> UploadRefused:
        limit = self.limits.max_cell_chars
        return UploadRefused(
            f"A cell on line {line} is longer than {limit:,} characters (UPLOAD_MAX_CELL_CHARS)",
            limit="UPLOAD_MAX_CELL_CHARS",
            value=limit,
            errors=[{"line": line, "field": str(column), "message": "cell too long"}],
        )

    def header(self, raw: Sequence[str]) -> list[str]:
        """Normalised column names; ignored columns become "" so their cells are dropped."""
        if len(raw) > self.limits.max_columns:
            raise UploadRefused(
                f"The header has {len(raw):,} columns; at most {self.limits.max_columns} "
                f"are accepted (UPLOAD_MAX_COLUMNS). Expected: {', '.join(self.columns)}",
                limit="UPLOAD_MAX_COLUMNS",
                value=self.limits.max_columns,
                errors=[{"line": 1, "field": "header", "message": "too many columns"}],
            )
        header = [str(name).strip().lower().lstrip("\ufeff")[:100] for name in raw]
        known, ignored = set(self.columns), set(self.ignored)
        errors = []
        unknown = list(
            dict.fromkeys(n for n in header if n and n not in known and n not in ignored)
        )
        if unknown:
            shown = ", ".join(map(repr, unknown[:20]))
            if len(unknown) > 20:
                shown += f" and {len(unknown) - 20:,} more"
            errors.append(f"unknown column(s) {shown}; expected {', '.join(self.columns)}")
        missing = [name for name in self.required if name not in header]
        if missing:
            errors.append(f"missing column(s) {', '.join(missing)}")
        # Counted once (header.count() per column was quadratic in the header's width).
        dupes = sorted(name for name, n in Counter(header).items() if name and n > 1)
        if dupes:
            errors.append(f"repeated column(s) {', '.join(dupes)}")
        if errors:
            raise Invalid(
                "The header row is not usable: " + "; ".join(errors),
                errors=[{"line": 1, "field": "header", "message": m} for m in errors],
            )
        return [name if name in known else "" for name in header]

    # --- CSV ---------------------------------------------------------------------------

    def from_csv(self, text: str) -> ParsedUpload:
        """A CSV file with a header row (comma or, as Excel writes in many locales, ';')."""
        end = text.find("\n")
        first_line = text if end < 0 else text[:end]
        delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        header: list[str] | None = None
        width, dropped = 0, False
        longest = self.limits.max_cell_chars
        max_line = self.limits.max_rows + 1
        append = self.out.rows.append
        try:
            for record in reader:
                if header is None:
                    header = self.header(record)
                    width, dropped = len(header), "" in header
                    continue
                if reader.line_num > max_line:
                    raise self.too_many_rows()
                if not any(record):
                    continue
                if len(max(record, key=len)) > longest:
                    raise self.long_cell(reader.line_num, "row")
                # Cells are trimmed (and "" read as absent) by the row models, not here:
                # this loop runs once per row of a 500,000-pair matrix.
                if len(record) == width and not dropped:
                    append(SourceRow(reader.line_num, dict(zip(header, record, strict=True))))
                    continue
                if len(record) > width:
                    self.problem(
                        reader.line_num,
                        "row",
                        f"has {len(record)} fields but the header has {width}",
                    )
                    continue
                values = {name: cell for name, cell in zip(header, record, strict=False) if name}
                append(SourceRow(reader.line_num, values))
        except csv.Error as exc:
            line = reader.line_num or 1
            message = str(exc)
            if "field larger than field limit" in message:
                raise self.long_cell(line, "row") from None
            raise Invalid(
                f"The CSV file is malformed near line {line}: {message}",
                errors=[{"line": line, "field": "row", "message": f"malformed CSV: {message}"}],
            ) from None
        if header is None:
            raise Invalid(
                "The CSV file is empty",
                errors=[{"line": 1, "field": "header", "message": "missing"}],
            )
        return self.out

    # --- JSON --------------------------------------------------------------------------

    def from_json(self, text: str) -> ParsedUpload:
        """A JSON array of objects; an object's position (from 1) stands for its line."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Invalid(
                f"The body is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}",
                errors=[{"line": exc.lineno, "field": "body", "message": exc.msg}],
            ) from None
        except (RecursionError, ValueError):
            raise Invalid(
                "The body is not usable JSON (too deeply nested or too large a number)"
            ) from None
        if not isinstance(data, list):
            raise Invalid(
                "The body must be a JSON array of objects",
                errors=[{"field": "body", "message": "must be an array"}],
            )
        if len(data) > self.limits.max_rows:
            raise self.too_many_rows()
        allowed, ignored = set(self.columns), set(self.ignored)
        longest = self.limits.max_cell_chars
        for index, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                self.problem(index, "row", "must be an object")
                continue
            if len(item) > self.limits.max_columns:
                self.problem(index, "row", f"has more than {self.limits.max_columns} fields")
                continue
            unknown = [key for key in item if key not in allowed and key not in ignored]
            for key in unknown[:5]:
                self.problem(index, str(key)[:100], "unknown field")
            values = {k: v for k, v in item.items() if k in allowed}
            for key, value in values.items():
                if isinstance(value, str) and len(value) > longest:
                    raise self.long_cell(index, key)
            self.out.rows.append(SourceRow(index, values))
        return self.out

    # --- XLSX --------------------------------------------------------------------------

    def from_xlsx(self, data: bytes) -> ParsedUpload:
        """The first sheet of an Excel workbook; its first non-empty row is the header."""
        from openpyxl import load_workbook  # late: only uploads need it

        check_workbook_archive(data, limits=self.limits)
        try:
            workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception:  # openpyxl raises many kinds on damaged files
            raise _not_a_workbook() from None
        try:
            sheet = workbook.worksheets[0]
            # Read-only mode stops at the row count the sheet's <dimension> tag claims,
            # which some tools write wrong: forget it and read the rows that are there.
            sheet.reset_dimensions()
            return self._sheet_rows(sheet.iter_rows(values_only=True))
        except (Invalid, TooLarge):
            raise
        except Exception:
            raise Invalid(
                "The workbook could not be read",
                errors=[{"field": "body", "message": "unreadable sheet"}],
            ) from None
        finally:
            workbook.close()

    def _sheet_rows(self, records: Iterable[Sequence[Any]]) -> ParsedUpload:
        header: list[str] | None = None
        width = 0
        longest = self.limits.max_cell_chars
        max_line = self.limits.max_rows + 1
        for number, record in enumerate(records, start=1):
            if number > max_line:
                raise self.too_many_rows()
            cells = [_cell_text(value) for value in record]
            if header is None:
                if not any(cells):
                    continue
                while cells and cells[-1] is None:
                    cells.pop()  # formatting can widen a row with empty cells
                header = self.header([c or "" for c in cells])
                width = len(header)
                continue
            if not any(cells):
                continue
            if any(c is not None and len(c) > longest for c in cells):
                raise self.long_cell(number, "row")
            if any(cells[width:]):
                self.problem(number, "row", "has values beyond the header")
                continue
            self.out.rows.append(
                SourceRow(number, {n: c for n, c in zip(header, cells, strict=False) if n})
            )
        if header is None:
            raise Invalid(
                "The workbook is empty",
                errors=[{"line": 1, "field": "header", "message": "missing"}],
            )
        return self.out


def _cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    text = str(value).strip()
    return text or None
