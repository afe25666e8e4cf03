"""Table Storage plumbing every edge class shares: error mapping, conditional writes, reads, the
fan-out pool. No table of its own and no decisions."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.core.errors import Transient

MAX_CONFLICT_RETRIES = 12
T = TypeVar("T")
log = logging.getLogger(__name__)


@contextmanager
def storage_errors() -> Iterator[None]:
    """Turn retryable storage failures into Transient (the platform retries); the rest propagate."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise Transient(f"storage unreachable: {type(exc).__name__}") from exc
    except HttpResponseError as exc:
        if exc.status_code in (408, 429, 500, 502, 503, 504):
            raise Transient(f"storage answered {exc.status_code}") from exc
        raise


def backoff(attempt: int) -> None:
    """Jittered exponential pause between optimistic-concurrency retries (≤ ~0.3 s)."""
    time.sleep(random.uniform(0, min(0.3, 0.004 * 2**attempt)))  # noqa: S311 - jitter only


def write_op(entity: Mapping[str, Any], etag: str | None) -> tuple[Any, ...]:
    """A transaction operation: create the row, or replace it only if unchanged since read."""
    if etag is None:
        return ("create", entity)
    options = {
        "mode": UpdateMode.REPLACE,
        "etag": etag,
        "match_condition": MatchConditions.IfNotModified,
    }
    return ("update", entity, options)


def put_entity(table: TableClient, entity: Mapping[str, Any], etag: str | None) -> bool:
    """Create the row (`etag` None) or replace it only if unchanged since read; False when
    someone else wrote first (409 on create, 412 on replace, 404 if it was deleted)."""
    return write_entity(table, entity, etag) is not None


def write_entity(table: TableClient, entity: Mapping[str, Any], etag: str | None) -> str | None:
    """`put_entity` that returns the row's new ETag, or None when someone else wrote first."""
    try:
        with storage_errors():
            if etag is None:
                result = table.create_entity(entity)
            else:
                result = table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
    except HttpResponseError as exc:  # ResourceExistsError, ResourceModifiedError, …
        if exc.status_code in (404, 409, 412):
            return None
        raise
    return str(result.get("etag") or "")


# One long-lived pool for storage calls fanned out in parallel (an accept's suppression reads,
# idempotency claim, index writes and queue put; a history page's status rows; a sender's
# counter shards): a pool built per request started a thread per call. Threads start on demand
# and stay. A task on it never waits for another task on it, so a busy pool only queues work
# and cannot deadlock.
FANOUT = ThreadPoolExecutor(max_workers=16, thread_name_prefix="storage-io")


class AfterReply:
    """Writes that may land after the HTTP reply went out (an accept's filing: its
    recipient-index entries, the look at the erasures running, its expiry entry). Each caller
    keeps a backstop that redoes its writes when the process died before they landed
    (`app.sending`: the worker checks before it sends); a failure here is logged, never raised.
    Tasks may wait on FANOUT tasks, never the other way round. `settle` waits for what is in
    flight (tests; a host shutting down)."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="after-reply")
        self._lock = threading.Lock()
        self._pending: set[Future[Any]] = set()

    def submit(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        future = self._pool.submit(fn, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(lambda done: self._done(what, done))

    def _done(self, what: str, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
        exc = future.exception()
        if exc is not None:  # the type only: a storage error's text can hold a row key
            log.warning(
                "after the reply: %s failed (%s); its backstop redoes it", what, type(exc).__name__
            )

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until every write submitted so far has ended; False when `timeout` ran out."""
        with self._lock:
            pending = list(self._pending)
        return not wait(pending, timeout).not_done


AFTER_REPLY = AfterReply(workers=4)


def read_entity(table: TableClient, pk: str, rk: str) -> Any:
    """A point read: the entity, or None when there is none."""
    with storage_errors():
        try:
            return table.get_entity(pk, rk)
        except ResourceNotFoundError:
            return None


def etag_of(entity: Any) -> str | None:
    return None if entity is None else str(entity.metadata["etag"])


def clean(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}


def run_together(calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]) -> Any:
    """Run independent storage calls at once (the first on this thread, the rest on FANOUT);
    wait for all, then raise the first error, else return the first call's result. One call
    runs inline: no thread hop."""
    if not calls:
        return None
    (first, first_args), rest = calls[0], calls[1:]
    futures = [FANOUT.submit(fn, *args) for fn, args in rest]
    try:
        result = first(*first_args)
    finally:
        wait(futures)
    for future in futures:
        future.result()
    return result


