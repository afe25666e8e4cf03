"""Table transactions without azure-core's per-request thread pools (`shared/edge/sdk_batches`):
the stock steps still create them (else the module has no reason to exist), ours do not, and a
transaction behaves the same either way against Azurite, its errors included."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.edge import sdk_batches
from shared.edge.clients import STORAGE_OPTIONS, transport_options


@contextmanager
def _thread_starts() -> Iterator[list[int]]:
    started = [0]
    stock = threading.Thread.start

    def counted(self: threading.Thread) -> None:
        started[0] += 1
        stock(self)

    threading.Thread.start = counted  # type: ignore[method-assign]
    try:
        yield started
    finally:
        threading.Thread.start = stock  # type: ignore[method-assign]


@pytest.fixture
def table(storage_connection_string: str) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(
        storage_connection_string, **STORAGE_OPTIONS, **transport_options()
    )
    client = service.create_table(f"B{uuid.uuid4().hex[:12]}")
    try:
        yield client
    finally:
        client.delete_table()


def _rows(pk: str, count: int) -> list[dict[str, Any]]:
    return [{"PartitionKey": pk, "RowKey": f"r{n}", "text": "é" * 40, "n": n} for n in range(count)]


def _both(run: Callable[[str], Any]) -> tuple[Any, Any]:
    """`run` with azure-core's own steps, then with ours (on a fresh partition each)."""
    assert sdk_batches.inline_batch_steps()
    with sdk_batches.stock_batch_steps():
        stock = run("stock")
    return stock, run("inline")


def test_stock_steps_still_start_threads_and_ours_do_not(table: TableClient) -> None:
    def transaction(pk: str) -> int:
        with _thread_starts() as started:
            table.submit_transaction([("create", row) for row in _rows(pk, 3)])
        return started[0]

    stock, inline = _both(transaction)
    # If azure-core stops starting threads per `$batch`, the module has done its job: delete it.
    assert stock >= 2
    assert inline == 0


def test_a_transaction_writes_and_answers_the_same(table: TableClient) -> None:
    def transaction(pk: str) -> list[Any]:
        ops: list[Any] = [("create", row) for row in _rows(pk, 4)]
        ops.append(("upsert", {**_rows(pk, 5)[4], "extra": True}, {"mode": UpdateMode.MERGE}))
        results = table.submit_transaction(ops)
        stored = sorted(
            (e["RowKey"], e["n"], e["text"], e.get("extra"))
            for e in table.query_entities(f"PartitionKey eq '{pk}'")
        )
        return [sorted(r) for r in results] + stored  # each result's keys (etag, ...), the rows

    stock, inline = _both(transaction)
    assert inline == stock
    assert len(inline) == 10


def test_a_failed_transaction_names_the_same_operation(table: TableClient) -> None:
    def failing(pk: str) -> tuple[Any, ...]:
        table.create_entity(_rows(pk, 3)[1])
        with pytest.raises(TableTransactionError) as caught:
            table.submit_transaction([("create", row) for row in _rows(pk, 3)])
        return caught.value.status_code, caught.value.error_code, caught.value.index

    stock, inline = _both(failing)
    assert inline == stock
    assert inline[2] == 1  # the second operation, the one whose row existed


def test_a_stale_etag_fails_the_same(table: TableClient) -> None:
    def stale(pk: str) -> tuple[Any, ...]:
        row = _rows(pk, 1)[0]
        table.create_entity(row)
        etag = table.get_entity(pk, "r0").metadata["etag"]
        table.upsert_entity({**row, "n": 9})
        update = (
            "update",
            row,
            {
                "mode": UpdateMode.REPLACE,
                "etag": etag,
                "match_condition": MatchConditions.IfNotModified,
            },
        )
        with pytest.raises(TableTransactionError) as caught:
            table.submit_transaction([update])
        return caught.value.status_code, caught.value.error_code

    stock, inline = _both(stale)
    assert inline == stock
    assert inline[0] == 412


def test_the_app_clients_turn_it_on(app_env: dict[str, str]) -> None:
    from azure.core.pipeline import _base

    from shared.app import wiring as services

    def prepare() -> Any:
        return _base.Pipeline.__dict__["_prepare_multipart_mixed_request"].__func__

    with sdk_batches.stock_batch_steps():
        assert prepare() is not sdk_batches._prepare_inline
        services.reset()
        try:
            services.message_store()  # builds the table service
            assert prepare() is sdk_batches._prepare_inline
        finally:
            services.reset()
