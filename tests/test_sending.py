"""Send flow: real Azurite tables/queue/blobs, the real ACS SDK against the local ACS sandbox."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from local.acs_sandbox import DEFAULT_ACCESS_KEY, SandboxConfig, create_app
from shared import services
from shared.errors import Conflict, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from shared.pipeline import record_event
from shared.sending import outbox as outbox_module
from shared.sending.outbox import Outbox
from shared.sending.service import accept_send, fail_poisoned, send_queued
from shared.settings import SEND_QUEUE
from shared.suppressions import Change

from .servers import Capture, serve

BASE = "http://127.0.0.1:7071"


@pytest.fixture(scope="module")
def capture() -> Iterator[Capture]:
    cap = Capture()
    with serve(cap.app) as url:
        cap.url = url  # type: ignore[attr-defined]
        yield cap


@pytest.fixture(scope="module")
def sandbox(capture: Capture) -> Iterator[str]:
    config = SandboxConfig(
        events_url=capture.url + "/api/events",  # type: ignore[attr-defined]
        events_key="k",
        report_delay_s=0.01,
        engagement_delay_s=0.01,
        quota_per_minute=10_000,
        quota_per_hour=100_000,
        poll_retry_after_s=0,
    )
    with serve(create_app(config)) as url:
        yield url


@pytest.fixture
def env(
    app_env: dict[str, str], sandbox: str, capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    values = {
        "ACS_ENDPOINT": sandbox,
        "ACS_KEY": DEFAULT_ACCESS_KEY,
        "DEFAULT_SENDER": "DoNotReply@sandbox.test",
        "SENDER_DOMAIN": "sandbox.test",
        "SENDER_ALLOWLIST": "donotreply@sandbox.test,@unlinked.test",
        "SEND_RATE_PER_MINUTE": "1000",
        "SEND_RATE_PER_HOUR": "100000",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    services.reset()
    httpx.post(f"{sandbox}/sandbox/reset")
    httpx.post(f"{sandbox}/sandbox/quota", json={"perMinute": 10_000, "perHour": 100_000})
    capture.take()
    box = services.outbox()
    box.queue.clear_messages()
    yield {**app_env, **values}
    services.reset()


def _queue(env: dict[str, str]) -> QueueClient:
    return QueueClient.from_connection_string(
        env["AzureWebJobsStorage"], SEND_QUEUE, message_decode_policy=TextBase64DecodePolicy()
    )


def drain(env: dict[str, str], timeout: float = 20.0, idle: float = 1.5) -> list[str]:
    """Play the queue trigger: run send_queued on every visible item until the queue stays idle."""
    queue, box, results = _queue(env), services.outbox(), []
    deadline, last_work = time.monotonic() + timeout, time.monotonic()
    while time.monotonic() < deadline:
        batch = list(queue.receive_messages(max_messages=32, visibility_timeout=60))
        if not batch:
            props = queue.get_queue_properties()
            if props.approximate_message_count == 0 and time.monotonic() - last_work > idle:
                break
            time.sleep(0.2)
            continue
        last_work = time.monotonic()
        for msg in batch:
            results.append(send_queued(box, msg.content))
            queue.delete_message(msg)
    return results


def post(body: Any, key: str | None = None, content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return accept_send(services.outbox(), raw, content_type, key, BASE)


def operations(sandbox: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{sandbox}/sandbox/operations").json()["operations"])


def feed_reports(capture: Capture, expected: int, timeout: float = 10.0) -> None:
    deadline, seen = time.monotonic() + timeout, 0
    while seen < expected and time.monotonic() < deadline:
        for event in capture.take():
            record_event(event)
            seen += 1
        time.sleep(0.05)
    assert seen >= expected


def lookup(message_id: str) -> dict[str, Any]:
    from shared import lookup as lookup_module

    return lookup_module.get_message(services.message_store(), message_id)


BODY = {"to": [{"address": "delivered@simulator.test"}], "subject": "Hi", "plainText": "Hello"}


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
    assert not [r for r in rows if r["RowKey"] == outbox_module.PAYLOAD_ROW]


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
    assert _queue(env).get_queue_properties().approximate_message_count == 0


def test_too_large_is_413(env: dict[str, str]) -> None:
    import base64

    blob = base64.b64encode(b"x" * (10 * 1024 * 1024 + 1)).decode()
    body = {
        **BODY,
        "attachments": [{"name": "a.txt", "contentType": "text/plain", "contentInBase64": blob}],
    }
    with pytest.raises(PayloadTooLarge):
        post(body)
    assert _queue(env).get_queue_properties().approximate_message_count == 0


def test_idempotent_replay_and_conflict(env: dict[str, str], sandbox: str) -> None:
    first = post(BODY, key="order-42")
    again = post(BODY, key="order-42")
    assert again.replayed
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
    drain(env)
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


def test_own_rate_limit_defers_without_losing(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEND_RATE_PER_MINUTE", "3")
    services.reset()
    for i in range(5):
        post({**BODY, "subject": f"r{i}"})
    queue = _queue(env)
    results = []
    for msg in queue.receive_messages(max_messages=32, visibility_timeout=60):
        results.append(send_queued(services.outbox(), msg.content))
        queue.delete_message(msg)
    assert sorted(results) == ["rate-limited", "rate-limited", "sent", "sent", "sent"]
    assert queue.get_queue_properties().approximate_message_count == 2  # deferred, not lost


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
    assert box.message(message_id)["payload"] == "blob"
    assert box.container.get_blob_client(f"{message_id}.json").exists()
    assert drain(env) == ["sent"]
    assert not box.container.get_blob_client(f"{message_id}.json").exists()


def test_poisoned_item_fails_for_good(env: dict[str, str]) -> None:
    accepted = post(BODY)
    message_id = accepted.body["messageId"]
    _queue(env).clear_messages()  # as if the host had moved it to the poison queue
    assert fail_poisoned(services.outbox(), json.dumps({"messageId": message_id})) == "failed"
    (recipient,) = lookup(message_id)["recipients"]
    assert recipient["status"] == "failed"
    assert recipient["explanation"].startswith("Not sent")
    assert fail_poisoned(services.outbox(), json.dumps({"messageId": message_id})) == "already-done"
