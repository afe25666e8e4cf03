"""Alert fan-out: recorded with their cause, published once as CloudEvents, retried, listed."""

from __future__ import annotations

import random
import uuid

import azure.functions as func
import pytest

import function_app
from local.ports import free_port
from shared.app import wiring as services

from .alert_sink import alerts_api, received
from .factories import delivery_event, record_event


@pytest.fixture
def env(alerts_env: str) -> str:
    return alerts_env


def test_bounce_redelivered_out_of_order_alerts_once(env: str) -> None:
    mid = str(uuid.uuid4())
    bounce = delivery_event(mid, "Bounce@Simulator.test", "Bounced", 5, event_id=f"{mid}-b")
    others = [
        delivery_event(mid, "ok@example.com", "Delivered", 1, event_id=f"{mid}-d"),
        delivery_event(mid, "Bounce@Simulator.test", "Expanded", 1, event_id=f"{mid}-x"),
    ]
    deliveries = [bounce, bounce, bounce, *others]
    random.Random(3).shuffle(deliveries)
    for event in deliveries:
        record_event(event)
    state = services.suppression_list().get("bounce@simulator.test")
    assert state is not None
    assert state["active"]
    events = received(env, 2)
    types = sorted(e["type"] for e in events)
    assert types == [
        "AcsEmailInsights.Recipient.HardBounced",
        "AcsEmailInsights.Recipient.Suppressed",
    ]
    hard = next(e for e in events if e["type"].endswith("HardBounced"))
    assert hard["data"]["messageId"] == mid
    assert hard["data"]["recipientDomain"] == "simulator.test"
    assert "recipient" not in hard["data"]  # hashed by default
    assert hard["data"]["recipientHash"]
    assert hard["data"]["reason"] == "userunknown"
    history = alerts_api()
    assert len(history["alerts"]) == 2
    assert {a["publishState"] for a in history["alerts"]} == {"published"}
    only_hard = alerts_api(type="AcsEmailInsights.Recipient.HardBounced")
    assert [a["messageId"] for a in only_hard["alerts"]] == [mid]


def test_spam_filtered_alert(env: str) -> None:
    mid = str(uuid.uuid4())
    record_event(delivery_event(mid, "x@example.com", "FilteredSpam", 1))
    events = received(env, 1)
    assert [e["type"] for e in events] == ["AcsEmailInsights.Message.SpamFiltered"]


def test_publisher_failure_then_recovery_delivers_once(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_TOPIC_ENDPOINT", f"http://127.0.0.1:{free_port()}/api/events")
    services.reset()
    mid = str(uuid.uuid4())
    record_event(delivery_event(mid, "gone@example.com", "Bounced", 1))
    assert {a["publishState"] for a in alerts_api()["alerts"]} == {"pending"}
    monkeypatch.setenv("ALERTS_TOPIC_ENDPOINT", f"{env}/api/events")
    services.reset()
    assert services.alert_log().publish_pending() == 2  # hard bounce + suppressed
    assert services.alert_log().publish_pending() == 0
    events = received(env, 2)
    assert len(events) == 2
    assert len({e["id"] for e in events}) == 2
    assert {a["publishState"] for a in alerts_api()["alerts"]} == {"published"}


def test_send_failure_alert(env: str) -> None:
    from datetime import UTC, datetime

    from shared.core.alerts import for_send_failure

    alert = for_send_failure(
        message_id="m-1", code="DomainNotLinked", explanation="x", at=datetime.now(UTC)
    )
    assert services.alert_log().raise_alert(alert)
    assert not services.alert_log().raise_alert(alert)  # the same failure: one alert
    assert [e["type"] for e in received(env, 1)] == ["AcsEmailInsights.Send.Failed"]


def test_alert_history_rejects_bad_parameters(env: str) -> None:
    req = func.HttpRequest(
        "GET",
        "http://127.0.0.1:7071/api/alerts",
        params={"since": "last week", "continuation": "x"},
        route_params={},
        body=b"",
    )
    resp = function_app.list_alerts(req)
    assert resp.status_code == 400
