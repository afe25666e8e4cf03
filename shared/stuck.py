"""Delivery-stuck detection: messages ACS accepted whose final report never came (edge).

Table `<p>InFlight`, PartitionKey = `due`, RowKey = `<due epoch ms, 13 digits>|<message id>`:
one row per message handed to ACS, due STUCK_AFTER_MINUTES later. The `detect_stuck_deliveries`
timer reads the rows that are due (one range query; rows are deleted once checked, so the
partition holds only the last N minutes of sends), looks the message up (one partition query)
and raises one `Delivery.Stuck` alert naming the recipients still at `sent`. The alert id is the
message id's: a run that crashed before deleting the row raises the same alert again, a no-op.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode

from . import keys
from .alerts import AddressMode, Alert, for_stuck_delivery
from .status import Status
from .store import storage_errors

if TYPE_CHECKING:
    from .store import MessageStore

log = logging.getLogger(__name__)

PARTITION = "due"
MAX_PER_RUN = 500  # the rest waits for the next run (a minute later)


class InFlight:
    def __init__(self, service: TableServiceClient, prefix: str, store: MessageStore) -> None:
        self.table = service.get_table_client(f"{prefix}InFlight")
        self.store = store

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

    def detect(self, mode: AddressMode, now: datetime | None = None) -> list[Alert]:
        """Check every message that is due; returns the alerts raised."""
        from .services import alert_log

        now = now or datetime.now(UTC)
        cutoff = f"{int(now.timestamp() * 1000):013d}"
        with storage_errors():
            pages = self.table.query_entities(
                f"PartitionKey eq '{PARTITION}' and RowKey lt '{cutoff}'",
                results_per_page=MAX_PER_RUN,
            ).by_page()
            rows: list[Any] = list(next(pages, []))  # one page per run
        raised = []
        for row in rows:
            alert = self._check(row, mode, now)
            if alert is not None:
                alert_log().raise_alert(alert)
                raised.append(alert)
                log.warning("delivery stuck: message=%s", row["messageId"])
            with storage_errors(), suppress(ResourceNotFoundError):
                self.table.delete_entity(PARTITION, row["RowKey"])
        return raised

    def _check(self, row: Any, mode: AddressMode, now: datetime) -> Alert | None:
        message_id = str(row["messageId"])
        stuck = [
            str(r.get("address") or keys.decode(r["RowKey"][2:]))
            for r in self.store.message_rows(message_id)
            if str(r.get("RowKey", "")).startswith(f"{keys.STATUS_PREFIX}{keys.SEPARATOR}")
            and r.get("status") == Status.SENT.value
        ]
        if not stuck:
            return None
        return for_stuck_delivery(
            message_id=message_id,
            sender=row.get("sender"),
            recipients=sorted(stuck),
            sent_at=row.get("sentAt"),
            minutes=int(row.get("afterMinutes", 0)),
            at=now,
            mode=mode,
        )
