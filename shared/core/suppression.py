"""Suppression-list rules: what one change does to an address's state row, and the soft-bounce
streak. Pure: `edge.suppressions` reads and writes the rows these functions decide."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.core import keys
from shared.core.addresses import canonical_domain
from shared.core.state import iso, parse_iso

STATE_ROW = "state"
STREAK_ROW = "streak"


@dataclass(frozen=True, slots=True)
class Suppression:
    address: str
    reason: str
    origin: str
    since: str
    expires_at: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """A requested change to one address's suppression state."""

    active: bool
    reason: str
    origin: str  # an event id, or "operator:<name>"
    at: datetime
    detail: Mapping[str, Any] | None = None
    expires_at: datetime | None = None
    operator: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The state row to write, its audit row, and whether the address's state changed."""

    row: dict[str, Any]
    audit: dict[str, Any]
    changed: bool


def is_active(row: Mapping[str, Any] | None, now: datetime) -> bool:
    if not row or not row.get("active"):
        return False
    expires = parse_iso(row.get("expiresAt"))
    return expires is None or expires > now


def effective(
    state: Mapping[str, Any] | None, tombstone: Mapping[str, Any] | None, now: datetime
) -> Mapping[str, Any] | None:
    """The row that decides whether an address is suppressed: its state row, unless the
    address was erased while suppressed (its keyed-hash tombstone) and nothing since then
    re-enabled it. Only an operator reactivating the address after the erasure does: a
    temporary suppression that came and expired after it does not end the tombstone's."""
    if tombstone is None or (state is not None and is_active(state, now)):
        return state
    reactivated = parse_iso((state or {}).get("reactivatedAt"))
    erased = parse_iso(tombstone.get("erasedAt"))
    if reactivated is not None and erased is not None and reactivated > erased:
        return state
    return tombstone if is_active(tombstone, now) else state


def as_suppression(address: str, row: Mapping[str, Any]) -> Suppression:
    return Suppression(
        address=str(row.get("address") or address),
        reason=str(row.get("reason", "")),
        origin=str(row.get("origin", "")),
        since=str(row.get("firstSeen", "")),
        expires_at=row.get("expiresAt"),
    )


def _outranks(change: Change, row: Mapping[str, Any]) -> bool:
    current = parse_iso(row.get("expiresAt"))
    if current is None:
        return False  # already permanent
    return change.expires_at is None or change.expires_at > current


def decide(
    current: Mapping[str, Any] | None, address: str, change: Change, now: datetime, unique: str
) -> Decision | None:
    """What `change` does to the state row `current` (None when it does nothing).

    Precedence: automatic changes (from reports) older than the last operator reactivation are
    ignored, so a late duplicate of a bounce cannot undo the operator's decision; a permanent or
    longer suppression replaces a shorter temporary one; an automatic reactivation of an
    address that is not suppressed changes nothing. `unique` keys the audit row (an event id
    for automatic changes, so a redelivery collides with the first audit row).
    """
    reactivated = parse_iso((current or {}).get("reactivatedAt"))
    if not change.operator and reactivated is not None and change.at <= reactivated:
        return None
    was_active = is_active(current, now)
    upgraded = False
    row: dict[str, Any] = {k: v for k, v in (current or {}).items() if k != "_etag"}
    row.update(
        PartitionKey=keys.address_key(address),
        RowKey=STATE_ROW,
        address=row.get("address") or address,
    )
    if change.active:
        row["hits"] = int(row.get("hits", 0)) + 1
        row["lastSeen"] = iso(max(change.at, parse_iso(row.get("lastSeen")) or change.at))
        if not was_active:
            row.update(
                active=True,
                reason=change.reason,
                origin=change.origin,
                firstSeen=iso(change.at),
                expiresAt=iso(change.expires_at) if change.expires_at else None,
            )
        elif _outranks(change, row):
            # a hard bounce (permanent) or a longer temporary suppression replaces a temporary
            # one: the address stays suppressed, for the stronger reason
            upgraded = True
            row.update(
                reason=change.reason,
                origin=change.origin,
                expiresAt=iso(change.expires_at) if change.expires_at else None,
            )
    else:
        if not was_active and current is not None and not change.operator:
            return None
        row.update(active=False, reason=change.reason, origin=change.origin)
        row["expiresAt"] = None
        if change.operator:
            row["reactivatedAt"] = iso(change.at)
    changed = was_active != change.active or upgraded
    audit = {
        "PartitionKey": row["PartitionKey"],
        "RowKey": f"a|{keys.newest_first(int(change.at.timestamp() * 1000), unique)}",
        "action": "suppress" if change.active else "reactivate",
        "reason": change.reason,
        "origin": change.origin,
        "at": iso(change.at),
        "recordedAt": iso(now),
        "changedState": changed,
        "detail": json.dumps(dict(change.detail)) if change.detail else None,
    }
    return Decision(
        row={k: v for k, v in row.items() if v is not None},
        audit={k: v for k, v in audit.items() if v is not None},
        changed=changed,
    )


def merge_streak(
    stored: list[tuple[str, str]], event_id: str, at: datetime, window: timedelta, keep: int
) -> list[tuple[str, str]] | None:
    """The streak with this soft bounce added: the `keep` latest within `window` of the newest,
    in time order, each once; None when the event is already in it (a redelivery)."""
    if any(known == event_id for _, known in stored):
        return None
    merged = sorted({*stored, (iso(at), event_id)})
    newest = datetime.fromisoformat(merged[-1][0])
    events = [e for e in merged if datetime.fromisoformat(e[0]) >= newest - window]
    return events[-keep:]


def domain_listing_row(state: Mapping[str, Any]) -> dict[str, Any]:
    """The by-domain listing row (PartitionKey = domain) kept beside every state change."""
    address = str(state.get("address", ""))
    domain = canonical_domain(address.rpartition("@")[2])
    entity = {
        "PartitionKey": keys.encode(domain),
        "RowKey": state["PartitionKey"],
        "address": address,
        "active": bool(state.get("active")),
        "reason": state.get("reason"),
        "since": state.get("firstSeen"),
        "expiresAt": state.get("expiresAt"),
    }
    return {k: v for k, v in entity.items() if v is not None}
