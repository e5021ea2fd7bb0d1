"""One Pydantic model per kind of uploaded record: department, employee, matrix pair,
competency.

The same model checks a row of a CSV/XLSX/JSON import, the body of a JSON ``PUT``
(through the ``*Fields`` models, whose key is in the URL) and an HR form, and the
services validate with it too, so a field rule cannot differ between entry points.
Values arrive as people type them in spreadsheets: text is trimmed, "" means absent,
JSON integers are read as ids, ``yes``/``no`` as booleans.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app import i18n
from app.errors import Invalid
from app.uploads import fields

# One Python call per field and row (cell reading, normalising and the rule together):
# an import validates 50,000 rows, and validator calls are most of its cost.


def _rule(problem: str | None) -> None:
    if problem:
        raise PydanticCustomError("field_rule", problem)


def _optional_text(value: Any) -> str | None:
    if (
        type(value) is str
        and value
        and value[0] != "'"
        and not value[0].isspace()
        and not value[-1].isspace()
    ):
        return value  # the common clean cell
    try:
        return fields.cell_text(value)
    except ValueError as exc:
        raise PydanticCustomError("text_type", str(exc)) from None


def _required_text(value: Any) -> str:
    text = _optional_text(value)
    if text is None:
        raise PydanticCustomError("required", "is required")
    return text


def _external_id(value: str) -> str:
    _rule(fields.external_id_problem(value))
    return value


def _external_id_in(value: Any) -> str:
    return _external_id(_required_text(value))


def _optional_external_id_in(value: Any) -> str | None:
    text = _optional_text(value)
    return None if text is None else _external_id(text)


def _text_in(max_length: int, *, multiline: bool = False, required: bool = True) -> Any:
    def read(value: Any) -> str:
        text = _required_text(value) if required else (_optional_text(value) or "")
        _rule(fields.text_problem(text, max_length=max_length, multiline=multiline))
        return text

    return read


def _email_in(value: Any) -> str:
    email = fields.normalize_email(_required_text(value))
    _rule(fields.email_problem(email))
    return email


def _language_in(value: Any) -> str:
    language = fields.normalize_language(_optional_text(value))
    _rule(fields.language_problem(language))
    return language


def _flag(default: bool) -> Any:
    def read(value: Any) -> bool:
        try:
            return fields.cell_bool(value, default=default)
        except ValueError as exc:
            raise PydanticCustomError("bool_words", str(exc)) from None

    return read


def _optional_flag(value: Any) -> bool | None:
    # Absent, null or an empty cell: "keep what is stored".
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return bool(_flag(False)(value))


def _indicators_in(value: Any) -> Any:
    # A form's textarea (or a spreadsheet cell) holds one indicator per line.
    if isinstance(value, str):
        value = value.splitlines()
    if isinstance(value, list):
        return [text.strip() for text in value if not isinstance(text, str) or text.strip()]
    return value


def _number_in(value: Any) -> Any:
    # "1,5" as typed in a European locale.
    return value.strip().replace(",", ".") if isinstance(value, str) else value


def _code(value: str) -> str:
    _rule(fields.code_problem(value))
    return value


ExternalId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=fields.EXTERNAL_ID_MAX,
        description="The HRIS's own key for the record (no '/', no surrounding spaces).",
        examples=["E-1042"],
    ),
    BeforeValidator(_external_id_in),
]
# As sent, not trimmed: for ids in URLs, where " E1" is a mistake to refuse, not a cell.
ExactExternalId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=fields.EXTERNAL_ID_MAX,
        description="The HRIS's own key for the record (no '/', no surrounding spaces).",
        examples=["E-1042"],
    ),
    AfterValidator(_external_id),
]
OptionalExternalId = Annotated[
    Annotated[str, Field(min_length=1, max_length=fields.EXTERNAL_ID_MAX)] | None,
    BeforeValidator(_optional_external_id_in),
]
Name = Annotated[
    str,
    Field(min_length=1, max_length=fields.NAME_MAX),
    BeforeValidator(_text_in(fields.NAME_MAX)),
]
Email = Annotated[
    str,
    Field(
        min_length=3,
        max_length=fields.EMAIL_MAX,
        description="Work email; stored lower-cased and unique regardless of case.",
    ),
    BeforeValidator(_email_in),
]
Language = Annotated[
    str,
    Field(
        max_length=8,
        description="Preferred language for emails and the rating page (e.g. `en`, `ru`).",
    ),
    BeforeValidator(_language_in),
]
ActiveFlag = Annotated[bool, BeforeValidator(_flag(True))]
OptionalFlag = Annotated[bool | None, BeforeValidator(_optional_flag)]
Indicator = Annotated[
    str,
    Field(min_length=1, max_length=fields.INDICATOR_MAX),
    BeforeValidator(_text_in(fields.INDICATOR_MAX)),
]
Code = Annotated[
    str,
    Field(min_length=1, max_length=fields.CODE_MAX, pattern=fields.CODE_RE.pattern),
    AfterValidator(_code),
    BeforeValidator(_required_text),
]


class UploadModel(BaseModel):
    """Unknown fields are refused: a misspelt column must not lose data silently."""

    model_config = ConfigDict(extra="forbid")


def _not_itself(field_name: str, own: str | None, parent: str | None, why: str) -> None:
    if parent is not None and parent == own:
        raise PydanticCustomError("self_reference", why, {"field": field_name})


# --- departments -----------------------------------------------------------------------


class DepartmentFields(UploadModel):
    """A department as the HRIS describes it (its external id is in the URL)."""

    name: Name = Field(description="Display name.")
    parent_external_id: OptionalExternalId = Field(
        default=None,
        description="External id of the parent department; omit or null for a top-level one. "
        "The parent must exist, and the tree must not loop.",
    )


class DepartmentRow(DepartmentFields):
    """One department of an import (or a PUT, with the id from the URL)."""

    external_id: ExternalId

    @model_validator(mode="after")
    def _parent_is_not_itself(self) -> DepartmentRow:
        _not_itself(
            "parent_external_id",
            self.external_id,
            self.parent_external_id,
            "a department cannot contain itself",
        )
        return self


# --- employees -------------------------------------------------------------------------


class EmployeeFields(UploadModel):
    """An employee as the HRIS describes them (the external id is in the URL). Omitted
    optional fields take their defaults: no department, no manager, `en`, active."""

    email: Email
    full_name: Name
    department_external_id: OptionalExternalId = Field(
        default=None, description="External id of an existing department."
    )
    manager_external_id: OptionalExternalId = Field(
        default=None,
        description="External id of the line manager (an existing employee, not themselves).",
    )
    language: Language = fields.DEFAULT_LANGUAGE
    active: ActiveFlag = Field(
        default=True,
        description="False for leavers: they keep their history but leave the live matrix.",
    )
    paper_channel: OptionalFlag = Field(
        default=None,
        description="True for people without a mailbox: they get no email but a printed "
        "letter with a one-time code (HR prints it on the cycle's page). Omit (or leave "
        "the cell empty) to keep the current value; new employees start with false.",
    )


class EmployeeRow(EmployeeFields):
    """One employee of an import (or a PUT, with the id from the URL)."""

    external_id: ExternalId

    @model_validator(mode="after")
    def _manager_is_not_themselves(self) -> EmployeeRow:
        _not_itself(
            "manager_external_id",
            self.external_id,
            self.manager_external_id,
            "an employee cannot be their own manager",
        )
        return self


# --- the supplier-customer matrix ------------------------------------------------------


class MatrixPairRow(UploadModel):
    """ "Customer X rates supplier Y": one line of a matrix import."""

    supplier_external_id: ExternalId
    customer_external_id: ExternalId

    @model_validator(mode="after")
    def _no_self_rating(self) -> MatrixPairRow:
        _not_itself(
            "customer_external_id",
            self.supplier_external_id,
            self.customer_external_id,
            "an employee cannot rate themselves",
        )
        return self


# --- competencies ----------------------------------------------------------------------


Description = Annotated[
    str,
    Field(max_length=fields.DESCRIPTION_MAX),
    BeforeValidator(_text_in(fields.DESCRIPTION_MAX, multiline=True, required=False)),
]
Indicators = Annotated[
    list[Indicator],
    Field(max_length=fields.INDICATORS_MAX_COUNT),
    BeforeValidator(_indicators_in),
]
TRANSLATED_FIELDS = ("name", "description", "indicators")


class CompetencyText(UploadModel):
    """A competency's texts in one more language; an empty field falls back to the
    organisation's language."""

    name: Name
    description: Description = ""
    indicators: Indicators = Field(default_factory=list)


