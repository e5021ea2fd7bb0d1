"""How often a scheduled job runs: ``@every(seconds)`` on the job function.

A job registered in ``lifecycle.scheduled_jobs()`` without it runs on every worker pass
(``WORKER_POLL_SECONDS``, 2 s by default); with it, at its own interval. Kept apart from
``app.worker`` so that any module can mark its jobs without importing the runner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])
_ATTRIBUTE = "every_seconds"
_WOKEN = "woken_by_queued_work"


def every(seconds: float, *, woken: bool = False) -> Callable[[F], F]:
    """Run the decorated job at most once per ``seconds``; with ``woken``, also as soon
    as work is queued (:func:`app.db.wakeup.wake_worker`)."""
    if seconds <= 0:
        raise ValueError("a job's interval must be positive")

    def mark(job: F) -> F:
        setattr(job, _ATTRIBUTE, float(seconds))
        setattr(job, _WOKEN, woken)
        return job

    return mark


def interval_of(job: Callable[..., object]) -> float | None:
    """The job's own interval, or None (every pass)."""
    value = getattr(job, _ATTRIBUTE, None)
    return float(value) if value is not None else None


def woken_by_queued_work(job: Callable[..., object]) -> bool:
    """Whether queued work makes the job run at once, whatever its interval."""
    return bool(getattr(job, _WOKEN, False))
