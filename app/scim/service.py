"""SCIM 2.0 users: the mapping between SCIM resources and employees, and its rules.

A SCIM ``User`` is an employee. The resource is built from the database with the
``scim2-models`` models, PATCH operations are applied to that resource by the same
library (as Okta and Entra ID send them), and the result is written back through the
organisation's services, so every rule of the HRIS API holds here too. Filters are
parsed by the library; :class:`_SqlFilter` turns the parsed tree into SQL.

| SCIM | Employee |
|---|---|
| ``id`` | the internal id (stable across renames of the HRIS key) |
| ``userName`` | ``scim_user.user_name`` (the email for employees no provider touched) |
| ``externalId`` | ``scim_user.external_id`` (the identity provider's id) |
| ``name``, ``displayName`` | full name (given and family names kept in ``scim_user``) |
| ``emails`` (primary, else work, else first) | email |
| ``preferredLanguage`` (else ``locale``) | language |
| ``active`` | active: false deactivates, never deletes |
| enterprise ``employeeNumber`` | external id (the HRIS key) |
| enterprise ``department`` | department, by external id or name; created when new |
| enterprise ``manager.value`` | line manager (their SCIM id) |
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    Email,
    EnterpriseUser,
    ETag,
    Filter,
    Manager,
    Meta,
    Name,
    Patch,
    PatchOp,
    ResourceType,
    SCIMException,
    ScimFilter,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)
from scim2_models.path.expressions import (
    AttrPath,
    CompareOperator,
    Comparison,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from scim2_models.path.visitor import FilterVisitor
from sqlalchemy import ColumnElement, and_, false, func, literal, not_, or_, select, true
from sqlalchemy.orm import Session, aliased, joinedload

from app.auth import service as auth_service
from app.errors import DomainError
from app.org import service as org_service
from app.org.models import Department, Employee
from app.scim.models import ScimUser
from app.uploads import fields

UserResource = User[EnterpriseUser]
ENTERPRISE_URN = str(EnterpriseUser.__schema__)
CORE_USER_URN = str(User.__schema__)
# Entra ID and Okta depart from the RFC in known ways; these settings accept them:
# attributes we do not keep are ignored, Entra's `remove` with a value is applied, and a
# path filter matching nothing (`emails[type eq "work"].value` on a user without one)
# creates the entry, as Entra expects.
POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)
MAX_RESULTS = 200
MAX_ROW_ID = 2**31 - 1
SERVICE_PROVIDER_CONFIG = ServiceProviderConfig(
    documentation_uri="https://github.com/peer360/peer360#identity-providers",
    patch=Patch(supported=True),
    bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=Filter(supported=True, max_results=MAX_RESULTS),
    change_password=ChangePassword(supported=False),
    sort=Sort(supported=False),
    etag=ETag(supported=True),
    authentication_schemes=[
        AuthenticationScheme(
            type="oauthbearertoken",
            name="API key",
            description="An API key with the `scim` scope: `Authorization: Bearer p360_...`",
            primary=True,
        )
    ],
)
# Groups are not served: departments come with each user (the enterprise `department`).
PROVIDER = ScimProvider(
    models=[User, EnterpriseUser],
    resource_types=[ResourceType.from_resource(UserResource)],
    config=SERVICE_PROVIDER_CONFIG,
    policy=POLICY,
)


class ScimProblem(DomainError):
    """A request SCIM refuses, with its ``scimType`` (RFC 7644 §3.12)."""

    title = "Bad request"

    def __init__(self, detail: str, *, scim_type: str | None = None, status: int = 400) -> None:
        super().__init__(detail, scim_type=scim_type)
        self.status = status


def problem_from(exc: SCIMException | ValidationError) -> ScimProblem:
    """The library's refusal of a payload, as our error."""
    if isinstance(exc, SCIMException):
        return ScimProblem(exc.detail, scim_type=exc.scim_type or None, status=exc.status)
    messages = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:10]
    )
    return ScimProblem(messages, scim_type="invalidValue")


# --- reading -----------------------------------------------------------------------------


