"""The send queue and what waits beside it: work items, large payload blobs, Idempotency-Key rows
and the shared send-slot window. The Messages table belongs to `messages.MessageStore`."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode

from shared.core.errors import Transient
from shared.core.sending import ratelimit
from shared.core.state import iso, parse_iso
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


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    message_id: str
    replay: Mapping[str, Any] | None  # the stored response of a finished earlier request
    mismatch: bool = False  # the key was used before with a different request


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
        self.idempotency = service.get_table_client(f"{prefix}Idempotency")
        self.throttle = service.get_table_client(f"{prefix}Throttle")

    def create(self) -> None:
        with storage_errors():
            for table in (self.idempotency, self.throttle):
                with suppress(ResourceExistsError):
                    table.create_table()
            with suppress(ResourceExistsError):
                self.queue.create_queue()
            with suppress(ResourceExistsError):
                self.container.create_container()

    # --- idempotency --------------------------------------------------------------------

    def begin_idempotent(
        self, key: str, fingerprint: str, new_message_id: str, window: timedelta
    ) -> IdempotencyClaim:
        """Reserve `key` for this request, or return what an earlier request with it got.

        A request still in flight (or that crashed) under the same key shares its message id:
        every accept step is idempotent on it, so both finish the same accept and the worker
        sends once. A different request under the key comes back as `mismatch`.
        """
        pk = self.key_hash(key)
        now = datetime.now(UTC)
        for _ in range(MAX_CONFLICT_RETRIES):
            row = {
                "PartitionKey": pk,
                "RowKey": "k",
                "fingerprint": fingerprint,
                "messageId": new_message_id,
                "createdAt": iso(now),
                "expiresAt": iso(now + window),
            }
            try:
                with storage_errors():
                    self.idempotency.create_entity(row)
                return IdempotencyClaim(new_message_id, None)
            except ResourceExistsError:
                pass
            existing = read_entity(self.idempotency, pk, "k")
            if existing is None:
                continue
            expires = parse_iso(existing.get("expiresAt"))
            if expires is not None and expires <= now:  # past the window: a new request
                try:
                    with storage_errors():
                        self.idempotency.update_entity(
                            row,
                            mode=UpdateMode.REPLACE,
                            etag=existing.metadata["etag"],
                            match_condition=MatchConditions.IfNotModified,
                        )
                    return IdempotencyClaim(new_message_id, None)
                except HttpResponseError as exc:
                    if exc.status_code == 412:
                        continue
                    raise
            if existing.get("fingerprint") != fingerprint:
                return IdempotencyClaim(str(existing["messageId"]), None, mismatch=True)
            stored = existing.get("response")
            return IdempotencyClaim(
                str(existing["messageId"]), json.loads(stored) if stored else None
            )
        raise Transient("idempotency row kept changing under us")

    @staticmethod
    def key_hash(key: str) -> str:
        """The Idempotency row's PartitionKey (the message row keeps it, for retention and
        erasure to find the row)."""
        return hashlib.sha256(key.encode()).hexdigest()

    def idempotency_row(self, key_hash: str) -> Any:
        return read_entity(self.idempotency, key_hash, "k")

    def replace_idempotency_response(self, row: Any, response: str) -> bool:
        """Rewrite the stored answer of the row just read, under its ETag; False when the row
        changed (or went) in between."""
        entity = {**{k: v for k, v in row.items() if v is not None}, "response": response}
        return put_entity(self.idempotency, entity, etag_of(row))

    def delete_idempotency_row(self, row: Any) -> None:
        """Delete the row unless it changed since read (a new request reusing the key)."""
        try:
            with storage_errors():
                self.idempotency.delete_entity(
                    row["PartitionKey"],
                    row["RowKey"],
                    etag=etag_of(row),
                    match_condition=MatchConditions.IfNotModified,
                )
        except HttpResponseError as exc:
            if exc.status_code != 412:
                raise

    def stored_response(self, key: str) -> Mapping[str, Any] | None:
        """The response the request that claimed `key` stored when it finished (None yet)."""
        row = read_entity(self.idempotency, hashlib.sha256(key.encode()).hexdigest(), "k")
        stored = (row or {}).get("response")
        return dict(json.loads(stored)) if stored else None

    def finish_idempotent(self, key: str, response: Mapping[str, Any]) -> None:
        pk = hashlib.sha256(key.encode()).hexdigest()
        entity = {"PartitionKey": pk, "RowKey": "k", "response": json.dumps(response)}
        with storage_errors():
            self.idempotency.upsert_entity(entity, mode=UpdateMode.MERGE)

    # --- work items and payload blobs ---------------------------------------------------

    def enqueue(
        self, message_id: str, attempt: int, delay_s: float = 0.0, slot: int | None = None
    ) -> None:
        """Put a work item; `slot` is a send slot reserved for it (epoch second)."""
        item: dict[str, Any] = {"messageId": message_id, "attempt": attempt}
        if slot is not None:
            item["slot"] = slot
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
