"""An operator's JSON body (suppress, reactivate, resume): who, why, and maybe until when."""

from __future__ import annotations

import json
import re
from typing import Any

from shared.core.errors import InvalidInput, Problem, UnsupportedMediaType
from shared.core.state import parse_iso

MAX_TEXT = 256
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def operator_body(
    body: bytes, content_type: str | None, need_reason: bool, allow_expiry: bool = True
) -> dict[str, Any]:
    """An operator's JSON body: `operator` (required), `reason`, and maybe `expiresAt`."""
    if not body.strip():
        data: Any = {}
    else:
        if "json" not in (content_type or "").lower():
            raise UnsupportedMediaType("Send application/json")
        try:
            data = json.loads(body)
        except ValueError:
            raise InvalidInput("Request body is not valid JSON") from None
    problems = []
    if not isinstance(data, dict):
        raise InvalidInput("Request body must be a JSON object")
    for name in ("reason", "operator"):
        value = data.get(name)
        if value is None and (name == "operator" or need_reason):
            problems.append(Problem(name, "required"))
        elif value is not None and (not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT):
            problems.append(Problem(name, f"a string of 1 to {MAX_TEXT} characters"))
        elif isinstance(value, str) and not value.isascii() and _LONE_SURROGATE.search(value):
            # "\ud800" is valid JSON but not text: stored, it broke every later answer about
            # the address (found by tests/test_fuzz.py).
            problems.append(Problem(name, "contains an unpaired UTF-16 surrogate escape"))
    expires = data.get("expiresAt")
    if expires is not None and allow_expiry:
        try:
            parsed = parse_iso(expires) if isinstance(expires, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            problems.append(Problem("expiresAt", "an ISO 8601 time with an offset"))
        else:
            data["expiresAt"] = parsed
    unknown = set(data) - {"reason", "operator", *(["expiresAt"] if allow_expiry else [])}
    problems += [Problem(name, "unknown field") for name in sorted(unknown)]
    if problems:
        raise InvalidInput("The request is invalid", problems)
    return dict(data)