def to_cloud_event(stored: Mapping[str, Any]) -> Any:
    """A recorded CloudEvent (`Alert.cloud_event()` as stored) as the SDK's CloudEvent."""
    from azure.core.messaging import CloudEvent

    return CloudEvent(
        source=stored["source"],
        type=stored["type"],
        data=stored["data"],
        subject=stored["subject"],
        id=stored["id"],
        time=datetime.fromisoformat(stored["time"]),
    )


def ping(service: TableServiceClient) -> None:
    """One cheap request with a short deadline (no retry): a health probe must answer within
    seconds when storage does not, not after the SDK's retries."""
    with storage_errors():
        pages = service.list_tables(
            results_per_page=1, connection_timeout=2, read_timeout=2, retry_total=0
        )
        next(iter(pages), None)


BATCH_LIMIT = 100  # entities per `$batch` transaction (one partition each)
# Fewer rows than this in one partition go as single-entity requests (in parallel): azure-core
# spends ~3.5x the CPU of a single-entity request on building and parsing a `$batch`.
BATCH_WORTH_IT = 4


def upsert_many(table: TableClient, entities: Sequence[Mapping[str, Any]]) -> None:
    """Upsert (replace) every entity: one `$batch` per partition and 100 rows when a partition
    has enough of them, single requests otherwise; every request at once. A later entity with
    the same keys wins (a `$batch` may not name one row twice)."""
    keyed = ((str(e["PartitionKey"]), str(e["RowKey"]), e) for e in entities)
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    for _, rows in _by_partition(keyed):
        unique = [clean(e) for e in rows]
        if len(unique) < BATCH_WORTH_IT:
            calls += [(_upsert_one, (table, e)) for e in unique]
            continue
        for chunk in chunks_of(unique):
            ops = [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in chunk]
            calls.append((_submit, (table, ops)))
    run_together(calls)


def _by_partition(rows: Iterable[tuple[str, str, T]]) -> list[tuple[str, list[T]]]:
    """(PartitionKey, RowKey, item) grouped by partition, one item per row (the last named)."""
    grouped: dict[str, dict[str, T]] = {}
    for pk, rk, item in rows:
        grouped.setdefault(pk, {})[rk] = item
    return [(pk, list(items.values())) for pk, items in grouped.items()]


def chunks_of(items: list[T], size: int = BATCH_LIMIT) -> Iterator[list[T]]:
    """Slices of at most `size` items (by default BATCH_LIMIT: what one `$batch` may carry)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _upsert_one(table: TableClient, entity: Mapping[str, Any]) -> None:
    with storage_errors():
        table.upsert_entity(entity, mode=UpdateMode.REPLACE)


def _submit(table: TableClient, ops: list[Any]) -> None:
    with storage_errors():
        table.submit_transaction(ops)


def delete_entities(table: TableClient, rows: Iterable[tuple[str, str]]) -> int:
    """Delete rows by (PartitionKey, RowKey): one `$batch` per partition and ≤ 100 rows; a batch
    that fails because a row is already gone is redone row by row (the SDK answers a missing
    row's delete as done). Returns how many rows were asked to go."""
    deleted = 0
    for pk, unique in _by_partition((pk, rk, rk) for pk, rk in rows):
        for chunk in chunks_of(unique):
            ops: list[Any] = [("delete", {"PartitionKey": pk, "RowKey": rk}) for rk in chunk]
            try:
                with storage_errors():
                    table.submit_transaction(ops)
                deleted += len(chunk)
                continue
            except TableTransactionError as exc:
                if exc.status_code != 404:
                    raise
            for rk in chunk:  # some were gone (a concurrent purge or erasure): one by one
                with storage_errors():
                    table.delete_entity(pk, rk)
                deleted += 1
    return deleted


def query_keys(table: TableClient, query: str, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` rows matching `query` (as few pages as that takes)."""
    out: list[dict[str, Any]] = []
    with storage_errors():
        for row in table.query_entities(query, results_per_page=min(limit, 1000)):
            out.append(dict(row))
            if len(out) >= limit:
                break
    return out
