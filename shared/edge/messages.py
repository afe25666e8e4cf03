"""Azure Table Storage for message/recipient state: the edge; decisions live in `state.py`.

Tables (names prefixed by TABLE_PREFIX, default "Email"):

- `<p>Messages`   PartitionKey = message id. Rows: `m` (message summary), `r|<addr>` (status per
  recipient, with its delivery events embedded: the timeline *and* the idempotency record),
  `t|<addr>|<event id>` (marker rows: engagement events, delivery events past the embedded cap,
  and rows written before events were embedded), `g|<addr>` (engagement counters). A lookup by
  message id is one single-partition query.
- `<p>RecipientIndex`  PartitionKey = address (lower-cased); RowKey = newest-first time |
  message id. An address's history is one single-partition range query, paged. Partition
  `<address>|g` holds the same per engagement row (earliest engagement): erasure and retention
  find a recipient known only from opens and clicks by it; the history does not list it.
- `<p>Quarantine`  PartitionKey = UTC day; events we could not use, with reason and raw payload.
- `<p>Counters`    PartitionKey = counter family; e.g. unknown event types seen.
- `<p>Expiry`      PartitionKey = `<UTC day first seen>|<hex digit>`, RowKey = message key: the
  retention purge's list of messages by age (`shared/core/privacy.py`), so it never scans
  Messages. Written at accept (beside the queue put) and for an engagement-only recipient; a
  message known from its reports alone is found through the activity row each report writes
  (`app.privacy`), so a report's first sight is two requests, not three.

A delivery report costs two round trips on the common path: a point read of the status row,
then one conditional single-entity write of it (create when absent, replace under its ETag)
that adds the event to the row's `events` list. A duplicate is seen in the row just read and
writes nothing (one round trip); a concurrent writer fails the ETag check (412) or the create
(409) and we re-read and re-decide, a bounded number of times. When this process wrote the row
last (it sent the message, or recorded the previous report), the read is skipped: `RowCache`
keeps the row as written with the ETag the write returned, and the conditional write proves it
current. A row changed elsewhere since fails that write (412) and is read afresh, so the cache
can cost one round trip but never a lost update. When the list is full (see
`state.decide_report`), the event goes to its own marker row in one transaction with the status
row, as every event did before: there a duplicate fails on the marker (409). First sight of a
recipient adds the recipient-index write. (A marker row in the same `$batch` is the textbook
idempotency record, but azure-core spends ~3.5× the CPU on a `$batch` request that it spends
on a single-entity one, and that CPU is most of a report's cost.)
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import (
    TableClient,
    TableEntity,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)

from shared.core import keys, privacy
from shared.core.classification import Classification
from shared.core.errors import Transient
from shared.core.events import DeliveryReport, EngagementReport
from shared.core.state import (
    ARRIVAL_FIELD,
    EngagementPlacement,
    Fact,
    ReportDecision,
    apply_engagement,
    apply_fact,
    day_of,
    decide_report,
    engagement_index_partition,
    engagement_placed_by,
    engagement_placement,
    fact_from_report,
    index_may_be_missing,
    iso,
    parse_iso,
    timeline_entry,
)
from shared.core.status import SendState, Status, claimed_by_another
from shared.edge.tables import (
    FANOUT,
    MAX_CONFLICT_RETRIES,
    backoff,
    clean,
    delete_entities,
    etag_of,
    put_entity,
    query_keys,
    read_entity,
    run_together,
    storage_errors,
    write_entity,
    write_op,
)

PAYLOAD_ROW = "p"
PAYLOAD_CHUNK = 30_000  # characters per property (a Table string property holds 32 K UTF-16 units)
PAYLOAD_INLINE_LIMIT = 420_000  # characters inline (an entity holds 1 MiB); beyond → blob
MAX_QUARANTINED_RAW = 30_000  # characters; a Table string property holds 32 K UTF-16 units
MOVE_PAIRS = 50  # rows re-keyed per transaction: a create and a delete each, the `$batch` 100
# The status rows' RowKey range, `r|…`: "}" sorts right after "|".
STATUS_FROM, STATUS_TO = f"{keys.STATUS_PREFIX}{keys.SEPARATOR}", f"{keys.STATUS_PREFIX}}}"


@dataclass(frozen=True, slots=True)
class SendRows:
    """What the send worker reads of a message, in one request (`MessageStore.send_rows`)."""

    message: Any  # the message row, with its ETag (None: no such message)
    payload: str | None  # the inline payload's text (None: none, or it is in a blob)
    status: list[Any]  # the recipient status rows, with their ETags


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording one event did: `duplicate` = already recorded before (nothing changed)."""

    duplicate: bool
    changed: bool
    row: Mapping[str, Any] | None
    previous: Mapping[str, Any] | None


