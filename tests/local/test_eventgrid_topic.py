"""The local Event Grid topic keeps Event Grid's publish and webhook delivery contract."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.eventgrid_topic import (
    DEFAULT_TOPIC_PATH,
    Knobs,
    Schema,
    Subscription,
    Topic,
    TopicConfig,
    create_app,
    parse_subscription,
)
from local.ports import free_port
from tests.servers import serve

pytestmark = pytest.mark.timeout(60)

KEY = "local-topic-key"
FAST = {"initial_backoff_s": 0.01, "max_backoff_s": 0.05}  # retries without slowing the suite


# --- servers in threads -----------------------------------------------------------------------


@dataclass
class Receiver:
    """Behaves like the Functions host's Event Grid webhook, with failure switches."""

    handshake: str = "ok"  # ok | wrong-code | silent (200 without the code) | refuse
    fail_next: int = 0  # answer this many notifications with 500
    reject: bool = False  # answer notifications with 400
    url: str = ""
    validations: list[Any] = field(default_factory=list)
    options: list[dict[str, str]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)  # every notification request
    delivered: list[Any] = field(default_factory=list)  # bodies answered with 200

    @property
    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for body in self.delivered:
            out.extend(body if isinstance(body, list) else [body])
        return out

    def app(self) -> Starlette:
        async def webhook(request: Request) -> Response:
            if request.method == "OPTIONS":
                self.options.append(dict(request.headers))
                if self.handshake == "ok":
                    origin = request.headers["webhook-request-origin"]
                    return Response(headers={"WebHook-Allowed-Origin": origin})
                return Response()
            body = json.loads(await request.body())
            if request.headers.get("aeg-event-type") == "SubscriptionValidation":
                self.validations.append(body)
                code = body[0]["data"]["validationCode"]
                if self.handshake == "ok":
                    return JSONResponse({"validationResponse": code})
                if self.handshake == "wrong-code":
                    return JSONResponse({"validationResponse": "not-the-code"})
                if self.handshake == "silent":
                    return JSONResponse({})
                return Response(status_code=500)
            self.requests.append({"headers": dict(request.headers), "body": body})
            if self.fail_next > 0:
                self.fail_next -= 1
                return Response(status_code=500)
            if self.reject:
                return Response(status_code=400)
            self.delivered.append(body)
            return Response(status_code=200)

        return Starlette(
            routes=[Route("/runtime/webhooks/eventgrid", webhook, methods=["POST", "OPTIONS"])]
        )


@dataclass
class RunningTopic:
    base: str
    topic: Topic

    def get(self, path: str) -> Any:
        reply = httpx.get(self.base + path, trust_env=False)
        reply.raise_for_status()
        return reply.json()

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(self.base + path, json=body, trust_env=False, timeout=10)

    def publish(
        self, body: Any, content_type: str = "application/json", key: str = KEY
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": content_type, "aeg-sas-key": key}
        return httpx.post(
            self.base + "/api/events?api-version=2018-01-01",
            content=raw,
            headers=headers,
            trust_env=False,
        )

    def client(self, key: str = KEY) -> EventGridPublisherClient:
        return EventGridPublisherClient(self.base + "/api/events", AzureKeyCredential(key))

    def subscriptions(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.get("/subscriptions")}

    def settle(self, timeout: float = 10.0) -> dict[str, int]:
        """Wait until no subscription is mid-handshake and nothing is pending."""
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, int] = self.get("/status")
            creating = [s for s in self.subscriptions().values() if s["state"] == "Creating"]
            if status["pending"] == 0 and not creating:
                return status
            assert time.monotonic() < deadline, f"not settled: {status} {creating}"
            time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with serve(rec.app()) as base:
        rec.url = (
            f"{base}/runtime/webhooks/eventgrid"
            "?functionName=record_delivery_report&code=function-key"
        )
        yield rec


StartTopic = Callable[..., RunningTopic]