def _translation_language(value: Any) -> str:
    language = _language_in(value)
    if language not in i18n.available_languages():
        raise PydanticCustomError(
            "field_rule",
            "must be one of the languages raters can use: " + ", ".join(i18n.available_languages()),
        )
    return language


TranslationLanguage = Annotated[str, BeforeValidator(_translation_language)]


class CompetencyFields(UploadModel):
    """A competency raters score (its code is in the URL)."""

    name: Name
    description: Description = Field(
        default="", description="What the competency means, shown to raters."
    )
    indicators: Indicators = Field(
        default_factory=list,
        description="Observable behaviours, short texts shown under the competency.",
    )
    translations: dict[TranslationLanguage, CompetencyText] | None = Field(
        default=None,
        max_length=20,
        description="The texts in other languages, by language (`ru`: name, description, "
        "indicators); raters whose language has none see the texts above. Omitted: the "
        "translations are kept as they are; `{}` removes them.",
        examples=[{"ru": {"name": "Оперативность", "indicators": ["Отвечает в течение дня"]}}],
    )
    weight: Annotated[float, BeforeValidator(_number_in)] = Field(
        default=1.0, gt=0, le=100, description="Weight in the overall coefficient."
    )
    display_order: Annotated[int, BeforeValidator(_number_in)] = Field(
        default=0, ge=-1_000_000, le=1_000_000, description="Lower comes first."
    )
    active: ActiveFlag = Field(default=True, description="Inactive competencies are not asked.")


