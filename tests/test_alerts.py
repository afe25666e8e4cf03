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

    from shared.core.alerts import AddressMode, AddressPolicy, for_send_failure

    alert = for_send_failure(
        message_id="m-1",
        code="DomainNotLinked",
        explanation="x",
        at=datetime.now(UTC),
        shown=AddressPolicy(AddressMode.HASH, b"k" * 32),
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


def _alerts(**params: str) -> func.HttpResponse:
    req = func.HttpRequest(
        "GET", "http://127.0.0.1:7071/api/alerts", params=params, route_params={}, body=b""
    )
    return function_app.list_alerts(req)


def test_alert_types_by_short_name_and_unknown_ones_refused(env: str) -> None:
    record_event(delivery_event(str(uuid.uuid4()), "gone@example.com", "Bounced", 1))
    for name in ("HardBounced", "Recipient.HardBounced", "acsemailinsights.recipient.hardbounced"):
        (alert,) = alerts_api(type=name)["alerts"]
        assert alert["type"] == "AcsEmailInsights.Recipient.HardBounced"
    refused = _alerts(type="Bounced")
    assert refused.status_code == 400
    assert "HardBounced" in refused.get_body().decode()


def test_since_without_an_offset_and_forged_continuations_are_400(env: str) -> None:
    import base64
    import json

    assert _alerts(since="2026-11-30T10:00:00").status_code == 400
    far = {"day": "9999-12-31", "token": None}
    forged = base64.urlsafe_b64encode(json.dumps(far).encode()).decode().rstrip("=")
    assert _alerts(continuation=forged).status_code == 400  # not millions of day queries


def test_a_manual_suppression_raises_the_suppressed_alert(env: str) -> None:
    import json

    body = json.dumps({"operator": "ops", "reason": "complaint"}).encode()
    services.operators().suppress("angry@example.com", body, "application/json")
    (alert,) = alerts_api(type="Suppressed")["alerts"]
    assert alert["data"]["origin"].startswith("operator:ops")
    assert "angry@example.com" not in json.dumps(alert)  # hashed under ALERT_ADDRESSES=hash


def test_send_failed_alert_redacts_addresses_in_the_acs_error(env: str) -> None:
    from datetime import UTC, datetime

    from shared.core.alerts import AddressMode, AddressPolicy, for_send_failure

    text = "ACS said: recipient 'Bob.Smith@example.com' is not a valid address."
    hashed = for_send_failure(
        message_id="m-2",
        code="BadRequest",
        explanation=text,
        at=datetime.now(UTC),
        shown=AddressPolicy(AddressMode.HASH, b"k" * 32),
    )
    assert "Bob.Smith" not in hashed.data["explanation"]
    assert "[address " in hashed.data["explanation"]
    plain = for_send_failure(
        message_id="m-2",
        code="BadRequest",
        explanation=text,
        at=datetime.now(UTC),
        shown=AddressPolicy(AddressMode.PLAIN, b"k" * 32),
    )
    assert "Bob.Smith@example.com" in plain.data["explanation"]


def test_alerts_are_listed_by_when_they_were_raised(env: str) -> None:
    """A report from yesterday (a late delivery, a retried event) raises its alert now: a look at
    the last hour shows it, under the time it was raised, with the report's time kept."""
    from datetime import UTC, datetime, timedelta

    record_event(delivery_event(str(uuid.uuid4()), "late@example.com", "Bounced", 1))
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    (alert,) = alerts_api(since=hour_ago, type="HardBounced")["alerts"]
    assert alert["raisedAt"] >= hour_ago
    assert alert["time"] < hour_ago  # the report's own time, from yesterday
