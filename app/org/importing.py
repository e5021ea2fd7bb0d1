"""Bulk import from the HRIS (or an HR upload): parse, validate every row, then write.

An import is all or nothing: every row is checked in memory first (set and dict
lookups, no query per row) and every problem is reported with its line, field and
message; only a clean batch is written, with bulk statements. The HRIS sends its whole
company this way (50,000 employees in the benchmark), so nothing here may do a database
round trip per row.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar, cast

from sqlalchemy import Table, bindparam, select, text, update
from sqlalchemy.orm import Session

from app.db import is_sqlite, utcnow
from app.errors import Invalid, UnsupportedMediaType
from app.org import service as org_service
from app.org.models import Department, Employee

MAX_ERRORS_LISTED = 1000
MAX_ROWS = 1_000_000
CSV_FIELD_LIMIT = 10_000
CSV_TYPES = {"text/csv", "application/csv"}
JSON_TYPES = {"application/json"}
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ACCEPTED_TYPES = ", ".join([*sorted(CSV_TYPES), *sorted(JSON_TYPES), XLSX_TYPE])

EMPLOYEE_COLUMNS = (
    "external_id",
    "email",
    "full_name",
    "department_external_id",
    "manager_external_id",
    "language",
    "active",
)
EMPLOYEE_REQUIRED = ("external_id", "email", "full_name")
EMPLOYEE_TABLE_COLUMNS = (
    "id",
    "external_id",
    "email",
    "full_name",
    "department_id",
    "manager_id",
    "language",
    "active",
    "created_at",
    "updated_at",
)

DEPARTMENT_COLUMNS = ("external_id", "name", "parent_external_id")
DEPARTMENT_REQUIRED = ("external_id", "name")
DEPARTMENT_TABLE_COLUMNS = ("id", "external_id", "name", "parent_id", "created_at", "updated_at")

TRUE_WORDS = {"true", "1", "yes", "y", "t", "active"}
FALSE_WORDS = {"false", "0", "no", "n", "f", "inactive"}


class SourceRow(NamedTuple):
    """One record of an upload: its line (CSV/XLSX row, or 1-based JSON item) and values."""

    line: int
    values: dict[str, Any]


@dataclass
class ParsedUpload:
    rows: list[SourceRow] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do)."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    removed: int = 0
    dry_run: bool = False


def row_error(line: int, field_name: str, message: str) -> dict[str, Any]:
    return {"line": line, "field": field_name, "message": message}


def raise_row_errors(errors: list[dict[str, Any]], *, what: str) -> None:
    """Reject the whole batch, listing the first MAX_ERRORS_LISTED problems."""
    if not errors:
        return
    errors.sort(key=lambda e: (e["line"], e["field"]))
    lines = len({e["line"] for e in errors})
    detail = (
        f"The {what} import was rejected and nothing was saved: {len(errors)} problem(s) "
        f"on {lines} line(s)."
    )
    if len(errors) > MAX_ERRORS_LISTED:
        detail += f" The first {MAX_ERRORS_LISTED} are listed."
    raise Invalid(detail, errors=errors[:MAX_ERRORS_LISTED], error_count=len(errors))


# --- parsing ---------------------------------------------------------------------------


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


def parse_upload(
    data: bytes,
    *,
    content_type: str | None,
    columns: Sequence[str],
    required: Sequence[str],
    ignored: Sequence[str] = (),
) -> ParsedUpload:
    """Rows of a JSON array, a CSV file or an XLSX workbook, chosen by content type.

    ``ignored`` columns are accepted and dropped (e.g. the names in our own CSV export);
    any other unknown column is refused, so a misspelt header cannot lose data silently.
    """
    media, charset = media_type_of(content_type)
    if media in CSV_TYPES:
        kind = "csv"
    elif media in JSON_TYPES or media.endswith("+json"):
        kind = "json"
    elif media == XLSX_TYPE:
        kind = "xlsx"
    else:
        shown = media or "none"
        raise UnsupportedMediaType(
            f"Unsupported content type {shown!r}: send {ACCEPTED_TYPES}",
            headers={"Accept-Post": ACCEPTED_TYPES},
        )
    if not data.strip():
        raise Invalid(
            "The request body is empty: send at least one row",
            errors=[{"field": "body", "message": "empty"}],
        )
    if kind == "xlsx":
        return parse_xlsx(data, columns=columns, required=required, ignored=ignored)
    text = decode_text(data, charset=charset if kind == "csv" else None)
    if kind == "json":
        return parse_json(text, columns=columns, required=required, ignored=ignored)
    return parse_csv(text, columns=columns, required=required, ignored=ignored)


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
            errors=[row_error(line, "body", f"not valid {shown}")],
        ) from None


def _header(
    raw: list[str], *, columns: Sequence[str], required: Sequence[str], ignored: Sequence[str]
) -> list[str]:
    """Normalised column names; ignored columns become "" so their cells are dropped."""
    header = [name.strip().lower().lstrip("\ufeff") for name in raw]
    errors = []
    unknown = [name for name in header if name and name not in columns and name not in ignored]
    if unknown:
        errors.append(
            row_error(
                1,
                "header",
                f"unknown column(s) {', '.join(map(repr, unknown))}; expected {', '.join(columns)}",
            )
        )
    missing = [name for name in required if name not in header]
    if missing:
        errors.append(row_error(1, "header", f"missing column(s) {', '.join(missing)}"))
    dupes = sorted({name for name in header if name and header.count(name) > 1})
    if dupes:
        errors.append(row_error(1, "header", f"repeated column(s) {', '.join(dupes)}"))
    if errors:
        raise Invalid(
            "The header row is not usable: " + "; ".join(e["message"] for e in errors),
            errors=errors,
        )
    return [name if name in columns else "" for name in header]


def parse_csv(
    text: str, *, columns: Sequence[str], required: Sequence[str], ignored: Sequence[str] = ()
) -> ParsedUpload:
    """A CSV file with a header row (comma or, as Excel writes in many locales, ';')."""
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    out = ParsedUpload()
    # Fields over csv's default limit (131,072 characters) raise csv.Error: a clear 422.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    append = out.rows.append
    try:
        for record in reader:
            if header is None:
                header = _header(record, columns=columns, required=required, ignored=ignored)
                width, dropped = len(header), "" in header
                continue
            if reader.line_num > MAX_ROWS + 1:
                raise Invalid(f"Too many lines: at most {MAX_ROWS} rows per import")
            if not any(record):
                continue
            # Cells are trimmed (and "" read as absent) by the validation, not here: this
            # loop runs once per row of a 500,000-pair matrix.
            if len(record) == width and not dropped:
                append(SourceRow(reader.line_num, dict(zip(header, record, strict=True))))
                continue
            if len(record) > width:
                out.errors.append(
                    row_error(
                        reader.line_num,
                        "row",
                        f"has {len(record)} fields but the header has {width}",
                    )
                )
                continue
            values = {name: cell for name, cell in zip(header, record, strict=False) if name}
            append(SourceRow(reader.line_num, values))
    except csv.Error as exc:
        line = reader.line_num or 1
        raise Invalid(
            f"The CSV file is malformed near line {line}: {exc}",
            errors=[row_error(line, "row", f"malformed CSV: {exc}")],
        ) from None
    if header is None:
        raise Invalid("The CSV file is empty", errors=[row_error(1, "header", "missing")])
    return out


def parse_json(
    text: str, *, columns: Sequence[str], required: Sequence[str], ignored: Sequence[str] = ()
) -> ParsedUpload:
    """A JSON array of objects; an object's position (from 1) stands for its line."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"The body is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}",
            errors=[row_error(exc.lineno, "body", exc.msg)],
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
    if len(data) > MAX_ROWS:
        raise Invalid(f"Too many rows: at most {MAX_ROWS} per import")
    out = ParsedUpload()
    allowed = set(columns)
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            out.errors.append(row_error(index, "row", "must be an object"))
            continue
        unknown = [key for key in item if key not in allowed and key not in ignored]
        for key in unknown[:5]:
            out.errors.append(row_error(index, str(key)[:100], "unknown field"))
        out.rows.append(SourceRow(index, {k: v for k, v in item.items() if k in allowed}))
    return out