@dataclass
class ScimEmployee:
    """An employee with what SCIM knows about them (``scim`` is None until a provider
    has provisioned or changed them)."""

    employee: Employee
    scim: ScimUser | None

    @property
    def user_name(self) -> str:
        return self.scim.user_name if self.scim else self.employee.email


def _query() -> Any:
    return (
        select(Employee, ScimUser)
        .outerjoin(ScimUser, ScimUser.employee_id == Employee.id)
        .outerjoin(Department, Department.id == Employee.department_id)
        .options(joinedload(Employee.department), joinedload(Employee.manager))
    )


def _row_id(text: str) -> int | None:
    """A SCIM id as our row id, or None when no row can have it (32-bit ids)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        return None
    return int(text) if 0 < int(text) <= MAX_ROW_ID else None


def get_user(session: Session, *, user_id: str) -> ScimEmployee:
    """The employee with this SCIM id (active or not), or a 404."""
    row_id = _row_id(user_id)
    if row_id is None:
        raise ScimProblem(f"No user has the id {user_id[:20]!r}", status=404)
    row = session.execute(_query().where(Employee.id == row_id)).first()
    if row is None:
        raise ScimProblem(f"No user has the id {user_id!r}", status=404)
    return ScimEmployee(employee=row[0], scim=row[1])


def search_users(
    session: Session, *, scim_filter: ScimFilter[Any] | None, start_index: int, count: int
) -> tuple[list[ScimEmployee], int]:
    """A page of users matching the filter, in id order, and how many match in all."""
    query = _query()
    if scim_filter is not None:
        query = query.where(_SqlFilter(scim_filter).visit(scim_filter.ast))
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    if count <= 0:
        return [], total
    rows = session.execute(query.order_by(Employee.id).offset(start_index - 1).limit(count))
    return [ScimEmployee(employee=r[0], scim=r[1]) for r in rows], total


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


def to_resource(found: ScimEmployee, *, base_url: str) -> UserResource:
    """The SCIM resource of an employee, with ``meta.version`` as its ETag."""
    emp, scim = found.employee, found.scim
    user = UserResource(
        id=str(emp.id),
        external_id=scim.external_id if scim else None,
        user_name=found.user_name,
        name=Name(
            formatted=emp.full_name,
            given_name=scim.given_name if scim else None,
            family_name=scim.family_name if scim else None,
        ),
        display_name=emp.full_name,
        emails=[Email(value=emp.email, type=Email.Type.work, primary=True)],
        preferred_language=emp.language,
        active=emp.active,
    )
    user[EnterpriseUser] = EnterpriseUser(
        employee_number=emp.external_id,
        department=emp.department.name if emp.department else None,
        manager=Manager(value=str(emp.manager.id), display_name=emp.manager.full_name)
        if emp.manager
        else None,
    )
    modified = max(emp.updated_at, scim.updated_at) if scim else emp.updated_at
    user.meta = Meta(
        resource_type="User",
        created=_aware(emp.created_at),
        last_modified=_aware(modified),
        location=f"{base_url.rstrip('/')}/scim/v2/Users/{emp.id}",
        version=etag_of(user),
    )
    return user


def etag_of(user: UserResource) -> str:
    """A weak ETag over what the resource says (``meta`` aside)."""
    body = user.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, exclude={"meta"})
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]
    return f'W/"{digest}"'


def check_if_match(if_match: str | None, user: UserResource) -> None:
    """412 when the client's ``If-Match`` names another version (RFC 7644 §3.14)."""
    if not if_match or if_match.strip() == "*":
        return
    wanted = {tag.strip() for tag in if_match.split(",")}
    if user.meta is None or user.meta.version not in wanted:
        raise ScimProblem("The user changed since you read it: read it again", status=412)


# --- writing -------------------------------------------------------------------------------


def _primary_email(user: UserResource) -> str | None:
    emails = [e for e in user.emails or [] if e.value]
    chosen = (
        next((e for e in emails if e.primary), None)
        or next((e for e in emails if e.type == Email.Type.work), None)
        or (emails[0] if emails else None)
    )
    return str(chosen.value) if chosen else None