class RowCache:
    """Status rows this process wrote, each with the ETag its write returned, bounded by an
    approximate size and dropped least recently used first (`capacity_bytes` 0 = off).

    A hit stands in for a point read: a write based on it is conditional on that ETag, so it
    cannot overwrite a change made elsewhere (412 → forget, read, decide again). Rows only grow
    (an event recorded in one stays recorded in it or in a marker row), so an event found in a
    cached row was recorded: a duplicate answered from the cache is one."""

    _OVERHEAD = 64  # bytes per property beyond its text: key, type, dict slot

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self._rows: OrderedDict[tuple[str, str], tuple[str, dict[str, Any], int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, pk: str, rk: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            hit = self._rows.get((pk, rk))
            if hit is None:
                return None
            self._rows.move_to_end((pk, rk))
            return hit[0], hit[1]

    def put(self, pk: str, rk: str, etag: str | None, row: dict[str, Any]) -> None:
        if not self.capacity:
            return
        if not etag:
            self.forget(pk, rk)
            return
        size = sum(len(v) if isinstance(v, str) else 8 for v in row.values())
        size += self._OVERHEAD * len(row)
        with self._lock:
            old = self._rows.pop((pk, rk), None)
            if old is not None:
                self._size -= old[2]
            if size > self.capacity // 8:  # one huge row must not flush the rest
                return
            self._rows[(pk, rk)] = (etag, row, size)
            self._size += size
            while self._size > self.capacity:
                _, (_, _, dropped) = self._rows.popitem(last=False)
                self._size -= dropped

    def forget(self, pk: str, rk: str) -> None:
        with self._lock:
            old = self._rows.pop((pk, rk), None)
            if old is not None:
                self._size -= old[2]

    def __len__(self) -> int:
        return len(self._rows)


def _epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class MessageStore:
    def __init__(
        self, service: TableServiceClient, prefix: str = "Email", cache_bytes: int = 0
    ) -> None:
        self._service = service
        self.cache = RowCache(cache_bytes)
        self.messages: TableClient = service.get_table_client(f"{prefix}Messages")
        self.index: TableClient = service.get_table_client(f"{prefix}RecipientIndex")
        self.quarantine_table: TableClient = service.get_table_client(f"{prefix}Quarantine")
        self.counters: TableClient = service.get_table_client(f"{prefix}Counters")
        self.expiry: TableClient = service.get_table_client(f"{prefix}Expiry")

    def create_tables(self) -> None:
        tables = (self.messages, self.index, self.quarantine_table, self.counters, self.expiry)
        with storage_errors():
            for table in tables:
                with suppress(ResourceExistsError):
                    table.create_table()

    # --- writes -------------------------------------------------------------------------

    def record_delivery(
        self, report: DeliveryReport, classification: Classification, *, ours: bool = True
    ) -> Recorded:
        """`ours` False: the message id is not one we minted (`message_ids.is_ours`), so no
        status row is likely to exist: try the first-sight write without reading first."""
        return self.record_fact(
            report.message_id,
            report.recipient,
            fact_from_report(report, classification),
            marker_event_id=report.envelope.event_id,
            marker=timeline_entry(report),
            first_sight=not ours,
        )

    def record_fact(
        self,
        message_id: str,
        address: str,
        fact: Fact,
        *,
        marker_event_id: str | None = None,
        marker: Mapping[str, Any] | None = None,
        first_sight: bool = False,
    ) -> Recorded:
        """Apply one fact to the recipient's status row. A fact with an event id (a report:
        `marker` is its timeline entry) is recorded once: in the row's event list, or in its
        own marker row when the list is full. `first_sight`: probably no row yet (see
        `_first_sight`)."""
        pk = keys.message_key(message_id)
        addr = keys.address_key(address)
        status_rk = keys.status_row(addr)
        entry = None if marker_event_id is None else {**(marker or {}), "eventId": marker_event_id}
        cached = None if entry is None else self.cache.get(pk, status_rk)
        guessed: str | None = None  # the index entry the first-sight try wrote
        if first_sight and entry is not None and cached is None:
            created, guessed = self._first_sight(pk, addr, fact, entry, address, message_id)
            if created is not None:
                return created
        result = self._record(pk, addr, fact, entry, address, message_id, cached)
        final_rk = (result.row or {}).get("indexRk")
        if guessed is not None and guessed != final_rk:
            # The row existed after all and sorts the message elsewhere: drop the guess. (A
            # crash first leaves an entry the history skips: its row points to another one.)
            with storage_errors(), suppress(ResourceNotFoundError):
                self.index.delete_entity(addr, guessed)
        return result

    def _first_sight(
        self,
        pk: str,
        addr: str,
        fact: Fact,
        entry: Mapping[str, Any],
        address: str,
        message_id: str,
    ) -> tuple[Recorded | None, str | None]:
        """A report of a message we hold no row for: create the status row (no read first)
        and, at the same time, the recipient-index entry it implies: two requests, in
        parallel. A create that fails (409: the row exists) returns (None, the index entry
        written), and the caller takes the general path, then drops the entry if the row
        sorts the message elsewhere. Returns (result, None) when the create succeeded.
        (No retention entry: a message known from its reports is found by retention through
        the activity row each report writes, `app.privacy`.)"""
        decision = decide_report(None, fact, entry, address, message_id)
        if decision.row is None or decision.marker or decision.evicted:
            return None, None  # one event too large for the row: the general path
        entity = clean({**decision.row, "PartitionKey": pk, "RowKey": keys.status_row(addr)})
        entity["updatedAt"] = iso(datetime.now(UTC))
        rk = str(entity["indexRk"])
        etag = run_together(
            [
                (write_entity, (self.messages, entity, None)),
                (self.write_index, (addr, message_id, entity)),
            ]
        )
        if etag is None:
            return None, rk
        self.cache.put(pk, entity["RowKey"], etag, entity)
        return Recorded(duplicate=False, changed=True, row=entity, previous=None), None

    def _record(
        self,
        pk: str,
        addr: str,
        fact: Fact,
        entry: Mapping[str, Any] | None,
        address: str,
        message_id: str,
        cached: tuple[str, dict[str, Any]] | None,
    ) -> Recorded:
        status_rk = keys.status_row(addr)
        for attempt in range(MAX_CONFLICT_RETRIES):
            etag: str | None
            current: Any
            if cached is not None:
                etag, current = cached
            else:
                current = read_entity(self.messages, pk, status_rk)
                etag = etag_of(current)
            if entry is None:
                decision = ReportDecision(False, apply_fact(current, fact, address, message_id))
            else:
                decision = decide_report(current, fact, entry, address, message_id)
            if decision.duplicate:
                return self._duplicate(addr, message_id, current, fact)
            new_row = decision.row
            if new_row is None and not decision.marker:
                return Recorded(duplicate=False, changed=False, row=current, previous=current)
            outcome = self._commit(pk, addr, etag, decision, entry)
            if outcome == "duplicate":
                return self._duplicate(addr, message_id, current, fact)
            if outcome == "conflict":
                self.cache.forget(pk, status_rk)
                if cached is None:  # a racing writer, not merely a stale cache: back off
                    backoff(attempt)
                cached = None
                continue
            old_rk = current.get("indexRk") if current else None
            if new_row is not None and new_row.get("indexRk") != old_rk:
                # A recipient first seen (or moved in its history): its index row. (Retention
                # finds a message first seen in a report through the report's activity row.)
                self.write_index(addr, message_id, new_row)
                if old_rk:  # an earlier fact moved the message in the history: drop the old place
                    with storage_errors():
                        self.index.delete_entity(addr, old_rk)
            return Recorded(
                duplicate=False,
                changed=new_row is not None,
                row=new_row or current,
                previous=current,
            )
        raise Transient(f"status row kept changing under us ({MAX_CONFLICT_RETRIES} attempts)")

    def _commit(
        self,
        pk: str,
        addr: str,
        etag: str | None,
        decision: ReportDecision,
        entry: Mapping[str, Any] | None,
    ) -> str:
        """Write what `decision` says: "ok", "duplicate" (marker exists) or "conflict". The
        common path is one conditional write of the status row; marker rows make it a
        transaction with the row. A written status row is remembered with its new ETag."""
        ops: list[Any] = []
        marker_rk = None
        if decision.marker and entry is not None:
            marker_rk = keys.timeline_row(addr, str(entry["eventId"]))
            arrived = {ARRIVAL_FIELD: iso(datetime.now(UTC))}
            ops.append(("create", {**entry, **arrived, "PartitionKey": pk, "RowKey": marker_rk}))
        for old in decision.evicted:  # pushed out of the row's list by an earlier-sorting event
            rk = keys.timeline_row(addr, str(old["eventId"]))
            evicted = {**old, "PartitionKey": pk, "RowKey": rk}
            ops.append(("upsert", evicted, {"mode": UpdateMode.REPLACE}))
        if decision.row is None:
            outcome, _ = self._submit(ops, pk, marker_rk)
            return outcome
        status_rk = keys.status_row(addr)
        entity = clean({**decision.row, "PartitionKey": pk, "RowKey": status_rk})
        entity["updatedAt"] = iso(datetime.now(UTC))
        if ops:
            ops.append(write_op(entity, etag))
            outcome, results = self._submit(ops, pk, marker_rk)
            new_etag = results[-1].get("etag") if results else None
        else:
            new_etag = write_entity(self.messages, entity, etag)
            outcome = "conflict" if new_etag is None else "ok"
        if outcome == "ok":
            self.cache.put(pk, status_rk, new_etag, entity)
        return outcome

    def _duplicate(self, addr: str, message_id: str, current: Any, fact: Fact) -> Recorded:
        # The row is committed before the index entry: a crash between the two is healed by
        # the redelivery of the event that placed the message, and only that one re-writes.
        if current is not None and index_may_be_missing(current, fact):
            self.write_index(addr, message_id, current)
        return Recorded(duplicate=True, changed=False, row=current, previous=current)

    def record_engagement(self, report: EngagementReport) -> Recorded:
        """The marker row and the engagement row in one transaction. The first engagement of a
        recipient (or an earlier one than seen so far) also writes its engagement-index entry
        and the message's Expiry entry, at the same time as the transaction (see
        `engagement_placement`), so erasure and retention find a recipient that no send or
        delivery report named; a later click or open writes nothing more."""
        addr = keys.address_key(report.recipient) if report.recipient else keys.MESSAGE_LEVEL
        written: set[str] = set()  # index entries written beside a row write that may have lost
        try:
            return self._record_engagement(report, addr, written)
        except Transient:
            # Given up (contention, storage): the redelivery cannot know what this try wrote.
            if written:
                pk, rk = keys.message_key(report.message_id), keys.engagement_row(addr)
                self._drop_engagement_entries(addr, written, read_entity(self.messages, pk, rk))
            raise

    def _record_engagement(
        self, report: EngagementReport, addr: str, written: set[str]
    ) -> Recorded:
        message_id = report.message_id
        pk = keys.message_key(message_id)
        rk = keys.engagement_row(addr)
        marker_rk = keys.timeline_row(addr, report.envelope.event_id)
        marker = {**timeline_entry(report), ARRIVAL_FIELD: iso(datetime.now(UTC))}
        for attempt in range(MAX_CONFLICT_RETRIES):
            current = read_entity(self.messages, pk, rk)
            row = clean({**apply_engagement(current, report), "PartitionKey": pk, "RowKey": rk})
            if report.recipient:
                row["address"] = report.recipient
            ops: list[Any] = [
                ("create", {"PartitionKey": pk, "RowKey": marker_rk, **marker}),
                write_op(row, etag_of(current)),
            ]
            place = engagement_placement(current, row)
            if place.index_rk:
                written.add(place.index_rk)
            # Only a first (or earlier) engagement has side writes, beside the transaction.
            writes = self._engagement_writes(addr, message_id, row, place)
            outcome, _ = run_together([(self._submit, (ops, pk, marker_rk)), *writes])
            if outcome == "duplicate":
                # Read again only when this try wrote an entry: the row the first recording
                # left says which entry is right.
                settled = read_entity(self.messages, pk, rk) if written else current
                if settled is not None and engagement_placed_by(settled, report):
                    # The row is committed before its entries: a crash between them is healed
                    # by the redelivery of the engagement that placed it; only that one writes.
                    heal = EngagementPlacement(settled.get("indexRk"), None, _first_seen(settled))
                    run_together(self._engagement_writes(addr, message_id, settled, heal))
                self._drop_engagement_entries(addr, written, settled)
                return Recorded(duplicate=True, changed=False, row=current, previous=current)
            if outcome == "conflict":
                backoff(attempt)
                continue
            if place.stale_rk:  # an earlier engagement moved the recipient: drop the old place
                written.add(place.stale_rk)
            self._drop_engagement_entries(addr, written, row)
            return Recorded(duplicate=False, changed=True, row=row, previous=current)
        raise Transient(f"engagement row kept changing under us ({MAX_CONFLICT_RETRIES} attempts)")

    def _engagement_writes(
        self, addr: str, message_id: str, row: Mapping[str, Any], place: EngagementPlacement
    ) -> list[tuple[Any, tuple[Any, ...]]]:
        """The engagement-index and Expiry writes `place` names (none, one or both)."""
        calls: list[tuple[Any, tuple[Any, ...]]] = []
        if place.index_rk:  # never for MESSAGE_LEVEL: `apply_engagement` sets none there
            calls.append((self.write_index, (engagement_index_partition(addr), message_id, row)))
        if place.expiry_at:
            calls.append((self.note_expiry, (message_id, place.expiry_at)))
        return calls

    def _drop_engagement_entries(
        self, addr: str, candidates: set[str], row: Mapping[str, Any] | None
    ) -> None:
        """Delete the engagement-index entries among `candidates` that `row` (as stored now)
        does not point to. The earliest engagement only moves earlier, so an entry it has left
        is never right again."""
        keep = (row or {}).get("indexRk")
        partition = engagement_index_partition(addr)
        for rk in sorted(candidates - {keep}):  # one, mostly: a plain DELETE, not a `$batch`
            with storage_errors():
                self.index.delete_entity(partition, rk)  # gone already counts as done

    def quarantine(
        self, raw: str, reason: str, event_id: str | None, event_type: str | None
    ) -> None:
        now = datetime.now(UTC)
        unique = f"{random.getrandbits(32):08x}"  # two bad copies of one event id both kept
        entity = {
            "PartitionKey": now.strftime("%Y-%m-%d"),
            "RowKey": f"{keys.newest_first(_epoch_ms(now), event_id or '-')}|{unique}",
            "reason": reason[:1024],
            "eventId": (event_id or "")[:256] or None,
            "eventType": (event_type or "")[:256] or None,
            "raw": _truncate(raw, MAX_QUARANTINED_RAW),
            "rawLength": len(raw),
            "receivedAt": iso(now),
        }
        with storage_errors():
            self.quarantine_table.create_entity(clean(entity))

    def count(self, family: str, name: str) -> None:
        """Increment a counter row (rare paths only: ETag read-modify-write)."""
        pk, rk = keys.encode(family), keys.encode(name[:256])
        for _ in range(MAX_CONFLICT_RETRIES):
            current = read_entity(self.counters, pk, rk)
            count = int((current or {}).get("count", 0)) + 1
            entity = {"PartitionKey": pk, "RowKey": rk, "count": count, "name": name[:256]}
            if put_entity(self.counters, entity, etag_of(current)):
                return
        raise Transient("counter kept changing under us")

    def write_message(self, message_id: str, summary: Mapping[str, Any]) -> None:
        entity = {"PartitionKey": keys.message_key(message_id), "RowKey": keys.MESSAGE_ROW}
        with storage_errors():
            self.messages.upsert_entity(clean({**summary, **entity}), mode=UpdateMode.MERGE)

    # --- the send pipeline's rows ------------------------------------------------------

    def fits_inline(self, payload: str) -> bool:
        return len(payload) <= PAYLOAD_INLINE_LIMIT

    def accept(
        self,
        message_id: str,
        summary: Mapping[str, Any],
        payload: str | None,
        recipient_rows: list[dict[str, Any]],
    ) -> Any:
        """One transaction: the message row, the payload row (when `payload` is inline) and a
        status row per recipient. Returns None when this call accepted the message, else the
        message row an earlier accept of this id (same Idempotency-Key) wrote: the create of
        the message row is the key's claim."""
        pk = keys.message_key(message_id)
        ops: list[Any] = [
            ("create", clean({**summary, "PartitionKey": pk, "RowKey": keys.MESSAGE_ROW}))
        ]
        if payload is not None:
            ops.append(("create", {"PartitionKey": pk, "RowKey": PAYLOAD_ROW, **_chunks(payload)}))
        ops += _status_upserts(pk, recipient_rows)
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                with storage_errors():
                    self.messages.submit_transaction(ops)
                return None
            except TableTransactionError as exc:
                if not (exc.status_code == 409 and exc.index == 0):
                    raise
            existing = self.message(message_id)
            if existing is not None:
                return existing
            # withdrawn in between (a refused accept under the same key): claim it afresh
        raise Transient("message row kept changing under us")

    def correct_accept(
        self,
        message_id: str,
        summary: Mapping[str, Any],
        payload: str | None,
        recipient_rows: list[dict[str, Any]],
    ) -> None:
        """Correct an accept's transaction before anything was queued (a recipient it took as
        sendable is suppressed): message row fields, the inline payload, those recipients'
        status rows; one transaction."""
        pk = keys.message_key(message_id)
        entity = {**summary, "PartitionKey": pk, "RowKey": keys.MESSAGE_ROW}
        ops: list[Any] = [("upsert", clean(entity), {"mode": UpdateMode.MERGE})]
        if payload is not None:
            chunks = {"PartitionKey": pk, "RowKey": PAYLOAD_ROW, **_chunks(payload)}
            ops.append(("upsert", chunks, {"mode": UpdateMode.REPLACE}))
        corrected = _status_upserts(pk, recipient_rows)
        for _, entity, _ in corrected:
            self.cache.forget(pk, entity["RowKey"])
        ops += corrected
        with storage_errors():
            self.messages.submit_transaction(ops)

    def withdraw_accept(self, message_id: str, addresses: list[str], payload_row: bool) -> None:
        """Delete the rows of an accept nothing was queued for (refused, or it could not check
        the suppression list): one transaction (≤ 52 rows), else row by row with the message
        row last, so a retry under its key never finds a message row without its other rows."""
        pk = keys.message_key(message_id)
        row_keys = [keys.status_row(keys.address_key(a)) for a in addresses]
        row_keys += [PAYLOAD_ROW] if payload_row else []
        for rk in row_keys:
            self.cache.forget(pk, rk)
        delete_entities(self.messages, [(pk, rk) for rk in [*row_keys, keys.MESSAGE_ROW]])

    def expiry_noted(self, message_id: str, first_seen: datetime) -> bool:
        """Whether the message's expiry entry is there: an accept writes it after its queue put
        and its index entries, so a retry under the same Idempotency-Key takes it as "that
        accept got that far", and the worker as "filed"."""
        partition = privacy.expiry_partition(day_of(first_seen), message_id)
        return read_entity(self.expiry, partition, keys.message_key(message_id)) is not None

    def message(self, message_id: str) -> Any:
        return read_entity(self.messages, keys.message_key(message_id), keys.MESSAGE_ROW)

    def claim(self, message_id: str, now: datetime, row: Any = None) -> dict[str, Any] | None:
        """Mark the message `sending` under its ETag; None when someone else owns or ended it.
        `row`: the message row as the caller read it (with its ETag): no read first, and a row
        changed since fails the write (412) and is read afresh. Returns the claimed row."""
        for _ in range(MAX_CONFLICT_RETRIES):
            if row is None:
                row = self.message(message_id)
            if row is None or row.get("sendState") in (SendState.SENT, SendState.FAILED):
                return None
            if claimed_by_another(row, now):
                return None
            claimed = {**row, "sendState": SendState.SENDING.value, "claimedAt": iso(now)}
            try:
                with storage_errors():
                    self.messages.update_entity(
                        claimed,
                        mode=UpdateMode.REPLACE,
                        etag=row.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                return claimed
            except HttpResponseError as exc:
                if exc.status_code != 412:
                    raise
                row = None
        raise Transient("message row kept changing under us")

    def release(self, message_id: str) -> None:
        self.write_message(message_id, {"sendState": SendState.QUEUED.value})

    def payload(self, message_id: str) -> str | None:
        """The inline payload's text (None when there is none)."""
        pk = keys.message_key(message_id)
        entity = read_entity(self.messages, pk, PAYLOAD_ROW)
        return None if entity is None else _joined(entity)

    def send_rows(self, message_id: str) -> SendRows:
        """The message row, the inline payload and the status rows in one single-partition
        range query (`m` to `r|…`: the timeline and engagement rows sort outside it), where
        they were three requests. The ETags come with them: a claim or a finish based on these
        rows fails on a row changed since (412) and reads afresh."""
        pk = keys.message_key(message_id).replace("'", "''")
        query = (
            f"PartitionKey eq '{pk}' and RowKey ge '{keys.MESSAGE_ROW}' and RowKey lt '{STATUS_TO}'"
        )
        message, payload, status = None, None, []
        with storage_errors():
            for entity in self.messages.query_entities(query):
                rk = entity["RowKey"]
                if rk == keys.MESSAGE_ROW:
                    message = entity
                elif rk == PAYLOAD_ROW:
                    payload = _joined(entity)
                elif rk.startswith(STATUS_FROM):
                    status.append(entity)
        return SendRows(message, payload, status)

    def finish(
        self,
        message_id: str,
        state: SendState,
        fact: Fact,
        now: datetime,
        extra: Mapping[str, Any] | None = None,
        message_row: Mapping[str, Any] | None = None,
        status_rows: list[Any] | None = None,
    ) -> Any:
        """End the send: message state, recipient facts, payload row deletion, in one
        transaction. Returns the message row as it was before (`message_row`: as the caller
        holds it, e.g. the row it claimed; read when not given). `status_rows`: as the caller
        read them, with their ETags (a row changed since fails the transaction, and the rows
        are read afresh); read when not given."""
        pk = keys.message_key(message_id)
        msg = self.message(message_id) if message_row is None else message_row
        before = msg
        for _ in range(MAX_CONFLICT_RETRIES):
            if status_rows is None:
                status_rows = self.status_rows(message_id)
            rows = {r["RowKey"]: r for r in status_rows}
            status_rows = None  # a retry reads them afresh
            ops: list[Any] = []
            for row in rows.values():
                if row.get("status") == Status.SUPPRESSED.value and row.get("eventId") == "accept":
                    continue  # never handed to ACS
                new = apply_fact(row, fact, str(row.get("address")), message_id)
                if new is None:
                    continue
                entity = clean({**new, "PartitionKey": pk, "RowKey": row["RowKey"]})
                entity["updatedAt"] = iso(now)
                ops.append(write_op(entity, etag_of(row)))
            written = len(ops)
            summary = {
                "PartitionKey": pk,
                "RowKey": keys.MESSAGE_ROW,
                "sendState": state.value,
                "finishedAt": iso(now),
                **(extra or {}),
            }
            ops.append(("upsert", clean(summary), {"mode": UpdateMode.MERGE}))
            if msg is not None and msg.get("payload") == "table":
                ops.append(("delete", {"PartitionKey": pk, "RowKey": PAYLOAD_ROW}))
            try:
                with storage_errors():
                    results = self.messages.submit_transaction(ops)
                # The delivery reports that follow find these rows in the cache: no read.
                for op, result in zip(ops[:written], results, strict=False):
                    self.cache.put(pk, op[1]["RowKey"], result.get("etag"), op[1])
                return before
            except TableTransactionError as exc:
                if exc.status_code == 404 and ops[exc.index][0] == "delete":
                    msg = {**(msg or {}), "payload": "gone"}  # deleted by an earlier finish
                    continue
                if exc.status_code in (404, 409, 412):
                    continue  # a row changed or gone (an erasure re-keys one): read them again
                raise
        raise Transient("recipient rows kept changing under us")

    # --- reads --------------------------------------------------------------------------

    def status_rows(self, message_id: str) -> list[Any]:
        """The message's recipient status rows (`r|…`), as entities (with their ETags)."""
        pk = keys.message_key(message_id).replace("'", "''")
        with storage_errors():
            query = (
                f"PartitionKey eq '{pk}' and RowKey ge '{STATUS_FROM}' and RowKey lt '{STATUS_TO}'"
            )
            return list(self.messages.query_entities(query))

    def message_rows(self, message_id: str) -> list[dict[str, Any]]:
        pk = keys.message_key(message_id).replace("'", "''")
        with storage_errors():
            return [dict(e) for e in self.messages.query_entities(f"PartitionKey eq '{pk}'")]

    def recipient_history(
        self, address: str, limit: int, token: Any | None
    ) -> tuple[list[dict[str, Any]], Any | None]:
        """One page of an address's messages, newest first, each with its status row; `token`
        is the Table continuation the previous page returned."""
        pk = keys.address_key(address).replace("'", "''")
        with storage_errors():
            pages = self.index.query_entities(
                f"PartitionKey eq '{pk}'", results_per_page=limit
            ).by_page(continuation_token=token)
            page = [dict(e) for e in next(pages, [])]
            next_token = pages.continuation_token  # type: ignore[attr-defined]
        addr = keys.address_key(address)
        statuses = list(
            FANOUT.map(
                lambda e: read_entity(
                    self.messages, keys.message_key(e["messageId"]), keys.status_row(addr)
                ),
                page,
            )
        )
        # An entry its status row does not point to is left over (a first-sight guess or a
        # move interrupted by a crash; see `record_fact`): the row's own entry shows the message.
        items = [
            {**entry, "statusRow": dict(s) if s else None}
            for entry, s in zip(page, statuses, strict=True)
            if not s or not s.get("indexRk") or s.get("indexRk") == entry.get("RowKey")
        ]
        return items, next_token or None

    # --- retention and erasure (decisions in `core.privacy`, driven by `app.privacy`) --------

    def note_expiry(self, message_id: str, first_seen: datetime) -> None:
        day = day_of(first_seen)
        entity = {
            "PartitionKey": privacy.expiry_partition(day, message_id),
            "RowKey": keys.message_key(message_id),
            "messageId": message_id,
        }
        with storage_errors():
            self.expiry.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def expiring(self, before_day: str, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` expiry entries of days before `before_day`, oldest day first."""
        return query_keys(self.expiry, f"PartitionKey lt '{before_day}'", limit)

    def refile_expiry(self, entry: Mapping[str, Any], day: str) -> None:
        """Move a message's expiry entry to a later day (it changed after it was filed)."""
        message_id = str(entry["messageId"])
        moved = {
            "PartitionKey": privacy.expiry_partition(day, message_id),
            "RowKey": entry["RowKey"],
            "messageId": message_id,
        }
        with storage_errors():
            self.expiry.upsert_entity(moved, mode=UpdateMode.REPLACE)
        if moved["PartitionKey"] != entry["PartitionKey"]:
            delete_entities(self.expiry, [(entry["PartitionKey"], entry["RowKey"])])

    def drop_expiry(self, entry: Mapping[str, Any]) -> None:
        delete_entities(self.expiry, [(entry["PartitionKey"], entry["RowKey"])])

    def partition(self, message_id: str) -> list[TableEntity]:
        """Every row of a message, as entities (their metadata holds the service Timestamp)."""
        pk = keys.message_key(message_id).replace("'", "''")
        with storage_errors():
            return list(self.messages.query_entities(f"PartitionKey eq '{pk}'"))

    def delete_rows(self, pk: str, row_keys: list[str]) -> int:
        for rk in row_keys:
            self.cache.forget(pk, rk)
        return delete_entities(self.messages, [(pk, rk) for rk in row_keys])

    def move_rows(self, pk: str, moves: list[tuple[str, dict[str, Any]]]) -> int:
        """Re-key rows of one message: each (old row key, new entity) is a create-or-replace
        of the new row and a delete of the old one in one transaction (≤ 50 pairs each), so a
        crash leaves every row under one key or the other, never lost."""
        for start in range(0, len(moves), MOVE_PAIRS):
            ops: list[Any] = []
            for old_rk, entity in moves[start : start + MOVE_PAIRS]:
                self.cache.forget(pk, old_rk)
                new = clean({**entity, "PartitionKey": pk})
                ops.append(("upsert", new, {"mode": UpdateMode.REPLACE}))
                ops.append(("delete", {"PartitionKey": pk, "RowKey": old_rk}))
            with storage_errors():
                self.messages.submit_transaction(ops)
        return len(moves)

    def replace_payload(self, message_id: str, payload: str) -> None:
        """Rewrite the inline payload row (an erased recipient taken out of it)."""
        pk = keys.message_key(message_id)
        entity = {"PartitionKey": pk, "RowKey": PAYLOAD_ROW, **_chunks(payload)}
        with storage_errors():
            self.messages.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def index_rows(self, addr: str) -> list[dict[str, Any]]:
        """Every recipient-index row of an address (its whole history)."""
        pk = addr.replace("'", "''")
        with storage_errors():
            return [dict(e) for e in self.index.query_entities(f"PartitionKey eq '{pk}'")]

    def engagement_entries(self, addr: str, message_id: str) -> list[tuple[str, str]]:
        """Every engagement-index entry of an address naming the message: the one its row
        points to, and any a race or crash left (see `record_engagement`). One query, filtered
        by the service inside the address's partition."""
        partition = engagement_index_partition(addr)
        query = "PartitionKey eq @pk and messageId eq @mid"
        params = {"pk": partition, "mid": message_id}
        with storage_errors():
            rows = self.index.query_entities(query, parameters=params, select=["RowKey"])
            return [(partition, str(e["RowKey"])) for e in rows]

    def delete_index_rows(self, rows: list[tuple[str, str]]) -> int:
        return delete_entities(self.index, rows)

    def purge_quarantine(self, before_day: str, limit: int) -> int:
        rows = query_keys(self.quarantine_table, f"PartitionKey lt '{before_day}'", limit)
        keyed = [(r["PartitionKey"], r["RowKey"]) for r in rows]
        return delete_entities(self.quarantine_table, keyed)

    def quarantined(self) -> list[dict[str, Any]]:
        """Every quarantined event (erasure looks for an address in their raw text; the table
        holds only malformed events of the retention period)."""
        with storage_errors():
            return [dict(e) for e in self.quarantine_table.list_entities()]

    def delete_quarantined(self, rows: list[tuple[str, str]]) -> int:
        return delete_entities(self.quarantine_table, rows)

    # --- plumbing -----------------------------------------------------------------------

    def _submit(
        self, ops: list[Any], pk: str, marker_rk: str | None
    ) -> tuple[str, list[Mapping[str, Any]]]:
        """Run a transaction: "ok" with each operation's result (its ETag), "duplicate" (marker
        exists) or "conflict" (retry)."""
        try:
            with storage_errors():
                return "ok", list(self.messages.submit_transaction(ops))
        except TableTransactionError as exc:
            failed_marker = marker_rk is not None and exc.index == 0
            if exc.status_code == 409 and failed_marker:
                # index 0 is also the SDK's default when the service names no index: confirm.
                if read_entity(self.messages, pk, marker_rk or "") is not None:
                    return "duplicate", []
                return "conflict", []
            if exc.status_code in (404, 409, 412):
                return "conflict", []
            if exc.status_code in (408, 429, 500, 502, 503, 504):
                raise Transient(f"storage answered {exc.status_code}") from exc
            raise

    def write_index(self, addr: str, message_id: str, row: Mapping[str, Any]) -> None:
        rk = row.get("indexRk")
        if not rk:
            return
        entity = {
            "PartitionKey": addr,
            "RowKey": rk,
            "messageId": message_id,
            "address": row.get("address"),
            "sender": row.get("sender"),
            "at": row.get("indexAt"),
        }
        with storage_errors():
            self.index.upsert_entity(clean(entity), mode=UpdateMode.MERGE)


def _status_upserts(pk: str, recipient_rows: list[dict[str, Any]]) -> list[Any]:
    """Transaction operations writing an accept's status rows (one per recipient) as given."""
    ops: list[Any] = []
    for row in recipient_rows:
        rk = keys.status_row(keys.address_key(str(row["address"])))
        entity = clean({**row, "PartitionKey": pk, "RowKey": rk})
        ops.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
    return ops


def _first_seen(row: Mapping[str, Any]) -> datetime:
    """When the recipient was first seen (its place in the history), for the expiry entry."""
    return parse_iso(row.get("indexAt")) or datetime.now(UTC)


def _joined(payload_row: Mapping[str, Any]) -> str:
    """A payload row's text: its chunk properties `c00`, `c01`, … in order."""
    return "".join(payload_row[k] for k in sorted(payload_row) if k.startswith("c"))


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    marker = f"...[truncated {len(text) - limit} characters]"
    return text[: limit - len(marker)] + marker


def _chunks(text: str) -> dict[str, str]:
    return {
        f"c{i:02d}": text[start : start + PAYLOAD_CHUNK]
        for i, start in enumerate(range(0, len(text), PAYLOAD_CHUNK))
    }
