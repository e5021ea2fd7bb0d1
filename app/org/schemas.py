"""The HRIS API's contract for the organisation: what integrators send and receive."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Re-exported: the problem document and its OpenAPI helper are shared by every router.
from app.errors import PROBLEM_TEXT, Problem, problems  # noqa: F401
from app.fields import UtcDatetime
from app.org.models import Competency, Department, Employee
from app.uploads import rows
from app.uploads.rows import ExactExternalId as ExternalId

__all__ = ["ExternalId"]


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
    created_at: UtcDatetime
    updated_at: UtcDatetime

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
    fields take their defaults (no department, no manager, language `en`, active);
    an omitted `paper_channel` keeps its value."""

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
                    "paper_channel": False,
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
    paper_channel: bool = Field(
        description="No email: invitations come as a printed letter with a one-time code."
    )
    created_at: UtcDatetime
    updated_at: UtcDatetime

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
            paper_channel=emp.paper_channel,
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
    """A competency raters score. PUT replaces every field given; omitted
    ``translations`` are kept."""

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
                    "translations": {
                        "ru": {
                            "name": "Оперативность",
                            "description": "Быстро реагирует на запросы.",
                            "indicators": ["Подтверждает запрос в течение рабочего дня"],
                        }
                    },
                    "weight": 1.0,
                    "display_order": 20,
                    "active": True,
                }
            ]
        },
    )


class CompetencyTextRead(BaseModel):
    name: str
    description: str
    indicators: list[str]


class CompetencyRead(BaseModel):
    code: str = Field(examples=["responsiveness"])
    name: str
    description: str
    indicators: list[str]
    translations: dict[str, CompetencyTextRead] = Field(
        description="The texts in other languages, by language."
    )
    weight: float
    display_order: int
    active: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @classmethod
    def of(cls, comp: Competency) -> CompetencyRead:
        return cls(
            code=comp.code,
            name=comp.name,
            description=comp.description,
            indicators=[str(text) for text in comp.indicators or []],
            translations={
                language: CompetencyTextRead(
                    name=str(text.get("name", "")),
                    description=str(text.get("description", "")),
                    indicators=[str(i) for i in text.get("indicators") or []],
                )
                for language, text in (comp.translations or {}).items()
            },
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
    "per line of its cell; in JSON it may also be an array of strings. Other languages: "
    "`name_ru`, `description_ru`, `indicators_ru` (any language raters can use).",
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
        "name_ru": {"type": "string"},
        "description_ru": {"type": "string"},
        "indicators_ru": {"type": ["array", "string"], "items": {"type": "string"}},
    },
    required=["code", "name"],
)
