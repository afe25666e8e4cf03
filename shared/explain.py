"""Explain ACS delivery-report status messages from the command line, one JSON object per line.

    python -m shared.explain < reports.jsonl
    python -m shared.explain --status Bounced 550 5.1.1 User unknown

Each stdin line is `{"status": ..., "statusMessage": ...}` (status optional); an Event Grid
EmailDeliveryReportReceived event, or its `data`, is accepted too. A line that cannot be read
yields `{"error": ..., "line": n}` in its place; the run goes on and exits 1 at the end.
Blank lines are skipped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

from shared.core.classification import classify

_USAGE = "usage: python -m shared.explain [--status STATUS] [STATUS MESSAGE ...] < lines.jsonl"


def _fields(obj: object) -> tuple[str | None, str | None]:
    """(status, statusMessage) from a report line, an Event Grid event, or its data."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    data = obj.get("data", obj)
    if not isinstance(data, dict):
        raise ValueError("'data' must be an object")
    details = data.get("deliveryStatusDetails")
    message = details.get("statusMessage") if isinstance(details, dict) else None
    message = data.get("statusMessage", message)
    status = data.get("status")
    if status is not None and not isinstance(status, str):
        raise ValueError("'status' must be a string or null")
    if message is not None and not isinstance(message, str):
        raise ValueError("'statusMessage' must be a string or null")
    return status, message


def explain_lines(lines: Iterable[str], out: TextIO) -> int:
    """Write one JSON object per non-blank input line; returns how many lines were bad."""
    errors = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            status, message = _fields(json.loads(line))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            errors += 1
            result: dict[str, object] = {"error": str(exc), "line": number}
        else:
            result = classify(status, message).to_json()
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0
    status: str | None = None
    if args and args[0] == "--status":
        if len(args) < 2:
            print(_USAGE, file=sys.stderr)
            return 2
        status, args = args[1], args[2:]
    elif args and args[0].startswith("--status="):
        status, args = args[0].partition("=")[2], args[1:]
    if args or status is not None:
        result = classify(status, " ".join(args)).to_json()
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        return 0
    return 1 if explain_lines(sys.stdin, sys.stdout) else 0


if __name__ == "__main__":
    raise SystemExit(main())
