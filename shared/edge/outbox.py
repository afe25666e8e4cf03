"""The send queue and what waits beside it: work items, large payload blobs and the shared
send-slot window. The Messages table (whose message row is also an Idempotency-Key's record)
belongs to `messages.MessageStore`."""

from __future__ import annotations

import json
import math
from contextlib import suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient

from shared.core.errors import Transient
from shared.core.sending import ratelimit
from shared.edge.tables import (
    MAX_CONFLICT_RETRIES,
    etag_of,
    put_entity,
    read_entity,
    storage_errors,
)

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient
    from azure.storage.queue import QueueClient

SLOT_ROW = ("acs", "slots")


class Outbox:
    def __init__(
        self,
        service: TableServiceClient,
        queue: QueueClient,
        container: ContainerClient,
        prefix: str,
    ) -> None:
        self.queue = queue
        self.container = container
        self.throttle = service.get_table_client(f"{prefix}Throttle")

    def create(self) -> None:
        with storage_errors():
            with suppress(ResourceExistsError):
                self.throttle.create_table()
            with suppress(ResourceExistsError):
                self.queue.create_queue()
            with suppress(ResourceExistsError):
                self.container.create_container()

    # --- work items and payload blobs ---------------------------------------------------

    def enqueue(
        self,
        message_id: str,
        attempt: int,
        delay_s: float = 0.0,
        slot: int | None = None,
        accepted_at: str | None = None,
    ) -> None:
        """Put a work item; `slot` is a send slot reserved for it (epoch second); `accepted_at`
        marks the accept's own item, whose index entries the worker checks first."""
        item: dict[str, Any] = {"messageId": message_id, "attempt": attempt}
        if slot is not None:
            item["slot"] = slot
        if accepted_at is not None:
            item["acceptedAt"] = accepted_at
        body = json.dumps(item)
        with storage_errors():
            self.queue.send_message(body, visibility_timeout=max(0, math.ceil(delay_s)) or None)

    def put_payload_blob(self, message_id: str, payload: str) -> None:
        with storage_errors():
            self.container.upload_blob(f"{message_id}.json", payload.encode(), overwrite=True)

    def payload_blob(self, message_id: str) -> str | None:
        with storage_errors():
            try:
                data: bytes = self.container.download_blob(f"{message_id}.json").readall()
            except ResourceNotFoundError:
                return None
        return data.decode()

    def delete_payload_blob(self, message_id: str) -> None:
        with storage_errors(), suppress(ResourceNotFoundError):
            self.container.delete_blob(f"{message_id}.json")

    # --- the send-slot window -----------------------------------------------------------

    def reserve_send_slot(
        self, now: datetime, per_minute: int, per_hour: int
    ) -> ratelimit.Reservation:
        """Reserve the earliest ACS send slot (see `ratelimit`): one read and one conditional
        write of the slot row; nothing is written when the slot lies past the horizon."""
        pk, rk = SLOT_ROW
        for _ in range(MAX_CONFLICT_RETRIES * 4):
            row = read_entity(self.throttle, pk, rk)
            counts = ratelimit.decode(str((row or {}).get("window") or ""))
            new_counts, slot = ratelimit.reserve(counts, now.timestamp(), per_minute, per_hour)
            if not slot.reserved:
                return slot
            entity = {"PartitionKey": pk, "RowKey": rk, "window": ratelimit.encode(new_counts)}
            if put_entity(self.throttle, entity, etag_of(row)):
                return slot
        raise Transient("send-slot row kept changing under us")
