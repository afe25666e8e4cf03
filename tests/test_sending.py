"""Send flow: real Azurite tables/queue/blobs, the real ACS SDK against the local ACS sandbox."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from shared.app import sending as sending_module
from shared.app import wiring as services
from shared.core import keys
from shared.core.errors import (
    Conflict,
    InvalidInput,
    PayloadTooLarge,
    Transient,
    UnsupportedMediaType,
)
from shared.core.sending import ratelimit
from shared.core.suppression import Change
from shared.edge import messages as store_module
from shared.edge import outbox as outbox_module
from shared.edge import tables
from shared.edge.outbox import Outbox
from shared.edge.suppressions import SuppressionList

from .send_harness import drain, feed_reports, lookup, operations, post, send_queue
from .servers import Capture

# The send harness (tests/send_harness.py, fixtures in conftest) under this module's short names.


@pytest.fixture
def capture(send_capture: Capture) -> Capture:
    return send_capture


@pytest.fixture
def sandbox(send_sandbox: str) -> str:
    return send_sandbox


@pytest.fixture
def env(send_env: dict[str, str]) -> dict[str, str]:
    return send_env


BODY = {"to": [{"address": "delivered@simulator.test"}], "subject": "Hi", "plainText": "Hello"}
# A message to an address that gets erased while it is on its way, and to one that does not.
GONE_AND_B = {**BODY, "to": [{"address": "gone@example.com"}, {"address": "b@example.com"}]}


def test_happy_path_to_delivered_and_bounced(
    env: dict[str, str], sandbox: str, capture: Capture
) -> None:
    body = {
        "to": [{"address": "delivered@simulator.test"}, {"address": "bounce@simulator.test"}],
        "subject": "Receipt",
        "plainText": "Thanks",
        "metadata": {"orderId": "42"},
    }
    accepted = post(body)
    assert accepted.status == 202
    message_id = accepted.body["messageId"]
    assert {r["status"] for r in accepted.body["recipients"]} == {"accepted"}
    assert lookup(message_id)["recipients"][0]["status"] == "accepted"
    assert drain(env) == ["sent"]
    (op,) = operations(sandbox)
    assert op["id"] == message_id  # our id is ACS's operation id
    assert op["sendCount"] == 1
    view = lookup(message_id)
    assert {r["status"] for r in view["recipients"]} == {"sent"}
    # The worker's write left each status row in this instance's cache, under its real ETag:
    # the reports below skip their reads.
    store = services.message_store()
    status_rows = [
        r
        for r in store.messages.query_entities(f"PartitionKey eq '{keys.message_key(message_id)}'")
        if r["RowKey"].startswith("r|")
    ]
    assert len(status_rows) == 2
    for row in status_rows:
        cached = store.cache.get(row["PartitionKey"], row["RowKey"])
        assert cached is not None
        assert cached[0] == row.metadata["etag"]
    feed_reports(capture, 2)
    view = lookup(message_id)
    by_addr = {r["address"]: r for r in view["recipients"]}
    assert by_addr["delivered@simulator.test"]["status"] == "delivered"
    bounced = by_addr["bounce@simulator.test"]
    assert bounced["status"] == "bounced"
    assert bounced["bounceType"] == "hard"
    assert bounced["enhancedCode"] == "5.1.1"
    assert bounced["latencyMs"] is not None
    assert view["metadata"] == {"orderId": "42"}
    # the payload is gone once ACS accepted the message
    rows = services.message_store().message_rows(message_id)
    assert not [r for r in rows if r["RowKey"] == store_module.PAYLOAD_ROW]


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"{not json", "application/json", InvalidInput),
        (BODY, "text/plain", UnsupportedMediaType),
        ({**BODY, "subject": ""}, "application/json", InvalidInput),
        ({**BODY, "to": []}, "application/json", InvalidInput),
        (
            {**BODY, "to": [{"address": "a@b.test\r\nBcc: x@y.test"}]},
            "application/json",
            InvalidInput,
        ),
        (
            {**BODY, "to": [{"address": f"u{i}@example.com"} for i in range(51)]},
            "application/json",
            InvalidInput,
        ),
        ({**BODY, "senderAddress": "ceo@elsewhere.test"}, "application/json", InvalidInput),
        (
            {
                **BODY,
                "attachments": [
                    {"name": "a.bin", "contentType": "text/plain", "contentInBase64": "!!!"}
                ],
            },
            "application/json",
            InvalidInput,
        ),
    ],
    ids=["not-json", "wrong-type", "no-subject", "no-to", "injection", "51", "sender", "b64"],
)
def test_invalid_requests_queue_nothing(
    env: dict[str, str], body: Any, content_type: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        post(body, content_type=content_type)
    assert send_queue(env).get_queue_properties().approximate_message_count == 0


def test_too_large_is_413(env: dict[str, str]) -> None:
    import base64

    blob = base64.b64encode(b"x" * (10 * 1024 * 1024 + 1)).decode()
    body = {
        **BODY,
        "attachments": [{"name": "a.txt", "contentType": "text/plain", "contentInBase64": blob}],
    }
    with pytest.raises(PayloadTooLarge):
        post(body)
    assert send_queue(env).get_queue_properties().approximate_message_count == 0


def test_idempotent_replay_and_conflict(env: dict[str, str], sandbox: str) -> None:
    first = post(BODY, key="order-42")
    again = post(BODY, key="order-42")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.body == first.body
    with pytest.raises(Conflict):
        post({**BODY, "subject": "Different"}, key="order-42")
    assert drain(env) == ["sent"]
    assert len(operations(sandbox)) == 1


def test_concurrent_requests_with_one_key_send_once(env: dict[str, str], sandbox: str) -> None:
    barrier = threading.Barrier(8)
    ids: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            ids.append(post(BODY, key="race-1").body["messageId"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids)) == 1
    # A replay writes nothing: one history entry and one work item, whoever won the race.
    (message_id,) = set(ids)
    items, _ = services.message_store().recipient_history(BODY["to"][0]["address"], 50, None)
    assert [i["messageId"] for i in items].count(message_id) == 1
    assert send_queue(env).get_queue_properties().approximate_message_count == 1
    assert drain(env) == ["sent"]
    ops = operations(sandbox)
    assert len(ops) == 1
    assert ops[0]["sendCount"] == 1


def test_suppressed_recipients(env: dict[str, str], sandbox: str) -> None:
    from datetime import UTC, datetime

    services.suppression_list().apply(
        "dead@example.com",
        Change(active=True, reason="manual", origin="operator:test", at=datetime.now(UTC)),
    )
    with pytest.raises(Conflict):
        post({**BODY, "to": [{"address": "Dead@Example.com"}]})
    assert drain(env) == []
    partial = post({**BODY, "to": [{"address": "dead@example.com"}, {"address": "ok@example.com"}]})
    statuses = {r["address"]: r["status"] for r in partial.body["recipients"]}
    assert statuses == {"dead@example.com": "suppressed", "ok@example.com": "accepted"}
    drain(env)
    (op,) = operations(sandbox)
    assert op["recipients"] == ["ok@example.com"]
    view = lookup(partial.body["messageId"])
    dead = next(r for r in view["recipients"] if r["address"] == "dead@example.com")
    assert dead["status"] == "suppressed"
    assert "suppression list" in dead["explanation"]


def test_429_storm_sends_every_message_exactly_once(env: dict[str, str], sandbox: str) -> None:
    httpx.post(f"{sandbox}/sandbox/quota", json={"perMinute": 25, "perHour": 100_000})
    ids = [post({**BODY, "subject": f"n{i}"}).body["messageId"] for i in range(40)]
    results = drain(env, timeout=150, idle=3)
    assert results.count("sent") == 40
    assert "retry_after" in results  # the sandbox really throttled us
    ops = operations(sandbox)
    assert sorted(o["id"] for o in ops) == sorted(ids)
    assert all(o["sendCount"] == 1 for o in ops)


def test_own_rate_limit_reserves_slots_and_wakes_each_message_once(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the rate, a message reserves its own later slot and sleeps until then (no herd
    waking at every freed slot); past the horizon it reserves nothing and asks again later.
    Nothing is lost either way."""
    monkeypatch.setenv("SEND_RATE_PER_MINUTE", "3")
    monkeypatch.setenv("SEND_RATE_PER_HOUR", "4")
    services.reset()
    for i in range(6):
        post({**BODY, "subject": f"r{i}"})
    queue, box = send_queue(env), services.outbox()
    requeued: list[dict[str, Any]] = []
    enqueue = box.enqueue

    def spy(message_id: str, attempt: int, delay_s: float = 0.0, slot: int | None = None) -> None:
        requeued.append(
            {"messageId": message_id, "attempt": attempt, "slot": slot, "delay": delay_s}
        )
        enqueue(message_id, attempt, delay_s, slot)

    monkeypatch.setattr(box, "enqueue", spy)
    start = datetime.now(UTC)
    results = []
    for msg in queue.receive_messages(max_messages=32, visibility_timeout=60):
        results.append(services.sending().send_queued(msg.content, now=start))
        queue.delete_message(msg)
    assert sorted(results) == ["rate-limited", "rate-limited", "scheduled", "sent", "sent", "sent"]
    assert queue.get_queue_properties().approximate_message_count == 3  # deferred, not lost
    (scheduled,) = [i for i in requeued if i["slot"] is not None]
    assert 59 <= scheduled["slot"] - start.timestamp() <= 61  # the first send leaves the minute
    assert scheduled["delay"] == pytest.approx(scheduled["slot"] - start.timestamp())
    # The hour is full until an hour after the first sends: those wait past the horizon,
    # spread over half of it, and reserve nothing.
    later = [i for i in requeued if i["slot"] is None]
    horizon = ratelimit.HORIZON_S
    assert all(3600 - horizon - 1 <= i["delay"] <= 3600 - horizon / 2 + 1 for i in later)
    # Play the wake-up: the scheduled message sends on its slot, reserving no second one.
    woke = datetime.fromtimestamp(scheduled["slot"], UTC)
    assert services.sending().send_queued(json.dumps(scheduled), now=woke) == "sent"
    window = box.throttle.get_entity(*outbox_module.SLOT_ROW)["window"]
    assert sum(ratelimit.decode(window).values()) == 4  # one slot per send: the hour is full
    sending = services.sending()
    assert all(sending.send_queued(json.dumps(i), now=woke) == "rate-limited" for i in later)
    # A slot missed by minutes (the host was down) is not used: the message reserves afresh.
    stale = {**later[0], "slot": scheduled["slot"]}
    assert sending.send_queued(json.dumps(stale), now=woke + timedelta(minutes=3)) == "rate-limited"


