"""Stored results of closed cycles (filled in by the reports issue)."""
