"""The HRIS API's contract for the supplier-customer matrix."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.fields import UtcDatetime
from app.org.models import Employee
from app.org.schemas import ExternalId, import_body

MAX_CUSTOMERS = 10_000


class CustomerSet(BaseModel):
    """The complete list of a supplier's internal customers (replaces the current one)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"customer_external_ids": ["E-1001", "E-1077"]}]},
    )

    customer_external_ids: list[ExternalId] = Field(
        max_length=MAX_CUSTOMERS,
        description="External ids of active employees who rate this supplier; no repeats, "
        "not the supplier. An empty list removes every customer.",
    )


class EmployeeBrief(BaseModel):
    external_id: str = Field(examples=["E-1077"])
    full_name: str = Field(examples=["Boris Novak"])
    email: str = Field(examples=["boris.novak@example.com"])
    department_external_id: str | None = Field(examples=["D-IT"])

    @classmethod
    def of(cls, emp: Employee) -> EmployeeBrief:
        return cls(
            external_id=emp.external_id,
            full_name=emp.full_name,
            email=emp.email,
            department_external_id=emp.department.external_id if emp.department else None,
        )


class SupplierCustomersRead(BaseModel):
    """A supplier and everyone who rates them."""

    supplier: EmployeeBrief
    customers: list[EmployeeBrief]
    count: int = Field(examples=[6])
    added: int | None = Field(
        default=None, description="On replace: customers added by this request.", examples=[2]
    )
    removed: int | None = Field(
        default=None, description="On replace: customers removed by this request.", examples=[1]
    )


class SupplierListRead(BaseModel):
    """The reverse view: whom one customer rates."""

    customer: EmployeeBrief
    suppliers: list[EmployeeBrief]
    count: int


class MatrixRowRead(BaseModel):
    supplier_external_id: str = Field(examples=["E-1042"])
    supplier_name: str = Field(examples=["Anna Ivanova"])
    supplier_email: str
    supplier_department_external_id: str | None
    supplier_department_name: str | None
    customer_external_id: str = Field(examples=["E-1077"])
    customer_name: str = Field(examples=["Boris Novak"])
    customer_email: str
    customer_department_external_id: str | None
    customer_department_name: str | None
    created_at: UtcDatetime


class MatrixPageRead(BaseModel):
    """A page of matrix rows; ``total`` counts every pair matching the filters."""

    items: list[MatrixRowRead]
    total: int
    offset: int
    limit: int


# --- the department service map ---------------------------------------------------------


class DepartmentRef(BaseModel):
    external_id: str = Field(examples=["D-SALES"])
    name: str = Field(examples=["Sales"])


class ServedDepartmentsRead(BaseModel):
    """One line of the service map: a department and the departments it serves."""

    department_external_id: str = Field(examples=["D-IT"])
    department_name: str = Field(examples=["IT Support"])
    serves: list[DepartmentRef]
    added: int | None = Field(default=None, description="On replace: lines added.")
    removed: int | None = Field(default=None, description="On replace: lines removed.")


class ServedSet(BaseModel):
    """The complete list of departments one department serves (replaces the current one)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"department_external_ids": ["D-SALES", "D-FIN"]}]},
    )

    department_external_ids: list[ExternalId] = Field(
        max_length=1000,
        description="External ids of the departments served; no repeats, not the "
        "department itself. An empty list takes the department off the map.",
    )


MATRIX_IMPORT_BODY: dict[str, Any] = import_body(
    description="A CSV file (`text/csv`, UTF-8, header "
    "`supplier_external_id,customer_external_id`), a JSON array of such objects, or an "
    "Excel workbook with those columns. One row per pair.",
    csv_example="supplier_external_id,customer_external_id\nE-1042,E-1001\nE-1042,E-1077\n",
    properties={
        "supplier_external_id": {"type": "string"},
        "customer_external_id": {"type": "string"},
    },
    required=["supplier_external_id", "customer_external_id"],
)
