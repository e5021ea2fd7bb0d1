"""The HRIS API's contract for the organisation: what integrators send and receive."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.org.models import Competency, Department, Employee
from app.uploads import rows
from app.uploads.rows import ExactExternalId as ExternalId

__all__ = ["ExternalId"]


class Problem(BaseModel):
    """An RFC 9457 problem document, as every error under /api is returned."""

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Validation failed"])
    status: int = Field(examples=[422])
    detail: str | None = Field(
        default=None, examples=["The employee is not valid: email is not an email address"]
    )
    errors: list[dict[str, Any]] | None = Field(
        default=None,
        description="Per-field (and, for imports, per-line) problems: `{line?, field, message}`.",
        examples=[[{"line": 3, "field": "email", "message": "email is not an email address"}]],
    )
    error_count: int | None = Field(
        default=None, description="Imports: how many problems were found (and listed)."
    )
    error_count_is_complete: bool | None = Field(
        default=None,
        description="Imports: false when checking stopped at `UPLOAD_MAX_PROBLEMS`.",
    )
    limit: str | None = Field(
        default=None,
        description="Uploads: the setting whose limit was exceeded.",
        examples=["XLSX_MAX_UNPACKED_BYTES"],
    )
    limit_value: float | None = Field(default=None, description="Uploads: that limit.")


PROBLEM_TEXT = {
    400: "The request is malformed.",
    401: "No API key, or an unknown or revoked one (or a key sent in the URL).",
    403: "The API key lacks the scope this route needs.",
    404: "No record has this id.",
    409: "The change conflicts with existing data (a duplicate email, a cycle), or an "
    "employee import would deactivate more than `IMPORT_MAX_DEACTIVATE_FRACTION` without "
    "`confirm_mass_deactivation=true`.",
    413: "The request body, or an uploaded file's rows or unpacked size, is larger than "
    "the configured limit (`limit` names the setting).",
    415: "The body's content type is not supported.",
    422: "The input breaks a rule; `errors` names each field (and line) and the reason.",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer (plus auth)."""
    return {
        code: {"model": Problem, "description": PROBLEM_TEXT[code]}
        for code in sorted({401, 403, *codes})
    }


# --- departments -----------------------------------------------------------------------


class DepartmentUpsert(rows.DepartmentFields):
    """A department as the HRIS describes it. PUT replaces every field."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Payroll", "parent_external_id": "D-FIN"}]},
    )


class DepartmentRead(BaseModel):
    external_id: str = Field(examples=["D-PAY"])
    name: str = Field(examples=["Payroll"])
    parent_external_id: str | None = Field(examples=["D-FIN"])
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, dept: Department) -> DepartmentRead:
        return cls(
            external_id=dept.external_id,
            name=dept.name,
            parent_external_id=dept.parent.external_id if dept.parent else None,
            created_at=dept.created_at,
            updated_at=dept.updated_at,
        )


# --- employees -------------------------------------------------------------------------


class EmployeeUpsert(rows.EmployeeFields):
    """An employee as the HRIS describes them. PUT replaces every field: omitted optional
    fields take their defaults (no department, no manager, language `en`, active)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "Anna.Ivanova@example.com",
                    "full_name": "Anna Ivanova",
                    "department_external_id": "D-PAY",
                    "manager_external_id": "E-1001",
                    "language": "ru",
                    "active": True,
                }
            ]
        },
    )


class EmployeeRead(BaseModel):
    external_id: str = Field(examples=["E-1042"])
    email: str = Field(examples=["anna.ivanova@example.com"])
    full_name: str = Field(examples=["Anna Ivanova"])
    department_external_id: str | None = Field(examples=["D-PAY"])
    manager_external_id: str | None = Field(examples=["E-1001"])
    language: str = Field(examples=["ru"])
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, emp: Employee) -> EmployeeRead:
        return cls(
            external_id=emp.external_id,
            email=emp.email,
            full_name=emp.full_name,
            department_external_id=emp.department.external_id if emp.department else None,
            manager_external_id=emp.manager.external_id if emp.manager else None,
            language=emp.language,
            active=emp.active,
            created_at=emp.created_at,
            updated_at=emp.updated_at,
        )


class EmployeePageRead(BaseModel):
    """One page of employees; ``total`` counts every match of the filters."""

    items: list[EmployeeRead]
    total: int = Field(examples=[1342])
    offset: int = Field(examples=[0])
    limit: int = Field(examples=[50])


# --- competencies ----------------------------------------------------------------------


