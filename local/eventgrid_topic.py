"""A local Event Grid topic: takes publishes, delivers to webhooks with Event Grid's contract.

What a subscriber sees is what Azure sends: the validation handshake when a subscription is
created, `aeg-*` headers, batches, at-least-once delivery with retries, dead-lettering. Test knobs
(duplicate, shuffle, fail_first, seed) make the awkward parts of that contract happen on demand.

Endpoints (all JSON):
    POST /api/events                    publish; `aeg-sas-key` header (or query), 200 with no body
    GET  /status                        published / delivered / pending / deadLettered / attempts
    GET  /subscriptions                 subscriptions with their provisioning state
    POST /subscriptions                 create one (body: Subscription fields); runs the handshake
    DELETE /subscriptions/{name}        remove one; its undelivered events are dropped
    GET  /subscriptions/{name}/validate?code=...   the validationUrl (manual validation)
    GET  /deadletters                   {subscription: [dead-lettered events]}
    GET|POST /knobs                     read / change the test knobs
    POST|OPTIONS /sinks/{name}          a webhook that records what it receives
    GET|DELETE /sinks/{name}            the recorded events in arrival order / forget them
    GET  /sinks/{name}/deliveries       the same, one entry per request with its aeg-* headers

Where this differs from Azure on purpose: first attempts to one subscription go out one at a
time in publish order (retries run concurrently), so a seeded run is reproducible; events
published while a subscription's handshake is still running are held for it rather than lost;
dead-letters are kept in memory (and on disk when a directory is given) instead of in a blob.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

Event = dict[str, Any]

MAX_PUBLISH_BYTES = 1024 * 1024  # Azure: a publish request may carry at most 1 MB, else 413
DEFAULT_TOPIC_PATH = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local"
    "/providers/Microsoft.EventGrid/topics/local"
)
VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"
HANDSHAKE_ORIGIN = "eventgrid.azure.net"  # CloudEvents webhook abuse protection, as Azure sends it
EVENTGRID_REQUIRED = ("id", "subject", "eventType", "eventTime", "data", "dataVersion")
CLOUDEVENT_REQUIRED = ("specversion", "id", "source", "type")
# CloudEvents 1.0: attribute names are lower-case letters and digits (data_base64 is the JSON
# format's own member).
CLOUDEVENT_ATTRIBUTE = re.compile(r"^[a-z0-9]{1,20}$|^data_base64$")
SUBSCRIPTION_NAME = re.compile(r"^[A-Za-z0-9-]{3,64}$")  # Azure's rule; also a safe file name


class Schema(StrEnum):
    EVENTGRID = "eventgrid"  # Event Grid's own schema: a JSON array of {id, topic, eventType, ...}
    CLOUDEVENTS = "cloudevents"  # CloudEvents 1.0 in structured JSON mode, single or batch


class SubscriptionState(StrEnum):
    """Azure's provisioningState names."""

    CREATING = "Creating"  # handshake under way; events published meanwhile are held for it
    SUCCEEDED = "Succeeded"  # handshake passed: events are delivered
    FAILED = "Failed"  # handshake failed: inactive, nothing is delivered
    AWAITING_MANUAL_ACTION = "AwaitingManualAction"  # 200 without the code: GET validationUrl


class Outcome(StrEnum):
    """`lastDeliveryOutcome` in a dead-letter record (Azure's words where it documents them)."""

    SUCCEEDED = "Succeeded"  # 200-204
    BAD_REQUEST = "BadRequest"  # 400
    UNAUTHORIZED = "Unauthorized"  # 401
    FORBIDDEN = "Forbidden"  # 403
    NOT_FOUND = "NotFound"  # 404
    TOO_LARGE = "RequestEntityTooLarge"  # 413 (our spelling)
    TIMED_OUT = "TimedOut"  # 408, or no answer within the subscription's timeout
    BUSY = "Busy"  # 429, 503
    PEER_CONNECTION_FAILED = "PeerConnectionFailed"  # refused / reset / DNS
    GENERIC_ERROR = "GenericError"  # any other status, including every 5xx not listed


class DeadLetterReason(StrEnum):
    # Azure's docs show this reason also for events dead-lettered at once on a final status
    # (deliveryAttempts 1, lastDeliveryOutcome NotFound), so it is used for both cases here.
    MAX_DELIVERY_ATTEMPTS_EXCEEDED = "MaxDeliveryAttemptsExceeded"
    TIME_TO_LIVE_EXCEEDED = "TimeToLiveExceeded"  # older than the subscription's event_ttl_s


