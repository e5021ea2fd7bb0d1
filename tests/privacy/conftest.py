"""The command-line fixtures of tests/core, for the erase-employee command."""

from tests.core.conftest import cli, migrated, migrated_database_url, migrated_template_url

__all__ = ["cli", "migrated", "migrated_database_url", "migrated_template_url"]