def parse_xlsx(
    data: bytes,
    *,
    columns: Sequence[str],
    required: Sequence[str],
    ignored: Sequence[str] = (),
    sheet: str | None = None,
) -> ParsedUpload:
    """The first (or the named) sheet of an Excel workbook; row 1 is the header."""
    from openpyxl import load_workbook  # late: only HR uploads need it

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError, IndexError):
        raise Invalid(
            "The file is not a readable Excel workbook (.xlsx)",
            errors=[{"field": "body", "message": "not an .xlsx workbook"}],
        ) from None
    except Exception:  # openpyxl raises many kinds on damaged files
        raise Invalid(
            "The file is not a readable Excel workbook (.xlsx)",
            errors=[{"field": "body", "message": "not an .xlsx workbook"}],
        ) from None
    try:
        ws = workbook[sheet] if sheet else workbook.worksheets[0]
        out = ParsedUpload()
        header: list[str] | None = None
        for number, record in enumerate(ws.iter_rows(values_only=True), start=1):
            cells = [_cell_text(value) for value in record]
            if header is None:
                if not any(cells):
                    continue
                header = _header(
                    [c or "" for c in cells], columns=columns, required=required, ignored=ignored
                )
                continue
            if not any(cells):
                continue
            extra = [c for c in cells[len(header) :] if c]
            if extra:
                out.errors.append(row_error(number, "row", "has values beyond the header"))
                continue
            out.rows.append(
                SourceRow(number, {n: c for n, c in zip(header, cells, strict=False) if n})
            )
            if len(out.rows) > MAX_ROWS:
                raise Invalid(f"Too many rows: at most {MAX_ROWS} per import")
    except Invalid:
        raise
    except Exception:
        raise Invalid(
            "The workbook could not be read",
            errors=[{"field": "body", "message": "unreadable sheet"}],
        ) from None
    finally:
        workbook.close()
    if header is None:
        raise Invalid("The workbook is empty", errors=[row_error(1, "header", "missing")])
    return out


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


