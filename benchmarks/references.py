"""References: the same work done the bare way, measured in the same run.

* import: the same departments, employees and matrix rows inserted with the driver
  (``executemany`` on SQLite, ``COPY`` on PostgreSQL) into an identically migrated
  database;
* sending: the same messages sent by a bare loop with the app's SMTP client library
  over one connection (run as ``python -m benchmarks.references smtp ...``);
* close: DuckDB computing the per-employee, per-competency and per-department means
  over the same ballots, exported to it.

The submit reference (a bare Starlette endpoint) lives in ``benchmarks.ref_rating_app``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import pickle
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.generator import COMPETENCY_WEIGHTS, Company
from benchmarks.infra import driver_connect


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --- 1. import -------------------------------------------------------------------------


def import_rows(
    company: Company,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows a direct load writes: departments, employees, matrix links (with ids)."""
    now = _now()
    dept_ids = {d.external_id: i for i, d in enumerate(company.departments, start=1)}
    departments = [
        (
            dept_ids[d.external_id],
            d.external_id,
            d.name,
            dept_ids.get(d.parent_external_id or ""),
            now,
            now,
        )
        for d in company.departments
    ]
    emp_ids = {e.external_id: i for i, e in enumerate(company.employees, start=1)}
    employees = [
        (
            emp_ids[e.external_id],
            e.external_id,
            e.email.lower(),
            e.full_name,
            dept_ids[e.department_external_id],
            emp_ids.get(e.manager_external_id or ""),
            e.language,
            True,
            now,
            now,
        )
        for e in company.employees
    ]
    links = [(emp_ids[s], emp_ids[c], now) for s, c in company.pairs]
    return departments, employees, links


DEPT_COLS = "id, external_id, name, parent_id, created_at, updated_at"
EMP_COLS = (
    "id, external_id, email, full_name, department_id, manager_id, language, active, "
    "created_at, updated_at"
)
LINK_COLS = "supplier_id, customer_id, created_at"


def reference_import(url: str, company: Company) -> tuple[int, float]:
    """Insert the company with the bare driver; returns (rows, seconds)."""
    departments, employees, links = import_rows(company)
    conn = driver_connect(url)
    try:
        started = time.perf_counter()
        if url.startswith("sqlite"):
            conn.execute("BEGIN IMMEDIATE")
            for table, cols, rows in (
                ("department", DEPT_COLS, departments),
                ("employee", EMP_COLS, employees),
                ("matrix_link", LINK_COLS, links),
            ):
                marks = ", ".join("?" * len(cols.split(",")))
                conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
            conn.execute("COMMIT")
        else:
            with conn.cursor() as cur:
                for table, cols, rows in (
                    ("department", DEPT_COLS, departments),
                    ("employee", EMP_COLS, employees),
                    ("matrix_link", LINK_COLS, links),
                ):
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return len(departments) + len(employees) + len(links), elapsed


# --- 2. sending ------------------------------------------------------------------------


def send_loop(host: str, port: int, messages: list[tuple[str, str, bytes]], client: str) -> float:
    """Send every message over one connection; returns seconds."""
    if client == "smtplib":
        import smtplib

        started = time.perf_counter()
        with smtplib.SMTP(host, port, timeout=30) as smtp:
            for sender, to, raw in messages:
                smtp.sendmail(sender, [to], raw)
        return time.perf_counter() - started

    import aiosmtplib

    async def run() -> float:
        smtp = aiosmtplib.SMTP(hostname=host, port=port, timeout=30, start_tls=False)
        started = time.perf_counter()
        await smtp.connect()
        for sender, to, raw in messages:
            await smtp.sendmail(sender, [to], raw)
        await smtp.quit()
        return time.perf_counter() - started

    return asyncio.run(run())


def run_send_reference(
    host: str, port: int, messages: list[tuple[str, str, bytes]], client: str, workdir: Path
) -> float:
    """Run :func:`send_loop` in its own process, as the app's worker is one."""
    import subprocess

    path = workdir / "ref-messages.pickle"
    path.write_bytes(pickle.dumps(messages))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.references", "smtp", host, str(port), str(path), client],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return float(out.stdout.strip().splitlines()[-1])


# --- 4. close --------------------------------------------------------------------------


def export_for_duckdb(url: str, cycle_id: int, workdir: Path) -> dict[str, Path]:
    """Write the cycle's ballots and snapshots as CSV files (not timed)."""
    queries = {
        "competency": f"SELECT id, weight FROM cycle_competency WHERE cycle_id = {cycle_id}",
        "employee": (
            f"SELECT employee_id, department_id FROM cycle_employee WHERE cycle_id = {cycle_id}"
        ),
        "department": (
            f"SELECT department_id, parent_id FROM cycle_department WHERE cycle_id = {cycle_id}"
        ),
    }
    files: dict[str, Path] = {}
    conn = driver_connect(url)
    try:
        for name, sql in queries.items():
            cur = conn.cursor()
            cur.execute(sql)
            path = workdir / f"duck-{name}.csv"
            with path.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow([c[0] for c in cur.description])
                writer.writerows(cur.fetchall())
            files[name] = path
        files.update(_export_ballots(conn, cycle_id, workdir))
    finally:
        conn.close()
    return files


