"""Step 1: the HRIS import of every department, employee and matrix link."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.context import Context, FeatureMissing, check
from benchmarks.generator import COMPETENCIES, COMPETENCY_WEIGHTS, Employee
from benchmarks.infra import driver_connect
from benchmarks.references import reference_import
from benchmarks.report import at_least_ratio

STEP = "1 import"
# Bodies are sent in chunks under the server's body limit (10 MiB by default); the
# import is all-or-nothing per request, so each chunk is a complete, valid batch.
EMPLOYEE_CHUNK = 20_000
MATRIX_CHUNK_SUPPLIERS = 10_000


def employee_record(e: Employee) -> dict[str, Any]:
    return {
        "external_id": e.external_id,
        "email": e.email,
        "full_name": e.full_name,
        "department_external_id": e.department_external_id,
        "manager_external_id": e.manager_external_id,
        "language": e.language,
    }


def put_competencies(ctx: Context) -> None:
    """The cycle's 8 competencies (set-up, not timed)."""
    with ctx.client() as http:
        for order, ((code, name), weight) in enumerate(
            zip(COMPETENCIES, COMPETENCY_WEIGHTS, strict=True), start=1
        ):
            body = {
                "name": name,
                "description": f"How well the colleague shows {name.lower()}.",
                "indicators": [f"{name}: indicator A", f"{name}: indicator B"],
                "weight": weight,
                "display_order": order,
                "active": True,
            }
            check(http.put(f"/api/v1/competencies/{code}", json=body), "competencies")
        # Seeded defaults that are not among ours are switched off.
        listed = check(http.get("/api/v1/competencies"), "competencies").json()
        items = listed["items"] if isinstance(listed, dict) else listed
        ours = {c for c, _ in COMPETENCIES}
        for item in items:
            if item["code"] not in ours and item.get("active", True):
                fields = ("name", "description", "indicators", "weight", "display_order")
                body = {k: item[k] for k in fields if k in item} | {"active": False}
                check(http.put(f"/api/v1/competencies/{item['code']}", json=body), "competencies")


def import_through_api(ctx: Context) -> dict[str, float]:
    """Seconds per part: departments, employees, matrix."""
    company = ctx.company
    started = time.perf_counter()
    marks = {}
    with ctx.client() as http:
        # The whole department tree in one bulk import (parents may follow children).
        tree = [
            {
                "external_id": d.external_id,
                "name": d.name,
                "parent_external_id": d.parent_external_id,
            }
            for d in company.departments
        ]
        check(http.post("/api/v1/import/departments", json=tree), "department import")
        marks["departments"] = time.perf_counter()
        records = [employee_record(e) for e in company.employees]
        for start in range(0, len(records), EMPLOYEE_CHUNK):
            check(
                http.post("/api/v1/import/employees", json=records[start : start + EMPLOYEE_CHUNK]),
                "employee import",
            )
        marks["employees"] = time.perf_counter()
        suppliers = list(dict.fromkeys(s for s, _ in company.pairs))
        for start in range(0, len(suppliers), MATRIX_CHUNK_SUPPLIERS):
            chunk = set(suppliers[start : start + MATRIX_CHUNK_SUPPLIERS])
            rows = [
                {"supplier_external_id": s, "customer_external_id": c}
                for s, c in company.pairs
                if s in chunk
            ]
            check(http.post("/api/v1/import/matrix", json=rows), "matrix import")
    marks["matrix"] = time.perf_counter()
    parts, previous = {}, started
    for name, at in marks.items():
        parts[f"{name}_seconds"] = at - previous
        previous = at
    return parts


def count_links(ctx: Context) -> int:
    conn = driver_connect(ctx.database_url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM matrix_link")
        return int(cur.fetchone()[0])
    finally:
        conn.close()


def load_ids(ctx: Context) -> None:
    conn = driver_connect(ctx.database_url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT external_id, id FROM employee")
        ctx.employee_ids = {row[0]: row[1] for row in cur.fetchall()}
        cur.execute("SELECT external_id, id FROM department")
        ctx.department_ids = {row[0]: row[1] for row in cur.fetchall()}
        cur.execute("SELECT code, id FROM competency")
        ctx.competency_ids = {row[0]: row[1] for row in cur.fetchall()}
    finally:
        conn.close()


def run(ctx: Context) -> None:
    company = ctx.company
    rows = len(company.departments) + len(company.employees) + len(company.pairs)
    ref_rows, ref_seconds = reference_import(ctx.ref_url, company)
    assert ref_rows == rows
    ref_rate = rows / ref_seconds
    ref_name = "COPY" if ctx.db == "postgresql" else "executemany"
    try:
        put_competencies(ctx)
        with ctx.memory("import"):
            parts = import_through_api(ctx)
        seconds = sum(parts.values())
    except (FeatureMissing, RuntimeError) as exc:
        why = str(exc) if isinstance(exc, FeatureMissing) else f"error: {str(exc)[:300]}"
        ctx.missing(STEP, "rows/s", "rows/s", why, reference=ref_rate, reference_name=ref_name)
        # Later steps still need the company: load it the bare way into the app's database.
        _load_directly(ctx)
        load_ids(ctx)
        return
    load_ids(ctx)
    stored = (len(ctx.department_ids), len(ctx.employee_ids), count_links(ctx))
    wanted = (len(company.departments), len(company.employees), len(company.pairs))
    if stored != wanted:
        raise RuntimeError(f"import stored {stored} departments/employees/links, not {wanted}")
    ctx.say(f"import: {rows} rows in {seconds:.2f}s (reference {ref_seconds:.2f}s)")
    at_least_ratio(
        ctx.figure(
            STEP,
            "rows/s",
            "rows/s",
            rows / seconds,
            reference=ref_rate,
            reference_name=ref_name,
            detail={"rows": rows, "reference_seconds": ref_seconds, **parts},
        ),
        0.3,
    )


def _load_directly(ctx: Context) -> None:
    conn = driver_connect(ctx.database_url)
    try:
        cur = conn.cursor()
        # Whatever part of the import did work is replaced, so ids match the direct load.
        for table in ("matrix_link", "employee", "department", "competency"):
            cur.execute(f"DELETE FROM {table}")
        conn.commit()
    finally:
        conn.close()
    reference_import(ctx.database_url, ctx.company)
    conn = driver_connect(ctx.database_url)
    try:
        cur = conn.cursor()
        for order, ((code, name), weight) in enumerate(
            zip(COMPETENCIES, COMPETENCY_WEIGHTS, strict=True), start=1
        ):
            params = (code, name, "", "[]", weight, order, True)
            if ctx.db == "sqlite":
                cur.execute(
                    "INSERT INTO competency (code, name, description, indicators, weight, "
                    "display_order, active, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, datetime('now'), datetime('now'))",
                    params,
                )
            else:
                cur.execute(
                    "INSERT INTO competency (code, name, description, indicators, weight, "
                    "display_order, active, created_at, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, now(), now())",
                    params,
                )
        conn.commit()
    finally:
        conn.close()
