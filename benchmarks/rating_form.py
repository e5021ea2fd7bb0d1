"""Filling in the rating page's form the way a browser would, and reading it back.

The benchmark does not hard-code the app's field names: it reads the ``<form>`` on the
page a customer gets, copies its hidden fields, and recognises each question by the
numbers in its name (the supplier's id and the cycle competency's id), as the page
names them. The reference endpoint reads the same bodies with :func:`parse_body`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
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


# A tag we care about, and the attributes inside one. html.parser was most of the load
# process's CPU (a page holds ~1,000 inputs; 42,000 pages at 50,000 employees), and that
# process shares the machine with the server it measures. Comments and scripts are cut
# out first, so a tag-like string inside them is not taken for a field.
_IGNORED = re.compile(r"<!--.*?-->|<script\b.*?</script\s*>|<style\b.*?</style\s*>", re.I | re.S)
_TAG = re.compile(r"<(/?)(form|input|textarea|select|option)\b([^>]*)>", re.I)
_ATTR = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""", re.S)


def _attributes(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for match in _ATTR.finditer(text):
        name, double, single, bare = match.groups()
        value = double if double is not None else single if single is not None else bare
        # The first occurrence wins, as in a browser.
        out.setdefault(name.lower(), unescape(value or ""))
    return out


def page_forms(html: str) -> list[_Form]:
    """The forms of a page with their fields (what a browser would submit)."""
    forms: list[_Form] = []
    form: _Form | None = None
    select: str | None = None
    for match in _TAG.finditer(_IGNORED.sub("", html)):
        closing, tag, rest = match.group(1), match.group(2).lower(), match.group(3)
        if closing:
            if tag == "form":
                form = None
            elif tag == "select":
                select = None
            continue
        a = _attributes(rest)
        if tag == "form":
            form = _Form(action=a.get("action", ""), method=a.get("method", "get").lower())
            forms.append(form)
            continue
        if form is None:
            continue
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
            select = name
            form.choices.setdefault(name, [])
        elif tag == "option" and select:
            form.choices[select].append(a.get("value", ""))
    return forms


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
    forms = [f for f in page_forms(html) if f.method == "post" and (f.choices or f.free)]
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
