"""Optional sampling profiles of the server and worker during chosen steps (py-spy).

``BENCH_PROFILE=submit,close`` records ``profile-<step>-<process>.txt`` (collapsed
stacks, all threads, idle excluded) into ``benchmarks/results/profiles/`` and prints
the functions of the app with the most samples, self and inclusive. py-spy is not a
project dependency: ``pip install py-spy`` (or set ``PY_SPY`` to its path).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.report import RESULTS_DIR

PROFILE_DIR = RESULTS_DIR / "profiles"


def wanted(step: str) -> bool:
    names = {s.strip() for s in os.environ.get("BENCH_PROFILE", "").split(",") if s.strip()}
    return step in names or "all" in names


def _py_spy() -> str | None:
    return os.environ.get("PY_SPY") or shutil.which("py-spy")


@contextmanager
def recording(step: str, label: str, pids: dict[str, int]) -> Iterator[list[Path]]:
    """Record each process (with its children) while the block runs."""
    binary = _py_spy()
    outputs: list[Path] = []
    if not wanted(step) or binary is None:
        yield outputs
        return
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, pid in pids.items():
        out = PROFILE_DIR / f"profile-{label}-{step}-{name}.txt"
        outputs.append(out)
        procs.append(
            subprocess.Popen(
                [
                    *(binary, "record", "--pid", str(pid), "--subprocesses", "--function"),
                    *("--format", "raw", "--rate", "200", "--output", str(out), "--nonblocking"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        yield outputs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _is_app(frame: str) -> bool:
    where = frame.rpartition(" (")[2]
    return where.startswith(("app/", "templates/")) or "/app/" in where or ".html:" in where


def summarize(path: Path, top: int = 15) -> str:
    """The app's hottest functions in a collapsed-stack file: self and inclusive share."""
    if not path.exists():
        return f"{path.name}: no profile written"
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if frames:
            self_time[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames if _is_app(f)}:
            inclusive[frame] += count
    if not total:
        return f"{path.name}: empty profile"
    lines = [f"{path.name}: {total} samples"]
    lines.append("  inclusive (app frames):")
    lines += [f"    {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    lines.append("  self (any frame):")
    lines += [f"    {n / total:6.1%}  {f}" for f, n in self_time.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # py-spy frames look like "function (path/to/file.py:123)"; keep the path short.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("/site-packages/", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"