def _full_name(user: UserResource, before: UserResource | None) -> str | None:
    """The full name a resource asks for. Against the resource as it was, the attribute
    the client changed wins: Entra ID sends only ``name.givenName`` when a first name
    changes, Okta may send only ``displayName``."""
    name = user.name or Name()
    old = (before.name if before else None) or Name()
    joined = " ".join(part for part in (name.given_name, name.family_name) if part)
    if before is None:
        return name.formatted or user.display_name or joined or None
    if name.formatted and name.formatted != old.formatted:
        return name.formatted
    if user.display_name and user.display_name != before.display_name:
        return user.display_name
    if joined and (name.given_name, name.family_name) != (old.given_name, old.family_name):
        return joined
    return None


def _department_external_id(session: Session, *, name: str, actor: str) -> str:
    """The department a provider names: by external id, else by (unique) name, else a
    new top-level department, since providers send names of departments we may not
    have yet."""
    name = name.strip()
    if session.scalar(select(Department.id).where(Department.external_id == name)):
        return name
    by_name = list(
        session.scalars(
            select(Department.external_id).where(func.lower(Department.name) == name.lower())
        )
    )
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise ScimProblem(
            f"Several departments are named {name!r}: send the department's external id",
            scim_type="invalidValue",
        )
    dept, _outcome = org_service.upsert_department(
        session, external_id=name.replace("/", "-")[: fields.EXTERNAL_ID_MAX].strip(), name=name
    )
    auth_service.record_audit(
        session,
        actor=actor,
        action="scim create department",
        entity="department",
        entity_id=dept.external_id,
        detail=dept.name,
    )
    return dept.external_id


def _manager_external_id(session: Session, *, manager: Manager | None) -> str | None:
    if manager is None or not manager.value:
        return None
    value = str(manager.value)
    row_id = _row_id(value)
    found = (
        session.scalar(select(Employee.external_id).where(Employee.id == row_id))
        if row_id is not None
        else None
    )
    if found is None:
        raise ScimProblem(f"No user has the id {value[:20]!r} (manager)", scim_type="invalidValue")
    return found


def _employee_changes(
    session: Session, *, user: UserResource, before: UserResource | None, actor: str
) -> dict[str, Any]:
    """The employee fields a resource asks for (absent ones are left alone on update)."""
    changes: dict[str, Any] = {}
    enterprise = user[EnterpriseUser] or EnterpriseUser()
    if enterprise.employee_number:
        changes["external_id"] = enterprise.employee_number.strip()
    email = _primary_email(user)
    if email is None and user.user_name and fields.EMAIL_RE.match(user.user_name):
        email = user.user_name
    if email is not None:
        changes["email"] = email.strip().lower()
    full_name = _full_name(user, before)
    if full_name is not None:
        changes["full_name"] = full_name
    language = user.preferred_language or user.locale
    if language:
        changes["language"] = language
    if user.active is not None:
        changes["active"] = user.active
    changes["department_external_id"] = (
        _department_external_id(session, name=enterprise.department, actor=actor)
        if enterprise.department and enterprise.department.strip()
        else None
    )
    changes["manager_external_id"] = _manager_external_id(session, manager=enterprise.manager)
    return changes


def _user_name(user: UserResource) -> str:
    user_name = (user.user_name or "").strip().lower()
    problem = fields.text_problem(user_name, max_length=fields.EMAIL_MAX)
    if not user_name or problem:
        raise ScimProblem(f"userName {problem or 'is required'}", scim_type="invalidValue")
    return user_name


def _refuse_taken_user_name(session: Session, *, user_name: str, employee_id: int | None) -> None:
    """userName is unique: among provisioned users, and against the emails of employees
    no provider has touched (which are their user names)."""
    holder = session.scalar(select(ScimUser.employee_id).where(ScimUser.user_name == user_name))
    if holder is None:
        holder = session.scalar(
            select(Employee.id)
            .outerjoin(ScimUser, ScimUser.employee_id == Employee.id)
            .where(Employee.email == user_name, ScimUser.employee_id.is_(None))
        )
    if holder is not None and holder != employee_id:
        raise ScimProblem(f"The userName {user_name!r} is already taken", status=409)


