"""Messages ACS accepted and whose final reports we wait for (the `Delivery.Stuck` watch list).

Table `<p>InFlight`, PartitionKey = `due`, RowKey = `<due epoch ms, 13 digits>|<message id>`:
one row per message handed to ACS, due STUCK_AFTER_MINUTES later. The `detect_stuck_deliveries`
timer reads the rows that are due (one range query; rows are deleted once checked, so the
partition holds only the last N minutes of sends), looks the message up (one partition query)
and raises one `Delivery.Stuck` alert naming the recipients still at `sent`. The alert id is the
message id's: a run that crashed before deleting the row raises the same alert again, a no-op.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode

from shared.core import keys
from shared.edge.tables import storage_errors

PARTITION = "due"
MAX_PER_RUN = 500  # the rest waits for the next run (a minute later)


class InFlight:
    def __init__(self, service: TableServiceClient, prefix: str) -> None:
        self.table = service.get_table_client(f"{prefix}InFlight")

    def create_table(self) -> None:
        with storage_errors(), suppress(ResourceExistsError):
            self.table.create_table()

    def track(self, message_id: str, sender: str | None, sent_at: datetime, after: int) -> None:
        """Watch a message ACS accepted: due `after` minutes from `sent_at`."""
        due = sent_at + timedelta(minutes=after)
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": f"{int(due.timestamp() * 1000):013d}|{keys.message_key(message_id)}",
            "messageId": message_id,
            "sender": sender,
            "sentAt": sent_at.isoformat(),
            "afterMinutes": after,
        }
        with storage_errors():
            self.table.upsert_entity(
                {k: v for k, v in entity.items() if v is not None}, mode=UpdateMode.REPLACE
            )

    def due(self, now: datetime) -> list[Any]:
        """The tracked messages due by `now` (one page per run: the rest waits a minute)."""
        cutoff = f"{int(now.timestamp() * 1000):013d}"
        with storage_errors():
            pages = self.table.query_entities(
                f"PartitionKey eq '{PARTITION}' and RowKey lt '{cutoff}'",
                results_per_page=MAX_PER_RUN,
            ).by_page()
            return list(next(pages, []))

    def done(self, row: Any) -> None:
        with storage_errors(), suppress(ResourceNotFoundError):
            self.table.delete_entity(PARTITION, row["RowKey"])
