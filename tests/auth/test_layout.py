"""Every HR page fits the Content-Security-Policy and has a title and a way back."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth.models import Role
from tests.auth.helpers import sign_in
from tests.factories import link, make_competency, make_department, make_employee

PAGES = [
    "/",
    "/org/departments",
    "/org/employees",
    "/org/competencies",
    "/org/competencies/new",
    "/matrix",
    "/matrix/import",
    "/cycles",
    "/cycles/new",
    "/admin/users",
    "/admin/api-keys",
    "/admin/audit",
    "/admin/settings",
    "/logout",
]


@pytest.fixture
def pages(client: TestClient, db: Session) -> dict[str, str]:
    dept = make_department(db)
    a = make_employee(db, department=dept)
    b = make_employee(db, department=dept)
    link(db, supplier=a, customer=b)
    comp = make_competency(db)
    sign_in(client, db, role=Role.admin)
    urls = [
        *PAGES,
        f"/org/competencies/{comp.id}",
        f"/matrix/suppliers/{a.id}?q=Employee",
        f"/matrix/customers/{b.id}",
        f"/org/employees/{a.id}/deactivate",
        f"/matrix/suppliers/{a.id}/customers/{b.id}/remove",
    ]
    out = {}
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200, url
        assert r.headers["cache-control"] == "no-store", url
        out[url] = r.text
    out["/login (logged out)"] = client.get("/nope").text  # the error page
    return out


def test_no_inline_script_or_style(pages: dict[str, str]) -> None:
    for url, html in pages.items():
        assert " style=" not in html, url
        assert "<style" not in html, url
        for tag in re.findall(r"<script[^>]*>", html):
            assert 'src="/static/' in tag, (url, tag)
        assert not re.search(r"\son[a-z]+=", html), f"inline event handler on {url}"


def test_every_page_has_a_title_a_heading_and_a_way_back(pages: dict[str, str]) -> None:
    for url, html in pages.items():
        title = re.search(r"<title>([^<]+)</title>", html)
        assert title and title.group(1).strip() != "· Peer360", url
        assert len(re.findall(r"<h1[\s>]", html)) == 1, url
        if url != "/":
            assert 'aria-label="Breadcrumb"' in html, url


def test_every_input_has_a_label(pages: dict[str, str]) -> None:
    for url, html in pages.items():
        labels = set(re.findall(r'<label for="([^"]+)"', html))
        for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
            if 'type="hidden"' in tag:
                continue
            ident = re.search(r'id="([^"]+)"', tag)
            assert ident and ident.group(1) in labels, (url, tag)
