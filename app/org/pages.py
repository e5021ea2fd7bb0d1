"""HR screens for the organisation: the department tree, employees, competencies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from babel import Locale, UnknownLocaleError
from fastapi import Depends, Form, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from app import i18n
from app.auth import service as auth_service
from app.auth.deps import CsrfProtect, HrOnly
from app.db import SessionDep
from app.errors import DomainError, NotFound
from app.fields import RowId
from app.org import service as org_service
from app.org.models import Competency, Employee
from app.uploads import rows
from app.web import (
    confirm_page,
    field_errors,
    form_fields,
    make_pager,
    page,
    page_router,
    parse_int,
    safe_next,
    see_other,
)

router = page_router(dependencies=[HrOnly])


def _audit(
    request: Request, session: Session, action: str, entity: str, entity_id: Any, detail: str
) -> None:
    auth_service.record_audit(
        session,
        actor=request.state.principal.email,
        action=action,
        entity=entity,
        entity_id=entity_id,
        detail=detail,
    )


# --- departments ----------------------------------------------------------------------------


def _flatten(nodes: list[org_service.DepartmentNode]) -> Iterator[org_service.DepartmentNode]:
    for node in nodes:
        yield node
        yield from _flatten(node.children)


def _department_options(tree: list[org_service.DepartmentNode]) -> list[tuple[int, str]]:
    """(id, indented name) in tree order, for the filter."""
    options: list[tuple[int, str]] = []

    def walk(nodes: list[org_service.DepartmentNode], depth: int) -> None:
        for node in nodes:
            options.append((node.id, "\u2003" * depth + node.name))
            walk(node.children, depth + 1)

    walk(tree, 0)
    return options


@router.get("/org")
def org_home() -> Response:
    return see_other("/org/departments")


@router.get("/org/departments")
def departments(request: Request, session: SessionDep) -> Response:
    tree = org_service.department_tree(session)
    unassigned = int(
        session.scalar(
            select(func.count())
            .select_from(Employee)
            .where(Employee.active, Employee.department_id.is_(None))
        )
        or 0
    )
    return page(
        request,
        "hr/org/departments.html",
        {"tree": tree, "unassigned": unassigned, "count": sum(1 for _ in _flatten(tree))},
    )


# --- employees ------------------------------------------------------------------------------

ACTIVE_FILTERS = {"active": "Active", "inactive": "Deactivated", "all": "All"}


@router.get("/org/employees")
def employees(request: Request, session: SessionDep) -> Response:
    params = request.query_params
    q = params.get("q", "").strip()[:200]
    status = params.get("status", "active")
    if status not in ACTIVE_FILTERS:
        status = "active"
    department_id = parse_int(params.get("department"))
    errors: dict[str, str] = {}
    active = None if status == "all" else status == "active"
    tree = org_service.department_tree(session)
    known = {node.id for node in _flatten(tree)}
    if department_id is not None and department_id not in known:
        department_id = None
    total = 0
    try:
        found = org_service.list_employees(
            session,
            department_id=department_id,
            include_sub_departments=True,
            active=active,
            search=q or None,
            limit=0,
        )
        total = found.total
    except DomainError as exc:
        errors = field_errors(exc)
        q_error = errors.get("q", exc.detail)
        errors = {"q": q_error}
    pager = make_pager(request, total, per_page=25)
    rows: list[Employee] = []
    if not errors:
        rows = org_service.list_employees(
            session,
            department_id=department_id,
            include_sub_departments=True,
            active=active,
            search=q or None,
            offset=pager.offset,
            limit=pager.per_page,
        ).items
    return page(
        request,
        "hr/org/employees.html",
        {
            "employees": rows,
            "pager": pager,
            "q": q,
            "status": status,
            "statuses": ACTIVE_FILTERS,
            "department_id": department_id,
            "departments": _department_options(tree),
            "errors": errors,
            "back": str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        },
    )


def _employee(session: Session, employee_id: int) -> Employee:
    return org_service.get_employee_by_id(session, employee_id=employee_id)


def _local_back(value: str | None) -> str:
    target = safe_next(value, "/org/employees")
    return target if target.startswith("/org/employees") else "/org/employees"


@router.get("/org/employees/{employee_id}/deactivate")
def employee_deactivate_confirm(
    request: Request, session: SessionDep, employee_id: RowId, back: str = ""
) -> Response:
    employee = _employee(session, employee_id)
    back = _local_back(back)
    if not employee.active:
        return see_other(back)
    return confirm_page(
        request,
        title=f"Deactivate {employee.full_name}?",
        crumbs=[
            ("Organisation", "/org/departments"),
            ("Employees", back),
            ("Deactivate", None),
        ],
        message="Use this for leavers. They are left out of the next cycles (as "
        "supplier and as customer); their past results stay.",
        details=[
            f"{employee.email} · {employee.external_id}",
            "Their live matrix links (as supplier and as customer) are removed; "
            "reactivating does not bring them back",
        ],
        action=f"/org/employees/{employee.id}/deactivate",
        hidden={"back": back},
        button="Deactivate employee",
        cancel=back,
    )


@router.post("/org/employees/{employee_id}/deactivate", dependencies=[CsrfProtect])
def employee_deactivate(
    request: Request,
    session: SessionDep,
    employee_id: RowId,
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    employee = _employee(session, employee_id)
    if employee.active:
        org_service.deactivate_employee(session, external_id=employee.external_id)
        _audit(
            request,
            session,
            "deactivate",
            "employee",
            employee.external_id,
            f"{employee.full_name} <{employee.email}>",
        )
    return see_other(_local_back(back), notice="deactivated")


@router.post("/org/employees/{employee_id}/reactivate", dependencies=[CsrfProtect])
def employee_reactivate(
    request: Request,
    session: SessionDep,
    employee_id: RowId,
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    employee = _employee(session, employee_id)
    if not employee.active:
        org_service.reactivate_employee(session, external_id=employee.external_id)
        _audit(
            request,
            session,
            "reactivate",
            "employee",
            employee.external_id,
            f"{employee.full_name} <{employee.email}>",
        )
    return see_other(_local_back(back), notice="reactivated")


@router.post("/org/employees/{employee_id}/paper-channel", dependencies=[CsrfProtect])
def employee_paper_channel(
    request: Request,
    session: SessionDep,
    employee_id: RowId,
    on: Annotated[bool, Form()],
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """No email, a printed letter instead (or back to email), from the next launch."""
    employee = _employee(session, employee_id)
    if org_service.set_paper_channel(session, external_id=employee.external_id, on=on):
        _audit(
            request,
            session,
            "paper channel on" if on else "paper channel off",
            "employee",
            employee.external_id,
            employee.full_name,
        )
    return see_other(_local_back(back), notice="paper_on" if on else "paper_off")


# --- competencies ---------------------------------------------------------------------------


@router.get("/org/competencies")
def competencies(request: Request, session: SessionDep) -> Response:
    rows = org_service.list_competencies(session)
    rows.sort(key=lambda c: not c.active)  # inactive ones last, each group in rater order
    total_weight = sum(c.weight for c in rows if c.active)
    gaps = org_service.translation_gaps(
        session,
        languages=i18n.available_languages(),
        default_language=request.app.state.settings.default_language,
    )
    return page(
        request,
        "hr/org/competencies.html",
        {
            "competencies": rows,
            "total_weight": total_weight,
            "translation_gaps": gaps,
            "languages": translation_languages(request),
            "language_name": language_name,
        },
    )


def language_name(code: str, *, in_language: str) -> str:
    """The language's name in another: "Russian" for ``ru`` on an English page."""
    try:
        return str(Locale.parse(code).get_display_name(in_language) or code)
    except (ValueError, UnknownLocaleError):
        return code


