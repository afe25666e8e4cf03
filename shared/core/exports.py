"""Rows → CSV for the export routes, safe to open in a spreadsheet.

CSV injection (OWASP "CSV Injection"): a cell that starts with `=`, `+`, `-` or `@` (or a tab
or carriage return, which some spreadsheets skip before reading one of those) is a formula to
Excel and LibreOffice; bounce texts and addresses come from outside, so such a cell is prefixed
with `'`, which the spreadsheet shows as text.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, Mapping):
        text = ";".join(f"{k}={v}" for k, v in value.items())
    else:
        text = str(value)
    text = _LONE_SURROGATE.sub("\ufffd", text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    """RFC 4180 CSV (CRLF, quoted where needed) in UTF-8 with a BOM, which Excel needs to read
    non-ASCII text (IDN addresses, localized bounce texts) as UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(name)) for name in columns])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def wants_csv(accept: str | None) -> bool:
    """True when the Accept header prefers text/csv to JSON (no q-value juggling: a client
    asking for CSV names it)."""
    kinds = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    return "text/csv" in kinds and kinds.index("text/csv") < _first_json(kinds)


def _first_json(kinds: list[str]) -> int:
    found = [i for i, k in enumerate(kinds) if k in ("application/json", "application/*")]
    return found[0] if found else len(kinds)
