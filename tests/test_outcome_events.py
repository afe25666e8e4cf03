"""Outcome events: recorded with the state change, published to a local Event Grid topic (real
CloudEvents over HTTP), exactly once per change under duplicates, retried by the timer."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from local.ports import free_port
from shared.app import wiring as services
from shared.core.feed import OutcomeType
from shared.core.state import Fact
from shared.core.status import Status
from shared.edge.outcome_events import OutcomeLog, build_publisher

from .factories import BASE, delivery_event, engagement_event, record_event

TOPIC_KEY = "outcomes-test-key"
SINK = "outcomes"


@pytest.fixture(scope="module")
def outcome_topic() -> Iterator[str]:
    """A local Event Grid topic (CloudEvents) with one sink subscription `outcomes`."""
    from .servers import cloudevents_topic

    with cloudevents_topic(TOPIC_KEY, SINK) as url:
        yield url


@pytest.fixture
def env(
    app_env: dict[str, str], outcome_topic: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("OUTCOME_EVENTS_TOPIC_ENDPOINT", f"{outcome_topic}/api/events")
    monkeypatch.setenv("OUTCOME_EVENTS_TOPIC_KEY", TOPIC_KEY)
    monkeypatch.setenv("ROLLUP_FLUSH_SECONDS", "3600")
    httpx.delete(f"{outcome_topic}/sinks/{SINK}")
    services.reset()
    yield outcome_topic
    services.reset()


def sink(topic: str, expected: int, timeout: float = 10) -> list[dict[str, Any]]:
    """What the subscriber got, once `expected` arrived and nothing is pending (or on timeout);
    then a short settle, so a duplicate still on its way would be seen."""
    deadline = time.monotonic() + timeout
    while True:
        events: list[dict[str, Any]] = httpx.get(f"{topic}/sinks/{SINK}").json()
        pending = httpx.get(f"{topic}/status").json()["pending"]
        if (len(events) >= expected and pending == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    return list(httpx.get(f"{topic}/sinks/{SINK}").json())


def sent_with_labels(mid: str, rcpt: str) -> None:
    store = services.message_store()
    store.write_message(
        mid,
        {"tags": json.dumps({"kind": "receipt"}), "metadata": json.dumps({"orderId": "42"})},
    )
    store.record_fact(mid, rcpt, Fact(Status.SENT, BASE, "sent", accepted_at=BASE, sent_at=BASE))


def test_one_event_per_change_under_duplicates_with_tags_and_metadata(env: str) -> None:
    mid, rcpt = str(uuid.uuid4()), "Ann@Example.com"
    sent_with_labels(mid, rcpt)
    delivered = delivery_event(mid, rcpt, "Delivered", 4.5)
    for _ in range(3):
        record_event(delivered)
    events = sink(env, 1)
    assert len(events) == 1
    (event,) = events
    assert event["type"] == OutcomeType.DELIVERED.value
    data = event["data"]
    assert data["messageId"] == mid
    assert data["tags"] == {"kind": "receipt"}
    assert data["metadata"] == {"orderId": "42"}
    assert data["latencyMs"] == 4_500
    assert data["recipientDomain"] == "example.com"
    assert "recipient" not in data  # hashed by default
    assert len(data["recipientHash"]) == 32
    # the timer has nothing left to do
    assert services.outcome_feed().publish_pending() == 0


def test_each_outcome_reached_is_one_event_whatever_the_order(env: str) -> None:
    mid, rcpt = str(uuid.uuid4()), "bob@example.com"
    failed = delivery_event(mid, rcpt, "Failed", 10, status_message="421 4.4.2 timed out")
    delivered = delivery_event(mid, rcpt, "Delivered", 600)
    for event in [failed, failed, delivered, failed, delivered]:
        record_event(event)
    types = [e["type"] for e in sink(env, 2)]
    assert types == [OutcomeType.FAILED.value, OutcomeType.DELIVERED.value]
    # the other order: the late, older failure never becomes the outcome
    mid2 = str(uuid.uuid4())
    events = [
        delivery_event(mid2, rcpt, "Delivered", 600),
        delivery_event(mid2, rcpt, "Bounced", 5),
    ]
    random.Random(3).shuffle(events)
    for event in [events[0], events[0], events[1]]:
        record_event(event)
    later = [e for e in sink(env, 3) if e["data"]["messageId"] == mid2]
    types2 = [e["type"] for e in later]
    assert OutcomeType.DELIVERED.value in types2
    assert len(types2) == len(set(types2))


def test_first_open_and_first_click_once(env: str) -> None:
    mid, rcpt = str(uuid.uuid4()), "carol@example.com"
    record_event(delivery_event(mid, rcpt, "Delivered", 5))
    first_open = engagement_event(mid, rcpt, "view", 60)
    second_open = engagement_event(mid, rcpt, "view", 120)
    click = engagement_event(mid, rcpt, "click", 90, url="https://shop.example/o/42")
    for event in [first_open, first_open, second_open, click, click]:
        record_event(event)
    types = sorted(e["type"] for e in sink(env, 3))
    assert types == sorted(
        [OutcomeType.DELIVERED.value, OutcomeType.OPENED.value, OutcomeType.CLICKED.value]
    )
    clicked = next(e for e in sink(env, 3) if e["type"] == OutcomeType.CLICKED.value)
    assert clicked["data"]["url"] is None  # a link may carry the recipient's tokens: hashed mode


def test_a_failed_publish_stays_pending_until_the_timer(env: str) -> None:
    dead = build_publisher(f"http://127.0.0.1:{free_port()}/api/events", TOPIC_KEY, _no_identity)
    settings = services.get_settings()
    offline = OutcomeLog(services.clients().table_service, settings.table_prefix, dead)
    offline.create_table()
    mid, rcpt = str(uuid.uuid4()), "dave@example.com"
    store = services.message_store()
    result = store.record_fact(mid, rcpt, Fact(Status.SENT, BASE, "sent", sent_at=BASE))
    assert result.row is not None
    from shared.core.alerts import AddressMode, AddressPolicy
    from shared.core.feed import for_status_row

    row = {**result.row, "status": "delivered", "acsStatus": "Delivered", "eventId": "e1"}
    event = for_status_row(mid, row, None, AddressPolicy(AddressMode.PLAIN, b"k" * 32))
    assert event is not None
    assert offline.record(event) is True
    assert offline.record(event) is False  # recorded once
    assert httpx.get(f"{env}/sinks/{SINK}").json() == []
    assert services.outcome_feed().publish_pending() == 1  # the timer, topic reachable again
    assert services.outcome_feed().publish_pending() == 0
    (published,) = sink(env, 1)
    assert published["id"] == event.id
    assert published["data"]["recipient"] == rcpt


def test_a_crash_before_the_record_is_healed_by_the_redelivery(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mid, rcpt = str(uuid.uuid4()), "erin@example.com"
    bounce = delivery_event(mid, rcpt, "Bounced", 5)
    monkeypatch.setenv("OUTCOME_EVENTS_TOPIC_ENDPOINT", "")  # the status write, no record
    services.reset()
    record_event(bounce)
    monkeypatch.setenv("OUTCOME_EVENTS_TOPIC_ENDPOINT", f"{env}/api/events")
    services.reset()
    record_event(bounce)  # Event Grid redelivers: a duplicate for the status row
    record_event(bounce)
    (event,) = sink(env, 1)
    assert event["type"] == OutcomeType.BOUNCED.value
    assert event["data"]["bounceType"] == "hard"


def test_off_when_no_topic(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTCOME_EVENTS_TOPIC_ENDPOINT", "")
    services.reset()
    try:
        record_event(delivery_event(str(uuid.uuid4()), "f@example.com", "Delivered", 5))
        assert services.outcome_log() is None
        assert services.outcome_feed().publish_pending() == 0
    finally:
        services.reset()


def _no_identity() -> Any:
    raise AssertionError("a key is configured: no managed identity needed")


def test_a_report_of_our_send_costs_its_status_row_and_one_write_per_projection(
    env: str, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accept copies size, tags and metadata into each status row, so recording a report
    of our send reads no message row; the outcome event is one publish and one record write
    (no `$batch`, nothing pending)."""
    from urllib.parse import urlsplit

    from azure.data.tables import TableServiceClient

    from shared.edge.messages import RowCache

    from .send_harness import SANDBOX_SETTINGS, post

    for name, value in SANDBOX_SETTINGS.items():
        monkeypatch.setenv(name, value)
    services.reset()
    requests: list[tuple[str, str]] = []

    def hook(response: Any) -> None:
        table = urlsplit(response.http_request.url).path.split("/")[2].split("(")[0]
        requests.append((response.http_request.method, table.removeprefix(app_env["TABLE_PREFIX"])))

    services.clients().table_service = TableServiceClient.from_connection_string(
        app_env["AzureWebJobsStorage"], raw_request_hook=hook
    )
    rcpt = "gina@example.com"
    body = {
        "to": [{"address": rcpt}],
        "subject": "Receipt",
        "plainText": "Thanks",
        "tags": {"kind": "receipt"},
        "metadata": {"orderId": "42"},
    }
    reply = post(body)
    assert reply.status == 202, reply.body
    mid = reply.body["messageId"]
    services.message_store().cache = RowCache(0)  # another instance: nothing cached
    services.reports()  # every projection's table created before counting
    requests.clear()
    record_event(delivery_event(mid, rcpt, "Delivered", 3))
    (event,) = sink(env, 1)
    assert event["data"]["tags"] == {"kind": "receipt"}
    assert event["data"]["metadata"] == {"orderId": "42"}
    assert ("GET", "Messages") in requests
    assert requests.count(("GET", "Messages")) == 1  # the status row, not the message row
    assert ("PUT", "OutcomeEvents") in requests
    assert not [r for r in requests if r[0] == "POST"]  # no `$batch`, no create
    assert not [r for r in requests if r[1] == "OutcomeEvents" and r[0] != "PUT"]
