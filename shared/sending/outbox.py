"""Durable accept-then-send storage: message rows, payload, work queue, idempotency, send slots.

Accepting a send is one same-partition transaction in `<p>Messages` (message row `m`, payload
row `p` when it fits, one `accepted`/`suppressed` status row per recipient), then, together, the
recipient index rows and one queue message `{"messageId", "attempt"}` (the worker adds `"slot"`
when it re-enqueues the item to wait for a send slot it reserved). Every step is idempotent on
the message id, so a retried accept (same Idempotency-Key) finishes the job without a second
send.
Payloads over PAYLOAD_INLINE_LIMIT go to a blob. The payload is deleted when ACS accepted the
message or it failed for good.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import wait
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode

from .. import keys
from ..errors import Conflict, Problem, Transient
from ..state import Fact, apply_fact, iso, parse_iso
from ..status import Status
from ..store import (
    FANOUT,
    MAX_CONFLICT_RETRIES,
    MessageStore,
    etag_of,
    put_entity,
    read_entity,
    storage_errors,
    write_op,
)
from . import ratelimit

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient
    from azure.storage.queue import QueueClient

    from ..suppressions import Suppression
    from .validation import SendRequest

PAYLOAD_ROW = "p"
PAYLOAD_CHUNK = 30_000  # characters per property (a Table string property holds 32 K UTF-16 units)
PAYLOAD_INLINE_LIMIT = 420_000  # characters inline (an entity holds 1 MiB); beyond → blob
SLOT_ROW = ("acs", "slots")
CLAIM_TTL = timedelta(minutes=2)  # a claim older than this is a crashed worker's: take it over


class SendState:
    QUEUED = "queued"  # accepted and waiting in the queue
    HELD = "held"  # waiting: its sender domain is paused (POST /api/senders/{domain}/resume)
    SENDING = "sending"  # claimed by a worker that is calling ACS
    SENT = "sent"  # ACS accepted it (202); delivery reports follow
    FAILED = "failed"  # ACS refused it for good, or every attempt failed


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    message_id: str
    replay: Mapping[str, Any] | None  # the stored response of a finished earlier request


def run_together(calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
    """Run independent storage calls at once (the first on this thread, the rest on FANOUT);
    wait for all, then raise the first error. One call runs inline: no thread hop."""
    if not calls:
        return
    (first, first_args), rest = calls[0], calls[1:]
    futures = [FANOUT.submit(fn, *args) for fn, args in rest]
    try:
        first(*first_args)
    finally:
        wait(futures)
    for future in futures:
        future.result()


class Outbox:
    def __init__(
        self,
        store: MessageStore,
        service: TableServiceClient,
        queue: QueueClient,
        container: ContainerClient,
        prefix: str,
    ) -> None:
        self.store = store
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
        sends once.
        """
        pk = hashlib.sha256(key.encode()).hexdigest()
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
                raise Conflict(
                    "Idempotency-Key was already used with a different request",
                    [Problem("Idempotency-Key", "reuse it only to retry the identical request")],
                )
            stored = existing.get("response")
            return IdempotencyClaim(
                str(existing["messageId"]), json.loads(stored) if stored else None
            )
        raise Transient("idempotency row kept changing under us")

    def finish_idempotent(self, key: str, response: Mapping[str, Any]) -> None:
        pk = hashlib.sha256(key.encode()).hexdigest()
        entity = {"PartitionKey": pk, "RowKey": "k", "response": json.dumps(response)}
        with storage_errors():
            self.idempotency.upsert_entity(entity, mode=UpdateMode.MERGE)

    # --- accept -------------------------------------------------------------------------

    def accept(
        self,
        message_id: str,
        request: SendRequest,
        suppressed: Mapping[str, Suppression],
        now: datetime,
    ) -> None:
        message = request.to_acs_message()
        for kind in ("to", "cc", "bcc"):
            recipients = message.get("recipients", {}).get(kind)
            if recipients:
                message["recipients"][kind] = [
                    r for r in recipients if r["address"].strip().lower() not in suppressed
                ]
        payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        pk = keys.message_key(message_id)
        inline = len(payload) <= PAYLOAD_INLINE_LIMIT
        if not inline:
            with storage_errors():
                self.container.upload_blob(f"{message_id}.json", payload.encode(), overwrite=True)
        summary = {
            "PartitionKey": pk,
            "RowKey": keys.MESSAGE_ROW,
            "sender": request.sender,
            "acceptedAt": iso(now),
            "tags": json.dumps(dict(request.tags)) if request.tags else None,
            "metadata": json.dumps(dict(request.metadata)) if request.metadata else None,
            "recipientCount": len(request.recipients),
            "sendState": SendState.QUEUED,
            "payload": "table" if inline else "blob",
            "sizeBytes": request.size,
        }
        ops: list[Any] = [("create", _clean(summary))]
        if inline:
            ops.append(("create", {"PartitionKey": pk, "RowKey": PAYLOAD_ROW, **_chunks(payload)}))
        rows = []
        for recipient in request.recipients:
            sup = suppressed.get(recipient.key)
            fact = Fact(
                Status.SUPPRESSED if sup else Status.ACCEPTED,
                now,
                "accept",
                classification=_suppressed_classification(sup) if sup else None,
                sender=request.sender,
                accepted_at=now,
            )
            row = apply_fact(None, fact, recipient.address, message_id)
            assert row is not None
            rows.append((recipient, row))
            rk = keys.status_row(keys.address_key(recipient.address))
            entity = {**row, "PartitionKey": pk, "RowKey": rk}
            entity["updatedAt"] = iso(now)
            ops.append(("upsert", _clean(entity), {"mode": UpdateMode.REPLACE}))
        try:
            with storage_errors():
                self.store.messages.submit_transaction(ops)
        except TableTransactionError as exc:
            if not (exc.status_code == 409 and exc.index == 0):
                raise
            # Accepted before (a retry under the same Idempotency-Key): finish the other steps.
            existing = read_entity(self.store.messages, pk, keys.MESSAGE_ROW)
            if existing is not None and existing.get("sendState") != SendState.QUEUED:
                return
        # Only now, with the rows committed: the worker drops a work item whose message row it
        # cannot find, and the history must never point at a message that was not accepted.
        # The index writes and the queue put depend on nothing but the transaction, so they go
        # out together; the caller replies 202 only once every one of them succeeded.
        writes: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
            (self.store.write_index, (keys.address_key(r.address), message_id, row))
            for r, row in rows
        ]
        if len(suppressed) < len({r.key for r in request.recipients}):
            writes.append((self.enqueue, (message_id, 0)))
        run_together(writes)

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

    # --- worker side --------------------------------------------------------------------

    def message(self, message_id: str) -> Any:
        return read_entity(self.store.messages, keys.message_key(message_id), keys.MESSAGE_ROW)

    def claim(self, message_id: str, now: datetime) -> Any:
        """Mark the message `sending` under its ETag; None when someone else owns or ended it."""
        for _ in range(MAX_CONFLICT_RETRIES):
            row = self.message(message_id)
            if row is None or row.get("sendState") in (SendState.SENT, SendState.FAILED):
                return None
            claimed = parse_iso(row.get("claimedAt"))
            if row.get("sendState") == SendState.SENDING and claimed and now - claimed < CLAIM_TTL:
                return None
            try:
                with storage_errors():
                    self.store.messages.update_entity(
                        {**row, "sendState": SendState.SENDING, "claimedAt": iso(now)},
                        mode=UpdateMode.REPLACE,
                        etag=row.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                return self.message(message_id)
            except HttpResponseError as exc:
                if exc.status_code != 412:
                    raise
        raise Transient("message row kept changing under us")

    def release(self, message_id: str) -> None:
        pk = keys.message_key(message_id)
        entity = {"PartitionKey": pk, "RowKey": keys.MESSAGE_ROW, "sendState": SendState.QUEUED}
        with storage_errors():
            self.store.messages.upsert_entity(entity, mode=UpdateMode.MERGE)

    def payload(self, message_id: str, row: Mapping[str, Any]) -> dict[str, Any] | None:
        pk = keys.message_key(message_id)
        if row.get("payload") == "blob":
            with storage_errors():
                try:
                    data = self.container.download_blob(f"{message_id}.json").readall()
                except ResourceNotFoundError:
                    return None
            return dict(json.loads(data))
        entity = read_entity(self.store.messages, pk, PAYLOAD_ROW)
        if entity is None:
            return None
        text = "".join(entity[k] for k in sorted(entity) if k.startswith("c"))
        return dict(json.loads(text))

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

    def finish(
        self,
        message_id: str,
        state: str,
        fact: Fact,
        now: datetime,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """End the send: message state, recipient facts, payload deletion, in one transaction."""
        pk = keys.message_key(message_id)
        msg = self.message(message_id)
        for _ in range(MAX_CONFLICT_RETRIES):
            rows = {
                r["RowKey"]: r
                for r in self.store.messages.query_entities(
                    f"PartitionKey eq '{pk.replace(chr(39), chr(39) * 2)}' and RowKey ge 'r|' "
                    "and RowKey lt 'r}'"
                )
            }
            ops: list[Any] = []
            for row in rows.values():
                if row.get("status") == Status.SUPPRESSED.value and row.get("eventId") == "accept":
                    continue  # never handed to ACS
                new = apply_fact(row, fact, str(row.get("address")), message_id)
                if new is None:
                    continue
                entity = _clean({**new, "PartitionKey": pk, "RowKey": row["RowKey"]})
                entity["updatedAt"] = iso(now)
                ops.append(write_op(entity, etag_of(row)))
            written = len(ops)
            summary = {
                "PartitionKey": pk,
                "RowKey": keys.MESSAGE_ROW,
                "sendState": state,
                "finishedAt": iso(now),
                **(extra or {}),
            }
            ops.append(("upsert", _clean(summary), {"mode": UpdateMode.MERGE}))
            if msg is not None and msg.get("payload") == "table":
                ops.append(("delete", {"PartitionKey": pk, "RowKey": PAYLOAD_ROW}))
            try:
                with storage_errors():
                    results = self.store.messages.submit_transaction(ops)
                # The delivery reports that follow find these rows in the cache: no read.
                for op, result in zip(ops[:written], results, strict=False):
                    self.store.cache.put(pk, op[1]["RowKey"], result.get("etag"), op[1])
                break
            except TableTransactionError as exc:
                if exc.status_code == 404 and ops[exc.index][0] == "delete":
                    msg = {**(msg or {}), "payload": "gone"}  # deleted by an earlier finish
                    continue
                if exc.status_code in (409, 412):
                    continue
                raise
        else:
            raise Transient("recipient rows kept changing under us")
        if msg is not None and msg.get("payload") == "blob":
            with storage_errors(), suppress(ResourceNotFoundError):
                self.container.delete_blob(f"{message_id}.json")


def _chunks(text: str) -> dict[str, str]:
    return {
        f"c{i:02d}": text[start : start + PAYLOAD_CHUNK]
        for i, start in enumerate(range(0, len(text), PAYLOAD_CHUNK))
    }


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}


def _suppressed_classification(sup: Suppression) -> dict[str, Any]:
    return {
        "bounceType": None,
        "retryable": False,
        "suppress": True,
        "reason": "suppressed",
        "smtpCode": None,
        "enhancedCode": None,
        "explanation": (
            f"Not sent: the address is on this service's suppression list since {sup.since} "
            f"(reason: {sup.reason})."
        ),
        "action": (
            "Correct the address, or reactivate it (DELETE /api/suppressions/{address}) "
            "if the recipient confirms it works again."
        ),
        "anymail": {"eventType": "rejected", "rejectReason": "bounced"},
        "ses": {"bounceType": "Permanent", "bounceSubType": "OnAccountSuppressionList"},
    }