def _export_ballots(conn: Any, cycle_id: int, workdir: Path) -> dict[str, Path]:
    """A row per ballot and a row per score, as DuckDB's reference query reads them (the
    app keeps a box of ballots per supplier)."""
    import math

    from app.ratings.ballots import unpacked

    cur = conn.cursor()
    cur.execute(f"SELECT id FROM cycle_competency WHERE cycle_id = {cycle_id} ORDER BY id")
    order = [row[0] for row in cur.fetchall()]
    cur.execute(
        "SELECT supplier_id, ballots, nps, scores, comments FROM ballot_box "
        f"WHERE cycle_id = {cycle_id}"
    )
    ballots = unpacked(cur.fetchall(), order)
    paths = {
        "ballot": workdir / "duck-ballot.csv",
        "ballot_score": workdir / "duck-ballot_score.csv",
    }
    with paths["ballot"].open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "supplier_id", "nps"])
        writer.writerows(
            (i, supplier, None if math.isnan(nps) else int(nps))
            for i, (supplier, nps) in enumerate(
                zip(ballots.suppliers.tolist(), ballots.nps.tolist(), strict=True)
            )
        )
    with paths["ballot_score"].open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ballot_id", "cycle_competency_id", "score"])
        for i, scores in enumerate(ballots.scores.tolist()):
            writer.writerows(
                (i, cid, None if math.isnan(score) else int(score))
                for cid, score in zip(order, scores, strict=True)
            )
    return paths


DUCK_TYPES = {
    "ballot": {"id": "VARCHAR", "supplier_id": "INTEGER", "nps": "INTEGER"},
    "ballot_score": {"ballot_id": "VARCHAR", "cycle_competency_id": "INTEGER", "score": "INTEGER"},
    "competency": {"id": "INTEGER", "weight": "DOUBLE"},
    "employee": {"employee_id": "INTEGER", "department_id": "INTEGER"},
    "department": {"department_id": "INTEGER", "parent_id": "INTEGER"},
}

DUCK_SQL = """
CREATE TABLE competency_mean AS
SELECT b.supplier_id, s.cycle_competency_id, avg(s.score) AS mean, count(s.score) AS n
FROM ballot_score s JOIN ballot b ON b.id = s.ballot_id
WHERE s.score IS NOT NULL
GROUP BY 1, 2;

CREATE TABLE employee_result AS
WITH raters AS (SELECT supplier_id, count(*) AS raters FROM ballot GROUP BY 1)
SELECT m.supplier_id, r.raters,
       sum(m.mean * c.weight) / sum(c.weight) AS coefficient
FROM competency_mean m
JOIN competency c ON c.id = m.cycle_competency_id
JOIN raters r ON r.supplier_id = m.supplier_id
WHERE r.raters >= $k AND m.n >= $k
GROUP BY m.supplier_id, r.raters;

CREATE TABLE closure AS
WITH RECURSIVE up(descendant_id, ancestor_id) AS (
  SELECT department_id, department_id FROM department
  UNION ALL
  SELECT up.descendant_id, d.parent_id FROM up
  JOIN department d ON d.department_id = up.ancestor_id
  WHERE d.parent_id IS NOT NULL
)
SELECT * FROM up;

CREATE TABLE department_result AS
SELECT cl.ancestor_id AS department_id, count(*) AS employees, avg(r.coefficient) AS coefficient
FROM employee_result r
JOIN employee e ON e.employee_id = r.supplier_id
JOIN closure cl ON cl.descendant_id = e.department_id
GROUP BY 1;

CREATE TABLE department_competency AS
SELECT cl.ancestor_id AS department_id, m.cycle_competency_id, avg(m.mean) AS mean
FROM competency_mean m
JOIN employee_result r ON r.supplier_id = m.supplier_id
JOIN employee e ON e.employee_id = m.supplier_id
JOIN closure cl ON cl.descendant_id = e.department_id
GROUP BY 1, 2;
"""


def duckdb_close(files: dict[str, Path], *, min_raters: int) -> tuple[float, dict[str, int]]:
    """Load the CSVs (not timed), then time computing every mean; returns (seconds, counts)."""
    import duckdb

    con = duckdb.connect()
    for name, path in files.items():
        columns = ", ".join(f"'{c}': '{t}'" for c, t in DUCK_TYPES[name].items())
        con.execute(
            f"CREATE TABLE {name} AS SELECT * FROM "
            f"read_csv('{path}', header=true, columns={{{columns}}})"
        )
    started = time.perf_counter()
    for statement in DUCK_SQL.replace("$k", str(int(min_raters))).split(";"):
        if statement.strip():
            con.execute(statement)
    elapsed = time.perf_counter() - started
    counts = {}
    for table in ("employee_result", "department_result", "department_competency"):
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        counts[table] = int(row[0]) if row else 0
    con.close()
    return elapsed, counts


def weights_used() -> list[float]:
    return list(COMPETENCY_WEIGHTS)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.references")
    sub = parser.add_subparsers(dest="command", required=True)
    smtp = sub.add_parser("smtp")
    smtp.add_argument("host")
    smtp.add_argument("port", type=int)
    smtp.add_argument("messages")
    smtp.add_argument("client", choices=["aiosmtplib", "smtplib"])
    args = parser.parse_args(argv)
    messages = pickle.loads(Path(args.messages).read_bytes())  # noqa: S301 - our own file
    print(send_loop(args.host, args.port, messages, args.client))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
