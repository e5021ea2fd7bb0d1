"""What may reach a log line: request paths without private rating tokens."""

from __future__ import annotations

import re

# Private rating, nomination and results links carry their token in the path; it must never reach
# a log line.
_TOKEN_PATH = re.compile(r"^/(r|n|my-results)/(?!focus$|charts/)[^/]+")


def redact_path(path: str) -> str:
    return _TOKEN_PATH.sub(r"/\1/[redacted]", path)