def _competency_form(
    request: Request,
    *,
    competency: Competency | None,
    form: dict[str, Any],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "hr/org/competency_form.html",
        {
            "competency": competency,
            "form": form,
            "errors": errors or {},
            "languages": translation_languages(request),
            "language_name": language_name,
        },
        status_code=status_code,
    )


def _competency(session: Session, competency_id: int) -> Competency:
    competency = session.get(Competency, competency_id)
    if competency is None:
        raise NotFound("There is no such competency.")
    return competency


def translation_languages(request: Request) -> list[str]:
    """The languages raters may read besides the organisation's own."""
    default = request.app.state.settings.default_language
    return [lang for lang in i18n.available_languages() if lang != default]


def _translation_form(competency: Competency | None, languages: list[str]) -> dict[str, str]:
    texts = (competency.translations if competency else None) or {}
    form: dict[str, str] = {}
    for lang in languages:
        text = texts.get(lang) or {}
        form[f"name_{lang}"] = str(text.get("name", ""))
        form[f"description_{lang}"] = str(text.get("description", ""))
        form[f"indicators_{lang}"] = "\n".join(str(i) for i in text.get("indicators") or [])
    return form


async def translation_fields(request: Request) -> dict[str, str]:
    """The posted ``name_<lang>``, ``description_<lang>``, ``indicators_<lang>`` fields."""
    form = await request.form()
    limits = {"name": 1000, "description": 10000, "indicators": 20000}
    posted: dict[str, str] = {}
    for lang in translation_languages(request):
        for field_name, limit in limits.items():
            value = form.get(f"{field_name}_{lang}")
            posted[f"{field_name}_{lang}"] = value[:limit] if isinstance(value, str) else ""
    return posted