def test_acs_permanent_error_fails_explained(env: dict[str, str], sandbox: str) -> None:
    accepted = post({**BODY, "senderAddress": "news@unlinked.test"})
    assert drain(env) == ["failed"]
    (recipient,) = lookup(accepted.body["messageId"])["recipients"]
    assert recipient["status"] == "failed"
    assert "domain" in recipient["explanation"].lower()
    assert operations(sandbox) == []


def test_large_payload_goes_to_blob_and_is_deleted(env: dict[str, str]) -> None:
    import base64

    data = base64.b64encode(b"y" * 600_000).decode()
    body = {
        **BODY,
        "attachments": [{"name": "big.txt", "contentType": "text/plain", "contentInBase64": data}],
    }
    accepted = post(body)
    message_id = accepted.body["messageId"]
    box: Outbox = services.outbox()
    assert services.message_store().message(message_id)["payload"] == "blob"
    assert box.container.get_blob_client(f"{message_id}.json").exists()
    assert drain(env) == ["sent"]
    assert not box.container.get_blob_client(f"{message_id}.json").exists()


def test_poisoned_item_fails_for_good(env: dict[str, str]) -> None:
    accepted = post(BODY)
    message_id = accepted.body["messageId"]
    send_queue(env).clear_messages()  # as if the host had moved it to the poison queue
    assert services.sending().fail_poisoned(json.dumps({"messageId": message_id})) == "failed"
    (recipient,) = lookup(message_id)["recipients"]
    assert recipient["status"] == "failed"
    assert recipient["explanation"].startswith("Not sent")
    poisoned = json.dumps({"messageId": message_id})
    assert services.sending().fail_poisoned(poisoned) == "already-done"


