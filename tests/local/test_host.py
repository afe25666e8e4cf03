"""local/host.py serving tests/local/sample_app.py over real HTTP, against the session Azurite."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient
from starlette.applications import Starlette

from local.azurite import Azurite
from local.host import (
    CronSchedule,
    UnsupportedRouteError,
    compile_route,
    create_host_app,
    list_functions,
    load_host_config,
    mask_target,
    parse_schedule,
    parse_timespan,
)
from local.ports import free_port, wait_for_port
from tests.local import sample_app
from tests.servers import serve

KEY = "test-function-key"
EVENT_GRID = "/runtime/webhooks/eventgrid"
ROOT = Path(__file__).resolve().parents[2]


def eventually(check: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def queue_client(azurite: Azurite, name: str) -> QueueClient:
    return QueueClient.from_connection_string(azurite.connection_string, name)


@pytest.fixture(scope="module")
def queue_name() -> str:
    return "sample-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def host_app(azurite: Azurite, queue_name: str) -> Starlette:
    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "SAMPLE_QUEUE_NAME": queue_name,
        # host.json overrides the way Azure app settings write them, so the poison test is fast.
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "2",
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.200",
    }
    return create_host_app(sample_app.app, function_key=KEY, settings=settings)


@pytest.fixture(scope="module")
def client(host_app: Starlette) -> Iterator[httpx.Client]:
    with serve(host_app) as base_url, httpx.Client(base_url=base_url, timeout=10) as c:
        yield c
    # Shut down: pollers, timers and both thread pools are gone.
    assert host_app.state.host.tasks == []
    assert not [t.name for t in threading.enumerate() if t.name.startswith("host-")]


# --- HTTP triggers -------------------------------------------------------------------------

RECIPIENT = "/api/messages/m-1/recipients/a%40b.example"


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {}, 401),
        ({"x-functions-key": "wrong"}, {}, 401),
        ({}, {"code": "wrong"}, 401),
        ({"x-functions-key": KEY}, {}, 200),
        ({}, {"code": KEY}, 200),
    ],
    ids=["no-key", "wrong-header", "wrong-code", "header", "code"],
)
def test_function_level_route_needs_the_key(
    client: httpx.Client, headers: dict[str, str], params: dict[str, str], status: int
) -> None:
    assert client.get(RECIPIENT, headers=headers, params=params).status_code == status


def test_route_and_query_params_reach_the_function(client: httpx.Client) -> None:
    reply = client.get(
        RECIPIENT, params=[("x", "1"), ("x", "2"), ("y", "z")], headers={"x-functions-key": KEY}
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["route"] == {"messageId": "m-1", "address": "a@b.example"}
    assert body["query"] == {"x": "1,2", "y": "z"}
    assert body["function"] == "get_recipient"
    assert body["url"].startswith(str(client.base_url) + "/api/messages/m-1/")


def test_anonymous_route_is_open_and_case_insensitive(client: httpx.Client) -> None:
    reply = client.get("/API/Hello/Ada", params={"greeting": "hi"})
    assert reply.status_code == 200
    assert reply.json() == {"name": "Ada", "greeting": "hi"}


@pytest.mark.parametrize(
    ("segment", "address"),
    [
        ("a%40b.example", "a@b.example"),
        ("J%C3%BCrgen%40b%C3%BCcher.example", "Jürgen@bücher.example"),
        ("a%20b%40c.example", "a b@c.example"),
        ("a+b%40c.example", "a+b@c.example"),  # `+` is not a space in a path
        ("a%252Fb%40c.example", "a%2Fb@c.example"),  # decoded once, like every escape
        # Kestrel keeps `%2F` (either case) encoded: one segment, and the value keeps it.
        ("a%2Fb%40c.example", "a%2Fb@c.example"),
        ("a%2fb%40c.example", "a%2fb@c.example"),
    ],
)
def test_percent_encoded_route_values_arrive_decoded_as_kestrel_does(
    client: httpx.Client, segment: str, address: str
) -> None:
    reply = client.get(f"/api/messages/m-1/recipients/{segment}", headers={"x-functions-key": KEY})
    assert reply.status_code == 200, reply.text
    assert reply.json()["route"] == {"messageId": "m-1", "address": address}


def test_route_beyond_plain_segments_and_parameters_is_not_served(
    client: httpx.Client, host_app: Starlette
) -> None:
    assert client.get("/api/items/42").status_code == 404
    assert client.get("/api/items").status_code == 404
    [line] = [s for s in list_functions(host_app, "http://h") if s.startswith("get_item:")]
    assert "not served" in line
    assert "{id:int?}" in line


PROBLEMS = "https://github.com/acs-email-insights/acs-email-insights/blob/main/docs/problems.md"
# RFC 3986 path-absolute: segments of pchar (unreserved, escapes, sub-delims, `:` and `@`).
URI_PATH = re.compile(r"(?:/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*)+")


def assert_problem(reply: httpx.Response, status: int, slug: str, instance: str) -> None:
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body == {
        "type": f"{PROBLEMS}#{slug}",
        "title": body["title"],
        "status": status,
        "instance": instance,
    }
    assert body["title"]
    assert URI_PATH.fullmatch(body["instance"])


@pytest.mark.parametrize(
    ("headers", "query"),
    [({}, ""), ({"x-functions-key": "wrong"}, ""), ({}, "?code=wrong-key-value&x=1")],
    ids=["no-key", "wrong-header", "wrong-code"],
)
def test_missing_or_wrong_key_is_a_401_problem(
    client: httpx.Client, headers: dict[str, str], query: str
) -> None:
    reply = client.get(RECIPIENT + query, headers=headers)
    assert_problem(reply, 401, "unauthorized", RECIPIENT)
    assert "wrong" not in reply.text
    hook = client.post(f"{EVENT_GRID}?functionName=record_event{query.replace('?', '&')}")
    assert_problem(hook, 401, "unauthorized", EVENT_GRID)


@pytest.mark.parametrize(
    ("path", "instance"),
    [
        ("/api/nothing-here", "/api/nothing-here"),
        ("/not-under-the-prefix?code=" + KEY, "/not-under-the-prefix"),
        ("/api/r/a%40b.example/x%2Fy/%C3%A9%20z", "/api/r/a%40b.example/x%2Fy/%C3%A9%20z"),
        ("/api/recipients/a@b.example/(x)!", "/api/recipients/a%40b.example/(x)!"),
        ("/api/a%2fb/%7Etilde", "/api/a%2Fb/~tilde"),
    ],
)  # fmt: skip
def test_unknown_route_is_a_404_problem(client: httpx.Client, path: str, instance: str) -> None:
    reply = client.get(path, headers={"x-functions-key": KEY})
    assert_problem(reply, 404, "not-found", instance)
    assert KEY not in reply.text


def test_unknown_event_grid_function_is_a_404_problem(client: httpx.Client) -> None:
    reply = client.post(EVENT_GRID, params={"functionName": "nope", "code": KEY}, content="[]")
    assert_problem(reply, 404, "not-found", EVENT_GRID)


def test_admin_host_status_needs_the_key_and_names_the_host() -> None:
    app = func.FunctionApp()

    @app.route(route="ping")
    def ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")

    settings = {"AzureFunctionsWebHost__hostid": "host-under-test"}
    with serve(create_host_app(app, function_key=KEY, settings=settings)) as url:
        status = httpx.get(f"{url}/admin/host/status", headers={"x-functions-key": KEY})
        assert status.json() == {"id": "host-under-test", "state": "Running"}
        refused = httpx.get(f"{url}/admin/host/status", params={"code": "wrong"})
        assert_problem(refused, 401, "unauthorized", "/admin/host/status")


def test_unknown_route_is_404_and_wrong_method_405(client: httpx.Client) -> None:
    assert client.get("/api/nothing-here").status_code == 404
    assert client.get("/not-under-the-prefix").status_code == 404
    wrong = client.post("/api/hello/Ada")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"


def test_post_body_and_reply_headers_round_trip(client: httpx.Client) -> None:
    payload = json.dumps({"to": "a@b.example", "text": "héllo"}).encode()
    reply = client.post(
        "/api/echo",
        content=payload,
        headers={"x-functions-key": KEY, "content-type": "application/json"},
    )
    assert reply.status_code == 201
    assert reply.content == payload
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-echo-method"] == "POST"


def test_exception_is_a_500_without_details(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("ERROR", logger="local.host"):
        reply = client.get("/api/boom")
    assert reply.status_code == 500
    assert "secret" not in reply.text
    assert "Traceback" not in reply.text
    assert any("explode" in r.getMessage() and r.exc_info for r in caplog.records)


# --- Event Grid triggers -------------------------------------------------------------------


def grid_event(n: int) -> dict[str, Any]:
    return {
        "id": f"evt-{n}-{uuid.uuid4().hex[:6]}",
        "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Communication/x",
        "subject": f"sender/x/message/{n}",
        "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
        # Seven fractional digits, as Event Grid writes them: the converter trims to six.
        "eventTime": "2024-05-01T10:00:00.1234567Z",
        "data": {"n": n},
        "dataVersion": "1.0",
    }


def cloud_event(n: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"ce-{n}-{uuid.uuid4().hex[:6]}",
        "source": "/alerts",
        "type": "Local.Alert",
        "time": "2024-05-01T10:00:00Z",
        "data": {"n": n},
    }


def post_grid(
    client: httpx.Client, body: Any, kind: str | None = "Notification", **params: str
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if kind is not None:
        headers["aeg-event-type"] = kind
    query = {"functionName": "record_event", "code": KEY, **params}
    return client.post(EVENT_GRID, params=query, headers=headers, content=json.dumps(body))


@pytest.fixture
def recorded() -> Iterator[list[Any]]:
    sample_app.events.clear()
    sample_app.fail_next_event.clear()
    yield sample_app.events
    sample_app.fail_next_event.clear()


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"functionName": "record_event"}, 401),
        ({"functionName": "record_event", "code": "wrong"}, 401),
        ({"functionName": "no_such_function", "code": KEY}, 404),
    ],
    ids=["no-key", "wrong-key", "unknown-function"],
)
def test_event_grid_key_and_function_name(
    client: httpx.Client, params: dict[str, str], status: int
) -> None:
    headers = {"aeg-event-type": "Notification"}
    reply = client.post(EVENT_GRID, params=params, headers=headers, content="[]")
    assert reply.status_code == status


def test_subscription_validation_handshake(client: httpx.Client, recorded: list[Any]) -> None:
    validation = {
        "id": "v-1",
        "topic": "/subscriptions/x",
        "subject": "",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2024-05-01T10:00:00Z",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
        "dataVersion": "2",
    }
    reply = post_grid(client, [validation], kind="SubscriptionValidation")
    assert reply.status_code == 200
    assert reply.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert recorded == []


def test_notification_batch_invokes_once_per_event(
    client: httpx.Client, recorded: list[Any]
) -> None:
    batch = [grid_event(n) for n in range(3)]
    assert post_grid(client, batch).status_code == 200
    assert sorted(e.id for e in recorded) == sorted(e["id"] for e in batch)
    first = next(e for e in recorded if e.id == batch[0]["id"])
    assert isinstance(first, func.EventGridEvent)
    assert first.event_type == "Microsoft.Communication.EmailDeliveryReportReceived"
    assert first.event_time == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert first.get_json() == {"n": 0}


def test_one_failing_event_fails_the_batch(client: httpx.Client, recorded: list[Any]) -> None:
    sample_app.fail_next_event.set()
    assert post_grid(client, [grid_event(1), grid_event(2)]).status_code == 500
    assert len(recorded) == 1  # the other one ran; Event Grid redelivers both


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ([{"id": "1"}], None),
        ({"id": "not-an-array"}, "Notification"),
        (["not-an-object"], "Notification"),
        ([{"id": "1", "eventTime": "yesterday"}], "Notification"),
        ([{"data": {}}], "SubscriptionValidation"),
        ([], "SomethingElse"),
    ],
    ids=["no-aeg-header", "object", "array-of-strings", "bad-time", "no-code", "unknown-kind"],
)
def test_malformed_event_grid_requests_are_400(
    client: httpx.Client, recorded: list[Any], body: Any, kind: str | None
) -> None:
    assert post_grid(client, body, kind=kind).status_code == 400
    assert recorded == []


def test_invalid_json_is_400(client: httpx.Client) -> None:
    params = {"functionName": "record_event", "code": KEY}
    headers = {"aeg-event-type": "Notification"}
    assert client.post(EVENT_GRID, params=params, headers=headers, content="{").status_code == 400


def test_cloudevents_abuse_protection_handshake(client: httpx.Client) -> None:
    reply = client.options(
        EVENT_GRID,
        params={"functionName": "record_event", "code": KEY},
        headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
    )
    assert reply.status_code == 200
    assert reply.headers["webhook-allowed-origin"] == "eventgrid.azure.net"
    assert reply.headers["webhook-allowed-rate"] == "*"


def test_cloudevents_single_and_batch(client: httpx.Client, recorded: list[Any]) -> None:
    params = {"functionName": "record_event", "code": KEY}
    single, batch = cloud_event(0), [cloud_event(1), cloud_event(2)]
    reply = client.post(
        EVENT_GRID,
        params=params,
        headers={"content-type": "application/cloudevents+json; charset=utf-8"},
        content=json.dumps(single),
    )
    assert reply.status_code == 200
    reply = client.post(
        EVENT_GRID,
        params=params,
        headers={"content-type": "application/cloudevents-batch+json"},
        content=json.dumps(batch),
    )
    assert reply.status_code == 200
    assert sorted(e.id for e in recorded) == sorted(e["id"] for e in [single, *batch])
    assert all(isinstance(e, func.CloudEvent) for e in recorded)
    first = next(e for e in recorded if e.id == single["id"])
    assert (first.source, first.type, first.get_json()) == ("/alerts", "Local.Alert", {"n": 0})


# --- queue triggers ------------------------------------------------------------------------


def test_queue_message_is_processed_and_deleted(
    client: httpx.Client, azurite: Azurite, queue_name: str
) -> None:
    queue = queue_client(azurite, queue_name)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    encoded = "job-" + uuid.uuid4().hex
    plain = "{plain-" + uuid.uuid4().hex + "}"  # not base64: passed through as text
    queue.send_message(base64.b64encode(encoded.encode()).decode())
    queue.send_message(plain)
    eventually(lambda: {encoded, plain} <= {body for body, _ in sample_app.queue_messages})
    assert (encoded, 1) in sample_app.queue_messages
    eventually(lambda: queue.get_queue_properties().approximate_message_count == 0)


def test_failing_message_moves_to_poison_after_max_dequeue_count(
    client: httpx.Client, azurite: Azurite, queue_name: str
) -> None:
    queue = queue_client(azurite, queue_name)
    poison = queue_client(azurite, f"{queue_name}-poison")
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    original = base64.b64encode(sample_app.POISON_MARKER.encode()).decode()
    queue.send_message(original)

    def poisoned() -> bool:
        with contextlib.suppress(Exception):
            return [m.content for m in poison.peek_messages(max_messages=5)] == [original]
        return False

    eventually(poisoned)
    tries = [count for body, count in sample_app.queue_messages if body == "fail"]
    assert tries == [1, 2]  # maxDequeueCount 2, one second apart (visibilityTimeout)
    eventually(lambda: queue.get_queue_properties().approximate_message_count == 0)


# --- timer triggers ------------------------------------------------------------------------


def test_timer_fires_every_second(client: httpx.Client) -> None:
    before = len(sample_app.ticks)
    eventually(lambda: len(sample_app.ticks) >= before + 2, timeout=4)
    assert not any(sample_app.ticks)  # none past due


def test_listing_names_every_function(host_app: Starlette) -> None:
    lines = list_functions(host_app, "http://127.0.0.1:7071")
    assert "say_hello: [GET] http://127.0.0.1:7071/api/hello/{name}" in lines
    assert any(line.startswith("record_event: eventGridTrigger http://") for line in lines)
    assert any(line.startswith("work_queue_item: queueTrigger (queue sample-") for line in lines)
    assert "tick: timerTrigger (schedule * * * * * *)" in lines
    assert KEY not in "\n".join(lines)  # a key not from the default is never printed


# --- lifecycle -----------------------------------------------------------------------------


def test_shutdown_stops_pollers_timers_and_threads(azurite: Azurite) -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    ticks: list[bool] = []

    @app.timer_trigger(schedule="*/1 * * * * *", arg_name="timer", run_on_startup=True)
    def count(timer: func.TimerRequest) -> None:
        ticks.append(timer.past_due)

    @app.queue_trigger(arg_name="msg", queue_name="idle-" + uuid.uuid4().hex[:12], connection="")
    def idle(msg: func.QueueMessage) -> None:
        pass

    host_app = create_host_app(
        app, function_key=KEY, settings={"AzureWebJobsStorage": azurite.connection_string}
    )
    with serve(host_app):
        eventually(lambda: len(ticks) >= 1, timeout=3)  # run_on_startup: no wait for a tick
        host = host_app.state.host
        assert len(host.tasks) == 2
        assert not any(t.done() for t in host.tasks)
        threads = [t for pool in (host._pool, host._io) for t in pool._threads]
        assert threads
    assert host.tasks == []
    assert not any(t.is_alive() for t in threads)
    settled = len(ticks)
    time.sleep(1.2)
    assert len(ticks) == settled


# --- pure parts: schedules, route templates, host.json -------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * * *", "2024-01-01T00:00:00.500", "2024-01-01T00:00:01"),
        ("0 */5 * * * *", "2024-01-01T00:03:00", "2024-01-01T00:05:00"),
        ("0 */5 * * * *", "2024-01-01T00:05:00", "2024-01-01T00:10:00"),  # strictly after
        ("5/15 * * * * *", "2024-01-01T00:00:20", "2024-01-01T00:00:35"),
        ("10-20/5 0 0 1 1 *", "2024-01-01T00:00:10", "2024-01-01T00:00:15"),
        ("0 0 9 * * MON-FRI", "2024-01-05T09:00:00", "2024-01-08T09:00:00"),  # Fri -> Mon
        ("0 30 9 * JAN,JUL SUN", "2024-01-08T00:00:00", "2024-01-14T09:30:00"),
        ("0 0 0 * * 7", "2024-01-01T00:00:00", "2024-01-07T00:00:00"),  # 7 is Sunday too
        ("0 0 0 13 * FRI", "2024-01-01T00:00:00", "2024-09-13T00:00:00"),  # day AND weekday
        ("0 0 12 1 * *", "2024-01-31T12:00:00", "2024-02-01T12:00:00"),
        ("0 0 0 29 2 *", "2024-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("0 0 0 31 12 *", "2024-12-31T00:00:00", "2025-12-31T00:00:00"),
        ("0 0,30 8-9 * * *", "2024-01-01T08:45:00", "2024-01-01T09:00:00"),
        ("*/10 * * * *", "2024-01-01T00:01:30", "2024-01-01T00:10:00"),  # 5 fields: second 0
    ],
)
def test_ncrontab_next_occurrence(expression: str, after: str, expected: str) -> None:
    assert CronSchedule.parse(expression).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # The seconds field comes first, as in Azure timer triggers: once a minute at :00 / :30.
        ("0 */1 * * * *", "2024-01-01T00:00:00", ["00:01:00", "00:02:00", "00:03:00"]),
        ("30 */1 * * * *", "2024-01-01T00:00:00", ["00:00:30", "00:01:30", "00:02:30"]),
        ("30 */1 * * * *", "2024-01-01T00:00:30.001", ["00:01:30", "00:02:30", "00:03:30"]),
        ("*/20 * * * * *", "2024-01-01T23:59:30", ["23:59:40", "00:00:00", "00:00:20"]),
        ("15,45 0 12 * * *", "2024-01-01T12:00:15", ["12:00:45", "12:00:15", "12:00:45"]),
    ],
)
def test_ncrontab_seconds_field(expression: str, after: str, expected: list[str]) -> None:
    schedule = parse_schedule(expression)
    moment, times = at(after), []
    for _ in expected:
        moment = schedule.next_after(moment)
        times.append(moment.time().isoformat())
    assert times == expected


@pytest.mark.parametrize(
    "expression",
    ["", "* * * *", "60 * * * * *", "* * * * 13 *", "* * * * * MOO", "*/0 * * * * *",
     "5-1 * * * * *", "a/5 * * * * *", "* * * * * * 2030", "0 0 0 L * *", "0 0 0 ? * *",
     "0 0 0 * * 1#2", "@daily", "H * * * * *", "0 0 0 * DEC-JAN *"],
)  # fmt: skip
def test_ncrontab_rejects_bad_expressions(expression: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        CronSchedule.parse(expression)


def test_schedule_that_never_fires_says_so() -> None:
    with pytest.raises(ValueError, match="never fires"):
        CronSchedule.parse("0 0 0 31 2 *").next_after(at("2024-01-01T00:00:00"))


def test_timespan_schedules() -> None:
    schedule = parse_schedule("00:00:05")
    assert schedule.next_after(at("2024-01-01T00:00:00")) == at("2024-01-01T00:00:05")
    assert parse_timespan("1.02:03:04.5") == timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    with pytest.raises(ValueError, match="TimeSpan"):
        parse_timespan("25:00:00")


GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.mark.parametrize(
    ("template", "path", "params"),
    [
        ("emails", "/emails", {}),
        ("emails", "/EMAILS/", {}),
        ("emails", "/emails/x", None),
        ("emails/{messageId}", "/emails/abc", {"messageId": "abc"}),
        ("emails/{messageId}", "/Emails/AbC/", {"messageId": "AbC"}),  # values keep their case
        ("emails/{messageId}", "/emails", None),
        ("emails/{messageId}", "/emails/a/b", None),
        ("recipients/{address}/emails", "/recipients/a@b.example/emails",
         {"address": "a@b.example"}),
        ("recipients/{address}/emails", "/recipients/a%2Fb/emails", {"address": "a%2Fb"}),
        ("recipients/{address}/emails", "/recipients//emails", None),
        ("/senders/{domain}/resume/", "/senders/b.example/resume", {"domain": "b.example"}),
        ("suppressions/{address}", "/suppressions/x", {"address": "x"}),
        ("emails:send", "/emails:send", {}),  # regex characters in literals are literal
        ("emails:send", "/emailsXsend", None),
        ("", "/", {}),
    ],
)  # fmt: skip
def test_route_templates(template: str, path: str, params: dict[str, str] | None) -> None:
    assert compile_route(template).match(path) == params


@pytest.mark.parametrize(
    "template",
    ["items/{id:int}", "items/{id?}", "page/{n=1}", "static/{*rest}", "files/{name}.{ext}",
     "a/{x}/b/{x}", "r/{code:regex(^\\d{{3}}$)}", "a/{b"],
)  # fmt: skip
def test_route_templates_the_stand_in_does_not_serve(template: str) -> None:
    with pytest.raises(UnsupportedRouteError, match="route"):
        compile_route(template)


def test_literal_segments_rank_before_parameters() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="emails/{messageId}", methods=["GET"])
    def by_id(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("by_id")

    @app.route(route="emails/pending", methods=["GET"])
    def pending(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pending")

    with serve(create_host_app(app, function_key=KEY)) as url:
        assert httpx.get(f"{url}/api/emails/pending").text == "pending"
        assert httpx.get(f"{url}/api/emails/other").text == "by_id"


def test_host_json_then_setting_overrides(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "http": {"routePrefix": ""},
                    "queues": {"batchSize": 8, "visibilityTimeout": "00:00:10"},
                },
            }
        )
    )
    config = load_host_config(
        tmp_path, {"AzureFunctionsJobHost__Extensions__Queues__MaxDequeueCount": "3"}
    )
    assert config.route_prefix == ""
    assert config.queues.batch_size == 8
    assert config.queues.visibility_timeout == timedelta(seconds=10)
    assert config.queues.max_dequeue_count == 3
    assert config.queues.max_polling_interval == timedelta(minutes=1)  # the default


def test_host_serves_no_function_switched_off_by_app_setting() -> None:
    """`AzureWebJobs.<name>.Disabled`, as the Functions host reads it (the bench uses it to
    measure accepts with the sender off)."""
    app = func.FunctionApp()

    @app.route(route="ping")
    def ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")

    @app.queue_trigger(arg_name="item", queue_name="work", connection="AzureWebJobsStorage")
    def work(item: func.QueueMessage) -> None:
        pass

    settings = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    off = create_host_app(
        app, function_key="k", settings={**settings, "AZUREWEBJOBS.work.DISABLED": "1"}
    )
    lines = list_functions(off, "http://host")
    assert "work: queueTrigger (not served: app setting AzureWebJobs.work.Disabled)" in lines
    assert "ping: [ALL] http://host/api/ping" in lines
    assert off.state.host.queues == []


# --- access log ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "masked"),
    [
        ("/api/recipients/a%40b/emails", "/api/recipients/***/emails"),
        ("/api/suppressions/a@b.example?code=k3y", "/api/suppressions/***?code=***"),
        ("/api/emails/m-1?CODE=k3y&x=1", "/api/emails/m-1?CODE=***&x=1"),
        ("/api/explain?to=a%40b.example&status=Failed", "/api/explain?to=***&status=Failed"),
        ("/api/x?a%40b.example&y", "/api/x?***&y"),
        ("/api/senders/b.example/resume", "/api/senders/b.example/resume"),
        ("/api/health", "/api/health"),
    ],
)
def test_mask_target(target: str, masked: str) -> None:
    assert mask_target(target) == masked


def test_access_log_shows_neither_addresses_nor_the_key(tmp_path: Path) -> None:
    """`python -m local.host` as `make run` starts it; its whole output is read."""
    secret, port = "s3cret-function-key-" + uuid.uuid4().hex, free_port()
    env = {**os.environ, "LOCAL_FUNCTION_KEY": secret, "PYTHONUNBUFFERED": "1"}
    env.pop("AzureWebJobsStorage", None)
    out = tmp_path / "host.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "local.host", "--module", "tests.local.sample_app",
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for_port(port, timeout=60)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=10) as c:
                assert c.get(f"{RECIPIENT}?code={secret}").status_code == 200
                assert c.get(f"{RECIPIENT}?to=c%40d.example").status_code == 401
                assert c.get("/api/hello/Ada", params={"greeting": "e@f.example"}).is_success
                hook = f"{EVENT_GRID}?functionName=record_event&code={secret}"
                assert c.post(hook, content="[]", headers={"aeg-event-type": "Notification"})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    log = out.read_text()
    assert '"GET /api/messages/m-1/recipients/***?code=*** HTTP/1.1" 200' in log
    assert '"GET /api/messages/m-1/recipients/***?to=*** HTTP/1.1" 401' in log
    assert '"GET /api/hello/Ada?greeting=*** HTTP/1.1" 200' in log
    assert '"POST /runtime/webhooks/eventgrid?functionName=record_event&code=*** HTTP/1.1"' in log
    for leak in (secret, "a@b", "a%40b", "c@d", "c%40d", "e@f", "e%40f"):
        assert leak not in log
