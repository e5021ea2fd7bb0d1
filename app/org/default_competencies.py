"""The default competency set, in every language we ship it in.

A fresh database gets it once, from the migration ``0005``, in the
organisation's language (``DEFAULT_LANGUAGE``); the demo seeds it the same way. After
that the competencies are HR's: nothing recreates or overwrites them.

Plain data, no database or web imports: the migration imports it.
"""

from __future__ import annotations

from typing import Any

# code -> language -> texts, in the order raters see them.
DEFAULT_COMPETENCIES: dict[str, dict[str, dict[str, Any]]] = {
    "professionalism": {
        "en": {
            "name": "Professionalism",
            "description": "Knows their field and applies it to the customer's problem, "
            "not just to the request as written.",
            "indicators": [
                "Gives accurate, well-founded answers",
                "Explains the reasoning behind a recommendation",
                "Points out risks I had not seen",
                "Keeps their knowledge up to date",
            ],
        },
        "ru": {
            "name": "Профессионализм",
            "description": "Знает своё дело и применяет знания к задаче заказчика, "
            "а не только к запросу в том виде, как он написан.",
            "indicators": [
                "Даёт точные, обоснованные ответы",
                "Объясняет, на чём основана рекомендация",
                "Указывает на риски, которых я не заметил",
                "Поддерживает свои знания в актуальном состоянии",
            ],
        },
    },
    "responsiveness": {
        "en": {
            "name": "Responsiveness",
            "description": "Reacts to requests quickly and keeps me informed while the work "
            "is in progress.",
            "indicators": [
                "Acknowledges a request within one working day",
                "Tells me early when a deadline is at risk",
                "Is reachable when something is urgent",
            ],
        },
        "ru": {
            "name": "Оперативность",
            "description": "Быстро реагирует на запросы и держит в курсе, пока работа идёт.",
            "indicators": [
                "Подтверждает получение запроса в течение рабочего дня",
                "Заранее предупреждает, если срок под угрозой",
                "Доступен, когда дело срочное",
            ],
        },
    },
    "quality": {
        "en": {
            "name": "Quality of work",
            "description": "Delivers results that are complete, correct and usable without rework.",
            "indicators": [
                "Work arrives complete and correct the first time",
                "Checks their own work before handing it over",
                "Follows agreed standards and formats",
                "Fixes mistakes quickly and without fuss",
            ],
        },
        "ru": {
            "name": "Качество работы",
            "description": "Выдаёт полный и правильный результат, которым можно "
            "пользоваться без доработки.",
            "indicators": [
                "Работа с первого раза полная и без ошибок",
                "Проверяет свою работу, прежде чем передать её",
                "Соблюдает согласованные стандарты и форматы",
                "Быстро и спокойно исправляет ошибки",
            ],
        },
    },
    "communication": {
        "en": {
            "name": "Communication",
            "description": "Communicates clearly, listens, and makes sure both sides share "
            "the same understanding.",
            "indicators": [
                "Asks questions to understand what I actually need",
                "Writes and speaks clearly, without jargon",
                "Confirms agreements and next steps",
            ],
        },
        "ru": {
            "name": "Коммуникация",
            "description": "Говорит ясно, слушает и добивается того, чтобы обе стороны "
            "понимали задачу одинаково.",
            "indicators": [
                "Задаёт вопросы, чтобы понять, что мне на самом деле нужно",
                "Пишет и говорит понятно, без жаргона",
                "Подтверждает договорённости и следующие шаги",
            ],
        },
    },
    "teamwork": {
        "en": {
            "name": "Teamwork",
            "description": "Works with other teams towards a shared result rather than "
            "defending their own area.",
            "indicators": [
                "Looks for solutions that work for both teams",
                "Shares information without being asked",
                "Helps out beyond their formal responsibilities",
                "Treats colleagues with respect",
            ],
        },
        "ru": {
            "name": "Командная работа",
            "description": "Работает с другими командами на общий результат, а не "
            "защищает только свой участок.",
            "indicators": [
                "Ищет решения, которые подходят обеим командам",
                "Делится информацией, не дожидаясь просьбы",
                "Помогает и за рамками своих формальных обязанностей",
                "Относится к коллегам с уважением",
            ],
        },
    },
    "reliability": {
        "en": {
            "name": "Reliability",
            "description": "Does what they promised, when they promised it.",
            "indicators": [
                "Meets agreed deadlines",
                "Follows through without reminders",
                "Gives realistic commitments",
            ],
        },
        "ru": {
            "name": "Надёжность",
            "description": "Делает то, что обещал, и тогда, когда обещал.",
            "indicators": [
                "Соблюдает согласованные сроки",
                "Доводит дело до конца без напоминаний",
                "Даёт реалистичные обещания",
            ],
        },
    },
}
LANGUAGES = ("en", "ru")


def default_competencies(language: str) -> list[dict[str, Any]]:
    """The set in ``language``: code, texts, weight 1 and display order 10, 20, …"""
    if language not in LANGUAGES:
        raise ValueError(f"no default competencies in {language!r}; choose one of {LANGUAGES}")
    return [
        {**texts[language], "code": code, "weight": 1.0, "display_order": order * 10}
        for order, (code, texts) in enumerate(DEFAULT_COMPETENCIES.items(), start=1)
    ]


def default_translations(code: str, language: str) -> dict[str, dict[str, Any]]:
    """A default competency's texts in every shipped language but ``language``."""
    return {
        lang: dict(texts)
        for lang, texts in DEFAULT_COMPETENCIES.get(code, {}).items()
        if lang != language
    }