# --- what the accept does concurrently, and what it must still do first --------------------


def test_accepted_means_stored_and_queued_then_filed_within_two_seconds(
    env: dict[str, str],
) -> None:
    """When the accept returns, the rows and the work item are in storage; every recipient's
    history entry and the expiry entry follow the reply, well within the 2 s allowed."""
    addresses = [f"r{i}@example.com" for i in range(3)]
    accepted = post({**BODY, "to": [{"address": a} for a in addresses]}, settle=False)
    replied = time.monotonic()
    message_id, accepted_at = accepted.body["messageId"], accepted.body["acceptedAt"]
    rows = {r["RowKey"] for r in services.message_store().message_rows(message_id)}
    assert {keys.MESSAGE_ROW, store_module.PAYLOAD_ROW} <= rows
    assert len([rk for rk in rows if rk.startswith("r|")]) == 3
    (item,) = send_queue(env).peek_messages(max_messages=32)
    work = {"messageId": message_id, "attempt": 0, "acceptedAt": accepted_at}
    assert json.loads(item.content) == work
    store = services.message_store()
    while True:
        shown = [store.recipient_history(a, 10, None)[0] for a in addresses]
        noted = store.expiry_noted(message_id, datetime.fromisoformat(accepted_at))
        if noted and all([i["messageId"] for i in items] == [message_id] for items in shown):
            break
        assert time.monotonic() - replied < 2.0, shown
        time.sleep(0.02)


