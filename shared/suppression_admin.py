"""The operator's suppression-list API: read one address, add, reactivate, list by domain."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput, NotFound, Problem, UnsupportedMediaType
from .events import MAX_ADDRESS_LENGTH
from .paging import NOT_OURS, decode_token, encode_token, is_table_token
from .state import parse_iso

if TYPE_CHECKING:
    from .suppressions import SuppressionList

MAX_TEXT = 256


def _address(address: str) -> str:
    address = address.strip()
    if "@" not in address or len(address) > MAX_ADDRESS_LENGTH or any(c.isspace() for c in address):
        raise InvalidInput("Invalid address", [Problem("address", "must be an email address")])
    return address


def state_view(
    address: str, row: dict[str, Any] | None, audit: list[dict[str, Any]]
) -> dict[str, Any]:
    row = row or {}
    expires = parse_iso(row.get("expiresAt"))
    active = bool(row.get("active")) and (expires is None or expires > datetime.now(UTC))
    return {
        "address": row.get("address") or address,
        "status": "suppressed" if active else "active",
        "reason": row.get("reason"),
        "origin": row.get("origin"),
        "firstSeen": row.get("firstSeen"),
        "lastSeen": row.get("lastSeen"),
        "hits": int(row.get("hits", 0)),
        "expiresAt": row.get("expiresAt"),
        "reactivatedAt": row.get("reactivatedAt"),
        "audit": [
            {
                "action": a.get("action"),
                "reason": a.get("reason"),
                "origin": a.get("origin"),
                "at": a.get("at"),
                "recordedAt": a.get("recordedAt"),
                "changedState": a.get("changedState"),
                "detail": json.loads(a["detail"]) if a.get("detail") else None,
            }
            for a in audit
        ],
    }


def _expired(expires_at: Any) -> bool:
    expires = parse_iso(expires_at)
    return expires is not None and expires <= datetime.now(UTC)


def get(suppressions: SuppressionList, address: str) -> dict[str, Any]:
    address = _address(address)
    row = suppressions.get(address)
    if row is None:
        raise NotFound(f"{address!r} has never been on the suppression list")
    return state_view(address, row, suppressions.audit(address))


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


def add(
    suppressions: SuppressionList, address: str, body: bytes, content_type: str | None
) -> dict[str, Any]:
    from .suppressions import Change

    address = _address(address)
    data = operator_body(body, content_type, need_reason=True)
    suppressions.apply(
        address,
        Change(
            active=True,
            reason=f"manual: {data['reason']}",
            origin=f"operator:{data['operator']}",
            at=datetime.now(UTC),
            expires_at=data.get("expiresAt"),
            operator=True,
        ),
    )
    return get(suppressions, address)


def reactivate(
    suppressions: SuppressionList, address: str, body: bytes, content_type: str | None
) -> dict[str, Any]:
    from .suppressions import Change

    address = _address(address)
    if suppressions.get(address) is None:
        raise NotFound(f"{address!r} has never been on the suppression list")
    data = operator_body(body, content_type, need_reason=False)
    suppressions.apply(
        address,
        Change(
            active=False,
            reason=f"reactivated: {data.get('reason') or 'no reason given'}",
            origin=f"operator:{data['operator']}",
            at=datetime.now(UTC),
            operator=True,
        ),
    )
    return get(suppressions, address)


def list_domain(
    suppressions: SuppressionList, domain: str | None, limit: int, continuation: str | None
) -> dict[str, Any]:
    problems = []
    if not domain or "@" in domain or len(domain) > 255:
        problems.append(Problem("domain", "required: the recipient domain to list"))
    token = None
    if continuation:
        count = len(problems)
        token = decode_token(continuation, problems)
        if len(problems) == count and not is_table_token(token):
            problems.append(NOT_OURS)
    if problems:
        raise InvalidInput("Invalid query parameters", problems)
    assert domain is not None
    rows, next_token = suppressions.list_domain(domain, limit, token)
    encoded = encode_token(next_token) if next_token else None
    return {
        "domain": domain.lower(),
        "suppressions": [
            {
                "address": r.get("address"),
                "reason": r.get("reason"),
                "since": r.get("since"),
                "expiresAt": r.get("expiresAt"),
            }
            for r in rows
            if not _expired(r.get("expiresAt"))
        ],
        "continuation": encoded,
    }