# Webhook status -> lastDeliveryOutcome; 200-204 is Succeeded, anything else GenericError.
OUTCOME_BY_STATUS = {
    400: Outcome.BAD_REQUEST,
    401: Outcome.UNAUTHORIZED,
    403: Outcome.FORBIDDEN,
    404: Outcome.NOT_FOUND,
    408: Outcome.TIMED_OUT,
    413: Outcome.TOO_LARGE,
    429: Outcome.BUSY,
    503: Outcome.BUSY,
}
# Dead-lettered without retry: sending the same request again gets the same answer. Azure does
# this for a webhook's 400, 401 and 413; 403 and 404 are final here as well, because a wrong
# URL or function key does not heal during a local run. Everything else (5xx, 408, 429, other
# 4xx, timeouts, connection errors) is retried, as Azure does.
FINAL_STATUSES = frozenset({400, 401, 403, 404, 413})


class Rejected(Exception):
    """A publish Event Grid refuses; `status` is the HTTP reply, `code` its error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Subscription:
    name: str
    endpoint: str
    included_event_types: tuple[str, ...] | None = None  # None: all event types
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    max_events_per_batch: int = 1  # Azure's default; 1..5000
    preferred_batch_size_kb: int = 64  # Azure's default; a bigger single event goes alone
    max_delivery_attempts: int = 5  # Azure defaults to 30; 5 keeps local failures quick
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    timeout_s: float = 30.0  # Azure waits 30 s for a webhook's answer
    event_ttl_s: float = 1440 * 60.0  # Azure's default event time-to-live, one day
    delivery_schema: Schema | None = None  # None: the topic's input schema

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not SUBSCRIPTION_NAME.match(self.name):
            problems.append("name must be 3-64 letters, digits or hyphens")
        if not isinstance(self.endpoint, str) or not self.endpoint.startswith(
            ("http://", "https://")
        ):
            problems.append("endpoint must be an http(s) URL")
        if isinstance(self.included_event_types, list):
            object.__setattr__(self, "included_event_types", tuple(self.included_event_types))
        types = self.included_event_types
        if types is not None and (not types or not all(isinstance(t, str) and t for t in types)):
            problems.append("included_event_types must be None or non-empty strings")
        if not isinstance(self.subject_begins_with, str) or not isinstance(
            self.subject_ends_with, str
        ):
            problems.append("subject filters must be strings")
        for name, low, high in (
            ("max_events_per_batch", 1, 5000),
            ("preferred_batch_size_kb", 1, 1024),
            ("max_delivery_attempts", 1, 30),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                problems.append(f"{name} must be an integer in {low}..{high}")
        for name in ("initial_backoff_s", "max_backoff_s", "timeout_s", "event_ttl_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                problems.append(f"{name} must be a non-negative number")
        if self.delivery_schema is not None:
            try:
                object.__setattr__(self, "delivery_schema", Schema(self.delivery_schema))
            except ValueError:
                problems.append("delivery_schema must be 'eventgrid' or 'cloudevents'")
        if problems:
            raise ValueError(f"subscription {self.name!r}: " + "; ".join(problems))


@dataclass
class Knobs:
    duplicate: int = 1  # deliver every batch this many times (1: once, as normal)
    shuffle: bool = False  # shuffle the events of each publish before batching
    fail_first: int = 0  # pretend the first K attempts of every delivery got a 500
    seed: int | None = None  # seeds shuffling and backoff jitter

    def __post_init__(self) -> None:
        for name in ("duplicate", "fail_first"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        if self.duplicate < 1:
            raise ValueError("duplicate must be at least 1")
        if not isinstance(self.shuffle, bool):
            raise ValueError("shuffle must be true or false")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError("seed must be an integer or null")


@dataclass
class TopicConfig:
    key: str
    schema: Schema = Schema.EVENTGRID  # the input schema; publishes in the other one get 400
    subscriptions: list[Subscription] = field(default_factory=list)
    dead_letter_dir: Path | None = None  # <dir>/<subscription>.jsonl; None: memory only
    knobs: Knobs = field(default_factory=Knobs)
    topic_path: str = DEFAULT_TOPIC_PATH  # stamped into `topic`, as Azure does
    base_url: str = "http://127.0.0.1"  # where the validationUrl points: this server
    # Startup handshakes may race the endpoint's own startup (or this very server, for sinks):
    # refused connections are retried for this long before the subscription is marked Failed.
    startup_connect_wait_s: float = 10.0


# --- pure core: validation, conversion, filtering, batching, classification ------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def check_eventgrid_event(event: Any, index: int) -> None:
    if not isinstance(event, dict):
        raise Rejected(400, "BadRequest", f"event {index} is not a JSON object")
    missing = [name for name in EVENTGRID_REQUIRED if name not in event]
    if missing:
        raise Rejected(400, "BadRequest", f"event {index} lacks required {', '.join(missing)}")
    for name in ("id", "subject", "eventType", "dataVersion"):
        if not isinstance(event[name], str):
            raise Rejected(400, "BadRequest", f"event {index}: {name} must be a string")
    if not event["id"] or not event["eventType"]:
        raise Rejected(400, "BadRequest", f"event {index}: id and eventType must not be empty")
    if not _is_timestamp(event["eventTime"]):
        raise Rejected(400, "BadRequest", f"event {index}: eventTime is not an ISO 8601 time")
    if event.get("metadataVersion", "1") != "1":
        raise Rejected(400, "BadRequest", f"event {index}: metadataVersion must be '1'")


def check_cloudevent(event: Any, index: int) -> None:
    if not isinstance(event, dict):
        raise Rejected(400, "BadRequest", f"event {index} is not a JSON object")
    missing = [name for name in CLOUDEVENT_REQUIRED if not event.get(name)]
    if missing:
        raise Rejected(400, "BadRequest", f"event {index} lacks required {', '.join(missing)}")
    if event["specversion"] != "1.0":
        raise Rejected(400, "BadRequest", f"event {index}: specversion must be '1.0'")
    for name in ("id", "source", "type"):
        if not isinstance(event[name], str):
            raise Rejected(400, "BadRequest", f"event {index}: {name} must be a string")
    if "time" in event and not _is_timestamp(event["time"]):
        raise Rejected(400, "BadRequest", f"event {index}: time is not an RFC 3339 time")
    bad = sorted(name for name in event if name != "data" and not CLOUDEVENT_ATTRIBUTE.match(name))
    if bad:
        raise Rejected(400, "BadRequest", f"event {index}: invalid attribute names {bad}")


def parse_publish(schema: Schema, content_type: str, body: bytes) -> list[Event]:
    """The events of one publish request, validated for the topic's input schema."""
    if len(body) > MAX_PUBLISH_BYTES:
        raise Rejected(413, "RequestEntityTooLarge", f"publish exceeds {MAX_PUBLISH_BYTES} bytes")
    media = _media_type(content_type)
    cloudevent_media = ("application/cloudevents+json", "application/cloudevents-batch+json")
    if schema is Schema.EVENTGRID and media in cloudevent_media:
        raise Rejected(400, "BadRequest", "this topic takes the Event Grid schema, not CloudEvents")
    if schema is Schema.EVENTGRID and media not in ("application/json", "text/json", ""):
        raise Rejected(400, "BadRequest", f"unsupported content type {content_type!r}")
    if schema is Schema.CLOUDEVENTS and media not in cloudevent_media:
        raise Rejected(
            400,
            "BadRequest",
            "this topic takes CloudEvents: use application/cloudevents+json "
            "or application/cloudevents-batch+json",
        )
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise Rejected(400, "BadRequest", f"body is not JSON: {exc}") from None
    if media == "application/cloudevents+json":
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise Rejected(400, "BadRequest", "body must be a non-empty JSON array of events")
    check = check_eventgrid_event if schema is Schema.EVENTGRID else check_cloudevent
    for index, event in enumerate(payload):
        check(event, index)
    return payload