def test_the_worker_files_an_accept_whose_host_died_after_its_reply(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writes after the reply never ran (the host died right after its 202): before the
    worker sends the accept's work item it finds no expiry entry and writes the recipients'
    history entries and the expiry entry itself; a poisoned work item does the same."""
    store = services.message_store()
    monkeypatch.setattr(tables.AFTER_REPLY, "submit", lambda *args: None)
    sent = post({**BODY, "to": [{"address": "a@example.com"}, {"address": "b@example.com"}]})
    failed = post({**BODY, "to": [{"address": "c@example.com"}]})
    monkeypatch.undo()
    cases = ((sent, ["a@example.com", "b@example.com"]), (failed, ["c@example.com"]))
    for accepted, addresses in cases:
        at = datetime.fromisoformat(accepted.body["acceptedAt"])
        assert not store.expiry_noted(accepted.body["messageId"], at)
        assert all(not store.recipient_history(a, 10, None)[0] for a in addresses)
    work = {"messageId": failed.body["messageId"], "attempt": 0}
    poisoned = json.dumps({**work, "acceptedAt": failed.body["acceptedAt"]})
    assert services.sending().fail_poisoned(poisoned) == "failed"
    assert sorted(drain(env)) == ["already-done", "sent"]
    for accepted, addresses in cases:
        message_id = accepted.body["messageId"]
        assert store.expiry_noted(message_id, datetime.fromisoformat(accepted.body["acceptedAt"]))
        for address in addresses:
            (entry,) = store.recipient_history(address, 10, None)[0]
            assert entry["messageId"] == message_id


def test_the_worker_files_and_erases_before_it_sends(
    env: dict[str, str], sandbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host died after its 202 and an erasure of one recipient ran before the worker came:
    the erasure could not find the message (not in any history yet); the worker, filing it,
    erases that recipient from it before it sends, and sends to the other one only."""
    monkeypatch.setattr(tables.AFTER_REPLY, "submit", lambda *args: None)
    accepted = post(GONE_AND_B)
    monkeypatch.undo()
    message_id = accepted.body["messageId"]
    assert "recipientIndex" not in _erase_gone()["thisRequest"]
    assert drain(env) == ["sent"]
    (op,) = [o for o in operations(sandbox) if o["id"] == message_id]
    assert op["recipients"] == ["b@example.com"]
    store = services.message_store()
    assert not store.recipient_history("gone@example.com", 10, None)[0]
    (entry,) = store.recipient_history("b@example.com", 10, None)[0]
    assert entry["messageId"] == message_id


def test_an_accept_builds_no_thread_pool(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One long-lived pool (tables.FANOUT) serves every accept; none is built per request."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a thread pool built for one request")

    # tables.py is the one module of ours that builds a pool (FANOUT, at import)
    monkeypatch.setattr(tables, "ThreadPoolExecutor", refuse)
    post({**BODY, "to": [{"address": f"p{i}@example.com"} for i in range(3)]}, key="pools-1")
    post(BODY)
    assert sorted(drain(env)) == ["sent", "sent"]


def test_claim_and_suppression_reads_run_together_claim_answers_first(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Idempotency-Key claim and the suppression reads go out at once. A replay or a 422
    for the key stands even when the reads fail; a new request needs them, so it fails (503)
    and nothing is queued."""
    first = post(BODY, key="order-7")

    def unreachable(self: SuppressionList, address: str) -> None:
        raise Transient("suppression table unreachable")

    monkeypatch.setattr(SuppressionList, "get", unreachable)
    again = post(BODY, key="order-7")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.body == first.body
    with pytest.raises(Conflict):
        post({**BODY, "subject": "Different"}, key="order-7")
    with pytest.raises(Transient):
        post(BODY, key="order-8")
    with pytest.raises(Transient):
        post(BODY)
    assert drain(env) == ["sent"]


def test_active_for_reads_one_address_inline_and_several_on_the_pool(
    env: dict[str, str],
) -> None:
    suppressions = services.suppression_list()
    suppressions.apply(
        "x@example.com",
        Change(active=True, reason="manual", origin="operator:test", at=datetime.now(UTC)),
    )

    class Recording(ThreadPoolExecutor):
        maps = 0

        def map(self, *args: Any, **kwargs: Any) -> Any:
            Recording.maps += 1
            return super().map(*args, **kwargs)

    with Recording(2) as pool:
        assert list(suppressions.active_for(["X@Example.com "], pool)) == ["x@example.com"]
        assert Recording.maps == 0  # one address: no thread hop
        both = suppressions.active_for(["x@example.com", "y@example.com", "X@example.com"], pool)
        assert list(both) == ["x@example.com"]
        assert Recording.maps == 1
    assert list(suppressions.active_for(["y@example.com", "x@example.com"])) == ["x@example.com"]


def test_run_together_waits_for_every_call_then_raises() -> None:
    done: list[str] = []

    def slow() -> None:
        time.sleep(0.05)
        done.append("slow")

    def broken() -> None:
        raise Transient("storage answered 503")

    with pytest.raises(Transient):
        tables.run_together([(broken, ()), (slow, ())])
    assert done == ["slow"]  # never a reply while a write may still be in flight
    with pytest.raises(Transient):
        tables.run_together([(slow, ()), (broken, ())])
    threads: list[threading.Thread] = []
    tables.run_together([(lambda: threads.append(threading.current_thread()), ())])
    assert threads == [threading.current_thread()]  # a single call runs inline


# --- the accept's rounds, the key's window, and accepts that stopped half-way -------------


@contextmanager
def timed_requests(delay_s: float) -> Iterator[list[tuple[float, float, str, str]]]:
    """Every azure-core request as (start, end, method, path), each held `delay_s` first: then
    requests sent together overlap and a request sent after another cannot. (The app builds
    its own clients, so the transport class is the one seam; bench/stack_bench.py does the
    same.)"""
    from azure.core.pipeline.transport import RequestsTransport

    seen: list[tuple[float, float, str, str]] = []
    original = RequestsTransport.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        time.sleep(delay_s)
        try:
            return original(self, request, **kwargs)
        finally:
            seen.append((start, time.monotonic(), request.method, urlsplit(request.url).path))

    RequestsTransport.send = send  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        RequestsTransport.send = original  # type: ignore[method-assign]


def rounds(seen: list[tuple[float, float, str, str]]) -> int:
    """The longest chain of requests each sent after the one before it had its answer."""
    ordered = sorted(seen, key=lambda r: r[1])
    depth: list[int] = []
    for start, _end, _method, _path in ordered:
        before = [d for (_s, e, *_), d in zip(ordered, depth, strict=False) if e <= start]
        depth.append(1 + max(before, default=0))
    return max(depth, default=0)


# What an accept touches: the suppression list, the Messages table (reads and its `$batch`),
# the send queue, the recipient index and the expiry index.
ACCEPT_PATHS = ("Suppressions(", "Messages(", "$batch", "/email-send/", "RecipientIndex", "Expiry")


@pytest.mark.parametrize("key", [None, "rounds-1"])
def test_an_accept_replies_after_two_rounds_and_files_after_the_reply(
    env: dict[str, str], key: str | None
) -> None:
    """Before the reply: [suppression reads ∥ Messages transaction (∥ the previous window's
    row, with a key)] → [queue put], nothing else, and the queue put only after the transaction.
    After it: the index row, then the expiry entry (the sign, for a retry and for the worker,
    that the message was queued and filed)."""
    post(BODY)  # first use: clients built, tables there
    with timed_requests(0.15) as seen:
        accepted = post(BODY, key=key, settle=False)
        replied = time.monotonic()
        assert tables.AFTER_REPLY.settle(5.0)
    assert accepted.status == 202
    # (Other threads of this process may flush counters meanwhile: only the accept's tables.)
    ours = [r for r in seen if any(t in r[3] for t in ACCEPT_PATHS)]
    before = [r for r in ours if r[1] <= replied]
    after = [r for r in ours if r[1] > replied]
    assert rounds(before) == 2, before
    # the suppression state row and the erasure tombstone, the transaction (and the previous
    # window's message row), then the queue put
    assert len(before) == (5 if key else 4), before
    (batch,) = [r for r in before if r[3].endswith("$batch")]
    (put,) = [r for r in before if r[3].endswith("/email-send/messages")]
    assert put[0] >= batch[1]
    (index,) = [r for r in after if "RecipientIndex" in r[3]]
    (expiry,) = [r for r in after if "Expiry" in r[3]]
    assert len(after) == 2, after
    assert index[0] >= put[1]
    assert expiry[0] >= index[1]
    assert sorted(drain(env)) == ["sent", "sent"]


def test_a_suppressed_recipient_is_corrected_before_anything_is_queued(env: dict[str, str]) -> None:
    services.suppression_list().apply(
        "dead@example.com",
        Change(active=True, reason="manual", origin="operator:test", at=datetime.now(UTC)),
    )
    body = {**BODY, "to": [{"address": "Dead@Example.com"}, {"address": "ok@example.com"}]}
    post(BODY)  # first use: clients built, tables there
    with timed_requests(0.1) as seen:
        first = post(body, key="partly-1")
    # the accept's transaction, the correcting one, then (only then) the queue put
    accept, correct = sorted((r for r in seen if r[3].endswith("$batch")), key=lambda r: r[0])
    (put,) = [r for r in seen if r[3].endswith("/email-send/messages")]
    assert accept[1] <= correct[0]
    assert correct[1] <= put[0]
    statuses = {r["address"]: r["status"] for r in first.body["recipients"]}
    assert statuses == {"Dead@Example.com": "suppressed", "ok@example.com": "accepted"}
    again = post(body, key="partly-1")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.body == first.body
    summary = services.message_store().message(first.body["messageId"])
    assert "dead" not in json.dumps(dict(summary)).lower()  # the key's record names nobody
    payload = json.loads(services.message_store().payload(first.body["messageId"]) or "{}")
    assert [r["address"] for r in payload["recipients"]["to"]] == ["ok@example.com"]


def test_a_refused_request_leaves_nothing_and_its_key_can_be_used_once_it_can_send(
    env: dict[str, str],
) -> None:
    suppressions = services.suppression_list()
    at = datetime.now(UTC)
    suppressions.apply("gone@example.com", Change(True, "manual", "operator:t", at, operator=True))
    body = {**BODY, "to": [{"address": "gone@example.com"}]}
    for _ in range(2):
        with pytest.raises(Conflict):
            post(body, key="refused-1")
    later = at + timedelta(seconds=1)
    suppressions.apply(
        "gone@example.com", Change(False, "manual", "operator:t", later, operator=True)
    )
    accepted = post(body, key="refused-1")
    assert "Idempotent-Replayed" not in accepted.headers
    rows = services.message_store().message_rows(accepted.body["messageId"])
    assert [r["status"] for r in rows if r["RowKey"].startswith("r|")] == ["accepted"]
    assert drain(env) == ["sent"]


class _Clock(datetime):
    at = datetime(2026, 1, 1, tzinfo=UTC)

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return cls.at


def test_a_key_is_remembered_for_its_window_across_an_epoch_boundary(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """IDEMPOTENCY_WINDOW_HOURS (24): the id is derived under the window's epoch, and a retry
    also finds the previous epoch's message, so what counts is the time since the accept."""
    monkeypatch.setattr(sending_module, "datetime", _Clock)
    boundary = datetime.fromtimestamp(86_400 * 20_500, UTC)  # an epoch of 24 h starts here
    _Clock.at = boundary - timedelta(minutes=1)
    first = post(BODY, key="window-1")
    _Clock.at = boundary + timedelta(minutes=1)  # the next epoch, two minutes later
    again = post(BODY, key="window-1")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.body == first.body
    with pytest.raises(Conflict):
        post({**BODY, "subject": "Different"}, key="window-1")
    _Clock.at = boundary + timedelta(hours=23, minutes=59)  # 24 h after the first: a new send
    later = post({**BODY, "subject": "Different"}, key="window-1")
    assert "Idempotent-Replayed" not in later.headers
    assert later.body["messageId"] != first.body["messageId"]
    _Clock.at = boundary + timedelta(hours=24, minutes=1)  # the epoch after: `later` is found
    retried = post({**BODY, "subject": "Different"}, key="window-1")
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.body == later.body
    assert send_queue(env).get_queue_properties().approximate_message_count == 2


def test_a_retry_finishes_an_accept_that_died_before_its_queue_put(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sending_module, "REPLAY_WAIT_S", 0.3)

    class Died(BaseException):
        """The host went away (no error handling runs)."""

    def die(*args: Any, **kwargs: Any) -> None:
        raise Died

    with monkeypatch.context() as m:
        m.setattr(sending_module.Sending, "_enqueue_and_file", die)
        with pytest.raises(Died):
            post(BODY, key="crash-1")
    assert send_queue(env).get_queue_properties().approximate_message_count == 0
    again = post(BODY, key="crash-1")
    assert again.status == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    items, _ = services.message_store().recipient_history(BODY["to"][0]["address"], 50, None)
    assert [i["messageId"] for i in items] == [again.body["messageId"]]
    assert post(BODY, key="crash-1").body == again.body  # finished: a replay writes nothing
    assert drain(env) == ["sent"]


def test_a_retry_after_a_failed_queue_put_finishes_it_at_once(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed accept marked its row, so its retry does not wait out REPLAY_WAIT_S."""
    monkeypatch.setattr(sending_module, "REPLAY_WAIT_S", 600)

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise Transient("queue answered 503")

    with monkeypatch.context() as m:
        m.setattr(Outbox, "enqueue", unavailable)
        with pytest.raises(Transient):
            post(BODY, key="queue-down-1")
    started = time.monotonic()
    again = post(BODY, key="queue-down-1")
    assert time.monotonic() - started < 60
    assert again.headers["Idempotent-Replayed"] == "true"
    assert drain(env) == ["sent"]


def test_a_keyed_accept_that_dies_at_its_queue_put_is_never_replayed_unqueued(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host goes away while the queue put is on the wire: the expiry entry is a retry's
    sign that the message was queued, so it must not exist yet, and the retry (after
    REPLAY_WAIT_S) queues the message itself."""
    monkeypatch.setattr(sending_module, "REPLAY_WAIT_S", 0.3)

    class Died(BaseException):
        """The host went away (no error handling runs)."""

    def die(*args: Any, **kwargs: Any) -> None:
        time.sleep(0.3)  # the writes beside it have their answers by now
        raise Died

    with monkeypatch.context() as m:
        m.setattr(Outbox, "enqueue", die)
        with pytest.raises(Died):
            post(BODY, key="died-at-put-1")
    assert send_queue(env).get_queue_properties().approximate_message_count == 0
    again = post(BODY, key="died-at-put-1")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert drain(env) == ["sent"]  # queued by the retry: accepted, so sent


def test_a_send_is_eight_storage_requests(env: dict[str, str]) -> None:
    """The worker's storage requests for one send (besides the ACS call): the message row, its
    payload and its status rows in one partition query and, beside it, the expiry entry (the
    accept's work item: was it filed?), the sender's pause state, the send-slot window (read,
    write), the claim under the ETag just read, one transaction that ends the send, the
    in-flight row. No read after the claim, no counter request (sends are counted in
    batches)."""
    post(BODY)
    (item,) = list(send_queue(env).receive_messages(max_messages=1))
    with timed_requests(0) as seen:
        assert services.sending().send_queued(item.content) == "sent"
    storage = [(method, path) for _s, _e, method, path in seen if "/emails:send" not in path]
    assert len(storage) == 8, storage
    assert len(seen) - len(storage) == 1  # and the one ACS call
    send_queue(env).delete_message(item)


def test_a_report_recorded_while_acs_takes_the_send_is_kept(env: dict[str, str]) -> None:
    """The worker reads the status rows before its ACS call and finishes on their ETags: a
    report recorded in between (here: in the middle of the call) fails that finish, which
    reads the rows afresh and keeps the report."""
    from .factories import delivery_event, record_event

    message_id = post(BODY).body["messageId"]
    address = BODY["to"][0]["address"]  # type: ignore[index]
    assert _drain_with(env, lambda: record_event(delivery_event(message_id, address))) == ["sent"]
    (recipient,) = lookup(message_id)["recipients"]
    assert recipient["status"] == "delivered"
    assert lookup(message_id)["sendState"] == "sent"


def test_an_erasure_while_acs_takes_the_send_is_kept(env: dict[str, str]) -> None:
    """An erasure that re-keys a recipient's status row while the worker's ACS call is in
    flight: the finish, based on the rows read before the call, fails on the row gone (404),
    reads them again and ends the send; the erased row stays erased."""
    message_id = post(GONE_AND_B).body["messageId"]
    assert _drain_with(env, _erase_gone) == ["sent"]
    view = lookup(message_id)
    assert view["sendState"] == "sent"
    by_address = {r["address"]: r for r in view["recipients"]}
    assert by_address["b@example.com"]["status"] == "sent"
    (erased,) = [r for a, r in by_address.items() if a.startswith("~")]
    assert erased["status"] == "sent"  # the outcome, kept by hash
    assert "gone@example.com" not in json.dumps(view)


def _drain_with(env: dict[str, str], meanwhile: Callable[[], Any]) -> list[str]:
    """Drain the send queue, running `meanwhile` inside each ACS call (after ACS took it)."""
    sending = services.sending()
    real = sending.acs.send

    def send(message: Any, **kwargs: Any) -> Any:
        answer = real(message, **kwargs)
        meanwhile()
        return answer

    sending.acs.send = send  # type: ignore[method-assign]
    try:
        return drain(env)
    finally:
        sending.acs.send = real  # type: ignore[method-assign]


def test_an_erasure_between_the_workers_read_and_its_claim_is_honoured(
    env: dict[str, str], sandbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker reads the payload with the message row, before its claim: an erasure in
    between strips a recipient from the payload and marks the message row, so the claim (on
    the row's ETag) fails, reads the row again, and the worker takes the new payload."""
    message_id = post(GONE_AND_B).body["messageId"]
    store = services.message_store()
    real = store.claim

    def erase_then_claim(*args: Any, **kwargs: Any) -> Any:
        _erase_gone()
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "claim", erase_then_claim)
    assert drain(env) == ["sent"]
    (op,) = [o for o in operations(sandbox) if o["id"] == message_id]
    assert op["recipients"] == ["b@example.com"]


def _erase_gone() -> dict[str, Any]:
    """DELETE /api/recipients/gone@example.com, as its route runs it."""
    body = b'{"operator": "alice", "reason": "asked"}'
    return services.privacy().erase("gone@example.com", body, "application/json")
