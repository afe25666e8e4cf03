"""Suppression list: automatic from reports (idempotent, order-safe), operator API, audit."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

import function_app
from shared.app import wiring as services

from .factories import delivery_event, record_event


@pytest.fixture
def env(app_env: dict[str, str]) -> Iterator[dict[str, str]]:
    services.reset()
    yield app_env
    services.reset()


def call(handler: Any, method: str, address: str = "", body: Any = None, **params: str) -> Any:
    raw = json.dumps(body).encode() if body is not None else b""
    req = func.HttpRequest(
        method,
        f"http://127.0.0.1:7071/api/suppressions/{address}",
        headers={"content-type": "application/json"},
        params=params,
        route_params={"address": address} if address else {},
        body=raw,
    )
    resp = handler(req)
    return resp.status_code, json.loads(resp.get_body() or b"null")


def bounce(address: str, seconds: float = 1, event_id: str | None = None) -> dict[str, Any]:
    return delivery_event(str(uuid.uuid4()), address, "Bounced", seconds, event_id=event_id)


def test_hard_bounce_suppresses_once_even_when_redelivered(env: dict[str, str]) -> None:
    event = bounce("Gone@Example.com", event_id="ev-bounce-1")
    for _ in range(3):
        record_event(event)
    status, state = call(function_app.get_suppression, "GET", "gone@example.com")
    assert status == 200
    assert state["status"] == "suppressed"
    assert state["reason"] == "userunknown"
    assert state["hits"] == 1
    assert len(state["audit"]) == 1
    assert state["audit"][0]["detail"]["enhancedCode"] == "5.1.1"


def test_soft_failures_and_spam_do_not_suppress(env: dict[str, str]) -> None:
    record_event(delivery_event(str(uuid.uuid4()), "full@example.com", "Failed", 1))
    record_event(delivery_event(str(uuid.uuid4()), "spam@example.com", "FilteredSpam", 1))
    assert services.suppression_list().get("full@example.com") is None
    assert services.suppression_list().get("spam@example.com") is None


def test_reactivation_is_audited_and_not_undone_by_a_late_duplicate(env: dict[str, str]) -> None:
    event = bounce("back@example.com", event_id="ev-late")
    record_event(event)
    status, state = call(
        function_app.reactivate_address,
        "DELETE",
        "back@example.com",
        {"operator": "alice", "reason": "user fixed their mailbox"},
    )
    assert status == 200
    assert state["status"] == "active"
    record_event(event)  # Event Grid redelivers the old bounce
    record_event({**event, "id": "ev-late-copy"})  # or a stale copy with a new id
    _, state = call(function_app.get_suppression, "GET", "back@example.com")
    assert state["status"] == "active"
    actions = [a["action"] for a in state["audit"]]
    assert actions == ["reactivate", "suppress"]  # newest first
    assert state["audit"][0]["origin"] == "operator:alice"
    # a NEW bounce after the reactivation suppresses again
    record_event(bounce("back@example.com", seconds=10**7))
    _, state = call(function_app.get_suppression, "GET", "back@example.com")
    assert state["status"] == "suppressed"


def test_manual_add_list_and_errors(env: dict[str, str]) -> None:
    status, state = call(
        function_app.suppress_address,
        "PUT",
        "Complainer@Example.org",
        {"operator": "bob", "reason": "asked to stop"},
    )
    assert status == 200
    assert state["status"] == "suppressed"
    status, listing = call(function_app.list_suppressions, "GET", domain="example.org")
    assert status == 200
    assert [s["address"] for s in listing["suppressions"]] == ["Complainer@Example.org"]
    status, everything = call(function_app.list_suppressions, "GET")  # no domain: the whole list
    assert status == 200
    assert [s["address"] for s in everything["suppressions"]] == ["Complainer@Example.org"]
    assert call(function_app.get_suppression, "GET", "never@example.com")[0] == 404
    status, problem = call(function_app.suppress_address, "PUT", "x@example.com", {"reason": 5})
    assert status == 400
    assert {e["field"] for e in problem["errors"]} == {"reason", "operator"}


def test_send_respects_automatic_suppression(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.core.errors import Conflict

    record_event(bounce("dead@example.com"))
    body = {"to": [{"address": "dead@example.com"}], "subject": "s", "plainText": "t"}
    monkeypatch.setenv("DEFAULT_SENDER", "DoNotReply@sandbox.test")
    services.reset()
    with pytest.raises(Conflict):
        services.sending().accept(json.dumps(body).encode(), "application/json", None, "http://x")


def _soft(address: str, seconds_ago: float, event_id: str | None = None) -> dict[str, Any]:
    """A mailbox-full report `seconds_ago` before now (a temporary suppression must not expire
    before the test looks at it, so these are recent, unlike the factories' BASE)."""
    from datetime import UTC, datetime

    from .factories import BASE

    offset = (datetime.now(UTC) - BASE).total_seconds() - seconds_ago
    return delivery_event(str(uuid.uuid4()), address, "Failed", offset, event_id=event_id)


def test_soft_bounce_streak_suppresses_temporarily_and_once(env: dict[str, str]) -> None:
    streak = [_soft("full@example.net", 300 - n, event_id=f"ev-soft-{n}") for n in range(3)]
    record_event(streak[0])
    record_event(streak[1])
    record_event(streak[1])  # a redelivery is not a second bounce
    assert services.suppression_list().get("full@example.net") is None
    record_event(streak[2])
    for event in streak:  # redelivered: still one suppression
        record_event(event)
    status, state = call(function_app.get_suppression, "GET", "full@example.net")
    assert status == 200
    assert (state["status"], state["reason"], state["hits"]) == (
        "suppressed",
        "softbouncestreak",
        1,
    )
    assert state["expiresAt"] is not None  # temporary: SOFT_BOUNCE_SUPPRESS_HOURS after the last
    assert state["audit"][0]["detail"]["note"].startswith("3 soft bounces (mailboxfull)")
    # a hard bounce makes it permanent
    record_event(bounce("full@example.net", seconds=10**7))
    _, state = call(function_app.get_suppression, "GET", "full@example.net")
    assert (state["status"], state["reason"], state["expiresAt"]) == (
        "suppressed",
        "userunknown",
        None,
    )


def test_a_delivery_inside_the_streak_breaks_it(env: dict[str, str]) -> None:
    from datetime import UTC, datetime

    from .factories import BASE

    record_event(_soft("flaky@example.net", 300))
    offset = (datetime.now(UTC) - BASE).total_seconds() - 250
    record_event(delivery_event(str(uuid.uuid4()), "flaky@example.net", "Delivered", offset))
    record_event(_soft("flaky@example.net", 200))
    record_event(_soft("flaky@example.net", 100))
    assert services.suppression_list().get("flaky@example.net") is None
    record_event(_soft("flaky@example.net", 50))  # three soft bounces since the delivery
    state = services.suppression_list().get("flaky@example.net")
    assert state is not None
    assert state["reason"] == "softbouncestreak"


def test_soft_bounce_streak_can_be_turned_off(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOFT_BOUNCE_STREAK", "0")
    services.reset()
    for n in range(4):
        record_event(_soft("full@example.org", 100 - n))
    assert services.suppression_list().get("full@example.org") is None


def test_a_doubtful_hard_bounce_suppresses_only_when_it_repeats(env: dict[str, str]) -> None:
    """Bounced with no reply text is hard but low confidence: no suppression on one report,
    a temporary one after a streak of them (SOFT_BOUNCE_STREAK, 3)."""
    from datetime import UTC, datetime

    from .factories import BASE

    def doubtful(seconds_ago: float) -> dict[str, Any]:
        offset = (datetime.now(UTC) - BASE).total_seconds() - seconds_ago
        event = delivery_event(str(uuid.uuid4()), "maybe@example.net", "Bounced", offset)
        event["data"]["deliveryStatusDetails"] = {}
        return event

    record_event(doubtful(300))
    record_event(doubtful(200))
    assert services.suppression_list().get("maybe@example.net") is None
    record_event(doubtful(100))
    state = services.suppression_list().get("maybe@example.net")
    assert state is not None
    assert state["reason"] == "softbouncestreak"
    assert state["expiresAt"]  # temporary, not the permanent list


@pytest.mark.parametrize(
    ("listed", "sent_to"),
    [
        ("ana@bücher.example", "ANA@xn--bcher-kva.example"),
        ("ana@xn--bcher-kva.example", "ana@BÜCHER.example"),
    ],
)
def test_an_idn_address_cannot_bypass_the_suppression_list(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, listed: str, sent_to: str
) -> None:
    from shared.core.errors import Conflict

    monkeypatch.setenv("DEFAULT_SENDER", "DoNotReply@sandbox.test")
    services.reset()
    body = json.dumps({"operator": "ops", "reason": "complaint"}).encode()
    services.operators().suppress(listed, body, "application/json")
    mail = {"to": [{"address": sent_to}], "subject": "s", "plainText": "t"}
    with pytest.raises(Conflict):
        services.sending().accept(json.dumps(mail).encode(), "application/json", None, "http://x")
    # One mailbox in the listing too, under its A-label domain.
    listing = services.operators().list_suppressions({"domain": "bücher.example"})
    assert len(listing["suppressions"]) == 1


def test_cc_alone_is_refused_when_every_to_is_suppressed(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.core.errors import Conflict

    monkeypatch.setenv("DEFAULT_SENDER", "DoNotReply@sandbox.test")
    services.reset()
    record_event(bounce("gone@example.com"))
    mail = {
        "to": [{"address": "gone@example.com"}],
        "cc": [{"address": "boss@example.com"}],
        "subject": "s",
        "plainText": "t",
    }
    with pytest.raises(Conflict) as refused:
        services.sending().accept(json.dumps(mail).encode(), "application/json", None, "http://x")
    assert "to" in refused.value.problems[0].field
