"""Sender-domain rates, alerts, auto-pause and stuck deliveries: real Azurite, topic, sandbox."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

import function_app
from shared.app import wiring as services

from .alert_sink import alerts_api, received
from .factories import delivery_event, record_event
from .send_harness import drain, feed_reports, lookup, operations, post
from .servers import Capture

DOMAIN = "news.contoso.example"
SENDER = f"news@{DOMAIN}"


@pytest.fixture
def rates(alerts_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("RATE_MIN_VOLUME", "20")
    services.reset()
    yield alerts_env
    services.reset()


def report(status: str, recipient: str | None = None) -> dict[str, Any]:
    """A report of a message sent outside our send endpoint (counts as one recipient sent)."""
    mid = str(uuid.uuid4())
    return delivery_event(mid, recipient or f"{mid[:8]}@example.com", status, 1, sender=SENDER)


def health_api(domain: str = DOMAIN) -> tuple[int, dict[str, Any]]:
    req = func.HttpRequest(
        "GET",
        f"http://127.0.0.1:7071/api/senders/{domain}",
        params={},
        route_params={"domain": domain},
        body=b"",
    )
    resp = function_app.get_sender_health(req)
    return resp.status_code, json.loads(resp.get_body())


def resume_api(body: Any, domain: str = DOMAIN) -> tuple[int, dict[str, Any]]:
    req = func.HttpRequest(
        "POST",
        f"http://127.0.0.1:7071/api/senders/{domain}/resume",
        params={},
        route_params={"domain": domain},
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode(),
    )
    resp = function_app.resume_sender(req)
    return resp.status_code, json.loads(resp.get_body())


def evaluate() -> list[str]:
    return [f"{a.type.value}:{a.data['level']}" for a in services.sender_health().evaluate_all()]


def test_bounce_rate_alerts_once_per_level_then_recovers(rates: str) -> None:
    bounces = [report("Bounced") for _ in range(2)]
    for event in [*bounces, *(report("Delivered") for _ in range(38))]:
        record_event(event)
    for event in bounces:  # redelivered: counted once
        record_event(event)
    assert evaluate() == ["AcsEmailInsights.Sender.BounceRateHigh:warning"]  # 2 / 40 = 5 %
    assert evaluate() == []  # the same condition: no second alert
    for _ in range(3):
        record_event(report("Bounced"))
    assert evaluate() == ["AcsEmailInsights.Sender.BounceRateHigh:critical"]  # 5 / 43
    for _ in range(60):
        record_event(report("Delivered"))
    assert evaluate() == []  # 5 / 103 = 4.9 %: not yet below 80 % of the warning threshold
    for _ in range(30):
        record_event(report("Delivered"))
    assert evaluate() == ["AcsEmailInsights.Sender.RateRecovered:critical"]  # 5 / 133
    events = [e for e in received(rates, 13) if ".Sender." in e["type"]]
    assert [e["type"] for e in events] == [
        "AcsEmailInsights.Sender.BounceRateHigh",
        "AcsEmailInsights.Sender.BounceRateHigh",
        "AcsEmailInsights.Sender.RateRecovered",
    ]
    critical = events[1]["data"]
    assert critical["senderDomain"] == DOMAIN
    assert (critical["sent"], critical["hardBounces"]) == (43, 5)
    assert critical["ratePercent"] == pytest.approx(100 * 5 / 43, abs=1e-3)
    assert critical["paused"] is False
    status, view = health_api()
    assert status == 200
    assert view["window"]["sent"] == 133
    assert view["bounce"]["level"] == "ok"
    history = alerts_api(type="AcsEmailInsights.Sender.BounceRateHigh")["alerts"]
    assert len(history) == 2


def test_no_rate_alert_below_the_minimum_volume(rates: str) -> None:
    for status in ["Bounced"] * 5 + ["Delivered"] * 14:
        record_event(report(status))
    assert evaluate() == []
    status, view = health_api()
    assert status == 200
    assert view["window"] == {**view["window"], "sent": 19, "hardBounces": 5, "judged": False}
    assert view["bounce"]["ratePercent"] == pytest.approx(100 * 5 / 19, abs=1e-3)


def test_spam_rate_alert(rates: str) -> None:
    for status in ["FilteredSpam"] + ["Delivered"] * 19:
        record_event(report(status))
    assert evaluate() == ["AcsEmailInsights.Sender.SpamRateHigh:critical"]  # 5 % ≥ 0.5 %


def test_unknown_sender_domain_is_404_and_bad_domain_400(rates: str) -> None:
    assert health_api("never.example")[0] == 404
    assert resume_api({"operator": "alice"}, "never.example")[0] == 404
    status, problem = health_api("not a domain")
    assert status == 400
    assert problem["errors"][0]["field"] == "domain"
    status, problem = resume_api({"reason": "x"})
    assert status == 400  # operator missing, named


@pytest.fixture
def paused_sends(
    send_env: dict[str, str], alerts_env: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    from shared.app import sending as service

    monkeypatch.setenv("AUTO_PAUSE", "true")
    monkeypatch.setenv("RATE_MIN_VOLUME", "4")
    monkeypatch.setattr(service, "HOLD_RECHECK_S", 1)
    services.reset()
    yield send_env
    services.reset()


def test_critical_rate_pauses_the_sender_until_resumed(
    paused_sends: dict[str, str], send_sandbox: str, send_capture: Capture
) -> None:
    domain = "sandbox.test"  # the default sender DoNotReply@sandbox.test
    for n in range(2):
        assert post({**_mail(f"bounce+{n}@simulator.test")}).status == 202
        assert post({**_mail(f"delivered+{n}@simulator.test")}).status == 202
    assert drain(paused_sends) == ["sent"] * 4
    feed_reports(send_capture, 4)
    alerts = services.sender_health().evaluate_all()
    assert [(a.data["level"], a.data["paused"]) for a in alerts] == [("critical", True)]
    held = post(_mail("delivered+9@simulator.test")).body["messageId"]
    results = drain(paused_sends, timeout=3, idle=0.5)
    assert set(results) == {"held"}
    assert lookup(held)["sendState"] == "held"
    assert held not in {op["id"] for op in operations(send_sandbox)}
    status, view = health_api(domain)
    assert (status, view["paused"], view["pauseReason"]) == (200, True, "bounce")

    status, view = resume_api({"operator": "alice", "reason": "list cleaned"}, domain)
    assert (status, view["resumed"], view["paused"], view["resumedBy"]) == (
        200,
        True,
        False,
        "alice",
    )
    assert view["window"]["sent"] == 0  # the window restarts at the resume
    assert resume_api({"operator": "alice"}, domain)[1]["resumed"] is False  # idempotent
    assert "sent" in drain(paused_sends)
    assert lookup(held)["sendState"] == "sent"
    assert services.sender_health().evaluate_all() == []  # the old counts do not pause again


def _mail(address: str) -> dict[str, Any]:
    return {"to": [{"address": address}], "subject": "Hi", "plainText": "Hello"}


def test_stuck_delivery_alert_for_a_report_that_never_comes(
    send_env: dict[str, str], alerts_env: str, send_capture: Capture
) -> None:
    stuck = post(_mail("noreport@simulator.test")).body["messageId"]
    fine = post(_mail("delivered@simulator.test")).body["messageId"]
    assert drain(send_env) == ["sent", "sent"]
    feed_reports(send_capture, 1)  # only the delivered one reports
    monitoring = services.monitoring()
    assert monitoring.detect_stuck() == []  # not due yet
    later = datetime.now(UTC) + timedelta(minutes=31)
    (alert,) = monitoring.detect_stuck(now=later)
    assert alert.type.value == "AcsEmailInsights.Delivery.Stuck"
    assert alert.data["messageId"] == stuck
    assert alert.data["recipientCount"] == 1
    assert alert.data["recipients"][0]["recipientDomain"] == "simulator.test"
    assert monitoring.detect_stuck(now=later) == []  # checked once
    events = received(alerts_env, 1)
    assert [e["data"]["messageId"] for e in events] == [stuck]
    assert fine != stuck


def test_a_domain_below_the_minimum_volume_is_not_judged(rates: str) -> None:
    for status in ("Bounced", "Delivered", "Delivered"):
        record_event(report(status))
    status, view = health_api()
    assert status == 200
    assert view["window"]["judged"] is False
    # 1 bounce in 3 sends is 33 %, but three sends say nothing: not "ok", not "critical".
    assert view["bounce"]["level"] == "not_judged"
    assert view["spam"]["level"] == "not_judged"


def test_the_worker_counts_its_sends_in_one_batched_write(send_env: dict[str, str]) -> None:
    """A send costs no counter request of its own: the worker's counts wait in memory and go
    out as one write per domain and minute (`add_soon`); the sender's window then shows them."""
    for n in range(3):
        post(_mail(f"r{n}@simulator.test"))
    assert drain(send_env) == ["sent"] * 3
    services.sender_health().flush()  # what the timer does within 5 s
    status, view = health_api("sandbox.test")
    assert status == 200, view
    assert view["window"]["sent"] == 3
