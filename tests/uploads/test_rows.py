"""The row models: one set of field rules, whether a row comes from a file, JSON or a form."""

from __future__ import annotations

import pytest

from app.errors import Invalid
from app.uploads import rows


def problems(model: type[rows.UploadModel], **values: object) -> dict[str, str]:
    _row, found = rows.check_row(model, values, line=7)
    assert all(problem["line"] == 7 for problem in found)
    return {problem["field"]: problem["message"] for problem in found}


def test_spreadsheet_cells_are_read_as_people_type_them() -> None:
    row, found = rows.check_row(
        rows.EmployeeRow,
        {
            "external_id": 1042,  # a JSON number, or an id Excel stored as a number
            "email": "  Anna.Ivanova@Example.COM ",
            "full_name": " Anna Ivanova ",
            "department_external_id": "",
            "manager_external_id": "'=E1",  # our CSV export's formula guard
            "language": "pt_BR",
            "active": "no",
        },
        line=2,
    )
    assert found == [] and row is not None
    assert row.external_id == "1042"
    assert row.email == "anna.ivanova@example.com"
    assert row.full_name == "Anna Ivanova"
    assert row.department_external_id is None
    assert row.manager_external_id == "=E1"
    assert (row.language, row.active) == ("pt-br", False)
    defaults = rows.EmployeeRow.model_validate(
        {"external_id": "E", "email": "a@x.io", "full_name": "A"}
    )
    assert (defaults.language, defaults.active) == ("en", True)


def test_each_field_names_its_problem() -> None:
    found = problems(
        rows.EmployeeRow,
        external_id="a/b",
        email="not-an-email",
        full_name="x" * 201,
        department_external_id=["D"],
        language="english!",
        active="perhaps",
        colour="red",
    )
    assert found == {
        "external_id": "external_id must not contain '/'",
        "email": "email is not an email address",
        "full_name": "full_name must be at most 200 characters",
        "department_external_id": "department_external_id must be a string",
        "language": "language must be a language tag such as 'en', 'ru' or 'pt-br'",
        "active": "active must be true or false",
        "colour": "colour unknown field",
    }
    assert problems(rows.EmployeeRow, external_id="E1", email="a@x.io") == {
        "full_name": "full_name is required"
    }
    assert problems(rows.EmployeeRow, external_id="E1", email="a@x.io", full_name="A\x00") == {
        "full_name": "full_name must not contain control characters"
    }


def test_a_record_cannot_point_at_itself() -> None:
    assert problems(
        rows.EmployeeRow, external_id="E1", email="a@x.io", full_name="A", manager_external_id="E1"
    ) == {"manager_external_id": "an employee cannot be their own manager"}
    assert problems(rows.DepartmentRow, external_id="D", name="D", parent_external_id="D") == {
        "parent_external_id": "a department cannot contain itself"
    }
    assert problems(rows.MatrixPairRow, supplier_external_id="S", customer_external_id="S") == {
        "customer_external_id": "an employee cannot rate themselves"
    }


def test_competency_reads_form_text_and_json_alike() -> None:
    from_form = rows.CompetencyRow.model_validate(
        {
            "code": "teamwork",
            "name": "Teamwork",
            "indicators": "Shares knowledge\n\n  Helps others  \n",
            "weight": "1,5",
            "display_order": "3",
            "active": "on",
        }
    )
    from_json = rows.CompetencyRow.model_validate(
        {
            "code": "teamwork",
            "name": "Teamwork",
            "indicators": ["Shares knowledge", "Helps others"],
            "weight": 1.5,
            "display_order": 3,
        }
    )
    assert from_form == from_json
    found = problems(
        rows.CompetencyRow,
        code="Bad Code",
        name="N",
        weight="heavy",
        display_order="1.5",
        indicators=["ok", "x" * 301],
    )
    assert set(found) == {"code", "weight", "display_order", "indicators.1"}
    assert found["weight"] == "weight must be a number, e.g. 1 or 1.5"
    assert problems(rows.CompetencyRow, code="c", name="N", weight=0)["weight"].startswith(
        "weight must be greater than 0"
    )


def test_validated_raises_invalid_with_every_field() -> None:
    with pytest.raises(Invalid) as caught:
        rows.validated(rows.DepartmentRow, what="department", external_id=" D", name="")
    assert caught.value.detail.startswith("The department is not valid: ")
    assert {e["field"] for e in caught.value.errors or []} == {"name"}  # " D" is trimmed
