"""Playing the send pipeline in tests: the queue trigger, the accept call, reports back in."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from shared.app import wiring as services
from shared.core.settings import SEND_QUEUE
from shared.edge.tables import AFTER_REPLY

from .factories import record_event
from .servers import Capture

BASE = "http://127.0.0.1:7071"
SANDBOX_SETTINGS = {
    "DEFAULT_SENDER": "DoNotReply@sandbox.test",
    "SENDER_DOMAIN": "sandbox.test",
    "SENDER_ALLOWLIST": "donotreply@sandbox.test,@unlinked.test",
    "SEND_RATE_PER_MINUTE": "1000",
    "SEND_RATE_PER_HOUR": "100000",
}


def send_queue(env: dict[str, str]) -> QueueClient:
    return QueueClient.from_connection_string(
        env["AzureWebJobsStorage"], SEND_QUEUE, message_decode_policy=TextBase64DecodePolicy()
    )


def drain(env: dict[str, str], timeout: float = 20.0, idle: float = 1.5) -> list[str]:
    """Play the queue trigger: send every visible item until the queue stays idle."""
    queue, results = send_queue(env), []
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
            results.append(services.sending().send_queued(msg.content))
            queue.delete_message(msg)
    return results


def post(
    body: Any, key: str | None = None, content_type: str = "application/json", settle: bool = True
) -> Any:
    """Accept `body` in-process. `settle`: also wait for the writes that follow the reply (the
    history entries, the expiry entry; milliseconds), as a client reading back would find them."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        return services.sending().accept(raw, content_type, key, BASE)
    finally:
        if settle:
            assert AFTER_REPLY.settle(5.0)


def operations(sandbox: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{sandbox}/sandbox/operations").json()["operations"])


def feed_reports(capture: Capture, expected: int, timeout: float = 10.0) -> None:
    """Record the reports the sandbox published (as Event Grid would deliver them)."""
    deadline, seen = time.monotonic() + timeout, 0
    while seen < expected and time.monotonic() < deadline:
        for event in capture.take():
            record_event(event)
            seen += 1
        time.sleep(0.05)
    assert seen >= expected


def lookup(message_id: str) -> dict[str, Any]:
    return services.lookups().message(message_id)