def stamp(event: Event, schema: Schema, topic_path: str) -> Event:
    """What Event Grid adds on the way in: `topic` and `metadataVersion` (Event Grid schema)."""
    if schema is Schema.CLOUDEVENTS:
        return event
    # A publisher-set topic is kept so recorded system-topic payloads (ACS) replay unchanged.
    return {**event, "topic": event.get("topic") or topic_path, "metadataVersion": "1"}


def to_cloudevent(event: Event) -> Event:
    """Event Grid schema -> CloudEvents 1.0, the mapping of Azure's output-schema option."""
    # dataVersion has no CloudEvents attribute and is not carried over.
    return {
        "id": event["id"],
        "source": event["topic"],
        "specversion": "1.0",
        "type": event["eventType"],
        "subject": event["subject"],
        "time": event["eventTime"],
        "data": event["data"],
    }


def event_type(event: Event) -> str:
    return str(event.get("eventType", event.get("type", "")))


def matches(sub: Subscription, event: Event) -> bool:
    # Azure compares event types and subject filters case-insensitively by default.
    kind = event_type(event).lower()
    if sub.included_event_types is not None and kind not in {
        t.lower() for t in sub.included_event_types
    }:
        return False
    subject = str(event.get("subject") or "").lower()
    return subject.startswith(sub.subject_begins_with.lower()) and subject.endswith(
        sub.subject_ends_with.lower()
    )


