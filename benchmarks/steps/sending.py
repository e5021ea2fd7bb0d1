"""Step 2: launch the cycle (snapshot, invitations, outbox) and deliver every email."""

from __future__ import annotations

import time
from datetime import date, timedelta
from email.utils import parseaddr
from pathlib import Path

from benchmarks.context import Context, FeatureMissing, check
from benchmarks.infra import driver_connect, links_by_recipient
from benchmarks.references import run_send_reference
from benchmarks.report import at_least_ratio

STEP = "2 launch+send"
APP_SENDER = Path(__file__).resolve().parents[2] / "app" / "mail" / "sender.py"


def smtp_client_of_app() -> str:
    """The SMTP library the app's sender uses, so the reference uses the same one."""
    try:
        source = APP_SENDER.read_text()
    except OSError:
        return "smtplib"
    return "aiosmtplib" if "import aiosmtplib" in source else "smtplib"


def create_cycle(ctx: Context) -> int:
    today = date.today()
    body = {
        "name": f"Bench {ctx.size} {time.strftime('%H%M%S')}",
        "period_start": (today - timedelta(days=90)).isoformat(),
        "period_end": today.isoformat(),
        "opens_at": f"{today.isoformat()}T00:00:00",
        "closes_at": f"{(today + timedelta(days=21)).isoformat()}T00:00:00",
        "scale_min": 1,
        "scale_max": 10,
        "ask_nps": True,
        "ask_comment": True,
        # Every pair of the generated matrix is rated (the DuckDB reference computes from
        # all of them), so the rater-load cap is set above any customer's supplier count.
        "max_suppliers_per_customer": 100,
    }
    with ctx.client() as http:
        created = check(http.post("/api/v1/cycles", json=body), "create cycle").json()
    return int(created["id"])


def outbox_counts(ctx: Context) -> dict[str, int]:
    conn = driver_connect(ctx.database_url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT status, count(*) FROM outbox_message GROUP BY status")
        return {str(status): int(n) for status, n in cur.fetchall()}
    finally:
        conn.close()


def wait_for_mail(ctx: Context, expected: int) -> None:
    """Until every email arrived; fails early when the outbox has nothing left to send."""
    # Generous: a slow sender is a result to report, not a reason to give up.
    deadline = time.monotonic() + 120 + expected * 0.05
    while not ctx.smtp.wait_for(expected, timeout=1.0, watch=[w for w in (ctx.worker,) if w]):
        counts = outbox_counts(ctx)
        if counts.get("undeliverable") or time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(ctx.smtp.messages)} of {expected} emails arrived; outbox: {counts}"
            )


def run(ctx: Context) -> None:
    expected = len(ctx.company.customers)
    client = smtp_client_of_app()
    try:
        ctx.cycle_id = create_cycle(ctx)
        ctx.smtp.clear()
        assert ctx.worker is not None
        with ctx.memory("launch+send"), ctx.client() as http:
            started = time.perf_counter()
            check(http.post(f"/api/v1/cycles/{ctx.cycle_id}/launch"), "launch")
            launched = time.perf_counter() - started
            wait_for_mail(ctx, expected)
            seconds = ctx.smtp.messages[-1].at - started
    except FeatureMissing as exc:
        ctx.missing(STEP, "emails/s", "emails/s", str(exc))
        return
    messages = list(ctx.smtp.messages)
    by_email = {e.email.lower(): e.external_id for e in ctx.company.employees}
    ctx.tokens = {
        by_email[address]: token
        for address, token in links_by_recipient(messages).items()
        if address in by_email
    }
    ctx.say(
        f"launch+send: {expected} emails in {seconds:.2f}s (launch request {launched:.2f}s), "
        f"{len(ctx.tokens)} links read back"
    )

    # The reference resends exactly what arrived, with the same client library.
    ctx.smtp.clear()
    outgoing = []
    for m in messages:
        from email import message_from_bytes

        sender = parseaddr(str(message_from_bytes(m.raw).get("From", "")))[1] or "bench@localhost"
        outgoing.append((sender, m.to, m.raw))
    ref_seconds = run_send_reference(ctx.smtp.host, ctx.smtp.port, outgoing, client, ctx.workdir)
    if len(ctx.smtp.messages) != len(outgoing):
        raise RuntimeError("the reference loop did not deliver every message")
    ctx.smtp.clear()
    at_least_ratio(
        ctx.figure(
            STEP,
            "emails/s",
            "emails/s",
            expected / seconds,
            reference=len(outgoing) / ref_seconds,
            reference_name=f"{client} loop",
            detail={
                "emails": expected,
                "seconds": seconds,
                "launch_request_seconds": launched,
                "reference_seconds": ref_seconds,
            },
        ),
        0.5,
    )
