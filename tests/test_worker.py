"""The worker runs each scheduled job at its own interval."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_engine
from app.scheduling import every, interval_of
from app.worker import Job, default_jobs, run_worker


def test_jobs_run_at_their_own_intervals(settings: Settings) -> None:
    runs: dict[str, int] = {"often": 0, "rarely": 0}
    stop = threading.Event()

    def often(_s: Settings, _e: Engine, _f: sessionmaker[Session]) -> None:
        runs["often"] += 1
        if runs["often"] >= 5:
            stop.set()

    def rarely(_s: Settings, _e: Engine, _f: sessionmaker[Session]) -> None:
        runs["rarely"] += 1

    def broken(_s: Settings, _e: Engine, _f: sessionmaker[Session]) -> None:
        raise RuntimeError("a failing job never stops the others")

    quick = settings.model_copy(update={"worker_poll_seconds": 60.0})
    jobs = [Job("broken", broken, 0.01), Job("often", often, 0.01), Job("rarely", rarely, 60)]
    engine = make_engine("sqlite://")  # the jobs here touch no database
    run_worker(quick, engine, stop=stop, jobs=jobs)
    assert runs == {"often": 5, "rarely": 1}


def test_the_registry_declares_intervals_with_a_default() -> None:
    jobs = {job.name: job for job in default_jobs()}
    assert jobs["run close jobs"].every == 1.0
    assert jobs["send reminders"].every == 60.0
    assert jobs["deliver mail"].every is None  # every pass (WORKER_POLL_SECONDS)

    @every(5)
    def marked(_s: Settings, _e: Engine, _f: sessionmaker[Session]) -> None: ...

    assert interval_of(marked) == 5.0
    with pytest.raises(ValueError):
        every(0)
