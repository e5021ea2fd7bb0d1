"""``python -m benchmarks`` (``make bench``): run, print the table, save the JSON.

Environment: ``BENCH_SIZE`` (5000; ``5000,50000`` runs both and reports growth),
``BENCH_DB`` (``sqlite,postgresql``), ``BENCH_SEED`` (42), ``BENCH_CONCURRENCY`` (32),
``BENCH_HTTP_FORMS`` (5000: customers who submit over HTTP; the rest through the
service), ``BENCH_READ_REQUESTS`` (100 per kind), ``BENCH_READ_CONCURRENCY`` (2),
``BENCH_WEB_WORKERS`` (2 on PostgreSQL, 1 on SQLite), ``BENCH_POSTGRES_URL``,
``BENCH_KEEP=1`` keeps the work directory (server and worker logs) and the databases,
``BENCH_STEPS`` runs only the named steps (e.g. ``import,launch``), ``BENCH_PROFILE``
records py-spy profiles of the named steps (``submit,close`` or ``all``).
"""

from __future__ import annotations

import signal
import sys

from benchmarks.report import machine, save, table
from benchmarks.runner import RunConfig, run


def main() -> int:
    # SIGTERM unwinds like Ctrl+C, so servers stop and scratch databases are dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    config = RunConfig.from_env()
    figures, contexts = run(config)
    print()
    print(table(figures))
    info = machine()
    print(
        f"\nmachine: {info['cpu']}, {info['nproc']} CPUs, {info['memory']} RAM, "
        f"Python {info['python']}"
    )
    path = save(
        figures,
        config.sizes,
        {"config": config.__dict__, "log": [line for ctx in contexts for line in ctx.log]},
    )
    print(f"saved {path}")
    failed = [f for f in figures if f.passed is False]
    missing = [f for f in figures if f.ours is None]
    print(f"{len(figures)} figures: {len(failed)} goals missed, {len(missing)} not measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
