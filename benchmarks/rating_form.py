"""Filling in the rating page's form the way a browser would, and reading it back.

The benchmark does not hard-code the app's field names: it reads the ``<form>`` on the
page a customer gets, copies its hidden fields, and recognises each question by the
numbers in its name (the supplier's id and the cycle competency's id), as the page
names them. The reference endpoint reads the same bodies with :func:`parse_body`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin

NUMBER = re.compile(r"\d+")


@dataclass
class _Form:
    action: str = ""
    method: str = "get"
    hidden: list[tuple[str, str]] = field(default_factory=list)
    choices: dict[str, list[str]] = field(default_factory=dict)  # radio groups and selects
    free: list[str] = field(default_factory=list)  # text, number, textarea


class _FormParser(HTMLParser):
    """Collects the fields of the page's POST form (the rating form)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self._form: _Form | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = _Form(action=a.get("action", ""), method=a.get("method", "get").lower())
            self.forms.append(self._form)
            return
        form = self._form
        if form is None:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind == "hidden":
                form.hidden.append((name, a.get("value", "")))
            elif kind in ("radio", "checkbox"):
                form.choices.setdefault(name, []).append(a.get("value", "on"))
            elif kind not in ("submit", "button", "reset", "image"):
                form.free.append(name)
        elif tag == "textarea" and name:
            form.free.append(name)
        elif tag == "select" and name:
            self._select = name
            form.choices.setdefault(name, [])
        elif tag == "option" and self._select:
            form.choices[self._select].append(a.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


def _is_number(value: str) -> bool:
    return value.strip().lstrip("-").isdigit()


def _kind(name: str) -> str:
    lowered = name.lower()
    if "nps" in lowered or "recommend" in lowered:
        return "nps"
    if "comment" in lowered:
        return "comment"
    return "score"


def _orientation(names: list[str], suppliers: set[int], competencies: set[int]) -> tuple[int, int]:
    """Which number in a score field's name is the supplier and which the competency."""
    pairs = [[int(n) for n in NUMBER.findall(name)][-2:] for name in names]
    pairs = [p for p in pairs if len(p) == 2]
    if not pairs:
        raise ValueError("no score fields with a supplier and a competency in their names")
    if all(a in suppliers and b in competencies for a, b in pairs):
        return 0, 1
    if all(b in suppliers and a in competencies for a, b in pairs):
        return 1, 0
    raise ValueError(f"cannot tell supplier from competency in field names such as {names[0]!r}")


def build_submission(html: str, answers: dict[int, Any], *, page_url: str) -> dict[str, Any]:
    """The POST a customer sends: ``answers`` maps supplier id -> {"scores": {cycle
    competency id: score or None}, "nps": ..., "comment": ...}."""
    parser = _FormParser()
    parser.feed(html)
    forms = [f for f in parser.forms if f.method == "post" and (f.choices or f.free)]
    if not forms:
        raise ValueError("the page has no POST form with questions")
    form = max(forms, key=lambda f: len(f.choices) + len(f.free))
    suppliers = set(answers)
    competencies = {c for a in answers.values() for c in a["scores"]}
    score_names = [
        n
        for n in [*form.choices, *form.free]
        if _kind(n) == "score" and len(NUMBER.findall(n)) >= 2
    ]
    si, ci = _orientation(score_names, suppliers, competencies)
    fields: list[tuple[str, str]] = list(form.hidden)
    seen_suppliers: set[int] = set()
    for name in [*form.choices, *form.free]:
        numbers = [int(n) for n in NUMBER.findall(name)]
        kind = _kind(name)
        if not numbers:
            continue
        if kind == "score" and len(numbers) >= 2:
            pair = numbers[-2:]
            supplier, competency = pair[si], pair[ci]
            score = answers[supplier]["scores"][competency]
            options = form.choices.get(name)
            if score is None:
                # "Can't judge" is the one non-numeric choice of the question.
                cant = [v for v in options or [] if not _is_number(v)]
                if options is None or not cant:
                    raise ValueError(f'no "can\'t judge" choice for {name!r}')
                fields.append((name, cant[0]))
            else:
                fields.append((name, str(score)))
            seen_suppliers.add(supplier)
        elif kind == "nps":
            nps = answers[numbers[-1]]["nps"]
            if nps is not None:
                fields.append((name, str(nps)))
            elif "" in form.choices.get(name, []):
                fields.append((name, ""))  # the "no answer" choice a browser sends
        elif kind == "comment":
            comment = answers[numbers[-1]]["comment"]
            fields.append((name, comment or ""))
    if seen_suppliers != suppliers:
        raise ValueError(
            f"the page lists suppliers {sorted(seen_suppliers)}, expected {sorted(suppliers)}"
        )
    return {
        "url": urljoin(page_url, form.action or page_url),
        "body": urlencode(fields),
        "content_type": "application/x-www-form-urlencoded",
        "orientation": [si, ci],
    }


def parse_body(
    items: list[tuple[str, str]], orientation: tuple[int, int]
) -> dict[int, dict[str, Any]]:
    """Read a posted form back into supplier id -> scores, NPS and comment."""
    si, ci = orientation
    ballots: dict[int, dict[str, Any]] = {}
    for name, value in items:
        numbers = [int(n) for n in NUMBER.findall(name)]
        if not numbers:
            continue
        kind = _kind(name)
        if kind == "score" and len(numbers) >= 2:
            pair = numbers[-2:]
            ballot = ballots.setdefault(pair[si], {"scores": {}, "nps": None, "comment": None})
            ballot["scores"][pair[ci]] = int(value) if _is_number(value) else None
        elif kind == "nps" and value.strip():
            ballots.setdefault(numbers[-1], {"scores": {}, "nps": None, "comment": None})["nps"] = (
                int(value)
            )
        elif kind == "comment" and value.strip():
            ballots.setdefault(numbers[-1], {"scores": {}, "nps": None, "comment": None})[
                "comment"
            ] = value
    return ballots


def parse_urlencoded(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode(), keep_blank_values=True)
