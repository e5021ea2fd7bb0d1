"""The API contract of the matrix suggestions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.nominations.suggestions import ALL_SOURCES, Source
from app.org.schemas import ExternalId

MAX_ACCEPTED = 10_000
MAX_PAGE = 1000

SOURCES_DESCRIPTION = (
    "Where suggestions come from (default: all): `previous_cycle` (the pairs of the "
    "latest launched cycle), `service_map` (HR's department service map expanded to "
    "people, sub-departments included), `manager` (a line manager and each direct "
    "report, both ways), `team` (colleagues reporting to the same manager)."
)


class SuggestionQuery(BaseModel):
    """Which suggestions to list."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"sources": ["previous_cycle", "service_map"]}]},
    )

    sources: list[Source] = Field(
        default_factory=lambda: list(ALL_SOURCES), min_length=1, description=SOURCES_DESCRIPTION
    )
    supplier_external_id: ExternalId | None = Field(
        default=None, description="Only this supplier's suggestions."
    )
    department_external_id: ExternalId | None = Field(
        default=None,
        description="Only suppliers in this department and its sub-departments.",
    )
    offset: int = Field(default=0, ge=0, le=100_000_000)
    limit: int = Field(default=200, ge=1, le=MAX_PAGE)


class PersonRead(BaseModel):
    external_id: str = Field(examples=["E-1042"])
    full_name: str = Field(examples=["Anna Ivanova"])
    department_external_id: str | None = Field(examples=["D-IT"])
    department_name: str | None = Field(examples=["IT Support"])


class ReasonRead(BaseModel):
    source: Source
    text: str = Field(examples=["Service map: IT Support serves Sales"])


class SuggestionRead(BaseModel):
    """A proposed link: ``customer`` would rate ``supplier``, for these reasons."""

    supplier: PersonRead
    customer: PersonRead
    reasons: list[ReasonRead]


class SuggestionPage(BaseModel):
    items: list[SuggestionRead]
    total: int = Field(description="Every suggestion matching the query, not only this page.")
    offset: int
    limit: int
    by_source: dict[str, int] = Field(
        description="How many of all the matching suggestions each source proposes "
        "(a pair with two reasons counts for both)."
    )


class LinkRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    supplier_external_id: ExternalId
    customer_external_id: ExternalId


class AcceptSuggestions(BaseModel):
    """Either ``links`` (some suggestions) or ``all: true`` (every one the filters match)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"links": [{"supplier_external_id": "E-1042", "customer_external_id": "E-1077"}]},
                {"all": True, "sources": ["service_map"], "department_external_id": "D-IT"},
            ]
        },
    )

    links: list[LinkRef] | None = Field(default=None, max_length=MAX_ACCEPTED)
    all: bool = False
    sources: list[Source] = Field(
        default_factory=lambda: list(ALL_SOURCES), min_length=1, description=SOURCES_DESCRIPTION
    )
    supplier_external_id: ExternalId | None = Field(
        default=None, description="With `all`: only this supplier's suggestions."
    )
    department_external_id: ExternalId | None = Field(
        default=None,
        description="With `all`: only suppliers in this department and its sub-departments.",
    )

    @model_validator(mode="after")
    def _one_shape(self) -> AcceptSuggestions:
        if self.all == (self.links is not None):
            raise ValueError("give either links or all: true")
        if self.links is not None and (self.supplier_external_id or self.department_external_id):
            raise ValueError("supplier and department filters go with all: true, not links")
        return self


class AcceptedRead(BaseModel):
    added: int = Field(description="New matrix links written.", examples=[12])
    unchanged: int = Field(description="Chosen links that were already in the matrix.")
    by_source: dict[str, int] = Field(
        description="Added links per source (a link with two reasons counts for both)."
    )
