"""The rating page's radio groups, built in Python instead of a Jinja loop.

A customer's page holds about a thousand radio buttons (suppliers x competencies x the
scale, plus the NPS). Rendered one at a time in the template, with an escape per
attribute, they were most of the page's server time. Here a group's choices are escaped
once and each question is a single ``str.join``; the HTML is the one the template's loop
made (``{field}-{suffix}`` ids, ``required``, ``aria-invalid``, ``checked``), and
``tests/ratings/test_rendering.py`` holds it to that.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from markupsafe import Markup, escape

# Between two choices, as the template indents them inside <div class="scale">.
SEPARATOR = "\n        "


@dataclass(frozen=True)
class Choice:
    """One radio of a group: the posted value, the id suffix, the label, the span class.

    The label is plain text and escaped when the group is built; a Markup label (already
    safe HTML) is kept as it is, as Jinja's autoescape would.
    """

    value: str
    suffix: str
    label: str
    css_class: str = "choice"


class RadioGroup:
    """The same set of choices for every question that asks it, escaped once.

    ``fallback`` is the value checked when the current answer matches no choice (the
    NPS's "no answer"); without one, nothing is checked then.

    A question's HTML differs from the next one's only by its field name, which choice
    is checked and whether it is invalid. So the text between the field name's
    occurrences is built once per (checked, invalid) and a question is one
    ``field.join(...)``.
    """

    def __init__(
        self, choices: Iterable[Choice], *, required: bool, fallback: str | None = None
    ) -> None:
        self.choices = tuple(choices)
        self.values = frozenset(choice.value for choice in self.choices)
        if fallback is not None and fallback not in self.values:
            raise ValueError("the fallback must be one of the choices")
        self.fallback = fallback
        self.required = required
        self._segments: dict[tuple[str | None, bool], tuple[str, ...]] = {}

    def _build(self, checked: str | None, invalid: bool) -> tuple[str, ...]:
        """The literal text around every occurrence of the field name, escaped."""
        flags = (" required" if self.required else "") + (' aria-invalid="true"' if invalid else "")
        segments = [""]
        for choice in self.choices:
            suffix = escape(choice.suffix)
            segments[-1] += f'<span class="{escape(choice.css_class)}"><input type="radio" name="'
            segments.append('" id="')
            segments.append(
                f'-{suffix}" value="{escape(choice.value)}"{flags}'
                f'{" checked" if choice.value == checked else ""}><label for="'
            )
            segments.append(f'-{suffix}">{escape(choice.label)}</label></span>{SEPARATOR}')
        segments[-1] = segments[-1].removesuffix(SEPARATOR)
        return tuple(segments)

    def render(self, name: str, current: str | None = None, *, invalid: object = False) -> Markup:
        """Every radio of the question ``name``, ``current`` checked, invalid if truthy."""
        checked = current if current in self.values else self.fallback
        key = (checked, bool(invalid))
        segments = self._segments.get(key)
        if segments is None:
            segments = self._segments[key] = self._build(*key)
        # Safe: the field name is escaped here, every other part in _build().
        return Markup(str(escape(name)).join(segments))  # noqa: S704


def score_group(scale: Sequence[int], cant_judge: str, cant_judge_label: str) -> RadioGroup:
    """A competency question: the cycle's scale, then "can't judge"; an answer is required."""
    return _score_group(tuple(scale), cant_judge, cant_judge_label)


def nps_group(scale: Sequence[int], no_answer_label: str) -> RadioGroup:
    """The optional NPS question: 0..10, then "no answer", checked unless 0..10 is."""
    return _nps_group(tuple(scale), no_answer_label)


# Shared by every page with the same scale and language (a handful per cycle), so a
# group's HTML is built once per process; typed, so a Markup label is kept apart.
@lru_cache(maxsize=64, typed=True)
def _score_group(scale: tuple[int, ...], cant_judge: str, cant_judge_label: str) -> RadioGroup:
    choices = [Choice(str(v), str(v), str(v)) for v in scale]
    choices.append(Choice(cant_judge, cant_judge, cant_judge_label, "choice cant-judge"))
    return RadioGroup(choices, required=True)


@lru_cache(maxsize=64, typed=True)
def _nps_group(scale: tuple[int, ...], no_answer_label: str) -> RadioGroup:
    choices = [Choice(str(v), str(v), str(v)) for v in scale]
    choices.append(Choice("", "none", no_answer_label, "choice no-answer"))
    return RadioGroup(choices, required=False, fallback="")
