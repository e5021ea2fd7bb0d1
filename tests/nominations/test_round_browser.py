"""A whole confirmation round in headless Chromium, through the links emailed over SMTP."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.auth.models import Role
from app.config import Settings
from app.cycles.models import Cycle, CyclePair, CycleState
from app.mail import sender
from tests.auth.helpers import PASSWORD, fast_user
from tests.conftest import LiveServer, SmtpServer, screenshot
from tests.cycles.helpers import make_cycle
from tests.factories import link, make_competency, make_department, make_employee
from tests.mail.test_sender import smtp_settings, text_and_html

pytestmark = pytest.mark.browser


def test_a_whole_round_through_emailed_links(
    page: Any,
    live_server: LiveServer,
    committed_db: sessionmaker[Session],
    smtp_server: SmtpServer,
    settings: Settings,
) -> None:
    with committed_db() as session:
        support = make_department(session, name="Customer Support")
        finance = make_department(session, name="Finance")
        mona = make_employee(session, department=support, full_name="Mona Lead")
        sam = make_employee(session, department=support, full_name="Sam Support", manager=mona)
        tia = make_employee(session, department=support, full_name="Tia Tickets")
        felix, gina, hugo = (
            make_employee(session, department=finance, full_name=name)
            for name in ("Felix Ledger", "Gina Budget", "Hugo Audit")
        )
        make_competency(session, name="Responsiveness")
        for customer in (felix, hugo):
            link(session, supplier=sam, customer=customer)
        link(session, supplier=tia, customer=felix)
        fast_user(session, role=Role.hr, email="hr@example.com")
        cycle_id = make_cycle(session, name="2031-Q1").id
        ids = {name: e.id for name, e in (("sam", sam), ("gina", gina), ("hugo", hugo))}
        sam_email, mona_email = sam.email, mona.email
        session.commit()
    base = live_server.url

    # HR starts the round from the cycle's page.
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill("hr@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    page.goto(f"{base}/cycles/{cycle_id}")
    page.get_by_role("button", name="Start the confirmation round").click()
    page.wait_for_load_state()
    assert "The confirmation round started" in page.content()
    assert "0 of 2 suppliers confirmed" in page.content()

    # The worker sends the emails through a real SMTP server: two suppliers, one manager.
    stats = sender.deliver_due(committed_db, smtp_settings(settings, smtp_server))
    assert stats.sent == 3
    received = smtp_server.wait_for(3)
    (message,) = [m for m in received if m["To"].endswith(f"<{sam_email}>")]
    assert message["Subject"] == "Who should rate you in 2031-Q1?"
    text, body = text_and_html(message)
    found = re.search(r"/n/([A-Za-z0-9_-]{16,128})", text)
    assert found and found.group(0) in body
    token = found.group(1)
    (team_message,) = [m for m in received if m["To"].endswith(f"<{mona_email}>")]
    assert team_message["Subject"] == "Who should rate your team in 2031-Q1?"
    team_link = re.search(r"/n/([A-Za-z0-9_-]{16,128})", text_and_html(team_message)[0])
    assert team_link

    # Sam opens the link in a fresh browser (no HR session): the token leaves the URL.
    supplier = page.context.browser.new_context()
    sp = supplier.new_page()
    sp.set_default_timeout(10_000)
    sp.goto(f"{base}/n/{token}")
    assert sp.url == f"{base}/nominate" and token not in sp.url
    sp.get_by_role("heading", name="Who should rate you in 2031-Q1?").wait_for()
    assert sp.locator("tbody th", has_text="Felix Ledger").count() == 1

    sp.get_by_label("Name or department").fill("Gina")
    sp.get_by_role("button", name="Search").click()
    sp.get_by_role("button", name="Add Gina Budget").click()
    sp.wait_for_load_state()
    sp.get_by_label("Why remove Hugo Audit?").fill("We no longer work together")
    sp.locator("tr", has_text="Hugo Audit").get_by_role("button", name="Remove").click()
    sp.wait_for_load_state()
    assert "removed: We no longer work together" in sp.content()
    sp.get_by_role("button", name="Confirm my list").click()
    sp.get_by_text("your list is confirmed").wait_for()
    screenshot(sp, "nomination-supplier-list")
    supplier.close()

    # Sam's manager opens her team link and approves his list as he left it.
    manager = page.context.browser.new_context()
    mp = manager.new_page()
    mp.set_default_timeout(10_000)
    mp.goto(f"{base}{team_link.group(0)}")
    assert mp.url == f"{base}/nominate/team"
    assert "added by Sam Support" in mp.locator("section", has_text="Sam Support").inner_text()
    mp.get_by_role("button", name="Approve Sam Support's list").click()
    mp.get_by_text("List approved.").wait_for()
    screenshot(mp, "nomination-manager-team")
    manager.close()

    # HR sees the coverage, then launches: Sam's confirmed list is applied.
    page.goto(f"{base}/cycles/{cycle_id}")
    assert "1 of 2 suppliers confirmed" in page.content()
    screenshot(page, "nomination-hr-coverage")
    page.get_by_role("link", name="Launch…").click()
    assert "Confirmation round: 1 of 2 suppliers confirmed" in page.content()
    assert "Line managers approved 1 of 2 lists; 1 unapproved lists" in page.content()
    page.get_by_role("button", name="Launch and send invitations").click()
    page.wait_for_load_state()
    with committed_db() as session:
        cycle = session.get(Cycle, cycle_id)
        assert cycle is not None and cycle.state == CycleState.open
        customers = set(
            session.scalars(
                select(CyclePair.customer_id).where(
                    CyclePair.cycle_id == cycle_id, CyclePair.supplier_id == ids["sam"]
                )
            )
        )
    assert ids["gina"] in customers and ids["hugo"] not in customers
    # The link died with the launch.
    page.goto(f"{base}/n/{token}")
    page.get_by_role("heading", name="This link does not work").wait_for()
