"""The suppression list in Table Storage: one state row per address plus an audit trail.

Table `<p>Suppressions`, PartitionKey = address key (lower-cased, key-safe):
- RowKey `state`: active, reason, origin, firstSeen, lastSeen, hits, expiresAt, and the time of
  the last operator reactivation (`reactivatedAt`), so a stale report older than the
  reactivation cannot suppress the address again.
- RowKey `a|<newest-first time>|<id>`: one audit row per change (who, why, from what event).
Checking a send's recipients is one point read per recipient, in parallel.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode

from . import keys
from .errors import Transient
from .state import iso, parse_iso
from .store import (
    FANOUT,
    MAX_CONFLICT_RETRIES,
    backoff,
    etag_of,
    put_entity,
    read_entity,
    storage_errors,
    write_op,
)

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


def _active(row: Mapping[str, Any] | None, now: datetime) -> bool:
    if not row or not row.get("active"):
        return False
    expires = parse_iso(row.get("expiresAt"))
    return expires is None or expires > now


def _outranks(change: Change, row: Mapping[str, Any]) -> bool:
    current = parse_iso(row.get("expiresAt"))
    if current is None:
        return False  # already permanent
    return change.expires_at is None or change.expires_at > current


class SuppressionList:
    def __init__(self, service: TableServiceClient, prefix: str = "Email") -> None:
        self.table = service.get_table_client(f"{prefix}Suppressions")
        self.by_domain = service.get_table_client(f"{prefix}SuppressionsByDomain")

    def create_table(self) -> None:
        for table in (self.table, self.by_domain):
            with storage_errors(), suppress(ResourceExistsError):
                table.create_table()

    def _index(self, state: Mapping[str, Any]) -> None:
        """The by-domain listing row (PartitionKey = domain): kept beside every state change."""
        address = str(state.get("address", ""))
        domain = address.rpartition("@")[2].lower()
        entity = {
            "PartitionKey": keys.encode(domain),
            "RowKey": state["PartitionKey"],
            "address": address,
            "active": bool(state.get("active")),
            "reason": state.get("reason"),
            "since": state.get("firstSeen"),
            "expiresAt": state.get("expiresAt"),
        }
        with storage_errors():
            self.by_domain.upsert_entity(
                {k: v for k, v in entity.items() if v is not None}, mode=UpdateMode.REPLACE
            )

    def list_domain(
        self, domain: str, limit: int, continuation: Any | None
    ) -> tuple[list[dict[str, Any]], Any | None]:
        pk = keys.encode(domain.strip().lower()).replace("'", "''")
        with storage_errors():
            pages = self.by_domain.query_entities(
                f"PartitionKey eq '{pk}' and active eq true", results_per_page=limit
            ).by_page(continuation_token=continuation)
            page = [dict(e) for e in next(pages, [])]
            return page, pages.continuation_token  # type: ignore[attr-defined]

    def get(self, address: str) -> dict[str, Any] | None:
        with storage_errors():
            try:
                entity = self.table.get_entity(keys.address_key(address), STATE_ROW)
            except ResourceNotFoundError:
                return None
        return {**entity, "_etag": entity.metadata["etag"]}

    def active_for(
        self, addresses: Iterable[str], pool: Executor | None = None
    ) -> dict[str, Suppression]:
        """The currently suppressed ones among `addresses`, keyed by lower-cased address.

        Several addresses are read in parallel on `pool` (default: the shared store.FANOUT;
        never call this from one of its own tasks); one is read inline.
        """
        unique = sorted({a.strip().lower() for a in addresses})
        now = datetime.now(UTC)
        if len(unique) <= 1:
            rows = [self.get(a) for a in unique]
        else:
            rows = list((pool or FANOUT).map(self.get, unique))
        out = {}
        for address, row in zip(unique, rows, strict=True):
            if row is not None and _active(row, now):
                out[address] = Suppression(
                    address=str(row.get("address") or address),
                    reason=str(row.get("reason", "")),
                    origin=str(row.get("origin", "")),
                    since=str(row.get("firstSeen", "")),
                    expires_at=row.get("expiresAt"),
                )
        return out

    def apply(self, address: str, change: Change) -> tuple[bool, dict[str, Any] | None]:
        """Apply a change under ETag concurrency; returns (state changed, new state row).

        Automatic changes (from reports) are ignored when older than the last operator
        reactivation: a late duplicate of the bounce must not undo the operator's decision.
        """
        pk = keys.address_key(address)
        for attempt in range(MAX_CONFLICT_RETRIES):
            current = self.get(address)
            now = datetime.now(UTC)
            reactivated = parse_iso((current or {}).get("reactivatedAt"))
            if not change.operator and reactivated is not None and change.at <= reactivated:
                return False, current
            was_active = _active(current, now)
            upgraded = False
            row: dict[str, Any] = dict(current or {})
            row.update(PartitionKey=pk, RowKey=STATE_ROW, address=row.get("address") or address)
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
                    # a hard bounce (permanent) or a longer temporary suppression replaces a
                    # temporary one: the address stays suppressed, for the stronger reason
                    upgraded = True
                    row.update(
                        reason=change.reason,
                        origin=change.origin,
                        expiresAt=iso(change.expires_at) if change.expires_at else None,
                    )
            else:
                if not was_active and current is not None and not change.operator:
                    return False, current
                row.update(active=False, reason=change.reason, origin=change.origin)
                row["expiresAt"] = None
                if change.operator:
                    row["reactivatedAt"] = iso(change.at)
            # Automatic changes are keyed on their event (a redelivery hits 409: already applied);
            # operator changes are always new.
            unique = keys.encode(change.origin) if not change.operator else uuid.uuid4().hex
            audit = {
                "PartitionKey": pk,
                "RowKey": f"a|{keys.newest_first(int(change.at.timestamp() * 1000), unique)}",
                "action": "suppress" if change.active else "reactivate",
                "reason": change.reason,
                "origin": change.origin,
                "at": iso(change.at),
                "recordedAt": iso(now),
                "changedState": was_active != change.active or upgraded,
                "detail": json.dumps(dict(change.detail)) if change.detail else None,
            }
            audit = {k: v for k, v in audit.items() if v is not None}
            entity = {k: v for k, v in row.items() if v is not None and k != "_etag"}
            ops: list[Any] = [
                ("create", audit),
                write_op(entity, current.get("_etag") if current else None),
            ]
            try:
                with storage_errors():
                    self.table.submit_transaction(ops)
            except TableTransactionError as exc:
                if exc.status_code == 409 and exc.index == 0 and not change.operator:
                    return False, current  # this event was applied before
                if exc.status_code in (409, 412):
                    backoff(attempt)
                    continue
                raise
            self._index(entity)
            return was_active != change.active or upgraded, entity
        raise Transient("suppression row kept changing under us")

    def note_soft_bounce(
        self, address: str, event_id: str, at: datetime, window: timedelta, keep: int
    ) -> list[tuple[str, str]]:
        """Add a soft bounce to the address's streak; returns the streak's (time, event id)s.

        The streak row keeps the `keep` latest soft bounces within `window` of the newest, in
        time order, each once (a redelivered report is already there: no write).
        """
        pk = keys.address_key(address)
        for attempt in range(MAX_CONFLICT_RETRIES):
            row = read_entity(self.table, pk, STREAK_ROW)
            stored = [(str(a), str(b)) for a, b in json.loads((row or {}).get("events", "[]"))]
            if any(known == event_id for _, known in stored):
                return stored
            merged = sorted({*stored, (iso(at), event_id)})
            newest = datetime.fromisoformat(merged[-1][0])
            events = [e for e in merged if datetime.fromisoformat(e[0]) >= newest - window]
            events = events[-keep:]
            entity = {"PartitionKey": pk, "RowKey": STREAK_ROW, "events": json.dumps(events)}
            if put_entity(self.table, entity, etag_of(row)):
                return events
            backoff(attempt)
        raise Transient("soft-bounce streak row kept changing under us")

    def audit(self, address: str, limit: int = 50) -> list[dict[str, Any]]:
        pk = keys.address_key(address).replace("'", "''")
        with storage_errors():
            rows = self.table.query_entities(
                f"PartitionKey eq '{pk}' and RowKey ge 'a|' and RowKey lt 'a}}'",
                results_per_page=limit,
            )
            return [dict(r) for r, _ in zip(rows, range(limit), strict=False)]