@pytest.fixture
def start_topic() -> Iterator[StartTopic]:
    with contextlib.ExitStack() as stack:

        def start(
            *subscriptions: Subscription, port: int | None = None, **config: Any
        ) -> RunningTopic:
            port = port or free_port()
            base = f"http://127.0.0.1:{port}"
            config.setdefault("key", KEY)
            app = create_app(
                TopicConfig(subscriptions=list(subscriptions), base_url=base, **config)
            )
            stack.enter_context(serve(app, port))
            return RunningTopic(base, app.state.topic)

        yield start


def eg_event(
    n: int, event_type: str = "Microsoft.Communication.EmailDeliveryReportReceived"
) -> dict[str, Any]:
    return {
        "id": f"evt-{n}",
        "subject": f"sender/a@example.com/message/{n}",
        "eventType": event_type,
        "eventTime": "2024-05-01T10:00:00.1234567Z",
        "data": {"n": n},
        "dataVersion": "1.0",
    }


# --- publishing -------------------------------------------------------------------------------


def test_sdk_publishes_eventgrid_events(receiver: Receiver, start_topic: StartTopic) -> None:
    topic = start_topic(Subscription("reports", receiver.url))
    events = [
        EventGridEvent(
            subject=f"s/{n}", event_type="Test.Happened", data={"n": n}, data_version="2.0"
        )
        for n in range(3)
    ]
    topic.client().send(events)
    status = topic.settle()

    assert status == {
        "published": 3,
        "delivered": 3,
        "pending": 0,
        "deadLettered": 0,
        "attempts": 3,
    }
    assert [len(r["body"]) for r in receiver.requests] == [1, 1, 1]  # batch size 1 by default
    headers = receiver.requests[0]["headers"]
    assert headers["aeg-event-type"] == "Notification"
    assert headers["aeg-subscription-name"] == "REPORTS"
    assert headers["aeg-delivery-count"] == "0"
    assert headers["aeg-data-version"] == "2.0"
    assert headers["aeg-metadata-version"] == "1"
    assert headers["content-type"] == "application/json"
    got = receiver.events
    assert [e["id"] for e in got] == [str(e.id) for e in events]
    assert all(e["topic"] == DEFAULT_TOPIC_PATH and e["metadataVersion"] == "1" for e in got)
    parsed = EventGridEvent.from_dict(got[0])
    assert (parsed.subject, parsed.event_type, parsed.data) == ("s/0", "Test.Happened", {"n": 0})


def test_sdk_publishes_cloudevents(receiver: Receiver, start_topic: StartTopic) -> None:
    topic = start_topic(Subscription("reports", receiver.url), schema=Schema.CLOUDEVENTS)
    events = [CloudEvent(source="/acs/test", type="Test.Happened", data={"n": n}) for n in range(2)]
    topic.client().send(events)
    single = {"specversion": "1.0", "id": "one", "source": "/raw", "type": "Test.Single"}
    assert topic.publish(single, "application/cloudevents+json; charset=utf-8").status_code == 200
    topic.settle()

    assert receiver.options[0]["webhook-request-origin"] == "eventgrid.azure.net"
    assert not receiver.validations
    contents = {r["headers"]["content-type"] for r in receiver.requests}
    assert contents == {"application/cloudevents+json; charset=utf-8"}
    assert all(isinstance(r["body"], dict) for r in receiver.requests)  # one event, no array
    assert [e["id"] for e in receiver.events] == [e.id for e in events] + ["one"]
    parsed = CloudEvent.from_dict(receiver.events[0])
    assert (parsed.source, parsed.type, parsed.data) == ("/acs/test", "Test.Happened", {"n": 0})


def test_publish_reply_is_200_with_empty_body(start_topic: StartTopic) -> None:
    reply = start_topic().publish([eg_event(1)])
    assert (reply.status_code, reply.content) == (200, b"")


