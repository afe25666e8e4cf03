"""The ACS sandbox driven by the real EmailClient; a stand-in Event Grid topic gets its events."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.rest import HttpRequest
from jsonschema import Draft4Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from local.acs_sandbox import (
    DEFAULT_ACCESS_KEY,
    DELIVERY_EVENT,
    ENGAGEMENT_EVENT,
    MAX_REQUEST_BYTES,
    SERVICE_RULES,
    SPEC_PATH,
    SandboxConfig,
    _parse_args,
    create_app,
    validate_message,
)
from local.ports import free_port
from tests.conftest import REFERENCE_DIR, REFERENCE_EVENTS_DIR
from tests.servers import serve

SENDER = "noreply@sandbox.test"
ACS_API = REFERENCE_DIR / "acs-email-api"
# The spec's ErrorResponse (azure-rest-api-specs common-types/data-plane/v1/types.json).
ERROR_RESPONSE = json.loads((ACS_API / "common-types-data-plane-v1-types.json").read_text()) | {
    "$ref": "#/definitions/ErrorResponse"
}
EVENTS_KEY = "local-topic-key"
API = "api-version=2025-09-01"


@dataclass
class Topic:
    """A stand-in Event Grid topic: records each POST; answers 503 while `failures` > 0."""

    posts: list[tuple[str | None, list[dict[str, Any]]]] = field(default_factory=list)
    failures: int = 0

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for _, batch in self.posts for e in batch]

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            if self.failures > 0:
                self.failures -= 1
                return Response(status_code=503)
            self.posts.append((request.headers.get("aeg-sas-key"), await request.json()))
            return Response(status_code=200)

        return Starlette(routes=[Route("/api/events", receive, methods=["POST"])])


def fast_config(**overrides: Any) -> SandboxConfig:
    settings: dict[str, Any] = {
        "report_delay_s": 0.05,
        "engagement_delay_s": 0.05,
        "poll_retry_after_s": 0,
        "quota_per_minute": 1000,
        "quota_per_hour": 1000,
        "publish_backoff_s": 0.01,
        "events_key": EVENTS_KEY,
    }
    return SandboxConfig(**(settings | overrides))


@pytest.fixture(scope="module")
def topic() -> Topic:
    return Topic()


@pytest.fixture(scope="module")
def topic_url(topic: Topic) -> Iterator[str]:
    with serve(topic.app()) as url:
        yield f"{url}/api/events"


@pytest.fixture(scope="module")
def sandbox_url(topic_url: str) -> Iterator[str]:
    with serve(create_app(fast_config(events_url=topic_url))) as url:
        yield url


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> None:
    if "sandbox_url" in request.fixturenames:
        url = request.getfixturevalue("sandbox_url")
        httpx.post(f"{url}/sandbox/reset").raise_for_status()
        topic = request.getfixturevalue("topic")
        topic.posts.clear()
        topic.failures = 0


@pytest.fixture
def client(sandbox_url: str) -> EmailClient:
    return EmailClient(sandbox_url, AzureKeyCredential(DEFAULT_ACCESS_KEY))


def message(*to: str, sender: str = SENDER, **extra: Any) -> dict[str, Any]:
    return {
        "senderAddress": sender,
        "content": {"subject": "Hello", "plainText": "Hello there", "html": "<p>Hello</p>"},
        "recipients": {"to": [{"address": a} for a in to]},
    } | extra


def send(client: EmailClient, msg: dict[str, Any], op_id: str | None = None) -> dict[str, Any]:
    """Send and poll to the end, as the app does (but polling every 10 ms)."""
    poller = client.begin_send(msg, operation_id=op_id or str(uuid.uuid4()), polling_interval=0.01)
    result: dict[str, Any] = poller.result(timeout=10)
    return result


def send_error(client: EmailClient, msg: Any, **kwargs: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as caught:
        client.begin_send(msg, polling=False, retry_total=0, **kwargs)
    return caught.value


def get_status(client: EmailClient, op_id: str, query: str = API) -> httpx.Response | Any:
    return client.send_request(HttpRequest("GET", f"/emails/operations/{op_id}?{query}"))


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
    return value


def reports(topic: Topic, op_id: str, event_type: str = DELIVERY_EVENT) -> list[dict[str, Any]]:
    return [
        e for e in topic.events if e["eventType"] == event_type and e["data"]["messageId"] == op_id
    ]


def operations(sandbox_url: str) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = httpx.get(f"{sandbox_url}/sandbox/operations").json()["operations"]
    return ops


def reference(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((REFERENCE_EVENTS_DIR / name).read_text())
    return event


# --- sending and polling ---------------------------------------------------------------------


def test_send_adopts_operation_id_and_reaches_succeeded(
    client: EmailClient, sandbox_url: str, topic: Topic
) -> None:
    op_id = str(uuid.uuid4())
    seen: list[Any] = []
    poller = client.begin_send(
        message("someone@example.org"),
        operation_id=op_id,
        polling_interval=0.01,
        raw_response_hook=lambda r: seen.append(r.http_response),
    )
    assert poller.result(timeout=10) == {"id": op_id, "status": "Succeeded"}

    accepted = seen[0]
    assert accepted.status_code == 202
    assert accepted.json() == {"id": op_id, "status": "Running"}
    assert accepted.headers["Operation-Location"] == (
        f"{sandbox_url}/emails/operations/{op_id}?{API}"
    )
    assert accepted.headers["operation-id"] == op_id
    assert accepted.headers["retry-after"] == "0"

    [report] = reports(topic, op_id)
    assert report["data"]["status"] == "Delivered"
    assert report["subject"] == f"sender/{SENDER}/message/{op_id}"
    assert topic.posts[0][0] == EVENTS_KEY
    assert [op["id"] for op in operations(sandbox_url)] == [op_id]


def test_operation_id_generated_when_absent(client: EmailClient, sandbox_url: str) -> None:
    result = client.begin_send(message("a@example.org"), polling=False).result()
    assert uuid.UUID(result["id"])
    assert [op["id"] for op in operations(sandbox_url)] == [result["id"]]


def test_status_is_running_until_reports_are_emitted(topic_url: str) -> None:
    with serve(create_app(fast_config(events_url=topic_url, report_delay_s=60))) as url:
        client = EmailClient(url, AzureKeyCredential(DEFAULT_ACCESS_KEY))
        op_id = str(uuid.uuid4())
        client.begin_send(message("a@example.org"), operation_id=op_id, polling=False)
        status = get_status(client, op_id)
        assert status.status_code == 200
        assert status.json() == {"id": op_id, "status": "Running"}
        assert status.headers["retry-after"] == "0"
        # The example's upper-case GUID style: ids compare case-insensitively.
        assert get_status(client, op_id.upper()).json()["id"] == op_id


def test_unknown_operation_is_404(client: EmailClient) -> None:
    response = get_status(client, str(uuid.uuid4()))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"


def test_operation_fails_with_email_dropped_when_no_recipient_is_reached(
    client: EmailClient,
) -> None:
    op_id = str(uuid.uuid4())
    with pytest.raises(HttpResponseError):
        send(client, message("expired@simulator.test", "suppressed@simulator.test"), op_id)
    assert get_status(client, op_id).json() == {
        "id": op_id,
        "status": "Failed",
        "error": {
            "code": "EmailDropped",
            "message": "Email was dropped after several attempts to deliver.",
        },
    }


# --- the mailbox simulator -------------------------------------------------------------------

SIMULATED = [
    # (recipient, status, statusMessage with {a} = the address, reaches the recipient's server)
    ("delivered@simulator.test", "Delivered", "No error.", True),
    ("bounce+42@simulator.test", "Bounced",
     "550 5.1.1 <{a}>: Recipient address rejected: User unknown in virtual mailbox table", True),
    ("mailboxfull@simulator.test", "Failed", "552 5.2.2 <{a}>: Mailbox full, quota exceeded", True),
    ("spam@simulator.test", "FilteredSpam",
     "Message was identified as spam by the recipient's server", True),
    ("quarantine@simulator.test", "Quarantined",
     "Message was quarantined by the recipient's server", True),
    ("suppressed@simulator.test", "Suppressed",
     "Recipient {a} is on the suppression list; the message was not sent", False),
    ("blocked@simulator.test", "Failed", "550 5.7.1 Message rejected due to local policy", True),
    ("expired@simulator.test", "Failed", "Message expired, delivery attempts exhausted (4.4.7)",
     False),
    ("unknown-status@simulator.test", "DeferredUnknown",
     "451 4.3.0 Temporary condition not described by ACS", True),
    ("opened@simulator.test", "Delivered", "No error.", True),
    ("clicked+x@simulator.test", "Delivered", "No error.", True),
    ("Bounce+Upper@Simulator.TEST", "Bounced",
     "550 5.1.1 <{a}>: Recipient address rejected: User unknown in virtual mailbox table", True),
    ("anything@simulator.test", "Delivered", "No error.", True),
    ("bounce@elsewhere.example", "Delivered", "No error.", True),
]  # fmt: skip


@pytest.mark.parametrize("case", SIMULATED, ids=[c[0] for c in SIMULATED])
def test_simulator_outcome(
    client: EmailClient, topic: Topic, case: tuple[str, str, str, bool]
) -> None:
    recipient, status, text, reaches_server = case
    op_id = str(uuid.uuid4())
    # A Delivered companion keeps the operation Succeeded, so the poller returns normally.
    send(client, message(recipient, "companion@example.org"), op_id)
    [report] = [r for r in reports(topic, op_id) if r["data"]["recipient"] == recipient]
    data = report["data"]
    assert data["status"] == status
    assert data["deliveryStatusDetails"]["statusMessage"] == text.format(a=recipient)
    assert ("internetMessageId" in data) is reaches_server
    assert ("recipientMailServerHostName" in data["deliveryStatusDetails"]) is reaches_server


def test_noreport_recipient_gets_no_report(client: EmailClient, topic: Topic) -> None:
    op_id = str(uuid.uuid4())
    assert send(client, message("noreport@simulator.test", "b@example.org"), op_id)["status"] == (
        "Succeeded"
    )
    # The operation settles only after all reports went out, so none can still be coming.
    assert [r["data"]["recipient"] for r in reports(topic, op_id)] == ["b@example.org"]


def test_delivery_report_has_the_reference_shape(client: EmailClient, topic: Topic) -> None:
    ref = reference(
        "specs-2018-01-01-event-grid-schema-email_delivery_report_received@e6eec14c.json"
    )
    op_id = str(uuid.uuid4())
    send(client, message("bounce@simulator.test"), op_id)
    [event] = reports(topic, op_id)
    assert event.keys() == ref.keys()
    assert {k: event[k] for k in ("eventType", "dataVersion", "metadataVersion")} == {
        k: ref[k] for k in ("eventType", "dataVersion", "metadataVersion")
    }
    assert ref["data"].keys() <= event["data"].keys()
    assert event["data"].keys() - ref["data"].keys() == {"internetMessageId"}
    assert event["topic"].startswith("/subscriptions/")
    assert uuid.UUID(event["id"])
    data = event["data"]
    assert data["deliveryAttemptTimestamp"].endswith("+00:00")
    assert datetime.fromisoformat(data["deliveryAttemptTimestamp"]).utcoffset() is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", event["eventTime"])
    assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", data["internetMessageId"])
    assert data["deliveryStatusDetails"]["recipientMailServerHostName"] == "mx.simulator.test"


def test_engagement_events_for_opened_and_clicked(client: EmailClient, topic: Topic) -> None:
    ref = reference(
        "specs-2018-01-01-event-grid-schema-email_engagement_tracking_report_received@49122b3b.json"
    )
    untracked = [
        send(client, message("opened@simulator.test", userEngagementTrackingDisabled=True))["id"],
        send(client, message("opened@simulator.test", content={"subject": "s", "plainText": "t"}))[
            "id"
        ],
    ]  # fmt: skip
    op_id = str(uuid.uuid4())
    send(client, message("opened@simulator.test", "clicked@simulator.test"), op_id)
    events = wait_for(lambda: len(reports(topic, op_id, ENGAGEMENT_EVENT)) == 3 and
                      reports(topic, op_id, ENGAGEMENT_EVENT))  # fmt: skip

    by_recipient: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_recipient.setdefault(e["data"]["recipient"], []).append(e["data"])
    [opened_view] = by_recipient["opened@simulator.test"]
    assert opened_view["engagementType"] == "view"
    clicked = by_recipient["clicked@simulator.test"]
    assert [d["engagementType"] for d in clicked] == ["view", "click"]
    assert clicked[1]["engagementContext"].startswith("https://")
    for e in events:
        assert e.keys() == ref.keys()
        assert e["eventType"] == ref["eventType"]
        assert e["data"].keys() == ref["data"].keys() | {"recipient"}
        assert e["data"]["userActionTimestamp"].endswith("+00:00")
    # Opted out, or no HTML to track: these went out earlier with the same delay, and got none.
    assert all(reports(topic, u, ENGAGEMENT_EVENT) == [] for u in untracked)


def test_failed_publish_is_retried(client: EmailClient, topic: Topic) -> None:
    topic.failures = 2
    op_id = str(uuid.uuid4())
    send(client, message("a@example.org"), op_id)
    assert len(reports(topic, op_id)) == 1


def test_unreachable_topic_keeps_events_in_memory() -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/events"
    with serve(create_app(fast_config(events_url=dead, publish_attempts=2))) as url:
        client = EmailClient(url, AzureKeyCredential(DEFAULT_ACCESS_KEY))
        op_id = str(uuid.uuid4())
        assert send(client, message("a@example.org"), op_id)["status"] == "Succeeded"
        events = httpx.get(f"{url}/sandbox/events", params={"messageId": op_id}).json()["events"]
        assert [e["data"]["status"] for e in events] == ["Delivered"]


# --- auth ------------------------------------------------------------------------------------


def test_tampered_body_is_rejected(client: EmailClient, sandbox_url: str) -> None:
    def tamper(request: Any) -> None:  # runs after the HMAC policy signed the request
        request.http_request.body = request.http_request.body.replace("Hello", "Jello")

    error = send_error(client, message("a@example.org"), raw_request_hook=tamper)
    assert isinstance(error, ClientAuthenticationError)
    assert error.status_code == 401
    assert error.error is not None
    assert error.error.code == "Denied"
    assert operations(sandbox_url) == []


def test_wrong_key_is_rejected(sandbox_url: str) -> None:
    other_key = base64.b64encode(b"some other key").decode()
    client = EmailClient(sandbox_url, AzureKeyCredential(other_key))
    error = send_error(client, message("a@example.org"))
    assert isinstance(error, ClientAuthenticationError)
    assert get_status(client, str(uuid.uuid4())).status_code == 401


def test_unsigned_request_is_rejected(sandbox_url: str) -> None:
    response = httpx.post(f"{sandbox_url}/emails:send?{API}", json=message("a@example.org"))
    assert response.status_code == 401
    assert response.headers["x-ms-error-code"] == "Denied"
    assert response.json()["error"]["code"] == "Denied"


# --- validation ------------------------------------------------------------------------------


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, leaf = path.split(".")

    def drop(msg: dict[str, Any]) -> None:
        node = msg
        for p in parents:
            node = node[p]
        del node[leaf]

    return drop


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, leaf = path.split(".")

    def put(msg: dict[str, Any]) -> None:
        node = msg
        for p in parents:
            node = node[p]
        node[leaf] = value

    return put


def _drop_bodies(msg: dict[str, Any]) -> None:
    del msg["content"]["plainText"], msg["content"]["html"]


ATTACHMENT = {"name": "a.txt", "contentType": "text/plain", "contentInBase64": "SGVsbG8="}
INVALID = [
    # (case, mutation, status, ACS error code, target of the first detail)
    ("no sender", _without("senderAddress"), "InvalidRequest", "senderAddress"),
    ("no content", _without("content"), "InvalidRequest", "content"),
    ("no subject", _without("content.subject"), "InvalidRequest", "content.subject"),
    ("no body", _drop_bodies, "InvalidRequest", "content"),
    ("no recipients", _without("recipients"), "InvalidRequest", "recipients"),
    ("empty to", _set("recipients.to", []), "InvalidRequest", "recipients.to"),
    ("only cc", _set("recipients", {"cc": [{"address": "a@example.org"}]}), "InvalidRequest",
     "recipients.to"),
    ("bad sender", _set("senderAddress", "noreply@@sandbox.test"), "InvalidEmailAddress",
     "senderAddress"),
    ("bad to", _set("recipients.to", [{"address": "not an address"}]), "InvalidEmailAddress",
     "recipients.to[0].address"),
    ("bad bcc", _set("recipients.bcc", [{"address": "x@localhost"}]), "InvalidEmailAddress",
     "recipients.bcc[0].address"),
    ("bad replyTo", _set("replyTo", [{"address": "a@.example.org"}]), "InvalidEmailAddress",
     "replyTo[0].address"),
    ("bad base64", _set("attachments", [ATTACHMENT | {"contentInBase64": "not base64!"}]),
     "InvalidAttachment", "attachments[0].contentInBase64"),
    ("no contentType", _set("attachments", [{"name": "a", "contentInBase64": "SGVsbG8="}]),
     "InvalidRequest", "attachments[0].contentType"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "code", "target"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_message_is_rejected(
    client: EmailClient,
    sandbox_url: str,
    mutate: Callable[[dict[str, Any]], None],
    code: str,
    target: str,
) -> None:
    msg = message("a@example.org")
    mutate(msg)
    error = send_error(client, msg)
    assert error.status_code == 400
    assert error.error is not None
    assert error.error.code == code
    assert error.error.details[0].target == target
    assert error.response is not None
    assert error.response.headers["x-ms-error-code"] == code
    Draft4Validator(ERROR_RESPONSE).validate(error.response.json())
    assert operations(sandbox_url) == []


WRONG_TYPES = [
    # (case, body, every (code, target) the reply names, in order)
    ("array body", [], [("InvalidRequest", "")]),
    ("to not an array", message() | {"recipients": {"to": {"address": "a@example.org"}}},
     [("InvalidRequest", "recipients.to")]),
    ("displayName number",
     message() | {"recipients": {"to": [{"address": "a@example.org", "displayName": 7}]}},
     [("InvalidRequest", "recipients.to[0].displayName")]),
    ("header not a string", message("a@example.org", headers={"X-Count": 1}),
     [("InvalidRequest", "headers.X-Count")]),
    ("tracking not a bool", message("a@example.org", userEngagementTrackingDisabled="yes"),
     [("InvalidRequest", "userEngagementTrackingDisabled")]),
    ("blank subject", message("a@example.org", content={"subject": " ", "html": "<p>x</p>"}),
     [("InvalidRequest", "content.subject")]),
    ("empty sender", message("a@example.org", senderAddress=""),
     [("InvalidRequest", "senderAddress")]),
    ("three at once",
     {"senderAddress": "nope", "content": {"subject": "s"},
      "recipients": {"to": [{"address": "a@example.org"}, {}]}},
     [("InvalidEmailAddress", "senderAddress"), ("InvalidRequest", "recipients.to[1].address"),
      ("InvalidRequest", "content")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "expected"), [c[1:] for c in WRONG_TYPES], ids=[c[0] for c in WRONG_TYPES]
)
def test_every_schema_problem_is_named(
    client: EmailClient, body: Any, expected: list[tuple[str, str]]
) -> None:
    error = send_error(client, body)
    assert error.status_code == 400
    assert error.response is not None
    reply = error.response.json()
    Draft4Validator(ERROR_RESPONSE).validate(reply)
    details = reply["error"]["details"]
    assert sorted((d["code"], d["target"]) for d in details) == sorted(expected)
    assert reply["error"]["code"] == details[0]["code"]
    assert all(d["message"] and len(d["message"]) <= 200 for d in details)


def test_the_specs_own_example_request_is_accepted(client: EmailClient) -> None:
    example = json.loads((ACS_API / "stable-2025-09-01-examples-SendEmail.json").read_text())
    body = example["parameters"]["emailMessage"]
    assert validate_message(body) == []
    assert send(client, body | {"senderAddress": SENDER})["status"] == "Succeeded"


def test_schema_is_the_spec_copy_plus_draft4_rules() -> None:
    # local/ keeps its own copy (dev tooling reads no test data); it equals the tests' copy,
    # which test_reference_copies keeps equal to ../shared.
    original = ACS_API / "stable-2025-09-01-CommunicationServicesEmail.json"
    assert SPEC_PATH.read_bytes() == original.read_bytes()
    spec = json.loads(SPEC_PATH.read_text())
    assert spec["info"]["version"] == "2025-09-01"
    Draft4Validator.check_schema({"definitions": spec["definitions"], **SERVICE_RULES})


def test_valid_extras_are_accepted(client: EmailClient) -> None:
    msg = message(
        "a@example.org",
        "José@bücher.example",
        attachments=[ATTACHMENT | {"contentId": "logo"}],
        replyTo=[{"address": "support@sandbox.test", "displayName": "Support"}],
        headers={"ClientCorrelationId": "123"},
    )
    assert send(client, msg)["status"] == "Succeeded"


def test_recipient_limit_is_50_across_to_cc_bcc(client: EmailClient, sandbox_url: str) -> None:
    def addresses(n: int, prefix: str) -> list[dict[str, str]]:
        return [{"address": f"{prefix}{i}@example.org"} for i in range(n)]

    fifty = message("x@example.org")
    fifty["recipients"] = {
        "to": addresses(30, "t"),
        "cc": addresses(10, "c"),
        "bcc": addresses(10, "b"),
    }
    client.begin_send(fifty, polling=False)

    fifty_one = message("x@example.org")
    fifty_one["recipients"] = fifty["recipients"] | {"bcc": addresses(11, "b")}
    error = send_error(client, fifty_one)
    assert error.status_code == 400
    assert error.error is not None
    assert error.error.code == "TooManyRecipients"
    assert len(operations(sandbox_url)) == 1


def test_request_over_10_mb_is_413(client: EmailClient, sandbox_url: str) -> None:
    big = base64.b64encode(b"\0" * (MAX_REQUEST_BYTES * 3 // 4 + 1024)).decode()
    msg = message("a@example.org", attachments=[ATTACHMENT | {"contentInBase64": big}])
    error = send_error(client, msg)
    assert error.status_code == 413
    assert error.error is not None
    assert error.error.code == "RequestEntityTooLarge"
    assert operations(sandbox_url) == []


def test_body_that_is_not_json_is_400(client: EmailClient) -> None:
    request = HttpRequest("POST", f"/emails:send?{API}", content="{not json")
    response = client.send_request(request)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequest"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("api-version=2021-10-01-preview", "InvalidApiVersionParameter"),
        ("", "MissingApiVersionParameter"),
    ],
)
def test_api_version_is_checked(client: EmailClient, query: str, code: str) -> None:
    response = get_status(client, str(uuid.uuid4()), query)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_operation_id_must_be_a_uuid(client: EmailClient) -> None:
    error = send_error(client, message("a@example.org"), operation_id="not-a-uuid")
    assert error.status_code == 400
    assert error.error is not None
    assert error.error.code == "InvalidOperationId"


def test_unlinked_sender_domain(client: EmailClient, sandbox_url: str) -> None:
    error = send_error(client, message("a@example.org", sender="noreply@contoso.example"))
    assert isinstance(error, ResourceNotFoundError)
    assert error.error is not None
    assert error.error.code == "DomainNotLinked"
    assert operations(sandbox_url) == []
    # Domains compare case-insensitively.
    assert send(client, message("a@example.org", sender="NoReply@Sandbox.TEST"))


# --- quota and idempotency -------------------------------------------------------------------


def test_per_minute_quota_gives_429_with_retry_after(client: EmailClient, sandbox_url: str) -> None:
    quota = httpx.post(f"{sandbox_url}/sandbox/quota", json={"perMinute": 2, "perHour": 100})
    assert quota.json() == {"perMinute": 2, "perHour": 100}
    first = str(uuid.uuid4())
    client.begin_send(message("a@example.org"), operation_id=first, polling=False)
    client.begin_send(message("b@example.org"), polling=False)

    error = send_error(client, message("c@example.org"))
    assert error.status_code == 429
    assert error.error is not None
    assert error.error.code == "TooManyRequests"
    assert error.response is not None
    assert 1 <= int(error.response.headers["Retry-After"]) <= 60
    # A retry of an accepted operation is not a new send, so it is not throttled.
    client.begin_send(message("a@example.org"), operation_id=first, polling=False)
    assert len(operations(sandbox_url)) == 2


def test_per_hour_quota(client: EmailClient, sandbox_url: str) -> None:
    httpx.post(f"{sandbox_url}/sandbox/quota", json={"perHour": 1}).raise_for_status()
    client.begin_send(message("a@example.org"), polling=False)
    error = send_error(client, message("b@example.org"))
    assert error.status_code == 429
    assert error.response is not None
    assert 60 < int(error.response.headers["Retry-After"]) <= 3600


def test_quota_endpoint_rejects_nonsense(sandbox_url: str) -> None:
    assert httpx.post(f"{sandbox_url}/sandbox/quota", json={"perMinute": -1}).status_code == 400
    assert httpx.post(f"{sandbox_url}/sandbox/quota", content=b"[").status_code == 400


def test_repeated_operation_id_is_not_a_second_send(
    client: EmailClient, sandbox_url: str, topic: Topic
) -> None:
    op_id = str(uuid.uuid4())
    msg = message("a@example.org", "bounce@simulator.test")
    assert send(client, msg, op_id)["status"] == "Succeeded"
    assert send(client, msg, op_id)["status"] == "Succeeded"

    [op] = operations(sandbox_url)
    assert (op["id"], op["sendCount"]) == (op_id, 2)
    assert op["recipients"] == ["a@example.org", "bounce@simulator.test"]
    assert op["sender"] == SENDER
    assert sorted(r["data"]["recipient"] for r in reports(topic, op_id)) == [
        "a@example.org",
        "bounce@simulator.test",
    ]

    with pytest.raises(ResourceExistsError) as caught:
        client.begin_send(message("someone-else@example.org"), operation_id=op_id, polling=False)
    assert caught.value.error is not None
    assert caught.value.error.code == "OperationIdConflict"


def test_reset_forgets_everything(client: EmailClient, sandbox_url: str) -> None:
    send(client, message("a@example.org"))
    assert operations(sandbox_url)
    httpx.post(f"{sandbox_url}/sandbox/reset").raise_for_status()
    assert operations(sandbox_url) == []
    assert httpx.get(f"{sandbox_url}/sandbox/events").json() == {"events": []}


def test_cli_options() -> None:
    config, port, _ = _parse_args(
        ["--port", "9999", "--events-url", "http://127.0.0.1:1/api/events", "--events-key", "k",
         "--sender-domain", "a.test", "--sender-domain", "b.test", "--quota-per-minute", "5"]
    )  # fmt: skip
    assert port == 9999
    assert config.sender_domains == ("a.test", "b.test")
    assert (config.events_url, config.events_key) == ("http://127.0.0.1:1/api/events", "k")
    assert config.quota_per_minute == 5
    assert _parse_args([])[0] == SandboxConfig()