def make_batches(events: Sequence[Event], max_events: int, max_bytes: int) -> list[list[Event]]:
    """Consecutive batches of at most `max_events`, and `max_bytes` unless one event is bigger."""
    batches: list[list[Event]] = []
    current: list[Event] = []
    size = 0
    for event in events:
        event_size = len(json.dumps(event))
        if current and (len(current) >= max_events or size + event_size > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(event)
        size += event_size
    if current:
        batches.append(current)
    return batches


def classify(status: int) -> Outcome:
    if 200 <= status <= 204:  # Azure counts 200, 201, 202, 203 and 204 as delivered
        return Outcome.SUCCEEDED
    return OUTCOME_BY_STATUS.get(status, Outcome.GENERIC_ERROR)


def backoff_s(sub: Subscription, attempts_made: int, rng: random.Random) -> float:
    """Exponential from `initial_backoff_s`, ±20% jitter, capped at `max_backoff_s`."""
    delay = sub.initial_backoff_s * 2 ** max(attempts_made - 1, 0)
    return float(min(sub.max_backoff_s, delay * rng.uniform(0.8, 1.2)))


def subscription_from_json(data: Any) -> Subscription:
    if not isinstance(data, dict):
        raise ValueError("subscription must be a JSON object")
    unknown = sorted(set(data) - {f.name for f in fields(Subscription)})
    if unknown:
        raise ValueError(f"unknown subscription fields {unknown}")
    if "name" not in data or "endpoint" not in data:
        raise ValueError("subscription needs name and endpoint")
    return Subscription(**data)


# --- the running topic ------------------------------------------------------------------------


@dataclass
class _SubState:
    sub: Subscription
    schema: Schema  # delivery schema
    state: SubscriptionState = SubscriptionState.CREATING
    error: str = ""
    validation_code: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set once state is final
    queue: asyncio.Queue[_Delivery] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.sub.name,
            "endpoint": self.sub.endpoint,
            "state": self.state,
            "active": self.state is SubscriptionState.SUCCEEDED,
            "error": self.error,
            "deliverySchema": self.schema,
            "includedEventTypes": self.sub.included_event_types,
            "maxEventsPerBatch": self.sub.max_events_per_batch,
            "maxDeliveryAttempts": self.sub.max_delivery_attempts,
        }


@dataclass
class _Delivery:
    """One batch on its way to one subscription (each `duplicate` copy is its own delivery)."""

    target: _SubState
    events: list[Event]
    publish_time: str
    published_at: float  # monotonic, for the time-to-live
    fail_first: int
    attempts: int = 0
    last_status: int | None = None
    last_outcome: Outcome = Outcome.GENERIC_ERROR
    last_attempt_time: str = ""