TranslationFields = Annotated[dict[str, str], Depends(translation_fields)]


def _translations_of(form: dict[str, Any], languages: list[str]) -> dict[str, dict[str, str]]:
    """A language with every box empty has no translation."""
    out: dict[str, dict[str, str]] = {}
    for lang in languages:
        text = {name: str(form.get(f"{name}_{lang}", "")) for name in rows.TRANSLATED_FIELDS}
        if any(value.strip() for value in text.values()):
            out[lang] = text
    return out


@router.get("/org/competencies/new")
def competency_new_form(request: Request, session: SessionDep) -> Response:
    next_order = int(session.scalar(select(func.max(Competency.display_order))) or 0) + 1
    form = {
        "code": "",
        "name": "",
        "description": "",
        "indicators": "",
        "weight": "1",
        "display_order": str(next_order),
        "active": True,
        **_translation_form(None, translation_languages(request)),
    }
    return _competency_form(request, competency=None, form=form)


@router.get("/org/competencies/{competency_id}")
def competency_edit_form(request: Request, session: SessionDep, competency_id: RowId) -> Response:
    competency = _competency(session, competency_id)
    form = {
        "code": competency.code,
        "name": competency.name,
        "description": competency.description,
        "indicators": "\n".join(str(i) for i in competency.indicators or []),
        "weight": f"{competency.weight:g}",
        "display_order": str(competency.display_order),
        "active": competency.active,
        **_translation_form(competency, translation_languages(request)),
    }
    return _competency_form(request, competency=competency, form=form)


def _save_competency(
    request: Request, session: Session, *, code: str, form: dict[str, Any], errors: dict[str, str]
) -> tuple[Competency | None, dict[str, str], bool]:
    """Save through the org service; returns (competency, errors by field, changed).

    The form's text (weight "1,5", one indicator per line) is read by the same model as
    the API's JSON and the uploads, so the rules and messages match.
    """
    try:
        row = rows.validated(
            rows.CompetencyRow,
            what="competency",
            code=code,
            name=form["name"],
            description=form["description"],
            indicators=form["indicators"],
            weight=form["weight"],
            display_order=form["display_order"],
            active=bool(form["active"]),
            translations=_translations_of(form, translation_languages(request)),
        )
        if errors:
            return None, errors, False
        competency, outcome = org_service.upsert_competency(
            session,
            code=row.code,
            name=row.name,
            description=row.description,
            indicators=row.indicators,
            weight=row.weight,
            display_order=row.display_order,
            active=row.active,
            translations=_translations_of(form, translation_languages(request)),
        )
    except DomainError as exc:
        found = dict(errors)
        for err in exc.errors or [{"field": "_form", "message": exc.detail}]:
            # "indicators.3" -> the indicators box; the message names the line;
            # "translations.ru.name" -> the name_ru box.
            parts = str(err.get("field") or "_form").split(".")
            name = f"{parts[2]}_{parts[1]}" if parts[0] == "translations" else parts[0]
            if parts[0] == "translations" and len(parts) < 3:
                name = "_form"
            found.setdefault(name, str(err.get("message")))
        return None, found, False
    return competency, {}, outcome != org_service.Outcome.unchanged


