"""An operator's JSON body (suppress, reactivate, resume): who, why, and maybe until when."""

from __future__ import annotations

import json
from typing import Any

from shared.core.errors import InvalidInput, Problem, UnsupportedMediaType
from shared.core.state import parse_iso

MAX_TEXT = 256


def operator_body(
    body: bytes,
    content_type: str | None,
    need_reason: bool,
    allow_expiry: bool = True,
    need_operator: bool = True,
) -> dict[str, Any]:
    """An operator's JSON body: `operator` (required unless the caller is signed in: see
    `signed_in_operator`), `reason`, and maybe `expiresAt`."""
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
        if value is None and (need_operator if name == "operator" else need_reason):
            problems.append(Problem(name, "required"))
        elif value is not None and (
            # printable: no control characters, no lone surrogate (a JSON "\ud800" escape)
            # that Table Storage would refuse later
            not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT or not value.isprintable()
        ):
            problems.append(Problem(name, f"a string of 1 to {MAX_TEXT} printable characters"))
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


def signed_in_operator(principal: str | None) -> str | None:
    """The signed-in user's name from `X-MS-CLIENT-PRINCIPAL-NAME`, or None when there is none.

    App Service Authentication sets this header on every request it lets through and drops any
    copy the client sent, so when it is on, the name is the one the identity provider vouched
    for. (With it off, a caller holding the function key could send any name here, just as it
    can type any `operator` in the body.)"""
    if principal is None or not principal.strip():
        return None
    name = principal.strip()
    if len(name) > MAX_TEXT or not name.isprintable():
        raise InvalidInput(
            "Invalid signed-in principal",
            [Problem("X-MS-CLIENT-PRINCIPAL-NAME", f"1 to {MAX_TEXT} printable characters")],
        )
    return name