class Topic:
    def __init__(self, config: TopicConfig) -> None:
        self.config = config
        self.schema = Schema(config.schema)
        self.knobs = Knobs(**asdict(config.knobs))
        self._shuffle_rng = random.Random(self.knobs.seed)  # noqa: S311 - test knob, not crypto
        self._jitter_rng = random.Random(self.knobs.seed)  # noqa: S311
        self.subscriptions: dict[str, _SubState] = {}
        self.counts = {"published": 0, "delivered": 0, "pending": 0, "deadLettered": 0}
        self.attempts = 0
        self.dead_letters: dict[str, list[Event]] = {}
        self.sinks: dict[str, list[Event]] = {}
        self.sink_deliveries: dict[str, list[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        for sub in config.subscriptions:
            self._register(sub)

    # lifecycle

    async def start(self) -> None:
        # trust_env=False: a developer's HTTP(S)_PROXY must not capture loopback deliveries.
        self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        for target in self.subscriptions.values():
            self._start_worker(target)
            self._spawn(self._create(target, self.config.startup_connect_wait_s))

    async def stop(self) -> None:
        tasks = list(self._tasks) + [
            t.worker for t in self.subscriptions.values() if t.worker is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "topic not started"
        return self._client

    # subscriptions

    def _register(self, sub: Subscription) -> _SubState:
        if sub.name in self.subscriptions:
            raise ValueError(f"subscription {sub.name!r} exists")
        schema = sub.delivery_schema or self.schema
        if self.schema is Schema.CLOUDEVENTS and schema is Schema.EVENTGRID:
            # Azure offers no CloudEvents -> Event Grid schema conversion either.
            raise ValueError(f"subscription {sub.name!r}: a CloudEvents topic delivers CloudEvents")
        target = _SubState(sub, schema)
        self.subscriptions[sub.name] = target
        return target

    def _start_worker(self, target: _SubState) -> None:
        target.worker = asyncio.get_running_loop().create_task(self._work(target))

    async def add_subscription(self, sub: Subscription) -> _SubState:
        target = self._register(sub)
        self._start_worker(target)
        await self._create(target, connect_wait_s=0.0)
        return target

    async def remove_subscription(self, name: str) -> bool:
        target = self.subscriptions.pop(name, None)
        if target is None:
            return False
        if target.worker is not None:
            target.worker.cancel()
        while not target.queue.empty():
            self._drop(target.queue.get_nowait(), "subscription deleted")
        return True

    def validate_manually(self, name: str, code: str) -> bool:
        target = self.subscriptions.get(name)
        if target is None or not hmac.compare_digest(code, target.validation_code):
            return False
        if target.state is SubscriptionState.AWAITING_MANUAL_ACTION:
            target.state, target.error = SubscriptionState.SUCCEEDED, ""
            target.ready.set()
        return target.state is SubscriptionState.SUCCEEDED

    async def _create(self, target: _SubState, connect_wait_s: float) -> None:
        deadline = time.monotonic() + connect_wait_s
        while True:
            try:
                target.state, target.error = await self._handshake(target)
                break
            except httpx.ConnectError as exc:
                if time.monotonic() >= deadline:
                    target.state, target.error = SubscriptionState.FAILED, f"handshake: {exc!r}"
                    break
                await asyncio.sleep(0.05)
            except httpx.HTTPError as exc:
                target.state, target.error = SubscriptionState.FAILED, f"handshake: {exc!r}"
                break
        if target.state is SubscriptionState.SUCCEEDED:
            log.info("subscription %s active", target.sub.name)
        else:
            log.warning("subscription %s %s: %s", target.sub.name, target.state, target.error)
        if target.state is not SubscriptionState.AWAITING_MANUAL_ACTION:
            target.ready.set()

    async def _handshake(self, target: _SubState) -> tuple[SubscriptionState, str]:
        sub = target.sub
        if target.schema is Schema.CLOUDEVENTS:
            # CloudEvents webhook spec, section 4 (abuse protection): an OPTIONS preflight.
            reply = await self.client.options(
                sub.endpoint,
                headers={"WebHook-Request-Origin": HANDSHAKE_ORIGIN},
                timeout=sub.timeout_s,
            )
            allowed = reply.headers.get("WebHook-Allowed-Origin", "")
            if reply.status_code == 200 and allowed in (HANDSHAKE_ORIGIN, "*"):
                return SubscriptionState.SUCCEEDED, ""
            return SubscriptionState.FAILED, (
                f"OPTIONS answered {reply.status_code} with WebHook-Allowed-Origin {allowed!r}"
            )
        target.validation_code = str(uuid.uuid4()).upper()
        base = self.config.base_url.rstrip("/")
        validation = {
            "id": str(uuid.uuid4()),
            "topic": self.config.topic_path,
            "subject": "",
            "data": {
                "validationCode": target.validation_code,
                "validationUrl": f"{base}/subscriptions/{sub.name}/validate"
                f"?code={target.validation_code}",
            },
            "eventType": VALIDATION_EVENT_TYPE,
            "eventTime": now_iso(),
            "metadataVersion": "1",
            "dataVersion": "2",
        }
        reply = await self.client.post(
            sub.endpoint,
            content=json.dumps([validation]),
            headers={
                "Content-Type": "application/json",
                "aeg-event-type": "SubscriptionValidation",
                "aeg-subscription-name": sub.name.upper(),
                "aeg-delivery-count": "0",
                "aeg-data-version": "2",
                "aeg-metadata-version": "1",
            },
            timeout=sub.timeout_s,
        )
        if reply.status_code != 200:
            return SubscriptionState.FAILED, f"validation event answered {reply.status_code}"
        try:
            answer = reply.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "validationResponse" in answer:
            if answer["validationResponse"] == target.validation_code:
                return SubscriptionState.SUCCEEDED, ""
            return SubscriptionState.FAILED, "validationResponse does not match validationCode"
        return SubscriptionState.AWAITING_MANUAL_ACTION, (
            "answered 200 without validationResponse: GET the validationUrl to activate"
        )

    # publishing

    def check_key(self, key: str | None) -> None:
        if key is None or not hmac.compare_digest(key.encode(), self.config.key.encode()):
            raise Rejected(401, "Unauthorized", "missing or wrong aeg-sas-key")

    def publish(self, content_type: str, body: bytes) -> int:
        """Accept a publish (or raise Rejected) and queue its deliveries; never waits for them."""
        events = [
            stamp(e, self.schema, self.config.topic_path)
            for e in parse_publish(self.schema, content_type, body)
        ]
        self.counts["published"] += len(events)
        knobs = self.knobs
        if knobs.shuffle:
            self._shuffle_rng.shuffle(events)
        publish_time, published_at = now_iso(), time.monotonic()
        for target in self.subscriptions.values():
            if target.state not in (SubscriptionState.CREATING, SubscriptionState.SUCCEEDED):
                continue  # Azure has no such subscription yet (or any more)
            chosen = [e for e in events if matches(target.sub, e)]
            if target.schema is not self.schema:
                chosen = [to_cloudevent(e) for e in chosen]
            sub = target.sub
            for batch in make_batches(
                chosen, sub.max_events_per_batch, sub.preferred_batch_size_kb * 1024
            ):
                for _ in range(knobs.duplicate):
                    self.counts["pending"] += len(batch)
                    target.queue.put_nowait(
                        _Delivery(target, batch, publish_time, published_at, knobs.fail_first)
                    )
        return len(events)

    # delivery

    async def _work(self, target: _SubState) -> None:
        """First attempts, one at a time in publish order; retries run on their own."""
        await target.ready.wait()
        while True:
            delivery = await target.queue.get()
            if target.state is not SubscriptionState.SUCCEEDED:
                self._drop(delivery, f"subscription {target.state}")
            elif not await self._attempt(delivery):
                self._spawn(self._retry(delivery))

    async def _retry(self, delivery: _Delivery) -> None:
        sub = delivery.target.sub
        while True:
            await asyncio.sleep(backoff_s(sub, delivery.attempts, self._jitter_rng))
            if self.subscriptions.get(sub.name) is not delivery.target:
                self._drop(delivery, "subscription deleted")
                return
            if time.monotonic() - delivery.published_at > sub.event_ttl_s:
                self._dead_letter(delivery, DeadLetterReason.TIME_TO_LIVE_EXCEEDED)
                return
            if await self._attempt(delivery):
                return

    async def _attempt(self, delivery: _Delivery) -> bool:
        """One delivery attempt; True once the delivery is settled (delivered or dead-lettered)."""
        sub = delivery.target.sub
        delivery.attempts += 1
        self.attempts += 1
        delivery.last_attempt_time = now_iso()
        if delivery.attempts <= delivery.fail_first:
            status: int | None = 500  # the fail_first knob: as if the webhook had answered 500
            outcome = Outcome.GENERIC_ERROR
        else:
            status, outcome = await self._post(delivery)
        delivery.last_status, delivery.last_outcome = status, outcome
        if outcome is Outcome.SUCCEEDED:
            self.counts["delivered"] += len(delivery.events)
            self.counts["pending"] -= len(delivery.events)
            return True
        log.info("delivery to %s attempt %d: %s %s", sub.name, delivery.attempts, status, outcome)
        if status in FINAL_STATUSES or delivery.attempts >= sub.max_delivery_attempts:
            self._dead_letter(delivery, DeadLetterReason.MAX_DELIVERY_ATTEMPTS_EXCEEDED)
            return True
        return False

    async def _post(self, delivery: _Delivery) -> tuple[int | None, Outcome]:
        target = delivery.target
        sub = target.sub
        headers = {
            "aeg-event-type": "Notification",
            "aeg-subscription-name": sub.name.upper(),  # Azure sends it upper-cased
            "aeg-delivery-count": str(delivery.attempts - 1),
            "aeg-metadata-version": "1",
        }
        body: Any = delivery.events
        if target.schema is Schema.EVENTGRID:
            headers["Content-Type"] = "application/json"
            headers["aeg-data-version"] = str(delivery.events[0].get("dataVersion", ""))
        elif sub.max_events_per_batch > 1:
            headers["Content-Type"] = "application/cloudevents-batch+json; charset=utf-8"
        else:
            headers["Content-Type"] = "application/cloudevents+json; charset=utf-8"
            body = delivery.events[0]
        try:
            reply = await self.client.post(
                sub.endpoint, content=json.dumps(body), headers=headers, timeout=sub.timeout_s
            )
        except httpx.TimeoutException:
            return None, Outcome.TIMED_OUT
        except httpx.TransportError:
            return None, Outcome.PEER_CONNECTION_FAILED
        return reply.status_code, classify(reply.status_code)

    def _dead_letter(self, delivery: _Delivery, reason: DeadLetterReason) -> None:
        name = delivery.target.sub.name
        records = [
            {
                **event,
                "deadLetterReason": reason,
                "deliveryAttempts": delivery.attempts,
                "lastDeliveryOutcome": delivery.last_outcome,
                "lastHttpCodeObserved": delivery.last_status,
                "publishTime": delivery.publish_time,
                "lastDeliveryAttemptTime": delivery.last_attempt_time,
            }
            for event in delivery.events
        ]
        self.dead_letters.setdefault(name, []).extend(records)
        if self.config.dead_letter_dir is not None:
            self.config.dead_letter_dir.mkdir(parents=True, exist_ok=True)
            with (self.config.dead_letter_dir / f"{name}.jsonl").open("a") as out:
                out.writelines(json.dumps(r) + "\n" for r in records)
        self.counts["deadLettered"] += len(records)
        self.counts["pending"] -= len(records)
        log.warning("dead-lettered %d event(s) for %s: %s", len(records), name, reason)

    def _drop(self, delivery: _Delivery, why: str) -> None:
        """Events that Azure would never have delivered: no longer pending, not dead-lettered."""
        self.counts["pending"] -= len(delivery.events)
        log.warning(
            "dropped %d event(s) for %s: %s", len(delivery.events), delivery.target.sub.name, why
        )

    # reporting and knobs

    def status(self) -> dict[str, int]:
        return {**self.counts, "attempts": self.attempts}

    def set_knobs(self, changes: Any) -> Knobs:
        if not isinstance(changes, dict):
            raise ValueError("knobs must be a JSON object")
        unknown = sorted(set(changes) - {f.name for f in fields(Knobs)})
        if unknown:
            raise ValueError(f"unknown knobs {unknown}")
        self.knobs = Knobs(**{**asdict(self.knobs), **changes})
        if "seed" in changes:
            self._shuffle_rng.seed(self.knobs.seed)
            self._jitter_rng.seed(self.knobs.seed)
        return self.knobs

    def record_sink(self, name: str, headers: dict[str, str], events: list[Event]) -> None:
        self.sinks.setdefault(name, []).extend(events)
        self.sink_deliveries.setdefault(name, []).append({"headers": headers, "events": events})


# --- HTTP edge ---------------------------------------------------------------------------------


def _topic(request: Request) -> Topic:
    topic: Topic = request.app.state.topic
    return topic


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def publish_events(request: Request) -> Response:
    topic = _topic(request)
    # Azure takes the key as a header or as an `aeg-sas-key` query parameter.
    key = request.headers.get("aeg-sas-key") or request.query_params.get("aeg-sas-key")
    try:
        topic.check_key(key)
        topic.publish(request.headers.get("content-type", ""), await request.body())
    except Rejected as exc:
        return _error(exc.status, exc.code, exc.message)
    return Response(status_code=200)


async def get_status(request: Request) -> Response:
    return JSONResponse(_topic(request).status())


async def subscriptions(request: Request) -> Response:
    topic = _topic(request)
    if request.method == "GET":
        return JSONResponse([t.describe() for t in topic.subscriptions.values()])
    try:
        sub = subscription_from_json(await request.json())
        target = await topic.add_subscription(sub)
    except (ValueError, TypeError) as exc:
        return _error(400, "BadRequest", str(exc))
    status = {
        SubscriptionState.SUCCEEDED: 201,
        SubscriptionState.AWAITING_MANUAL_ACTION: 202,
    }.get(target.state, 400)  # Azure refuses to create a subscription whose handshake failed
    return JSONResponse(target.describe(), status_code=status)


async def delete_subscription(request: Request) -> Response:
    removed = await _topic(request).remove_subscription(request.path_params["name"])
    return Response(status_code=200 if removed else 404)


async def validate_subscription(request: Request) -> Response:
    name = request.path_params["name"]
    if _topic(request).validate_manually(name, request.query_params.get("code", "")):
        return JSONResponse({"message": f"subscription {name} validated"})
    return _error(400, "BadRequest", "unknown subscription or wrong code")


async def get_dead_letters(request: Request) -> Response:
    return JSONResponse(_topic(request).dead_letters)


async def knobs(request: Request) -> Response:
    topic = _topic(request)
    if request.method == "POST":
        try:
            topic.set_knobs(await request.json())
        except (ValueError, TypeError) as exc:
            return _error(400, "BadRequest", str(exc))
    return JSONResponse(asdict(topic.knobs))


async def sink(request: Request) -> Response:
    """A webhook that passes both handshakes and records notifications in either schema."""
    topic = _topic(request)
    name = request.path_params["name"]
    if request.method == "OPTIONS":
        origin = request.headers.get("WebHook-Request-Origin", "*")
        return Response(status_code=200, headers={"WebHook-Allowed-Origin": origin})
    if request.method == "GET":
        return JSONResponse(topic.sinks.get(name, []))
    if request.method == "DELETE":
        topic.sinks.pop(name, None)
        topic.sink_deliveries.pop(name, None)
        return Response(status_code=200)
    try:
        payload = await request.json()
    except ValueError:
        return _error(400, "BadRequest", "body is not JSON")
    events = payload if isinstance(payload, list) else [payload]
    first = events[0] if events and isinstance(events[0], dict) else {}
    if (
        request.headers.get("aeg-event-type") == "SubscriptionValidation"
        or first.get("eventType") == VALIDATION_EVENT_TYPE
    ):
        return JSONResponse({"validationResponse": first.get("data", {}).get("validationCode")})
    headers = {
        k: v for k, v in request.headers.items() if k.startswith("aeg-") or k == "content-type"
    }
    topic.record_sink(name, headers, events)
    return Response(status_code=200)


async def sink_deliveries(request: Request) -> Response:
    return JSONResponse(_topic(request).sink_deliveries.get(request.path_params["name"], []))


def create_app(config: TopicConfig) -> Starlette:
    """The topic as an ASGI app; the running Topic is `app.state.topic`."""
    topic = Topic(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await topic.start()
        try:
            yield
        finally:
            await topic.stop()

    app = Starlette(
        routes=[
            Route("/api/events", publish_events, methods=["POST"]),
            Route("/status", get_status, methods=["GET"]),
            Route("/subscriptions", subscriptions, methods=["GET", "POST"]),
            Route("/subscriptions/{name}", delete_subscription, methods=["DELETE"]),
            Route("/subscriptions/{name}/validate", validate_subscription, methods=["GET"]),
            Route("/deadletters", get_dead_letters, methods=["GET"]),
            Route("/knobs", knobs, methods=["GET", "POST"]),
            Route("/sinks/{name}", sink, methods=["GET", "POST", "OPTIONS", "DELETE"]),
            Route("/sinks/{name}/deliveries", sink_deliveries, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.topic = topic
    return app


# --- command line ------------------------------------------------------------------------------

SUBSCRIPTION_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "types": ("included_event_types", lambda v: tuple(t for t in v.split(";") if t)),
    "batch": ("max_events_per_batch", int),
    "attempts": ("max_delivery_attempts", int),
    "backoff": ("initial_backoff_s", float),
    "schema": ("delivery_schema", Schema),
}


def parse_subscription(text: str) -> Subscription:
    """`name=URL[,types=A;B][,batch=N][,attempts=N][,backoff=S][,schema=cloudevents]`."""
    name, sep, rest = text.partition("=")
    if not sep:
        raise ValueError(f"--subscription {text!r}: expected name=URL[,option=value...]")
    url, *options = rest.split(",")  # so an endpoint URL cannot contain a comma
    settings: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in SUBSCRIPTION_OPTIONS:
            raise ValueError(
                f"--subscription option {option!r}: use {sorted(SUBSCRIPTION_OPTIONS)}"
            )
        attribute, convert = SUBSCRIPTION_OPTIONS[key]
        settings[attribute] = convert(value)
    return Subscription(
        name=name,
        endpoint=url,
        included_event_types=settings.get("included_event_types"),
        max_events_per_batch=settings.get("max_events_per_batch", 1),
        max_delivery_attempts=settings.get("max_delivery_attempts", 5),
        initial_backoff_s=settings.get("initial_backoff_s", 0.5),
        delivery_schema=settings.get("delivery_schema"),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m local.eventgrid_topic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=7077)
    parser.add_argument("--key", required=True, help="the topic access key (aeg-sas-key)")
    parser.add_argument("--schema", choices=[s.value for s in Schema], default="eventgrid")
    parser.add_argument(
        "--subscription", action="append", default=[], metavar="NAME=URL[,types=A;B][,batch=N]"
    )
    parser.add_argument("--dead-letter-dir", type=Path)
    parser.add_argument("--topic-path", default=DEFAULT_TOPIC_PATH)
    parser.add_argument("--duplicate", type=int, default=1)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        subs = [parse_subscription(s) for s in args.subscription]
        knob_values = Knobs(args.duplicate, args.shuffle, args.fail_first, args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    config = TopicConfig(
        key=args.key,
        schema=Schema(args.schema),
        subscriptions=subs,
        dead_letter_dir=args.dead_letter_dir,
        knobs=knob_values,
        topic_path=args.topic_path,
        base_url=f"http://127.0.0.1:{args.port}",
    )
    import uvicorn

    logging.basicConfig(level=args.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per delivery is too many
    uvicorn.run(create_app(config), host="127.0.0.1", port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