# --- value coercion --------------------------------------------------------------------


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str | None) -> str:
    """A cell that a spreadsheet will show as text, never run as a formula."""
    text = value or ""
    return "'" + text if text[:1] in FORMULA_STARTS else text


class BadValue(Exception):
    """A cell whose type or wording cannot be read (the message says what is expected)."""


def text_value(values: Mapping[str, Any], name: str) -> str | None:
    """A text cell: strings as sent (trimmed), JSON integers as text, empty -> None."""
    value = values.get(name)
    if type(value) is str:
        value = value.strip()
        # Our CSV exports prefix formula-like cells with ' (spreadsheet injection guard);
        # drop it again so an exported file can be uploaded as is.
        if value[:1] == "'" and value[1:2] in FORMULA_STARTS:
            value = value[1:]
        return value or None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue("must be a string")
    return str(value)


def bool_value(values: Mapping[str, Any], name: str, *, default: bool) -> bool:
    value = values.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return default
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise BadValue("must be true or false")


def cycle_members(parents: Mapping[str, str | None], starts: Iterable[str]) -> set[str]:
    """Every node on a loop reachable from ``starts`` (linear time, no recursion)."""
    done: set[str] = set()
    looped: set[str] = set()
    for start in starts:
        path: dict[str, int] = {}
        order: list[str] = []
        node: str | None = start
        while node is not None and node not in done:
            if node in path:
                looped.update(order[path[node] :])
                break
            path[node] = len(order)
            order.append(node)
            node = parents.get(node)
        done.update(order)
    return looped


def chunks(items: Sequence[Any], size: int = 5000) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- bulk writes -----------------------------------------------------------------------
# These go to the driver directly: executemany with plain tuples on SQLite, COPY on
# PostgreSQL. They are what makes a 50,000-employee import take seconds, not minutes.


def _dbapi_cursor(session: Session) -> Any:
    return session.connection().connection.cursor()


def reserve_ids(session: Session, table_name: str, count: int) -> list[int]:
    """``count`` fresh primary keys for ``table_name`` (its sequence, or max+1 on SQLite,
    where the writer holds the database lock)."""
    if count == 0:
        return []
    if is_sqlite(session):
        start = session.execute(text(f"SELECT coalesce(max(id), 0) FROM {table_name}")).scalar()
        return list(range(int(start or 0) + 1, int(start or 0) + 1 + count))
    return list(
        session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                "FROM generate_series(1, :count)"
            ),
            {"table": table_name, "count": count},
        ).scalars()
    )


