"""Outcome events: published to the apps' Event Grid topic in group commits, then remembered
(edge). The alert log's design (record, publish, timer retries) turned around for the rate of
reports: on the common path an event costs a share of one publish request and of one write.

Table `<p>OutcomeEvents`:
- PartitionKey = the UTC hour of the outcome (`YYYYMMDDHH`, from the event, so a redelivery finds
  the same row), RowKey `e|<id>`: this event was published. Written right after the publish, in
  the same group commit (one `$batch` per hour for a busy group). A redelivery of the report
  that decided the outcome reads it (a point read, only then) to know whether the event went
  out: one event per change, except that a crash between the publish and this write publishes
  the same id again on redelivery (subscribers deduplicate on the CloudEvents id).
- PartitionKey `pending`, RowKey = id: events whose publish failed, with the CloudEvent; the
  `publish_pending_outcome_events` timer retries them, writes their `e|` record and deletes them
  once out. So a failed publish never fails the report, and its cost follows what is pending.
Retention is one PartitionKey range (hours before the cutoff); `pending` sorts after every hour.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableServiceClient, UpdateMode

from shared.core.feed import OutcomeEvent
from shared.core.state import iso
from shared.edge.clients import TopicPublisher, topic_publisher
from shared.edge.group_commit import GroupCommit
from shared.edge.tables import (
    chunks_of,
    delete_entities,
    query_keys,
    read_entity,
    run_together,
    storage_errors,
    to_cloud_event,
    upsert_many,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

RECORD = "e|"
PENDING_PARTITION = "pending"
PUBLISH_BATCH = 50  # events per Event Grid request (1 MB per request at most; ours are small)


def build_publisher(
    endpoint: str, key: str | None, credential: Callable[[], TokenCredential]
) -> TopicPublisher:
    auth: Any
    if key:
        from azure.core.credentials import AzureKeyCredential

        auth = AzureKeyCredential(key)
    else:
        auth = credential()
    return topic_publisher(endpoint, auth)


def _hour(event: OutcomeEvent) -> str:
    return event.time.astimezone(UTC).strftime("%Y%m%d%H")


def _record(hour: str, cloud_event: Mapping[str, Any], published: str) -> dict[str, Any]:
    """The row saying this event went out (`cloud_event` as `OutcomeEvent.cloud_event()`)."""
    return {
        "PartitionKey": hour,
        "RowKey": RECORD + str(cloud_event["id"]),
        "type": cloud_event.get("type"),
        "messageId": (cloud_event.get("data") or {}).get("messageId"),
        "publishedAt": published,
    }


class OutcomeLog:
    def __init__(self, service: TableServiceClient, prefix: str, publisher: TopicPublisher) -> None:
        self.table = service.get_table_client(f"{prefix}OutcomeEvents")
        self.publisher = publisher
        self._commit = GroupCommit(self._publish_group, PUBLISH_BATCH)

    def create_table(self) -> None:
        with storage_errors(), suppress(ResourceExistsError):
            self.table.create_table()

    def publish(self, event: OutcomeEvent) -> None:
        """Publish `event` with whatever other callers publish at the same moment; returns once
        it is out and recorded, or kept pending for the timer (a failed publish)."""
        self._commit.submit(event)

    def record(self, event: OutcomeEvent) -> bool:
        """Publish `event` unless it went out (or waits to) before; False then."""
        if self.published_before(event):
            return False
        self.publish(event)
        return True

    def published_before(self, event: OutcomeEvent) -> bool:
        found = [False, False]

        def read(n: int, pk: str, rk: str) -> None:
            found[n] = read_entity(self.table, pk, rk) is not None

        run_together(
            [
                (read, (0, _hour(event), RECORD + event.id)),
                (read, (1, PENDING_PARTITION, event.id)),
            ]
        )
        return any(found)

    def _publish_group(self, events: Sequence[OutcomeEvent]) -> None:
        unique = list({event.id: event for event in events}.values())
        stored = [e.cloud_event() for e in unique]
        try:
            self.publisher.send([to_cloud_event(e) for e in stored])
        except AzureError as exc:
            error = type(exc).__name__
            log.warning("%d outcome event(s) not published yet (%s)", len(unique), error)
            pending = [_pending(e, c, error) for e, c in zip(unique, stored, strict=True)]
            upsert_many(self.table, pending)
            return
        published = iso(datetime.now(UTC))
        records = [_record(_hour(e), c, published) for e, c in zip(unique, stored, strict=True)]
        upsert_many(self.table, records)

    def publish_pending(self) -> int:
        """Publish every pending event; returns how many went out."""
        rows = self.pending()
        sent = 0
        for chunk in chunks_of(rows, PUBLISH_BATCH):
            events = [json.loads(row["event"]) for row in chunk]
            try:
                self.publisher.send([to_cloud_event(e) for e in events])
            except AzureError as exc:
                log.warning(
                    "%d outcome event(s) not published yet (%s)", len(chunk), type(exc).__name__
                )
                error = type(exc).__name__
                for row in chunk:
                    row.update(attempts=int(row.get("attempts", 0)) + 1, lastError=error)
                upsert_many(self.table, chunk)
                continue
            published = iso(datetime.now(UTC))
            records = [
                _record(str(row.get("hour")), e, published)
                for row, e in zip(chunk, events, strict=True)
            ]
            upsert_many(self.table, records)
            delete_entities(self.table, [(PENDING_PARTITION, str(r["RowKey"])) for r in chunk])
            sent += len(chunk)
        return sent

    def pending(self) -> list[dict[str, Any]]:
        """Every event not yet published (its row holds the CloudEvent)."""
        with storage_errors():
            rows = self.table.query_entities(f"PartitionKey eq '{PENDING_PARTITION}'")
            return [dict(r) for r in rows]

    def replace(self, row: dict[str, Any]) -> None:
        with storage_errors():
            self.table.upsert_entity(row, mode=UpdateMode.REPLACE)

    def purge_before(self, before_day: str, limit: int) -> int:
        """Delete the events of days before `before_day` (`YYYY-MM-DD`): records by hour
        partition, and pending events of those days; up to `limit` rows. Returns how many."""
        hour = before_day.replace("-", "") + "00"
        rows = query_keys(self.table, f"PartitionKey lt '{hour}'", limit)
        if len(rows) < limit:
            rows += query_keys(
                self.table,
                f"PartitionKey eq '{PENDING_PARTITION}' and hour lt '{hour}'",
                limit - len(rows),
            )
        return delete_entities(self.table, [(r["PartitionKey"], r["RowKey"]) for r in rows])


def _pending(event: OutcomeEvent, cloud_event: Mapping[str, Any], error: str) -> dict[str, Any]:
    return {
        "PartitionKey": PENDING_PARTITION,
        "RowKey": event.id,
        "hour": _hour(event),
        "event": json.dumps(cloud_event, ensure_ascii=False),
        "attempts": 1,
        "lastError": error,
        "recordedAt": iso(datetime.now(UTC)),
    }