class CompetencyRow(CompetencyFields):
    code: Code

    @model_validator(mode="before")
    @classmethod
    def _translation_columns(cls, data: Any) -> Any:
        """A spreadsheet's ``name_ru``, ``description_ru``, ``indicators_ru`` columns.

        Present columns replace the translations (a row without a ``name_<lang>`` has
        none in that language); a file without such columns keeps them.
        """
        if not isinstance(data, Mapping):
            return data
        columns = {
            key: key.rpartition("_")
            for key in data
            if isinstance(key, str) and key.rpartition("_")[0] in TRANSLATED_FIELDS
        }
        if not columns:
            return data
        folded = {key: value for key, value in data.items() if key not in columns}
        texts: dict[str, dict[str, Any]] = {}
        for key, (field_name, _sep, language) in columns.items():
            value = data[key]
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            texts.setdefault(language, {})[field_name] = value
        folded["translations"] = texts
        return folded


# --- turning validation errors into problems --------------------------------------------

_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "float_parsing": "must be a number, e.g. 1 or 1.5",
    "float_type": "must be a number, e.g. 1 or 1.5",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "list_type": "must be a list",
    "finite_number": "must be a finite number",
}


def _message(error: Mapping[str, Any], field_name: str) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in ("field_rule", "text_type", "required", "bool_words"):
        text = str(error["msg"])
    elif kind == "self_reference":
        return str(error["msg"])
    elif kind == "too_long" and ctx.get("field_type") == "List":
        text = f"must list at most {ctx.get('max_length')} items"
    elif kind in ("string_too_long", "too_long"):
        text = f"must be at most {ctx.get('max_length')} characters"
    elif kind in ("string_too_short", "too_short"):
        text = "is required"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        text = str(error["msg"]).replace("Input should be", "must be")
    elif kind == "string_pattern_mismatch":
        text = "has characters that are not allowed"
    else:
        text = _MESSAGES.get(kind, str(error["msg"]))
    return f"{field_name} {text}"


def problems_of(exc: ValidationError, *, line: int | None = None) -> list[dict[str, Any]]:
    """``{line?, field, message}`` for each error; messages name fields, never values."""
    out: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in error["loc"]]
        field_name = ".".join(loc) or str((error.get("ctx") or {}).get("field", "row"))
        problem = {"field": field_name, "message": _message(error, field_name)}
        out.append(problem if line is None else {"line": line, **problem})
    return out


Row = TypeVar("Row", bound=BaseModel)


def check_row(
    model: type[Row], values: Mapping[str, Any], *, line: int
) -> tuple[Row | None, list[dict[str, Any]]]:
    """The row validated by ``model``, or its problems (each with the line)."""
    try:
        return model.model_validate(values), []
    except ValidationError as exc:
        return None, problems_of(exc, line=line)


def validated(model: type[Row], *, what: str, **values: Any) -> Row:
    """One record for a service (a PUT or a form): the model, or Invalid naming each field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors = problems_of(exc)
        raise Invalid(
            f"The {what} is not valid: " + "; ".join(e["message"] for e in errors), errors=errors
        ) from None
