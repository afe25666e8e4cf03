"""The suppression list in Table Storage: one state row per address plus an audit trail; the
rules that decide each change are in `core.suppression`.

Table `<p>Suppressions`, PartitionKey = address key (lower-cased, key-safe):
- RowKey `state`: active, reason, origin, firstSeen, lastSeen, hits, expiresAt, and the time of
  the last operator reactivation (`reactivatedAt`), so a stale report older than the
  reactivation cannot suppress the address again.
- RowKey `streak`: the address's recent soft bounces.
- RowKey `a|<newest-first time>|<id>`: one audit row per change (who, why, from what event).
Table `<p>SuppressionsByDomain`: PartitionKey = recipient domain, one row per address.
An erased address (`DELETE /api/recipients/{address}`) that was suppressed stays suppressed as a
tombstone: PartitionKey `~<keyed hash>`, RowKey `state`, no address in it (`core.privacy`).
Checking a send's recipients is two point reads per recipient (state row and tombstone), all at
once: one more request each, no added round trip.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode

from shared.core import keys, privacy
from shared.core.addresses import canonical, canonical_domain
from shared.core.errors import Transient
from shared.core.state import iso
from shared.core.suppression import (
    STATE_ROW,
    STREAK_ROW,
    Change,
    Suppression,
    as_suppression,
    decide,
    domain_listing_row,
    effective,
    is_active,
    merge_streak,
)
from shared.edge.tables import (
    FANOUT,
    MAX_CONFLICT_RETRIES,
    backoff,
    delete_entities,
    etag_of,
    put_entity,
    read_entity,
    storage_errors,
    write_op,
)

# Tombstone reads run here, beside the state row read of the same address, so `get` costs one
# round trip. A pool of its own: `get` runs on FANOUT tasks (active_for), and a FANOUT task must
# never wait on another FANOUT task; tasks here wait on nothing, so no wait can deadlock.
TOMBSTONE_READS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="tombstone-io")


class SuppressionList:
    def __init__(
        self, service: TableServiceClient, prefix: str = "Email", hash_key: bytes | None = None
    ) -> None:
        self.table = service.get_table_client(f"{prefix}Suppressions")
        self.by_domain = service.get_table_client(f"{prefix}SuppressionsByDomain")
        self.hash_key = hash_key  # ADDRESS_HASH_KEY: tombstones are looked up by keyed hash

    def create_table(self) -> None:
        for table in (self.table, self.by_domain):
            with storage_errors(), suppress(ResourceExistsError):
                table.create_table()

    def list_domain(
        self, domain: str, limit: int, continuation: Any | None
    ) -> tuple[list[dict[str, Any]], Any | None]:
        pk = keys.encode(canonical_domain(domain)).replace("'", "''")
        with storage_errors():
            pages = self.by_domain.query_entities(
                f"PartitionKey eq '{pk}' and active eq true", results_per_page=limit
            ).by_page(continuation_token=continuation)
            page = [dict(e) for e in next(pages, [])]
            return page, pages.continuation_token  # type: ignore[attr-defined]

    def list_all(
        self, limit: int, continuation: Any | None
    ) -> tuple[list[dict[str, Any]], Any | None]:
        """One page of every active suppression, domain by domain (a filtered scan of the
        by-domain table; the service may answer a short or empty page with a continuation)."""
        with storage_errors():
            pages = self.by_domain.query_entities("active eq true", results_per_page=limit).by_page(
                continuation_token=continuation
            )
            page = [dict(e) for e in next(pages, [])]
            return page, pages.continuation_token  # type: ignore[attr-defined]

    def _state(self, address: str) -> dict[str, Any] | None:
        entity = read_entity(self.table, keys.address_key(address), STATE_ROW)
        return None if entity is None else {**entity, "_etag": etag_of(entity)}

    def _tombstone_key(self, address: str) -> str | None:
        if self.hash_key is None:
            return None
        return privacy.erased_key(privacy.erasure_hash(address, self.hash_key))

    def tombstone(self, address: str) -> dict[str, Any] | None:
        pk = self._tombstone_key(address)
        entity = None if pk is None else read_entity(self.table, pk, STATE_ROW)
        return None if entity is None else dict(entity)

    def get(self, address: str) -> dict[str, Any] | None:
        """The row that decides for `address`: its state row, or its erasure tombstone. The
        two are read at once (the tombstone on TOMBSTONE_READS): one round trip."""
        tomb = None if self.hash_key is None else TOMBSTONE_READS.submit(self.tombstone, address)
        try:
            state = self._state(address)
        finally:
            if tomb is not None:
                wait([tomb])
        row = effective(state, None if tomb is None else tomb.result(), datetime.now(UTC))
        return None if row is None else dict(row)

    def active_for(
        self, addresses: Iterable[str], pool: Executor | None = None
    ) -> dict[str, Suppression]:
        """The currently suppressed ones among `addresses`, keyed by lower-cased address.

        Several addresses are read in parallel on `pool` (default: the shared FANOUT; never
        call this from one of its own tasks); one is read inline.
        """
        unique = sorted({canonical(a) for a in addresses})
        now = datetime.now(UTC)
        if len(unique) <= 1:
            rows = [self.get(a) for a in unique]
        else:
            rows = list((pool or FANOUT).map(self.get, unique))
        return {
            address: as_suppression(address, row)
            for address, row in zip(unique, rows, strict=True)
            if row is not None and is_active(row, now)
        }

    def apply(self, address: str, change: Change) -> tuple[bool, dict[str, Any] | None]:
        """Apply a change under ETag concurrency; returns (state changed, new state row)."""
        # Automatic changes are keyed on their event (a redelivery hits 409: already applied);
        # operator changes are always new.
        unique = keys.encode(change.origin) if not change.operator else uuid.uuid4().hex
        for attempt in range(MAX_CONFLICT_RETRIES):
            current = self._state(address)
            decision = decide(current, address, change, datetime.now(UTC), unique)
            if decision is None:
                return False, current
            ops: list[Any] = [
                ("create", decision.audit),
                write_op(decision.row, current.get("_etag") if current else None),
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
            with storage_errors():
                self.by_domain.upsert_entity(
                    domain_listing_row(decision.row), mode=UpdateMode.REPLACE
                )
            return decision.changed, decision.row
        raise Transient("suppression row kept changing under us")

    def note_soft_bounce(
        self, address: str, event_id: str, at: datetime, window: timedelta, keep: int
    ) -> list[tuple[str, str]]:
        """Add a soft bounce to the address's streak (see `core.suppression.merge_streak`);
        returns the streak's (time, event id)s. A redelivered report writes nothing."""
        pk = keys.address_key(address)
        for attempt in range(MAX_CONFLICT_RETRIES):
            row = read_entity(self.table, pk, STREAK_ROW)
            stored = [(str(a), str(b)) for a, b in json.loads((row or {}).get("events", "[]"))]
            events = merge_streak(stored, event_id, at, window, keep)
            if events is None:
                return stored
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

    # --- erasure --------------------------------------------------------------------------

    def erase(self, address: str, forms: list[str], now: datetime) -> tuple[int, bool]:
        """Remove every row naming the address (state, streak, audit trail, domain listing);
        when it is suppressed, keep that as a tombstone under its keyed hash, written first, so
        no moment exists in which the address is neither. Returns (rows deleted, tombstone)."""
        pk = self._tombstone_key(address)
        if pk is None:
            raise RuntimeError("erasure needs ADDRESS_HASH_KEY (SuppressionList(hash_key=...))")
        state, tomb = self._state(address), self.tombstone(address)
        deciding = effective(state, tomb, now)
        keep = deciding is not None and is_active(deciding, now)
        if keep and deciding is not tomb:
            assert deciding is not None
            kept = {
                "PartitionKey": pk,
                "RowKey": STATE_ROW,
                "active": True,
                "reason": privacy.redact(deciding.get("reason"), forms),
                "origin": privacy.redact(deciding.get("origin"), forms),
                "firstSeen": deciding.get("firstSeen"),
                "lastSeen": deciding.get("lastSeen"),
                "hits": deciding.get("hits"),
                "expiresAt": deciding.get("expiresAt"),
                "erasedAt": iso(now),
            }
            with storage_errors():
                self.table.upsert_entity(
                    {k: v for k, v in kept.items() if v is not None}, mode=UpdateMode.REPLACE
                )
        elif not keep and tomb is not None:  # re-enabled by an operator since: no tombstone
            delete_entities(self.table, [(pk, STATE_ROW)])
        own = keys.address_key(address)
        with storage_errors():
            rows = [
                (own, str(r["RowKey"]))
                for r in self.table.query_entities(
                    f"PartitionKey eq '{own.replace(chr(39), chr(39) * 2)}'", select=["RowKey"]
                )
            ]
        deleted = delete_entities(self.table, rows)
        domain = keys.encode(canonical_domain(canonical(address).rpartition("@")[2]))
        if read_entity(self.by_domain, domain, own) is not None:
            deleted += delete_entities(self.by_domain, [(domain, own)])
        return deleted, keep