def _save_scim_row(
    session: Session, *, employee_id: int, user: UserResource, user_name: str
) -> ScimUser:
    row = session.get(ScimUser, employee_id) or ScimUser(employee_id=employee_id)
    name = user.name or Name()
    row.user_name = user_name
    row.external_id = (user.external_id or "").strip()[:200] or None
    row.given_name = (name.given_name or "").strip()[:200] or None
    row.family_name = (name.family_name or "").strip()[:200] or None
    session.add(row)
    session.flush()
    return row


def create_user(session: Session, *, user: UserResource, actor: str) -> ScimEmployee:
    """POST /Users: a new employee (409 when the userName, email or employee number is
    already someone's)."""
    user_name = _user_name(user)
    _refuse_taken_user_name(session, user_name=user_name, employee_id=None)
    changes = _employee_changes(session, user=user, before=None, actor=actor)
    if "email" not in changes:
        raise ScimProblem("A user needs an email (emails or an email as userName)")
    external_id = changes.pop("external_id", None) or (
        user_name if not fields.external_id_problem(user_name) else f"scim-{uuid.uuid4().hex}"
    )
    if session.scalar(select(Employee.id).where(Employee.external_id == external_id)):
        raise ScimProblem(f"The employee number {external_id!r} is already someone's", status=409)
    emp, _outcome = org_service.upsert_employee(
        session,
        external_id=external_id,
        email=changes["email"],
        full_name=changes.get("full_name") or user_name,
        department_external_id=changes["department_external_id"],
        manager_external_id=changes["manager_external_id"],
        language=changes.get("language"),
        active=changes.get("active", True),
    )
    scim = _save_scim_row(session, employee_id=emp.id, user=user, user_name=user_name)
    auth_service.record_audit(
        session,
        actor=actor,
        action="scim create employee",
        entity="employee",
        entity_id=emp.external_id,
        detail=emp.email,
    )
    session.refresh(emp, ["department", "manager"])
    return ScimEmployee(employee=emp, scim=scim)


def replace_user(
    session: Session,
    *,
    found: ScimEmployee,
    user: UserResource,
    before: UserResource,
    actor: str,
) -> ScimEmployee:
    """PUT, and PATCH once its operations are applied: write what the resource says."""
    emp = found.employee
    user_name = _user_name(user)
    if user_name != found.user_name:
        _refuse_taken_user_name(session, user_name=user_name, employee_id=emp.id)
    changes = _employee_changes(session, user=user, before=before, actor=actor)
    external_id_before = emp.external_id
    changed = org_service.update_employee(session, employee=emp, changes=changes)
    scim_before = _scim_values(found.scim)
    scim = _save_scim_row(session, employee_id=emp.id, user=user, user_name=user_name)
    changed += [
        name for name, value in _scim_values(scim).items() if scim_before.get(name) != value
    ]
    if changed:
        if "active" in changed and not emp.active:
            action = "scim deactivate employee"
        elif "active" in changed:
            action = "scim reactivate employee"
        else:
            action = "scim update employee"
        auth_service.record_audit(
            session,
            actor=actor,
            action=action,
            entity="employee",
            entity_id=external_id_before,
            detail=", ".join(sorted(set(changed)))
            + (f" (email {emp.email})" if "email" in changed else ""),
        )
    return ScimEmployee(employee=emp, scim=scim)


def _scim_values(row: ScimUser | None) -> dict[str, Any]:
    if row is None:
        return {}
    return {
        "userName": row.user_name,
        "externalId": row.external_id,
        "name.givenName": row.given_name,
        "name.familyName": row.family_name,
    }


