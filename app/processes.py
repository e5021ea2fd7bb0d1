"""Processes at a lower CPU priority, for work nobody is waiting for.

The worker draws a closed cycle's department charts ahead (thousands at 50,000
employees) so that HR reads them from disk. Drawn in the worker's own loop they took
one core for ten minutes and queued nothing else only because each pass stopped after
a few seconds; drawn here they use every idle core and yield it to the web server's
requests (``nice``), and the worker's loop goes on with mail and closes meanwhile.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor

# Added to the nice value: the kernel gives such a process CPU only after the others.
LOWER_PRIORITY = 10

_pools: dict[int, ProcessPoolExecutor] = {}
_lock = threading.Lock()


def _lower_priority() -> None:
    os.nice(LOWER_PRIORITY)


def low_priority_pool(processes: int) -> ProcessPoolExecutor:
    """This process's pool of ``processes`` low-priority processes, started once.

    Spawned, not forked: the worker holds database connections and threads that a
    forked child must not share.
    """
    with _lock:
        pool = _pools.get(processes)
        if pool is None:
            pool = ProcessPoolExecutor(
                max_workers=processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority,
            )
            _pools[processes] = pool
        return pool


def shut_down() -> None:
    """Stop every pool; work already running is waited for, queued work is dropped."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)
