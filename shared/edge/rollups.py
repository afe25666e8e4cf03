"""Deliverability rollup rows in Table Storage, written from a per-instance buffer (edge).

Table `<p>Rollups`: PartitionKey = `<scope>|<row dimension>|<shard>`, RowKey = `h<YYYYMMDDHH>`
(an hour) or `d<YYYYMMDD>` (a day); the groups of that row as JSON in `c00`, `c01`, …
(30 K characters each), and `batches`, the ids of the last flushes applied to it. A query is one
RowKey range query per shard and period kind: its cost follows the hours (days) and groups asked
for, never the messages.

Writes: `add` puts deltas into memory (no storage call on the report's path); `flush` writes
each touched row once (ETag read-modify-write, in parallel), every ROLLUP_FLUSH_SECONDS from a
background thread, at once when MAX_BUFFERED_EVENTS pile up, and before a query on this
instance. Each instance writes its own shard (picked at start), and remembers the rows it wrote
with their ETags, so a flush of a row it wrote before is one conditional write, not a read and a
write (412 → read afresh). A flush is applied at most once per row: its id goes into the row's
`batches` in the same write, so a flush retried after an unclear failure (the write may or may
not have landed) skips the rows that have it. What a crash costs: the deltas still in memory
(at most ROLLUP_FLUSH_SECONDS of this instance's reports, or MAX_BUFFERED_EVENTS of them); the
status rows are untouched and the reports are not redelivered, so those counts stay missing.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient

from shared.core import keys
from shared.core.rollups import Cell, RowId, decode_content, encode_content, merge_into
from shared.edge.tables import (
    FANOUT,
    MAX_CONFLICT_RETRIES,
    backoff,
    etag_of,
    read_entity,
    storage_errors,
    write_entity,
)

log = logging.getLogger(__name__)

CHUNK = 30_000  # characters per property (a Table string property holds 32 K UTF-16 units)
KEEP_BATCHES = 32  # flush ids remembered per row (a retry comes one flush interval later)
MAX_BUFFERED_EVENTS = 2_000  # a flush starts on the report's thread past this many
MAX_REMEMBERED_ROWS = 1_024  # rows (with ETag and content) kept for write-without-read

Delta = dict[str, Cell]
Batch = list[tuple[str, Delta]]  # (flush id, deltas) not yet known to be in the row


def _chunks(text: str) -> dict[str, str]:
    return {f"c{i:02d}": text[s : s + CHUNK] for i, s in enumerate(range(0, len(text), CHUNK))}


def _text(entity: Mapping[str, Any]) -> str:
    parts = sorted(k for k in entity if len(k) == 3 and k[0] == "c" and k[1:].isdigit())
    return "".join(str(entity[k]) for k in parts)


def _copy(content: Mapping[str, Cell]) -> dict[str, Cell]:
    return {k: Cell(list(c.counts), dict(c.latency)) for k, c in content.items()}


class RollupStore:
    def __init__(
        self,
        service: TableServiceClient,
        prefix: str,
        shards: int = 4,
        flush_seconds: float = 5.0,
        background: bool = True,
    ) -> None:
        self.table = service.get_table_client(f"{prefix}Rollups")
        self.shards = shards
        self.shard = random.randrange(shards)  # noqa: S311 - load spreading only
        self.flush_seconds = flush_seconds
        self.instance = uuid.uuid4().hex[:12]
        self._seq = itertools.count(1)
        self._lock = threading.Lock()  # guards the buffer
        self._flushing = threading.Lock()  # one flush at a time
        self._buffer: dict[RowId, Delta] = {}
        self._events = 0
        self._retry: dict[RowId, Batch] = {}
        self._rows: OrderedDict[RowId, tuple[str, dict[str, Cell], list[str], int]] = OrderedDict()
        self._rows_lock = threading.Lock()
        self._background = background
        self._thread: threading.Thread | None = None

    def create_table(self) -> None:
        with storage_errors(), suppress(ResourceExistsError):
            self.table.create_table()

    # --- writing ------------------------------------------------------------------------

    def add(self, cells: Iterable[tuple[RowId, str, Cell]]) -> None:
        """Add one report's deltas to the buffer (memory only)."""
        with self._lock:
            for row, key, delta in cells:
                self._buffer.setdefault(row, {}).setdefault(key, Cell()).add(delta)
            self._events += 1
            due = self._events >= MAX_BUFFERED_EVENTS
        if self._background and self._thread is None:
            self._start_thread()
        if due:
            self.flush(wait=False)

    @property
    def buffered(self) -> int:
        with self._lock:
            return self._events

    def flush(self, wait: bool = True) -> int:
        """Write every buffered delta; returns the rows written. Rows that failed stay for the
        next flush (under their flush id); with `wait` False, returns 0 if a flush is running."""
        if not self._flushing.acquire(blocking=wait):
            return 0
        try:
            with self._lock:
                buffer, self._buffer, self._events = self._buffer, {}, 0
                work, self._retry = self._retry, {}
            flush_id = f"{self.instance}.{next(self._seq)}"
            for row, delta in buffer.items():
                work.setdefault(row, []).append((flush_id, delta))
            if not work:
                return 0
            items = list(work.items())
            outcomes = list(FANOUT.map(self._write_safely, items))
            failed = {
                row: batch for (row, batch), ok in zip(items, outcomes, strict=True) if not ok
            }
            if failed:
                with self._lock:
                    for row, batch in failed.items():
                        self._retry.setdefault(row, []).extend(batch)
                log.warning(
                    "rollups: %d of %d rows not written; retried next flush",
                    len(failed),
                    len(items),
                )
            return len(items) - len(failed)
        finally:
            self._flushing.release()

    def _write_safely(self, item: tuple[RowId, Batch]) -> bool:
        row, batch = item
        try:
            return self._write(row, batch)
        except Exception as exc:  # kept for the next flush; never fails the report
            self._forget(row)  # the write may have landed: read afresh, compare flush ids
            log.warning("rollup row %s not written (%s)", row, type(exc).__name__)
            return False

    def _write(self, row: RowId, batch: Batch) -> bool:
        pk, rk = self.keys(row, self.shard)
        with self._rows_lock:
            remembered = self._rows.get(row)
        for attempt in range(MAX_CONFLICT_RETRIES):
            if remembered is None:
                entity = read_entity(self.table, pk, rk)
                etag = etag_of(entity)
                text = _text(entity) if entity is not None else ""
                content = decode_content(text)
                applied = json.loads(entity.get("batches") or "[]") if entity is not None else []
                size = len(text)
            else:
                etag, stored, applied, size = remembered
                content = _copy(stored)
            todo = [(fid, delta) for fid, delta in batch if fid not in applied]
            if not todo:
                return True
            for _, delta in todo:
                merge_into(content, delta, size)
            text = encode_content(content)
            applied = [*applied, *(fid for fid, _ in todo)][-KEEP_BATCHES:]
            entity = {
                "PartitionKey": pk,
                "RowKey": rk,
                **_chunks(text),
                "batches": json.dumps(applied),
                "groups": len(content),
            }
            new_etag = write_entity(self.table, entity, etag)
            if new_etag is None:  # another instance on this shard wrote first: read, merge again
                remembered = None
                backoff(attempt)
                continue
            self._remember(row, (new_etag, content, applied, len(text)))
            return True
        return False

    def _remember(self, row: RowId, value: tuple[str, dict[str, Cell], list[str], int]) -> None:
        with self._rows_lock:
            self._rows[row] = value
            self._rows.move_to_end(row)
            while len(self._rows) > MAX_REMEMBERED_ROWS:
                self._rows.popitem(last=False)

    def _forget(self, row: RowId) -> None:
        with self._rows_lock:
            self._rows.pop(row, None)

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=_flush_forever,
                args=(weakref.ref(self), self.flush_seconds),
                name="rollup-flush",
                daemon=True,
            )
        self._thread.start()

    # --- reading ------------------------------------------------------------------------

    @staticmethod
    def keys(row: RowId, shard: int) -> tuple[str, str]:
        scope, dimension, period = row
        return f"{keys.encode(scope)}|{dimension}|{shard:02d}", period

    def read(
        self, scope: str, dimension: str, ranges: Iterable[tuple[str, str]]
    ) -> list[tuple[str, dict[str, Any]]]:
        """Every stored row of (scope, dimension) whose RowKey lies in one of the inclusive
        `ranges`, over all shards: (RowKey, groups as stored JSON: `Cell.add_json` merges
        them) pairs, one per shard and period."""
        asks = [
            (self.keys((scope, dimension, lo), shard)[0], lo, hi)
            for shard in range(self.shards)
            for lo, hi in ranges
        ]

        def query(ask: tuple[str, str, str]) -> list[tuple[str, dict[str, Any]]]:
            pk, lo, hi = (part.replace("'", "''") for part in ask)
            text = f"PartitionKey eq '{pk}' and RowKey ge '{lo}' and RowKey le '{hi}'"
            with storage_errors():
                rows = list(self.table.query_entities(text))
            return [(str(r["RowKey"]), json.loads(_text(r) or "{}")) for r in rows]

        return [found for part in FANOUT.map(query, asks) for found in part]


def _flush_forever(ref: weakref.ref[RollupStore], seconds: float) -> None:
    """The background flush: every `seconds`, while the store is alive."""
    while True:
        time.sleep(seconds)
        store = ref()
        if store is None:
            return
        if store.buffered or store._retry:
            try:
                store.flush(wait=False)
            except Exception:  # logged; the deltas stay for the next round
                log.exception("rollup flush failed")
        del store