def patch_user(
    session: Session, *, found: ScimEmployee, body: Any, base_url: str, actor: str
) -> ScimEmployee:
    """PATCH: the operations applied by the library to the resource as stored, then saved."""
    try:
        patch = PatchOp[UserResource].model_validate(
            _entra_manager_values(body), scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=POLICY
        )
        before = to_resource(found, base_url=base_url)
        user = before.model_copy(deep=True)
        with POLICY:
            patch.patch(user)
    except (SCIMException, ValidationError) as exc:
        raise problem_from(exc) from None
    return replace_user(session, found=found, user=user, before=before, actor=actor)


def _entra_manager_values(body: Any) -> Any:
    """Entra ID sends the manager as a bare id string; the schema says ``{"value": id}``."""
    if not isinstance(body, dict) or not isinstance(body.get("Operations"), list):
        return body
    for operation in body["Operations"]:
        if not isinstance(operation, dict):
            continue
        path = str(operation.get("path") or "").lower()
        value = operation.get("value")
        if path.endswith("manager") and isinstance(value, str):
            operation["value"] = {"value": value}
        elif not path and isinstance(value, dict):
            for key, inner in list(value.items()):
                if key.lower().endswith("manager") and isinstance(inner, str):
                    value[key] = {"value": inner}
                elif (
                    key.lower() == ENTERPRISE_URN.lower()
                    and isinstance(inner, dict)
                    and isinstance(inner.get("manager"), str)
                ):
                    inner["manager"] = {"value": inner["manager"]}
    return body


def deactivate_user(session: Session, *, found: ScimEmployee, actor: str) -> None:
    """DELETE: leavers are deactivated, never deleted, so their history stays."""
    emp = found.employee
    if not emp.active:
        return
    org_service.deactivate_employee(session, external_id=emp.external_id)
    auth_service.record_audit(
        session,
        actor=actor,
        action="scim deactivate employee",
        entity="employee",
        entity_id=emp.external_id,
        detail="DELETE",
    )


# --- filters -------------------------------------------------------------------------------

_STRING_OPERATORS = {
    CompareOperator.eq,
    CompareOperator.ne,
    CompareOperator.co,
    CompareOperator.sw,
    CompareOperator.ew,
    CompareOperator.gt,
    CompareOperator.ge,
    CompareOperator.lt,
    CompareOperator.le,
}


@dataclass(frozen=True)
class _Column:
    expression: Any
    # "text": compared lower-cased; "lower": stored lower-cased; "exact": case-exact text;
    # "bool"; "id": an integer id, compared only with eq/ne.
    kind: str


# An employee no provider has touched has their email as userName.
_USER_NAME = func.coalesce(ScimUser.user_name, Employee.email)


def _columns() -> dict[str, _Column]:
    core, ent = CORE_USER_URN.lower(), ENTERPRISE_URN.lower()
    return {
        f"{core}:id": _Column(Employee.id, "id"),
        f"{core}:username": _Column(_USER_NAME, "lower"),
        f"{core}:externalid": _Column(ScimUser.external_id, "exact"),
        f"{core}:emails.value": _Column(Employee.email, "lower"),
        f"{core}:emails.type": _Column(literal("work"), "text"),
        f"{core}:emails.primary": _Column(true(), "bool"),
        f"{core}:displayname": _Column(Employee.full_name, "text"),
        f"{core}:name.formatted": _Column(Employee.full_name, "text"),
        f"{core}:name.givenname": _Column(ScimUser.given_name, "text"),
        f"{core}:name.familyname": _Column(ScimUser.family_name, "text"),
        f"{core}:preferredlanguage": _Column(Employee.language, "lower"),
        f"{core}:active": _Column(Employee.active, "bool"),
        f"{ent}:employeenumber": _Column(Employee.external_id, "exact"),
        f"{ent}:department": _Column(Department.name, "text"),
        f"{ent}:manager.value": _Column(Employee.manager_id, "id"),
    }


