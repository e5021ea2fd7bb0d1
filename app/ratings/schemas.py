"""What a customer answers, and what the rating page shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COMMENT_MAX_LENGTH = 2000
NPS_RANGE = (0, 10)


@dataclass
class SupplierAnswer:
    """One customer's answers about one supplier.

    ``scores`` maps every cycle competency id to a score on the cycle's scale, or to
    ``None`` for an explicit "can't judge".
    """

    scores: dict[int, int | None]
    nps: int | None = None
    comment: str | None = None


@dataclass(frozen=True)
class CompetencyView:
    id: int
    name: str
    description: str
    indicators: list[str]


@dataclass(frozen=True)
class SupplierView:
    id: int
    full_name: str
    department: str


@dataclass
class RatingForm:
    """Everything the rating page needs, loaded from the cycle's launch-time snapshot."""

    invitation_id: int
    cycle_id: int
    cycle_name: str
    closes_at: Any
    scale: list[int]
    ask_nps: bool
    ask_comment: bool
    customer_name: str
    language: str
    suppliers: list[SupplierView]
    competencies: list[CompetencyView]
    # Whether this rater counts toward k (sealed into the submission, never shown).
    counts_toward_k: bool = True


@dataclass(frozen=True)
class FormRules:
    """What a posted rating form is checked against and sealed with: the page's ids and
    the cycle's rules, without the names and texts the page shows.

    A submit loads only this; the whole :class:`RatingForm` is loaded for showing the
    page, and again only when a post has to be shown back with its errors.
    """

    invitation_id: int
    cycle_id: int
    cycle_name: str
    language: str
    scale: list[int]
    ask_nps: bool
    ask_comment: bool
    supplier_ids: list[int]
    competency_ids: list[int]
    counts_toward_k: bool
    pool_salt: bytes | None


@dataclass
class ParsedForm:
    """A posted rating form: the answers it holds, the raw values and the field errors."""

    answers: dict[int, SupplierAnswer] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # Keys naming a supplier or competency that is not on this customer's page.
    foreign: list[str] = field(default_factory=list)
