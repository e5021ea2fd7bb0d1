#!/usr/bin/env bash
# Pre-release only: rebuild the single initial migration from the models.
# Once a release has shipped, write new revisions with `alembic revision --autogenerate`.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f migrations/versions/*_0001_initial*.py
DATABASE_URL="sqlite:///$tmp/regen.sqlite3" .venv/bin/alembic revision --autogenerate \
  --rev-id 0001 -m "initial schema" >/dev/null
f=$(ls migrations/versions/*_0001_*.py)
[ "$f" = migrations/versions/20261123_0001_initial_schema.py ] || mv "$f" migrations/versions/20261123_0001_initial_schema.py
.venv/bin/ruff format -q migrations/versions/ >/dev/null 2>&1 || true
.venv/bin/ruff check -q --fix migrations/versions/ >/dev/null 2>&1 || true
rm -rf "$tmp"
echo "wrote migrations/versions/20261123_0001_initial_schema.py"