_COLUMNS = _columns()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _SqlFilter(FilterVisitor[ColumnElement[bool]]):
    """A parsed SCIM filter as a SQL condition over employee, scim_user and department."""

    def __init__(self, scim_filter: ScimFilter[Any], *, within: str | None = None) -> None:
        self.filter = scim_filter
        self.within = within  # the multi-valued attribute of a value path (`emails[...]`)

    def _column(self, attr_path: AttrPath, *, comparison: bool) -> _Column:
        if self.within is not None:
            attr_path = AttrPath(attr=self.within, sub_attr=attr_path.attr, uri=attr_path.uri)
        try:
            binding = (
                self.filter.resolve_comparison(attr_path)
                if comparison
                else self.filter.resolve(attr_path)
            )
        except SCIMException as exc:
            raise problem_from(exc) from None
        column = _COLUMNS.get((binding.urn if binding else "").lower())
        if column is None:
            raise ScimProblem(
                f"Filtering on {attr_path.attr!r} is not supported", scim_type="invalidFilter"
            )
        return column

    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        column = self._column(node.attr_path, comparison=True)
        value, op = node.value, node.op
        if column.kind == "bool":
            if not isinstance(value, bool) or op not in (CompareOperator.eq, CompareOperator.ne):
                raise ScimProblem("Compare booleans with eq or ne", scim_type="invalidFilter")
            same = column.expression.is_(value)
            return same if op == CompareOperator.eq else not_(same)
        if column.kind == "id":
            if op not in (CompareOperator.eq, CompareOperator.ne):
                raise ScimProblem("Compare ids with eq or ne", scim_type="invalidFilter")
            row_id = _row_id(str(value))
            matched = column.expression == row_id if row_id is not None else false()
            return matched if op == CompareOperator.eq else not_(matched)
        if not isinstance(value, str) or op not in _STRING_OPERATORS:
            raise ScimProblem(
                f"{node.attr_path.attr!r} takes a quoted string", scim_type="invalidFilter"
            )
        expression = column.expression
        if column.kind == "text":
            expression, value = func.lower(expression), value.lower()
        elif column.kind == "lower":  # stored lower-cased already
            value = value.lower()
        if column.kind == "lower" and op == CompareOperator.eq and expression is _USER_NAME:
            # The lookup Entra ID and Okta make for every user they sync: both unique
            # indexes, instead of a scan over coalesce().
            other, provisioned = aliased(Employee), aliased(ScimUser)
            by_user_name = select(provisioned.employee_id).where(provisioned.user_name == value)
            by_email = select(other.id).where(
                other.email == value,
                ~select(provisioned.employee_id)
                .where(provisioned.employee_id == other.id)
                .exists(),
            )
            return Employee.id.in_(by_user_name.union(by_email))
        like = _escape_like(value)
        conditions: dict[CompareOperator, Any] = {
            CompareOperator.eq: lambda: expression == value,
            CompareOperator.ne: lambda: or_(expression != value, expression.is_(None)),
            CompareOperator.co: lambda: expression.like(f"%{like}%", escape="\\"),
            CompareOperator.sw: lambda: expression.like(f"{like}%", escape="\\"),
            CompareOperator.ew: lambda: expression.like(f"%{like}", escape="\\"),
            CompareOperator.gt: lambda: expression > value,
            CompareOperator.ge: lambda: expression >= value,
            CompareOperator.lt: lambda: expression < value,
            CompareOperator.le: lambda: expression <= value,
        }
        result: ColumnElement[bool] = conditions[op]()
        return result

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        column = self._column(node.attr_path, comparison=False)
        if column.kind == "bool":
            return true()
        return and_(column.expression.is_not(None), column.expression != "")

    def visit_not(self, node: Not) -> ColumnElement[bool]:
        return not_(self.visit(node.expr))

    def visit_logical_expr(self, node: LogicalExpr) -> ColumnElement[bool]:
        terms = [self.visit(term) for term in node.terms]
        return and_(*terms) if node.op == LogicalOperator.and_ else or_(*terms)

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        if self.within is not None or node.attr_path.attr.lower() != "emails":
            raise ScimProblem(
                "Only emails[...] can be filtered by value", scim_type="invalidFilter"
            )
        inner = _SqlFilter(self.filter, within="emails")
        return inner.visit(node.val_filter)
