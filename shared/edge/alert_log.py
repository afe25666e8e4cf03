"""Alert history in Table Storage and publishing to the Event Grid topic (edge).

Table `<p>Alerts`: PartitionKey = UTC day of the alert, RowKey = newest-first time | alert id,
so history reads newest first, one partition per day. An alert is recorded (create; 409 = it
already was) with `publishState: pending`, then published; a failed publish stays pending and
the `publish_pending_alerts` timer retries it. Publishing is at least once under one CloudEvents
id: a crash between the send and the state update republishes the same id.
"""

from __future__ import annotations

import json
import logging
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableServiceClient, UpdateMode

from shared.core import keys
from shared.core.alerts import Alert
from shared.core.state import iso
from shared.edge.tables import delete_entities, query_keys, storage_errors, to_cloud_event

if TYPE_CHECKING:
    from shared.edge.clients import TopicPublisher

log = logging.getLogger(__name__)

PENDING, PUBLISHED, DISABLED = "pending", "published", "disabled"
RETRY_DAYS = 7  # pending alerts older than this are left for an operator (history shows them)


class AlertLog:
    def __init__(
        self,
        service: TableServiceClient,
        prefix: str,
        publisher: TopicPublisher | None,
    ) -> None:
        self.table = service.get_table_client(f"{prefix}Alerts")
        self.publisher = publisher

    def create_table(self) -> None:
        with storage_errors(), suppress(ResourceExistsError):
            self.table.create_table()

    def raise_alert(self, alert: Alert) -> bool:
        """Record, then try to publish. False when this alert had been recorded already."""
        entity = {
            "PartitionKey": alert.time.astimezone(UTC).strftime("%Y-%m-%d"),
            "RowKey": keys.newest_first(int(alert.time.timestamp() * 1000), alert.id),
            "alertId": alert.id,
            "type": alert.type.value,
            "subject": alert.subject,
            "time": iso(alert.time),
            "messageId": alert.data.get("messageId"),
            "recipientDomain": alert.data.get("recipientDomain"),
            "event": json.dumps(alert.cloud_event()),
            "publishState": PENDING if self.publisher else DISABLED,
            "attempts": 0,
            "recordedAt": iso(datetime.now(UTC)),
        }
        try:
            with storage_errors():
                self.table.create_entity({k: v for k, v in entity.items() if v is not None})
        except ResourceExistsError:
            return False
        if self.publisher is not None:
            self._publish(entity)
        return True

    def publish_pending(self, now: datetime | None = None) -> int:
        """Retry every pending alert of the last RETRY_DAYS days; returns how many went out."""
        if self.publisher is None:
            return 0
        now = now or datetime.now(UTC)
        sent = 0
        for day in range(RETRY_DAYS + 1):
            pk = (now - timedelta(days=day)).strftime("%Y-%m-%d")
            with storage_errors():
                rows = list(
                    self.table.query_entities(
                        f"PartitionKey eq '{pk}' and publishState eq '{PENDING}'"
                    )
                )
            for row in rows:
                sent += self._publish(row)
        return sent

    def _publish(self, row: Any) -> int:
        assert self.publisher is not None
        event = json.loads(row["event"])
        attempts = int(row.get("attempts", 0)) + 1
        try:
            self.publisher.send([to_cloud_event(event)])
        except AzureError as exc:
            log.warning("alert %s not published yet (%s)", event["id"], type(exc).__name__)
            update = {"attempts": attempts, "lastError": type(exc).__name__}
            self._update(row, update)
            return 0
        self._update(
            row,
            {
                "publishState": PUBLISHED,
                "publishedAt": iso(datetime.now(UTC)),
                "attempts": attempts,
            },
        )
        return 1

    def _update(self, row: Any, values: dict[str, Any]) -> None:
        entity = {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], **values}
        with storage_errors():
            self.table.upsert_entity(entity, mode=UpdateMode.MERGE)

    def day_page(
        self, day: str, since: datetime, alert_type: str | None, limit: int, token: Any | None
    ) -> tuple[list[dict[str, Any]], Any | None]:
        """One page of the alerts of one UTC day (of their cause) raised at or after `since`,
        newest cause first, and the Table continuation of that day (None when it is done)."""
        query = f"PartitionKey eq '{day}' and recordedAt ge '{iso(since)}'"
        if alert_type:
            query += f" and type eq '{alert_type.replace(chr(39), chr(39) * 2)}'"
        with storage_errors():
            pages = self.table.query_entities(query, results_per_page=limit).by_page(
                continuation_token=token
            )
            page = [dict(e) for e in next(pages, [])]
            return page, pages.continuation_token  # type: ignore[attr-defined]

    # --- retention and erasure ----------------------------------------------------------

    def purge_before(self, before_day: str, limit: int) -> int:
        """Delete up to `limit` alerts of days before `before_day` (whole day partitions)."""
        rows = query_keys(self.table, f"PartitionKey lt '{before_day}'", limit)
        return delete_entities(self.table, [(r["PartitionKey"], r["RowKey"]) for r in rows])

    def of_recipient_domain(self, domain: str) -> list[dict[str, Any]]:
        """Every alert about a recipient of `domain` (a filter the service applies while it
        scans: only erasure asks, and only alerts of the retention period are there)."""
        value = domain.replace("'", "''")
        with storage_errors():
            return [dict(r) for r in self.table.query_entities(f"recipientDomain eq '{value}'")]

    def replace(self, row: dict[str, Any]) -> None:
        with storage_errors():
            self.table.upsert_entity(row, mode=UpdateMode.REPLACE)