def bulk_insert(
    session: Session,
    table_name: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    constants: Mapping[str, datetime] | None = None,
) -> None:
    """Insert plain tuples as fast as the driver can (no ORM, no per-row statement).

    ``constants`` are columns with one value for every row (an import's timestamps):
    on SQLite they are written into the statement once, so the rows reach the driver
    as they are, without a Python pass over every value (a fifth of a matrix import).
    """
    if not rows:
        return
    session.flush()
    fixed = dict(constants or {})
    names = ", ".join((*columns, *fixed))
    cursor = _dbapi_cursor(session)
    try:
        if is_sqlite(session):
            # Our own formatted timestamps, never user input: safe as SQL literals.
            literals = [f"'{_sqlite_value(value)}'" for value in fixed.values()]
            marks = ", ".join(["?"] * len(columns) + literals)
            cursor.executemany(f"INSERT INTO {table_name} ({names}) VALUES ({marks})", rows)
        else:
            tail = tuple(fixed.values())
            with cursor.copy(f"COPY {table_name} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((*row, *tail))
    finally:
        cursor.close()


def bulk_update(
    session: Session, table_name: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Update rows by id (the first column) with the other columns' values."""
    if not rows:
        return
    session.flush()
    sets = ", ".join(f"{name} = ?" for name in columns[1:])
    cursor = _dbapi_cursor(session)
    try:
        if is_sqlite(session):
            cursor.executemany(
                f"UPDATE {table_name} SET {sets} WHERE id = ?",
                [tuple(_sqlite_value(v) for v in (*row[1:], row[0])) for row in rows],
            )
        else:
            # COPY into a scratch table, then one UPDATE ... FROM.
            scratch = f"_import_{table_name}"
            names = ", ".join(columns)
            cursor.execute(f"DROP TABLE IF EXISTS {scratch}")
            cursor.execute(
                f"CREATE TEMP TABLE {scratch} AS SELECT {names} FROM {table_name} WITH NO DATA"
            )
            with cursor.copy(f"COPY {scratch} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            assignments = ", ".join(f"{name} = s.{name}" for name in columns[1:])
            cursor.execute(
                f"UPDATE {table_name} AS t SET {assignments} FROM {scratch} AS s WHERE t.id = s.id"
            )
            cursor.execute(f"DROP TABLE {scratch}")
    finally:
        cursor.close()


def _sqlite_value(value: Any) -> Any:
    # The same text form SQLAlchemy's SQLite DateTime type writes and reads.
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


# --- checks and ordering shared by the department and employee imports ------------------


def _text_cells(
    source: SourceRow, columns: Iterable[str], errors: list[dict[str, Any]]
) -> dict[str, Any]:
    """The row's text cells; a cell that is not text is an error and left out."""
    cells: dict[str, Any] = {}
    for name in columns:
        try:
            cells[name] = text_value(source.values, name)
        except BadValue as exc:
            errors.append(row_error(source.line, name, str(exc)))
    return cells


def _check_external_id(
    line: int, external_id: str, *, seen_ids: dict[str, int], errors: list[dict[str, Any]]
) -> None:
    """A well-formed id that no earlier row of the file used (recorded in ``seen_ids``)."""
    problem = org_service.external_id_problem(external_id)
    if problem:
        errors.append(row_error(line, "external_id", f"external_id {problem}"))
    elif external_id in seen_ids:
        errors.append(row_error(line, "external_id", f"repeats line {seen_ids[external_id]}"))
    else:
        seen_ids[external_id] = line


def _check_name(line: int, field_name: str, value: str, errors: list[dict[str, Any]]) -> None:
    problem = (
        "is required"
        if not value
        else org_service.text_problem(value, max_length=org_service.NAME_MAX)
    )
    if problem:
        errors.append(row_error(line, field_name, f"{field_name} {problem}"))


def _check_parent_id(
    line: int,
    field_name: str,
    parent: str,
    *,
    own_id: str,
    self_message: str,
    errors: list[dict[str, Any]],
) -> None:
    """A well-formed reference to a parent (department or manager) that is not the row itself."""
    problem = org_service.external_id_problem(parent)
    if problem:
        errors.append(row_error(line, field_name, f"{field_name} {problem}"))
    elif parent == own_id:
        errors.append(row_error(line, field_name, self_message))


class _TreeRow(Protocol):
    @property
    def external_id(self) -> str: ...


_Row = TypeVar("_Row", bound=_TreeRow)


def parents_first(rows: Sequence[_Row], *, parent_of: Callable[[_Row], str | None]) -> list[_Row]:
    """New rows ordered so each row's parent (department or manager) in the batch comes first.

    Parents outside the batch already exist. Iterative, not recursive: reporting lines can
    be deep, and the caller has already refused loops.
    """
    by_ext = {row.external_id: row for row in rows}
    depth: dict[str, int] = {}

    def depth_of(ext: str) -> int:
        chain: list[str] = []
        node: str | None = ext
        while node is not None and node in by_ext and node not in depth:
            chain.append(node)
            node = parent_of(by_ext[node])
        base = depth.get(node, 0) if node is not None else 0
        for offset, item in enumerate(reversed(chain), start=1):
            depth[item] = base + offset
        return depth[ext]

    return sorted(rows, key=lambda row: depth_of(row.external_id))


def _reserve_new_ids(
    session: Session, table_name: str, rows: Sequence[_TreeRow], ids: dict[str, int]
) -> None:
    """Reserve ids for new rows up front (in ``ids``), so parents' ids are known at insert."""
    ids.update(
        zip(
            [r.external_id for r in rows],
            reserve_ids(session, table_name, len(rows)),
            strict=True,
        )
    )


# --- departments -----------------------------------------------------------------------


@dataclass
class _DepartmentRow:
    line: int
    external_id: str
    name: str
    parent_external_id: str | None


def _check_department_row(
    source: SourceRow, *, seen_ids: dict[str, int]
) -> tuple[_DepartmentRow | None, list[dict[str, Any]]]:
    line = source.line
    errors: list[dict[str, Any]] = []
    cells = _text_cells(source, DEPARTMENT_COLUMNS, errors)
    external_id = cells.get("external_id") or ""
    _check_external_id(line, external_id, seen_ids=seen_ids, errors=errors)
    name_text = cells.get("name") or ""
    _check_name(line, "name", name_text, errors)
    parent = cells.get("parent_external_id")
    if parent is not None:
        _check_parent_id(
            line,
            "parent_external_id",
            parent,
            own_id=external_id,
            self_message="a department cannot contain itself",
            errors=errors,
        )
    if errors:
        return None, errors
    return _DepartmentRow(line, external_id, name_text, parent), errors


def _department_values(row: _DepartmentRow, ids: Mapping[str, int]) -> tuple[Any, ...]:
    """The row in ``DEPARTMENT_TABLE_COLUMNS`` order, without the timestamps."""
    return (
        ids[row.external_id],
        row.external_id,
        row.name,
        ids.get(row.parent_external_id or ""),
    )


def import_departments(
    session: Session,
    *,
    rows: Sequence[SourceRow],
    dry_run: bool = False,
    parse_errors: Sequence[dict[str, Any]] = (),
) -> ImportReport:
    """Upsert departments in bulk, all or nothing; parents may come later in the file.

    Departments are never deleted or deactivated by an import: employees and past cycles
    refer to them.
    """
    report = ImportReport(rows=len(rows) + len(parse_errors), dry_run=dry_run)
    errors = list(parse_errors)
    if not rows and not errors:
        errors.append(row_error(1, "body", "the import contains no rows"))
    # external id -> (id, name, parent_id)
    existing: dict[str, tuple[int, str, int | None]] = {
        ext: (id_, name, parent_id)
        for id_, ext, name, parent_id in session.execute(
            select(Department.id, Department.external_id, Department.name, Department.parent_id)
        )
    }
    ext_by_id = {values[0]: ext for ext, values in existing.items()}
    seen_ids: dict[str, int] = {}
    checked: list[_DepartmentRow] = []
    for source in rows:
        row, row_errors = _check_department_row(source, seen_ids=seen_ids)
        errors.extend(row_errors)
        if row is not None:
            checked.append(row)
    for row in checked:
        parent = row.parent_external_id
        if parent is not None and parent not in seen_ids and parent not in existing:
            errors.append(
                row_error(row.line, "parent_external_id", f"unknown department {parent!r}")
            )
    if not errors:
        parents: dict[str, str | None] = {
            ext: ext_by_id.get(values[2]) if values[2] is not None else None
            for ext, values in existing.items()
        }
        in_file = {row.external_id: row for row in checked}
        parents.update({ext: row.parent_external_id for ext, row in in_file.items()})
        for ext in sorted(cycle_members(parents, in_file)):
            if ext in in_file:
                errors.append(
                    row_error(
                        in_file[ext].line,
                        "parent_external_id",
                        "the department tree would form a loop through this department",
                    )
                )
    if errors:
        raise_row_errors(errors, what="department")

    new_rows = [row for row in checked if row.external_id not in existing]
    changed = [
        row
        for row in checked
        if row.external_id in existing
        and (existing[row.external_id][1], ext_by_id.get(existing[row.external_id][2] or -1))
        != (row.name, row.parent_external_id)
    ]
    report.created, report.updated = len(new_rows), len(changed)
    report.unchanged = len(checked) - len(new_rows) - len(changed)
    if dry_run or not (new_rows or changed):
        return report

    ids = {ext: values[0] for ext, values in existing.items()}
    now = utcnow()
    if new_rows:
        # Parents first, with ids reserved up front, so every parent_id is known at insert.
        new_rows = parents_first(new_rows, parent_of=lambda row: row.parent_external_id)
        _reserve_new_ids(session, "department", new_rows, ids)
        bulk_insert(
            session,
            "department",
            DEPARTMENT_TABLE_COLUMNS[:-2],
            [_department_values(r, ids) for r in new_rows],
            constants={"created_at": now, "updated_at": now},
        )
    if changed:
        bulk_update(
            session,
            "department",
            (*DEPARTMENT_TABLE_COLUMNS[:-2], "updated_at"),
            [(*_department_values(r, ids), now) for r in changed],
        )
    # The bulk statements bypass the identity map: make loaded objects re-read.
    session.expire_all()
    return report


# --- employees -------------------------------------------------------------------------


@dataclass
class _EmployeeRow:
    line: int
    external_id: str
    email: str
    full_name: str
    department_id: int | None
    manager_external_id: str | None
    language: str
    active: bool


@dataclass
class EmployeeImportPlan:
    """The checked import: its errors, or what writing it will do."""

    report: ImportReport
    errors: list[dict[str, Any]] = field(default_factory=list)
    rows: list[_EmployeeRow] = field(default_factory=list)
    existing: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    deactivate_ids: list[int] = field(default_factory=list)


def _check_employee_row(
    source: SourceRow,
    *,
    departments: Mapping[str, int],
    seen_ids: dict[str, int],
    seen_emails: dict[str, int],
) -> tuple[_EmployeeRow | None, list[dict[str, Any]]]:
    """One row's own problems (and repeats of earlier rows); the row when it is clean."""
    line, values = source.line, source.values
    errors: list[dict[str, Any]] = []
    cells = _text_cells(source, EMPLOYEE_COLUMNS[:-1], errors)
    try:
        active = bool_value(values, "active", default=True)
    except BadValue as exc:
        errors.append(row_error(line, "active", str(exc)))
        active = True

    external_id = cells.get("external_id") or ""
    if "external_id" in cells:
        _check_external_id(line, external_id, seen_ids=seen_ids, errors=errors)
    email = org_service.normalize_email(cells.get("email") or "")
    if "email" in cells:
        problem = org_service.email_problem(email)
        if problem:
            errors.append(row_error(line, "email", f"email {problem}"))
        elif email in seen_emails:
            errors.append(
                row_error(line, "email", f"{email!r} is also on line {seen_emails[email]}")
            )
        else:
            seen_emails[email] = line
    full_name = cells.get("full_name") or ""
    if "full_name" in cells:
        _check_name(line, "full_name", full_name, errors)
    department_id = None
    dept_ext = cells.get("department_external_id")
    if dept_ext is not None:
        department_id = departments.get(dept_ext)
        if department_id is None:
            errors.append(
                row_error(line, "department_external_id", f"unknown department {dept_ext[:100]!r}")
            )
    manager_ext = cells.get("manager_external_id")
    if manager_ext is not None:
        _check_parent_id(
            line,
            "manager_external_id",
            manager_ext,
            own_id=external_id,
            self_message="an employee cannot be their own manager",
            errors=errors,
        )
    language = org_service.normalize_language(cells.get("language"))
    if "language" in cells:
        problem = org_service.language_problem(language)
        if problem:
            errors.append(row_error(line, "language", f"language {problem}"))
    if errors:
        return None, errors
    row = _EmployeeRow(
        line=line,
        external_id=external_id,
        email=email,
        full_name=full_name,
        department_id=department_id,
        manager_external_id=manager_ext,
        language=language,
        active=active,
    )
    return row, errors


def _employee_values(row: _EmployeeRow, ids: Mapping[str, int]) -> tuple[Any, ...]:
    """The row in ``EMPLOYEE_TABLE_COLUMNS`` order, without the timestamps."""
    return (
        ids[row.external_id],
        row.external_id,
        row.email,
        row.full_name,
        row.department_id,
        ids.get(row.manager_external_id or ""),
        row.language,
        row.active,
    )


def _employee_changed(
    old: tuple[Any, ...], row: _EmployeeRow, *, ext_by_id: Mapping[int, str]
) -> bool:
    """Whether the row differs from the stored employee (a tuple of the plan's ``existing``)."""
    return (old[1], old[2], old[3], ext_by_id.get(old[4]), old[5], old[6]) != (
        row.email,
        row.full_name,
        row.department_id,
        row.manager_external_id,
        row.language,
        row.active,
    )


def plan_employee_import(
    session: Session,
    *,
    rows: Sequence[SourceRow],
    deactivate_missing: bool = False,
    parse_errors: Sequence[dict[str, Any]] = (),
) -> EmployeeImportPlan:
    """Check every row against the file and the database; count what would change.

    ``parse_errors`` are the upload's own problems (from ``parse_upload``), reported
    together with the rows' problems.
    """
    report = ImportReport(rows=len(rows) + len(parse_errors))
    plan = EmployeeImportPlan(report=report, errors=list(parse_errors))
    errors = plan.errors
    if not rows:
        if not errors:
            errors.append(row_error(1, "body", "the import contains no rows"))
        return plan

    departments = org_service.department_id_map(session)
    # external id -> (id, email, full_name, department_id, manager_id, language, active)
    existing: dict[str, tuple[Any, ...]] = {
        r[0]: tuple(r[1:])
        for r in session.execute(
            select(
                Employee.external_id,
                Employee.id,
                Employee.email,
                Employee.full_name,
                Employee.department_id,
                Employee.manager_id,
                Employee.language,
                Employee.active,
            )
        )
    }
    plan.existing = existing
    email_holder = {values[1]: ext for ext, values in existing.items()}
    ext_by_id = {values[0]: ext for ext, values in existing.items()}

    seen_ids: dict[str, int] = {}
    seen_emails: dict[str, int] = {}
    for source in rows:
        row, row_errors = _check_employee_row(
            source, departments=departments, seen_ids=seen_ids, seen_emails=seen_emails
        )
        errors.extend(row_errors)
        if row is not None:
            plan.rows.append(row)

    # Second pass: managers may be defined later in the same file.
    in_file = {row.external_id: row for row in plan.rows}
    all_ids = set(seen_ids)
    for row in plan.rows:
        manager = row.manager_external_id
        if manager is not None and manager not in all_ids and manager not in existing:
            errors.append(
                row_error(row.line, "manager_external_id", f"unknown employee {manager!r}")
            )
        holder = email_holder.get(row.email)
        if holder is not None and holder != row.external_id and holder not in seen_ids:
            errors.append(
                row_error(
                    row.line, "email", f"{row.email!r} already belongs to employee {holder!r}"
                )
            )
    if errors:
        return plan

    # Nobody may end up managing themselves round a loop.
    parents: dict[str, str | None] = {
        ext: ext_by_id.get(values[4]) for ext, values in existing.items()
    }
    parents.update({row.external_id: row.manager_external_id for row in plan.rows})
    for ext in sorted(cycle_members(parents, in_file)):
        if ext in in_file:
            errors.append(
                row_error(
                    in_file[ext].line,
                    "manager_external_id",
                    "the reporting lines would form a loop through this employee",
                )
            )
    if errors:
        return plan

    for row in plan.rows:
        old = existing.get(row.external_id)
        if old is None:
            report.created += 1
            continue
        if not _employee_changed(old, row, ext_by_id=ext_by_id):
            report.unchanged += 1
        else:
            report.updated += 1
    if deactivate_missing:
        plan.deactivate_ids = [
            values[0] for ext, values in existing.items() if values[6] and ext not in in_file
        ]
        report.deactivated = len(plan.deactivate_ids)
    return plan


def apply_employee_import(session: Session, plan: EmployeeImportPlan) -> None:
    """Write a clean plan with bulk statements (a handful of round trips in all)."""
    if plan.errors:
        raise_row_errors(plan.errors, what="employee")
    session.flush()
    table = cast(Table, Employee.__table__)
    existing = plan.existing
    ext_by_id = {values[0]: ext for ext, values in existing.items()}
    now = utcnow()
    ids = {ext: values[0] for ext, values in existing.items()}

    changed = []
    for row in plan.rows:
        old = existing.get(row.external_id)
        if old is None:
            continue
        if _employee_changed(old, row, ext_by_id=ext_by_id):
            changed.append(row)

    # Emails can move between employees in one import (A takes B's old address): park
    # the addresses that move first, so the unique index never sees two holders.
    claimed = {row.email for row in plan.rows}
    moving = [
        {"_id": existing[row.external_id][0], "email": f"#moving-{existing[row.external_id][0]}"}
        for row in changed
        if existing[row.external_id][1] != row.email and existing[row.external_id][1] in claimed
    ]
    by_id = table.c.id == bindparam("_id")
    if moving:
        session.execute(update(table).where(by_id), moving)

    new_rows = [row for row in plan.rows if row.external_id not in existing]
    if new_rows:
        # Ids are reserved up front and rows go in managers-first, so every manager_id
        # is known at insert time: one pass, no follow-up UPDATE per new employee.
        new_rows = parents_first(new_rows, parent_of=lambda row: row.manager_external_id)
        _reserve_new_ids(session, "employee", new_rows, ids)
        bulk_insert(
            session,
            "employee",
            EMPLOYEE_TABLE_COLUMNS[:-2],
            [_employee_values(row, ids) for row in new_rows],
            constants={"created_at": now, "updated_at": now},
        )

    if changed:
        bulk_update(
            session,
            "employee",
            (*EMPLOYEE_TABLE_COLUMNS[:-2], "updated_at"),
            [(*_employee_values(row, ids), now) for row in changed],
        )
    if plan.deactivate_ids:
        session.execute(
            update(table).where(by_id),
            [{"_id": id_, "active": False, "updated_at": now} for id_ in plan.deactivate_ids],
        )
    if plan.deactivate_ids or any(not row.active for row in changed):
        org_service.drop_matrix_links_of_inactive(session)
    # The bulk statements bypass the identity map: make loaded objects re-read.
    session.expire_all()


def import_employees(
    session: Session,
    *,
    rows: Sequence[SourceRow],
    deactivate_missing: bool = False,
    dry_run: bool = False,
    parse_errors: Sequence[dict[str, Any]] = (),
) -> ImportReport:
    """Validate every row, then write all of them or none (Invalid lists every problem).

    With ``deactivate_missing`` the file is the whole company: active employees not in
    it are deactivated. With ``dry_run`` nothing is written; the report says what would
    change.
    """
    plan = plan_employee_import(
        session, rows=rows, deactivate_missing=deactivate_missing, parse_errors=parse_errors
    )
    raise_row_errors(plan.errors, what="employee")
    plan.report.dry_run = dry_run
    if not dry_run:
        apply_employee_import(session, plan)
    return plan.report
