"""Retention periods and erasure of a person's data (above every domain)."""
