"""Outcome events in Table Storage and publishing them to the apps' Event Grid topic (edge).

The alert log's design (record, then publish; pending retried by a timer), laid out for a
higher rate. Table `<p>OutcomeEvents`, PartitionKey = the event id's first hex digit (16
partitions): `e|<id>` is the record (created once: 409 = this change was recorded before) and
`p|<id>` the pending marker, created in the same transaction. A publish that went out deletes
the marker and marks the record published, in one transaction; one that failed leaves the
marker, and the `publish_pending_outcome_events` timer reads only markers (a RowKey range), so
its cost follows what is pending, not what was ever sent. Publishing is at least once under one
CloudEvents id: a crash between the send and the marker's deletion republishes the same id.
`d|<UTC day>|<id>`, created in the same transaction, is the retention purge's way in: one
RowKey range per partition finds the days past RETENTION_DAYS without scanning the records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode

from shared.core.feed import OutcomeEvent
from shared.core.state import iso
from shared.edge.tables import delete_entities, query_keys, storage_errors, to_cloud_event

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.eventgrid import EventGridPublisherClient

log = logging.getLogger(__name__)

PENDING, PUBLISHED = "pending", "published"
RECORD, MARKER, DAY = "e|", "p|", "d|"
PARTITIONS = "0123456789abcdef"
PUBLISH_BATCH = 50  # events per Event Grid request from the timer (1 MB per request at most)


def build_publisher(
    endpoint: str, key: str | None, credential: Callable[[], TokenCredential]
) -> EventGridPublisherClient:
    from azure.eventgrid import EventGridPublisherClient

    auth: Any
    if key:
        from azure.core.credentials import AzureKeyCredential

        auth = AzureKeyCredential(key)
    else:
        auth = credential()
    # One quick retry inline; the timer does the patient retrying.
    return EventGridPublisherClient(endpoint, auth, retry_total=1, connection_timeout=5)


class OutcomeLog:
    def __init__(
        self, service: TableServiceClient, prefix: str, publisher: EventGridPublisherClient
    ) -> None:
        self.table = service.get_table_client(f"{prefix}OutcomeEvents")
        self.publisher = publisher

    def create_table(self) -> None:
        with storage_errors(), suppress(ResourceExistsError):
            self.table.create_table()

    def record(self, event: OutcomeEvent) -> bool:
        """Record, then try to publish. False when this change had been recorded already."""
        pk = event.id[0]
        body = json.dumps(event.cloud_event(), ensure_ascii=False)
        now = iso(datetime.now(UTC))
        ops: list[Any] = [
            (
                "create",
                {
                    "PartitionKey": pk,
                    "RowKey": RECORD + event.id,
                    "type": event.type.value,
                    "messageId": event.data.get("messageId"),
                    "publishState": PENDING,
                    "recordedAt": now,
                },
            ),
            (
                "create",
                {"PartitionKey": pk, "RowKey": MARKER + event.id, "event": body, "attempts": 0},
            ),
            ("upsert", {"PartitionKey": pk, "RowKey": f"{DAY}{now[:10]}|{event.id}"}),
        ]
        try:
            with storage_errors():
                self.table.submit_transaction(ops)
        except TableTransactionError as exc:
            if exc.status_code == 409:
                return False
            raise
        self._publish([{"PartitionKey": pk, "RowKey": MARKER + event.id, "event": body}])
        return True

    def publish_pending(self) -> int:
        """Publish every pending event; returns how many went out."""
        sent = 0
        for pk in PARTITIONS:
            query = f"PartitionKey eq '{pk}' and RowKey ge '{MARKER}' and RowKey lt 'p}}'"
            with storage_errors():
                rows = [dict(r) for r in self.table.query_entities(query)]
            for start in range(0, len(rows), PUBLISH_BATCH):
                sent += self._publish(rows[start : start + PUBLISH_BATCH])
        return sent

    def _publish(self, markers: list[dict[str, Any]]) -> int:
        events = [json.loads(m["event"]) for m in markers]
        try:
            self.publisher.send([to_cloud_event(e) for e in events])
        except AzureError as exc:
            log.warning(
                "%d outcome event(s) not published yet (%s)", len(events), type(exc).__name__
            )
            for marker in markers:
                update = {
                    "PartitionKey": marker["PartitionKey"],
                    "RowKey": marker["RowKey"],
                    "attempts": int(marker.get("attempts", 0)) + 1,
                    "lastError": type(exc).__name__,
                }
                with storage_errors():
                    self.table.upsert_entity(update, mode=UpdateMode.MERGE)
            return 0
        published = iso(datetime.now(UTC))
        for marker in markers:
            pk, event_id = marker["PartitionKey"], marker["RowKey"][len(MARKER) :]
            ops: list[Any] = [
                ("delete", {"PartitionKey": pk, "RowKey": marker["RowKey"]}),
                (
                    "upsert",
                    {
                        "PartitionKey": pk,
                        "RowKey": RECORD + event_id,
                        "publishState": PUBLISHED,
                        "publishedAt": published,
                    },
                    {"mode": UpdateMode.MERGE},
                ),
            ]
            try:
                with storage_errors():
                    self.table.submit_transaction(ops)
            except TableTransactionError as exc:
                if exc.status_code != 404:  # 404: another run finished it first
                    raise
        return len(markers)

    def pending(self) -> list[dict[str, Any]]:
        """Every event not yet published (its marker row, which holds the CloudEvent)."""
        rows: list[dict[str, Any]] = []
        for pk in PARTITIONS:
            query = f"PartitionKey eq '{pk}' and RowKey ge '{MARKER}' and RowKey lt 'p}}'"
            with storage_errors():
                rows += [dict(r) for r in self.table.query_entities(query)]
        return rows

    def replace(self, row: dict[str, Any]) -> None:
        with storage_errors():
            self.table.upsert_entity(row, mode=UpdateMode.REPLACE)

    def purge_before(self, before_day: str, limit: int) -> int:
        """Delete the events recorded on days before `before_day` (record, day row and a
        marker still pending), up to `limit` events; returns how many events went."""
        gone = 0
        for pk in PARTITIONS:
            if gone >= limit:
                break
            query = f"PartitionKey eq '{pk}' and RowKey ge '{DAY}' and RowKey lt 'd|{before_day}'"
            days = query_keys(self.table, query, limit - gone)
            if not days:
                continue
            ids = {str(day["RowKey"]).rsplit("|", 1)[1] for day in days}
            # Markers exist only while pending (few): delete those of these events, if any.
            pending = query_keys(
                self.table, f"PartitionKey eq '{pk}' and RowKey ge '{MARKER}' and RowKey lt 'p}}'",
                10_000,
            )  # fmt: skip
            rows = [(pk, m["RowKey"]) for m in pending if m["RowKey"][len(MARKER) :] in ids]
            rows += [(pk, RECORD + event_id) for event_id in ids]
            rows += [(pk, day["RowKey"]) for day in days]
            delete_entities(self.table, rows)
            gone += len(days)
        return gone