class CompetencyUpsert(rows.CompetencyFields):
    """A competency raters score. PUT replaces every field."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Responsiveness",
                    "description": "Reacts to requests quickly and keeps me informed.",
                    "indicators": [
                        "Acknowledges a request within one working day",
                        "Tells me early when a deadline is at risk",
                    ],
                    "weight": 1.0,
                    "display_order": 20,
                    "active": True,
                }
            ]
        },
    )


class CompetencyRead(BaseModel):
    code: str = Field(examples=["responsiveness"])
    name: str
    description: str
    indicators: list[str]
    weight: float
    display_order: int
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, comp: Competency) -> CompetencyRead:
        return cls(
            code=comp.code,
            name=comp.name,
            description=comp.description,
            indicators=[str(text) for text in comp.indicators or []],
            weight=comp.weight,
            display_order=comp.display_order,
            active=comp.active,
            created_at=comp.created_at,
            updated_at=comp.updated_at,
        )


# --- imports ---------------------------------------------------------------------------


class ImportReportRead(BaseModel):
    """What an import did; in a dry run, what it would do (nothing was written)."""

    rows: int = Field(description="Rows read from the upload.", examples=[1342])
    created: int = Field(examples=[12])
    updated: int = Field(examples=[30])
    unchanged: int = Field(examples=[1300])
    deactivated: int = Field(
        description="Active employees deactivated because the full import left them out "
        "(`deactivate_missing=true`).",
        examples=[4],
    )
    removed: int = Field(
        default=0, description="Matrix links removed (matrix imports only).", examples=[0]
    )
    dry_run: bool
    needs_confirmation: bool = Field(
        default=False,
        description="The import would deactivate more than `IMPORT_MAX_DEACTIVATE_FRACTION` "
        "of the active employees: a dry run says so, and a real import is refused (409) "
        "unless it sends `confirm_mass_deactivation=true`.",
    )


def import_body(
    *,
    description: str,
    csv_example: str,
    properties: dict[str, dict[str, Any]],
    required: list[str],
) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of a bulk import: the same rows as CSV, JSON or XLSX."""
    return {
        "required": True,
        "description": description,
        "content": {
            "text/csv": {"schema": {"type": "string"}, "example": csv_example},
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {"type": "object", "properties": properties, "required": required},
                }
            },
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                "schema": {"type": "string", "format": "binary"}
            },
        },
    }


DEPARTMENT_IMPORT_BODY: dict[str, Any] = import_body(
    description="A CSV file (`text/csv`, UTF-8, header row, `,` or `;`), a JSON array, or "
    "an Excel workbook. Columns: `external_id,name,parent_external_id`; the first two are "
    "required. Parents may appear later in the same file.",
    csv_example="external_id,name,parent_external_id\n"
    "D-ROOT,Northwind Group,\nD-FIN,Finance,D-ROOT\nD-PAY,Payroll,D-FIN\n",
    properties={
        "external_id": {"type": "string"},
        "name": {"type": "string"},
        "parent_external_id": {"type": ["string", "null"]},
    },
    required=["external_id", "name"],
)


EMPLOYEE_IMPORT_BODY: dict[str, Any] = import_body(
    description="A CSV file (`text/csv`, UTF-8, header row, `,` or `;`), a JSON array, or "
    "an Excel workbook. Columns: `external_id,email,full_name,department_external_id,"
    "manager_external_id,language,active`; the first three are required. Managers may "
    "appear later in the same file.",
    csv_example="external_id,email,full_name,department_external_id,"
    "manager_external_id,language,active\n"
    "E-1001,boss@example.com,Olga Boss,D-FIN,,en,true\n"
    "E-1042,anna@example.com,Anna Ivanova,D-PAY,E-1001,ru,true\n",
    properties={
        "external_id": {"type": "string"},
        "email": {"type": "string"},
        "full_name": {"type": "string"},
        "department_external_id": {"type": ["string", "null"]},
        "manager_external_id": {"type": ["string", "null"]},
        "language": {"type": "string"},
        "active": {"type": "boolean"},
    },
    required=["external_id", "email", "full_name"],
)


COMPETENCY_IMPORT_BODY: dict[str, Any] = import_body(
    description="A CSV file (`text/csv`, UTF-8, header row, `,` or `;`), a JSON array, or "
    "an Excel workbook. Columns: `code,name,description,indicators,weight,display_order,"
    "active`; the first two are required. In CSV and XLSX, `indicators` holds one indicator "
    "per line of its cell; in JSON it may also be an array of strings.",
    csv_example="code,name,description,indicators,weight,display_order,active\n"
    'responsiveness,Responsiveness,Reacts quickly,"Answers within a day\n'
    'Warns early of delays",1,20,true\n',
    properties={
        "code": {"type": "string"},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "indicators": {"type": ["array", "string"], "items": {"type": "string"}},
        "weight": {"type": "number"},
        "display_order": {"type": "integer"},
        "active": {"type": "boolean"},
    },
    required=["code", "name"],
)
