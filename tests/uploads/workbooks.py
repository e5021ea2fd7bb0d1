"""Hostile and odd workbooks, built the way an attacker (or a careless tool) would."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

from openpyxl import Workbook

SHEET = "xl/worksheets/sheet1.xml"


def workbook(rows: Sequence[Sequence[object]]) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    for row in rows:
        ws.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def rewrite_sheet(data: bytes, change: dict[bytes, bytes]) -> bytes:
    """The workbook with its first sheet's XML rewritten (regex -> replacement)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for item in src.infolist():
            part = src.read(item.filename)
            if item.filename == SHEET:
                for pattern, replacement in change.items():
                    part, count = re.subn(pattern, replacement, part)
                    assert count, pattern
            dst.writestr(item, part)
    return out.getvalue()


def wrong_dimension(rows: Sequence[Sequence[object]], claimed: str) -> bytes:
    """A workbook whose <dimension> tag claims ``claimed`` (e.g. A1:D101), whatever it holds."""
    return rewrite_sheet(
        workbook(rows), {rb'<dimension ref="[^"]*" ?/>': f'<dimension ref="{claimed}"/>'.encode()}
    )


def zip_bomb(path: Path, *, unpacked_mib: int) -> Path:
    """A real workbook whose sheet repeats one employee row until it is ``unpacked_mib``
    MiB of XML: about a thousandth of that compressed. Written in a stream, so building
    it costs no memory either. Without a <dimension> tag, as a hand-made bomb would be."""
    header = workbook([["external_id", "email", "full_name"]])
    row = (
        b'<row><c t="inlineStr"><is><t>E1</t></is></c><c t="inlineStr"><is><t>a@x.io</t>'
        b'</is></c><c t="inlineStr"><is><t>Anna</t></is></c></row>'
    )
    block = row * 8192
    with (
        zipfile.ZipFile(io.BytesIO(header)) as src,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for item in src.infolist():
            part = src.read(item.filename)
            if item.filename != SHEET:
                dst.writestr(item, part)
                continue
            head, _, tail = part.partition(b"</sheetData>")
            head = re.sub(rb"<dimension[^>]*/>", b"", head)
            with dst.open(SHEET, "w", force_zip64=True) as sheet:
                sheet.write(head)
                written = 0
                while written < unpacked_mib * 1024 * 1024:
                    sheet.write(block)
                    written += len(block)
                sheet.write(b"</sheetData>" + tail)
    return path