def test_wrong_or_missing_key_is_401(start_topic: StartTopic) -> None:
    topic = start_topic()
    with pytest.raises(ClientAuthenticationError):
        topic.client(key="wrong").send([eg_event(1)])
    assert topic.publish([eg_event(1)], key="").status_code == 401
    assert topic.get("/status")["published"] == 0


def test_other_schema_is_400(start_topic: StartTopic) -> None:
    eg_topic = start_topic()
    with pytest.raises(HttpResponseError) as caught:
        eg_topic.client().send([CloudEvent(source="/s", type="T", data={})])
    assert caught.value.status_code == 400
    ce_topic = start_topic(schema=Schema.CLOUDEVENTS)
    with pytest.raises(HttpResponseError) as caught:
        ce_topic.client().send(
            [EventGridEvent(subject="s", event_type="T", data={}, data_version="1")]
        )
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(
            {k: v for k, v in eg_event(1).items() if k != "dataVersion"}, 400, id="no-dataVersion"
        ),
        pytest.param({**eg_event(1), "eventTime": "yesterday"}, 400, id="bad-eventTime"),
        pytest.param({**eg_event(1), "data": "x" * (1024 * 1024)}, 413, id="over-1MB"),
    ],
)
def test_invalid_eventgrid_publish_is_refused(
    start_topic: StartTopic, body: Any, status: int
) -> None:
    topic = start_topic()
    assert topic.publish([eg_event(0), body]).status_code == status
    assert topic.get("/status")["published"] == 0  # all or nothing


def test_invalid_cloudevent_is_400(start_topic: StartTopic) -> None:
    topic = start_topic(schema=Schema.CLOUDEVENTS)
    bad = {"specversion": "0.3", "id": "1", "source": "/s", "type": "T"}
    assert topic.publish([bad], "application/cloudevents-batch+json").status_code == 400
    assert topic.publish({"id": "1"}, "application/cloudevents+json").status_code == 400


# --- subscriptions and handshakes --------------------------------------------------------------