def _form_values(**values: str) -> dict[str, Any]:
    form: dict[str, Any] = dict(values)
    form["active"] = bool(values.get("active"))
    return form


# The form's own fields plus name_<lang>, description_<lang>, indicators_<lang>.
COMPETENCY_FORM_FIELDS = ("code", "name", "description", "indicators", "weight")
TRANSLATION_FIELD = re.compile(r"^(?:name|description|indicators)_[a-z]{2,3}$")


@router.post("/org/competencies/new", dependencies=[CsrfProtect])
@form_fields(*COMPETENCY_FORM_FIELDS, "display_order", "active", pattern=TRANSLATION_FIELD)
def competency_create(
    request: Request,
    session: SessionDep,
    code: Annotated[str, Form(max_length=200)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",
    description: Annotated[str, Form(max_length=10000)] = "",
    indicators: Annotated[str, Form(max_length=20000)] = "",
    weight: Annotated[str, Form(max_length=50)] = "",
    display_order: Annotated[str, Form(max_length=50)] = "",
    active: Annotated[str, Form(max_length=10)] = "",
    *,
    translated: TranslationFields,
) -> Response:
    form = _form_values(
        code=code,
        name=name,
        description=description,
        indicators=indicators,
        weight=weight,
        display_order=display_order,
        active=active,
        **translated,
    )
    clean_code = code.strip().lower()
    errors: dict[str, str] = {}
    if not clean_code:
        errors["code"] = "A code is required"
    elif session.scalar(select(Competency.id).where(Competency.code == clean_code)):
        # The service upserts by code; here a taken code must not overwrite another one.
        errors["code"] = "Another competency already has this code"
    competency, errors, _changed = _save_competency(
        request, session, code=clean_code, form=form, errors=errors
    )
    if competency is None:
        return _competency_form(request, competency=None, form=form, errors=errors, status_code=422)
    _audit(request, session, "create", "competency", competency.code, competency.name)
    return see_other("/org/competencies", notice="created")


@router.post("/org/competencies/{competency_id}", dependencies=[CsrfProtect])
@form_fields(*COMPETENCY_FORM_FIELDS, "display_order", "active", pattern=TRANSLATION_FIELD)
def competency_edit(
    request: Request,
    session: SessionDep,
    competency_id: RowId,
    name: Annotated[str, Form(max_length=1000)] = "",
    description: Annotated[str, Form(max_length=10000)] = "",
    indicators: Annotated[str, Form(max_length=20000)] = "",
    weight: Annotated[str, Form(max_length=50)] = "",
    display_order: Annotated[str, Form(max_length=50)] = "",
    active: Annotated[str, Form(max_length=10)] = "",
    *,
    translated: TranslationFields,
) -> Response:
    current = _competency(session, competency_id)
    before = {
        "name": current.name,
        "description": current.description,
        "indicators": list(current.indicators or []),
        "weight": current.weight,
        "display_order": current.display_order,
        "active": current.active,
        "translations": dict(current.translations or {}),
    }
    form = _form_values(
        code=current.code,
        name=name,
        description=description,
        indicators=indicators,
        weight=weight,
        display_order=display_order,
        active=active,
        **translated,
    )
    competency, errors, changed = _save_competency(
        request, session, code=current.code, form=form, errors={}
    )
    if competency is None:
        return _competency_form(
            request, competency=current, form=form, errors=errors, status_code=422
        )
    if changed:
        fields = [k for k, v in before.items() if getattr(competency, k) != v]
        _audit(
            request,
            session,
            "update",
            "competency",
            competency.code,
            f"{competency.name}: changed {', '.join(fields)}",
        )
    return see_other("/org/competencies", notice="saved")
