"""The command-line fixtures of tests/core, for the erase-employee command."""

from tests.core.conftest import cli, migrated

__all__ = ["cli", "migrated"]