def test_validation_handshake(receiver: Receiver, start_topic: StartTopic) -> None:
    topic = start_topic(Subscription("reports", receiver.url))
    topic.settle()
    assert topic.subscriptions()["reports"]["state"] == "Succeeded"
    [validation] = receiver.validations[0]
    assert validation["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert set(validation["data"]) == {"validationCode", "validationUrl"}


@pytest.mark.parametrize("handshake", ["wrong-code", "refuse"])
def test_failed_handshake_leaves_subscription_inactive(
    receiver: Receiver, start_topic: StartTopic, handshake: str
) -> None:
    receiver.handshake = handshake
    topic = start_topic(Subscription("reports", receiver.url))
    topic.settle()
    assert topic.subscriptions()["reports"]["state"] == "Failed"
    assert topic.subscriptions()["reports"]["error"]
    topic.publish([eg_event(1)])
    assert topic.settle()["delivered"] == 0
    assert receiver.requests == []


def test_failed_cloudevents_handshake_at_runtime(
    receiver: Receiver, start_topic: StartTopic
) -> None:
    receiver.handshake = "refuse"  # OPTIONS answered without WebHook-Allowed-Origin
    topic = start_topic(schema=Schema.CLOUDEVENTS)
    reply = topic.post("/subscriptions", {"name": "reports", "endpoint": receiver.url})
    assert reply.status_code == 400
    assert reply.json()["state"] == "Failed"
    assert topic.subscriptions()["reports"]["active"] is False


def test_manual_validation_via_validation_url(receiver: Receiver, start_topic: StartTopic) -> None:
    receiver.handshake = "silent"
    topic = start_topic()
    reply = topic.post("/subscriptions", {"name": "reports", "endpoint": receiver.url})
    assert (reply.status_code, reply.json()["state"]) == (202, "AwaitingManualAction")
    url = receiver.validations[0][0]["data"]["validationUrl"]
    assert httpx.get(url, trust_env=False).status_code == 200
    assert topic.subscriptions()["reports"]["state"] == "Succeeded"
    topic.publish([eg_event(1)])
    assert topic.settle()["delivered"] == 1


def test_event_type_filter(receiver: Receiver, start_topic: StartTopic) -> None:
    wanted = "Microsoft.Communication.EmailDeliveryReportReceived"
    topic = start_topic(Subscription("reports", receiver.url, included_event_types=(wanted,)))
    topic.publish([eg_event(1), eg_event(2, "Other.Event"), eg_event(3, wanted.lower())])
    topic.settle()
    assert [e["id"] for e in receiver.events] == ["evt-1", "evt-3"]


def test_batching(receiver: Receiver, start_topic: StartTopic) -> None:
    topic = start_topic(Subscription("reports", receiver.url, max_events_per_batch=3))
    topic.publish([eg_event(n) for n in range(7)])
    topic.settle()
    assert [len(body) for body in receiver.delivered] == [3, 3, 1]
    assert [e["id"] for e in receiver.events] == [f"evt-{n}" for n in range(7)]


# --- retries and dead-letters ------------------------------------------------------------------


def test_retry_with_backoff_then_success(receiver: Receiver, start_topic: StartTopic) -> None:
    receiver.fail_next = 2
    topic = start_topic(Subscription("reports", receiver.url, **FAST))
    topic.publish([eg_event(1)])
    status = topic.settle()
    counts = [r["headers"]["aeg-delivery-count"] for r in receiver.requests]
    assert counts == ["0", "1", "2"]
    assert (status["delivered"], status["attempts"], status["deadLettered"]) == (1, 3, 0)


def test_dead_letter_after_max_attempts(
    receiver: Receiver, start_topic: StartTopic, tmp_path: Path
) -> None:
    receiver.fail_next = 100
    sub = Subscription("reports", receiver.url, max_delivery_attempts=3, **FAST)
    topic = start_topic(sub, dead_letter_dir=tmp_path)
    topic.publish([eg_event(1)])
    status = topic.settle()
    assert (status["deadLettered"], status["attempts"], status["delivered"]) == (1, 3, 0)
    [line] = (tmp_path / "reports.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["id"] == "evt-1"
    assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert record["deliveryAttempts"] == 3
    assert record["lastHttpCodeObserved"] == 500
    assert record["lastDeliveryOutcome"] == "GenericError"
    assert {"publishTime", "lastDeliveryAttemptTime"} <= set(record)
    assert topic.get("/deadletters") == {"reports": [record]}


def test_dead_letter_at_once_on_400(receiver: Receiver, start_topic: StartTopic) -> None:
    receiver.reject = True
    topic = start_topic(Subscription("reports", receiver.url, **FAST))
    topic.publish([eg_event(1)])
    status = topic.settle()
    assert (status["deadLettered"], status["attempts"]) == (1, 1)
    [record] = topic.get("/deadletters")["reports"]
    assert (record["lastHttpCodeObserved"], record["lastDeliveryOutcome"]) == (400, "BadRequest")


def test_unreachable_endpoint_is_retried_then_dead_lettered(start_topic: StartTopic) -> None:
    receiver = Receiver()
    with serve(receiver.app()) as base:
        url = f"{base}/runtime/webhooks/eventgrid"
        topic = start_topic(Subscription("reports", url, max_delivery_attempts=3, **FAST))
        topic.settle()  # validated while the endpoint was up
    topic.publish([eg_event(1)])
    status = topic.settle()
    assert (status["deadLettered"], status["attempts"]) == (1, 3)
    [record] = topic.get("/deadletters")["reports"]
    assert record["lastDeliveryOutcome"] == "PeerConnectionFailed"
    assert record["lastHttpCodeObserved"] is None


# --- knobs -------------------------------------------------------------------------------------


def test_duplicate_knob(receiver: Receiver, start_topic: StartTopic) -> None:
    topic = start_topic(Subscription("reports", receiver.url))
    assert topic.post("/knobs", {"duplicate": 2}).json()["duplicate"] == 2
    topic.publish([eg_event(1), eg_event(2)])
    status = topic.settle()
    assert Counter(e["id"] for e in receiver.events) == {"evt-1": 2, "evt-2": 2}
    assert (status["published"], status["delivered"]) == (2, 4)


def test_shuffle_knob_keeps_the_same_events(receiver: Receiver, start_topic: StartTopic) -> None:
    sub = Subscription("reports", receiver.url, max_events_per_batch=5)
    topic = start_topic(sub, knobs=Knobs(shuffle=True, seed=7))
    sent = [f"evt-{n}" for n in range(20)]
    topic.publish([eg_event(n) for n in range(20)])
    topic.settle()
    got = [e["id"] for e in receiver.events]
    assert sorted(got) == sorted(sent)
    assert got != sent


def test_fail_first_knob(receiver: Receiver, start_topic: StartTopic) -> None:
    topic = start_topic(Subscription("reports", receiver.url, **FAST), knobs=Knobs(fail_first=2))
    topic.publish([eg_event(1), eg_event(2)])
    status = topic.settle()
    # The webhook sees only the third attempt of each event, and knows it is the third.
    assert [r["headers"]["aeg-delivery-count"] for r in receiver.requests] == ["2", "2"]
    assert (status["delivered"], status["attempts"]) == (2, 6)


def test_unknown_knob_is_400(start_topic: StartTopic) -> None:
    assert start_topic().post("/knobs", {"explode": True}).status_code == 400


# --- sinks and output schema -------------------------------------------------------------------


def test_sinks_record_both_schemas(start_topic: StartTopic) -> None:
    port = free_port()
    sink = f"http://127.0.0.1:{port}/sinks"
    topic = start_topic(
        Subscription("alerts", f"{sink}/alerts", max_events_per_batch=2),
        Subscription("alerts-ce", f"{sink}/alerts-ce", delivery_schema=Schema.CLOUDEVENTS),
        port=port,
    )
    topic.publish([eg_event(n) for n in range(3)])
    topic.settle()
    assert [e["id"] for e in topic.get("/sinks/alerts")] == ["evt-0", "evt-1", "evt-2"]
    assert [e["specversion"] for e in topic.get("/sinks/alerts-ce")] == ["1.0"] * 3
    deliveries = topic.get("/sinks/alerts/deliveries")
    assert [d["headers"]["aeg-delivery-count"] for d in deliveries] == ["0", "0"]
    reply = topic.post("/subscriptions", {"name": "late", "endpoint": f"{sink}/late"})
    assert reply.status_code == 201


def test_eventgrid_to_cloudevents_output(receiver: Receiver, start_topic: StartTopic) -> None:
    sub = Subscription(
        "reports", receiver.url, max_events_per_batch=2, delivery_schema=Schema.CLOUDEVENTS
    )
    topic = start_topic(sub)
    topic.publish([eg_event(1), eg_event(2)])
    topic.settle()
    assert receiver.options  # the CloudEvents handshake, not Event Grid's
    assert not receiver.validations
    [request] = receiver.requests
    assert request["headers"]["content-type"] == "application/cloudevents-batch+json; charset=utf-8"
    first = request["body"][0]
    assert first == {
        "id": "evt-1",
        "source": DEFAULT_TOPIC_PATH,
        "specversion": "1.0",
        "type": "Microsoft.Communication.EmailDeliveryReportReceived",
        "subject": "sender/a@example.com/message/1",
        "time": "2024-05-01T10:00:00.1234567Z",
        "data": {"n": 1},
    }


def test_parse_subscription_argument() -> None:
    sub = parse_subscription("reports=http://127.0.0.1:7071/x?code=k,types=A;B,batch=10")
    assert sub == Subscription(
        "reports",
        "http://127.0.0.1:7071/x?code=k",
        included_event_types=("A", "B"),
        max_events_per_batch=10,
    )
    with pytest.raises(ValueError, match="option"):
        parse_subscription("reports=http://x,colour=blue")
