"""Table Storage for the activity index and the Message-ID index (layout in `core.activity`).

Tables (names prefixed by TABLE_PREFIX):
- `<p>Activity`: outcome rows in hourly, sharded partitions, plus the `dir` partition naming
  the hours that hold rows.
- `<p>InternetMessageIds`: PartitionKey = sha256 of the normalized RFC 5322 Message-ID,
  RowKey = our message key; one row per message (every recipient's report repeats it).
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient

from shared.core import keys
from shared.core.activity import DIRECTORY, internet_id_key, partition, storable
from shared.edge.group_commit import GroupCommit
from shared.edge.tables import (
    FANOUT,
    delete_entities,
    query_keys,
    run_together,
    storage_errors,
    upsert_many,
)

# An outcome row, its hour's shard count, and its Message-ID link (or None).
_Item = tuple[Mapping[str, Any], int, Mapping[str, Any] | None]
MAX_GROUP = 100  # outcome rows per group commit (a `$batch` holds 100 rows of one partition)
_REMEMBERED = 4_096  # directory marks and Message-ID links this process knows it wrote
_EMPTY_PAGES = 8  # empty pages with a continuation followed before giving up on a shard


class _Seen:
    """Keys this process has written (bounded, least recently used out): a write it has made
    once is skipped the next time. Only an optimisation: every such write is an idempotent
    upsert, so another instance repeating it is harmless."""

    def __init__(self, size: int = _REMEMBERED) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str) -> bool:
        """True when `key` is new (and now remembered)."""
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return False
            self._keys[key] = None
            if len(self._keys) > self.size:
                self._keys.popitem(last=False)
            return True

    def forget(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)


class ActivityIndex:
    def __init__(self, service: TableServiceClient, prefix: str = "Email") -> None:
        self.table = service.get_table_client(f"{prefix}Activity")
        self.internet_ids = service.get_table_client(f"{prefix}InternetMessageIds")
        self._marked = _Seen()
        self._linked = _Seen()
        self._commit: GroupCommit[_Item] = GroupCommit(self._write_group, MAX_GROUP)

    def create_tables(self) -> None:
        for table in (self.table, self.internet_ids):
            with storage_errors(), suppress(ResourceExistsError):
                table.create_table()

    # --- writes -------------------------------------------------------------------------

    def put(self, entity: Mapping[str, Any], shards: int, link: Mapping[str, Any] | None) -> None:
        """Write one outcome row, mark its hour in the directory, and (`link`) its Message-ID
        row; returns once written. Each is an upsert of a row fully determined by the event (a
        redelivery writes the same rows again), so concurrent callers' rows go out together
        (`GroupCommit`: one `$batch` per partition when a busy moment fills one)."""
        self._commit.submit((entity, shards, link))

    def _write_group(self, items: Sequence[_Item]) -> None:
        rows: list[Mapping[str, Any]] = []
        links: list[Mapping[str, Any]] = []
        marked: list[str] = []
        linked: list[str] = []
        for entity, shards, link in items:
            rows.append(entity)
            bucket = str(entity["PartitionKey"]).split("|", 1)[0]
            if self._marked.add(bucket):
                marked.append(bucket)
                rows.append({"PartitionKey": DIRECTORY, "RowKey": bucket, "shards": shards})
            if link is not None:
                row = {
                    "PartitionKey": internet_id_key(str(link["internetMessageId"])),
                    "RowKey": keys.message_key(str(link["messageId"])),
                    "internetMessageId": storable(link["internetMessageId"]),
                    "messageId": storable(link["messageId"], 256),
                }
                key = f"{row['PartitionKey']}|{row['RowKey']}"
                if self._linked.add(key):
                    linked.append(key)
                    links.append(row)
        try:
            run_together(
                [(upsert_many, (self.table, rows))]
                + ([(upsert_many, (self.internet_ids, links))] if links else [])
            )
        except Exception:
            for bucket in marked:  # not written after all: the redelivery must write them
                self._marked.forget(bucket)
            for key in linked:
                self._linked.forget(key)
            raise

    # --- reads --------------------------------------------------------------------------

    def buckets(self, oldest: str, newest: str) -> list[tuple[str, int]]:
        """The hours in [oldest, newest] that hold rows, newest first, with their shard count."""
        with storage_errors():
            rows = self.table.query_entities(
                f"PartitionKey eq '{DIRECTORY}' and RowKey ge '{oldest}' and RowKey le '{newest}'",
                select=["RowKey", "shards"],
            )
            found = [(str(r["RowKey"]), int(r.get("shards") or 1)) for r in rows]
        return sorted(found, reverse=True)

    def newest(
        self, bucket: str, shards: int, after: str, before: str, server_filter: str, count: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `count` of one hour's rows with `after` < RowKey < `before`, newest first (every
        shard read at once, merged), and whether the hour has no more of them.

        A shard page can come back short with a continuation (the service stops a query at
        its time or size limits): the merge then stops at that shard's last row, so no row
        of it that was not read yet can belong before a row handed out."""
        where = f"RowKey gt '{after}' and RowKey lt '{before}'"
        if server_filter:
            where += f" and {server_filter}"

        def shard(n: int) -> tuple[list[dict[str, Any]], bool]:
            pk = partition(bucket, n)
            with storage_errors():
                pages = self.table.query_entities(
                    f"PartitionKey eq '{pk}' and {where}", results_per_page=count
                ).by_page()
                rows: list[dict[str, Any]] = []
                for _ in range(_EMPTY_PAGES):  # past empty pages the service may return
                    rows = [dict(e) for e in next(pages, [])]
                    if rows or not pages.continuation_token:  # type: ignore[attr-defined]
                        break
                return rows, bool(pages.continuation_token)  # type: ignore[attr-defined]

        results = list(FANOUT.map(shard, range(shards)))
        merged = list(heapq.merge(*(rows for rows, _ in results), key=lambda r: str(r["RowKey"])))
        partial = [str(rows[-1]["RowKey"]) for rows, more in results if more and rows]
        if partial:
            merged = [r for r in merged if str(r["RowKey"]) <= min(partial)]
        exhausted = not any(more for _, more in results) and len(merged) <= count
        return merged[:count], exhausted

    def messages_for(self, internet_message_id: str, limit: int = 20) -> list[dict[str, Any]]:
        pk = internet_id_key(internet_message_id)
        with storage_errors():
            rows = self.internet_ids.query_entities(
                f"PartitionKey eq '{pk}'", results_per_page=limit
            )
            return [dict(r) for r, _ in zip(rows, range(limit), strict=False)]

    # --- retention and erasure (`app.privacy`) ------------------------------------------

    def expired(self, hour: str, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` outcome rows of hours before `hour` (YYYYMMDDHH; the `dir` partition
        sorts after every hour, so the range leaves it out): keys and message id. Retention
        reads them first: they are how it finds messages known from their reports alone."""
        where = f"PartitionKey lt '{hour}'"
        with storage_errors():
            rows = self.table.query_entities(
                where, select=["PartitionKey", "RowKey", "messageId"], results_per_page=limit
            )
            return [dict(r) for r, _ in zip(rows, range(limit), strict=False)]

    def drop_expired(self, rows: list[dict[str, Any]], hour: str, every_one: bool) -> int:
        """Delete those rows; `every_one`: no older row is left, so the directory rows of the
        hours before `hour` go too."""
        gone = delete_entities(self.table, [(r["PartitionKey"], r["RowKey"]) for r in rows])
        if every_one:
            marks = query_keys(
                self.table, f"PartitionKey eq '{DIRECTORY}' and RowKey lt '{hour}'", 1_000
            )
            delete_entities(self.table, [(DIRECTORY, str(m["RowKey"])) for m in marks])
            for mark in marks:
                self._marked.forget(str(mark["RowKey"]))
        return gone

    def rows_of_message(self, partition_key: str, message_id: str) -> list[dict[str, Any]]:
        """The outcome rows of one message in one hour-and-shard partition."""
        pk = partition_key.replace("'", "''")
        mid = message_id.replace("'", "''")
        with storage_errors():
            return [
                dict(r)
                for r in self.table.query_entities(
                    f"PartitionKey eq '{pk}' and messageId eq '{mid}'"
                )
            ]

    def delete_rows(self, rows: list[tuple[str, str]]) -> int:
        return delete_entities(self.table, rows)

    def unlink(self, internet_message_id: str, message_id: str) -> int:
        """Delete a message's Message-ID link (retention: it goes with the message)."""
        link = (internet_id_key(internet_message_id), keys.message_key(message_id))
        return delete_entities(self.internet_ids, [link])
