"""Uploads: how records from HR and the HRIS come in, whichever door they use.

``fields`` holds the field rules, ``rows`` one Pydantic model per kind of record (used
by the JSON API, the CSV/XLSX import and the HR forms), ``parsing`` reads CSV, JSON and
XLSX uploads within limits. No domain imports: the domains import this.
"""
