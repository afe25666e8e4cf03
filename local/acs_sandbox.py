"""A local stand-in for ACS Email (REST API 2025-09-01) that the real `EmailClient` can talk to.

What it reproduces, and where from:
- the two data-plane operations of the OpenAPI spec (`POST /emails:send`, `GET
  /emails/operations/{operationId}`), their headers and bodies, per the spec and its examples;
  send bodies are validated with jsonschema against the spec's own schema (a copy beside this
  module, `acs-email-2025-09-01.json`) plus the service rules it leaves out (`SERVICE_RULES`);
- ACS's HMAC-SHA256 request signing, verified exactly as the SDK's `HMACCredentialsPolicy` signs;
- ACS's send limits: 50 recipients, 10 MB request, per-minute/per-hour quota (429 + Retry-After);
- Event Grid-schema `EmailDeliveryReportReceived` / `EmailEngagementTrackingReportReceived`
  events shaped like /work/shared/reference/acs-events/, POSTed to a local Event Grid topic.

The status codes follow the spec and ACS's documented behaviour. Of the error *codes*,
`DomainNotLinked` and `Denied` are what real resources answer (as seen in SDK tracebacks) and
`EmailDropped` is the spec's example; the others are this sandbox's own vocabulary, modelled on
ACS and Azure (`MissingApiVersionParameter`), and listed in `ErrorCode`.

Mailbox simulator: recipients at `simulator.test` get the outcome named by their local part
(`bounce@simulator.test`, `bounce+42@simulator.test`, ...); see `SIMULATOR`. Any other address
is Delivered. Debug endpoints under `/sandbox/` (no auth) expose what was sent and emitted.

Run: `python -m local.acs_sandbox --port 8031 --events-url http://127.0.0.1:8032/api/events`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import math
import re
import textwrap
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft4Validator, FormatChecker, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

logger = logging.getLogger("local.acs_sandbox")

# A made-up development key (base64 of a fixed ASCII phrase): not a secret, never valid on Azure.
DEFAULT_ACCESS_KEY = base64.b64encode(b"acs-sandbox-local-development-key-not-a-secret").decode()
# The versions whose body schema we know (the 2023 one lacks EmailAttachment.contentId only).
API_VERSIONS = ("2025-09-01", "2023-03-31")
SIMULATOR_DOMAIN = "simulator.test"
# ACS limits: 50 recipients across To/Cc/Bcc, 10 MB per request including attachments
# (spec: EmailMessage.attachments description).
MAX_RECIPIENTS = 50
MAX_REQUEST_BYTES = 10 * 1024 * 1024
# ACS rejects HMAC requests whose x-ms-date is more than 15 minutes off.
MAX_CLOCK_SKEW = timedelta(minutes=15)
SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"
DEFAULT_TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local"
    "/providers/Microsoft.Communication/communicationServices/acs-sandbox"
)
DELIVERY_EVENT = "Microsoft.Communication.EmailDeliveryReportReceived"
ENGAGEMENT_EVENT = "Microsoft.Communication.EmailEngagementTrackingReportReceived"


@dataclass(frozen=True)
class SandboxConfig:
    access_key: str = DEFAULT_ACCESS_KEY
    # Domains "linked" to the resource; a sender at any other domain gets DomainNotLinked.
    sender_domains: tuple[str, ...] = ("sandbox.test",)
    quota_per_minute: int = 30
    quota_per_hour: int = 100
    report_delay_s: float = 1.0
    # After the delivery report, before the first engagement event.
    engagement_delay_s: float = 2.0
    events_url: str | None = None
    events_key: str | None = None
    resource_topic: str = DEFAULT_TOPIC
    # The `retry-after` sent with Running operations. The SDK's poller prefers it to its own
    # `polling_interval`, except when it is 0: tests set 0 to poll as fast as they ask.
    poll_retry_after_s: int = 1
    publish_attempts: int = 4
    publish_backoff_s: float = 0.5


# ---------------------------------------------------------------------------------------------
# Vocabularies


class ErrorCode(StrEnum):
    DENIED = "Denied"  # 401: missing/invalid HMAC signature, content hash or date
    MISSING_API_VERSION = "MissingApiVersionParameter"  # 400: no api-version query parameter
    INVALID_API_VERSION = "InvalidApiVersionParameter"  # 400: api-version we do not serve
    INVALID_REQUEST = "InvalidRequest"  # 400: not JSON, wrong types, missing required fields
    INVALID_EMAIL_ADDRESS = "InvalidEmailAddress"  # 400: sender/recipient/replyTo syntax
    TOO_MANY_RECIPIENTS = "TooManyRecipients"  # 400: more than 50 across to/cc/bcc
    INVALID_ATTACHMENT = "InvalidAttachment"  # 400: contentInBase64 is not valid base64
    INVALID_OPERATION_ID = "InvalidOperationId"  # 400: Operation-Id header is not a UUID
    DOMAIN_NOT_LINKED = "DomainNotLinked"  # 404: sender domain not linked/verified (as ACS)
    NOT_FOUND = "NotFound"  # 404: unknown operation id
    OPERATION_ID_CONFLICT = "OperationIdConflict"  # 409: Operation-Id reused with another body
    REQUEST_TOO_LARGE = "RequestEntityTooLarge"  # 413: request body over 10 MB
    TOO_MANY_REQUESTS = "TooManyRequests"  # 429: per-minute or per-hour quota spent
    EMAIL_DROPPED = "EmailDropped"  # operation Failed: no recipient could be handed the mail


class OperationStatus(StrEnum):
    RUNNING = "Running"  # accepted, reports not all emitted yet
    SUCCEEDED = "Succeeded"  # every report emitted, at least one recipient was handed the mail
    FAILED = "Failed"  # every recipient Failed or Suppressed (spec example: EmailDropped)


class DeliveryStatus(StrEnum):
    """The `status` values ACS documents for EmailDeliveryReportReceived, plus one it does not."""

    DELIVERED = "Delivered"  # accepted by the recipient's mail server
    BOUNCED = "Bounced"  # hard bounce from the recipient's server
    FAILED = "Failed"  # soft bounce, policy block or retries exhausted
    FILTERED_SPAM = "FilteredSpam"  # identified as spam and filtered
    QUARANTINED = "Quarantined"  # quarantined by the recipient's server
    SUPPRESSED = "Suppressed"  # on the resource's suppression list, never sent
    UNDOCUMENTED = "DeferredUnknown"  # not an ACS status: lets consumers test their fallback


class EngagementType(StrEnum):
    VIEW = "view"  # tracking pixel loaded
    CLICK = "click"  # tracked link followed


# Statuses meaning the mail never reached any recipient's server: if every recipient ends in one
# of them, the operation is Failed with EmailDropped (the spec's only Failed example).
DROPPED = frozenset({DeliveryStatus.FAILED, DeliveryStatus.SUPPRESSED})


@dataclass(frozen=True)
class Outcome:
    """What the simulated mailbox does with one recipient. `status` None: no report ever."""

    status: DeliveryStatus | None
    message: str  # `{addr}` is replaced by the recipient address
    reaches_server: bool = True  # False: no recipientMailServerHostName / internetMessageId
    engagements: tuple[EngagementType, ...] = ()


DELIVERED = Outcome(DeliveryStatus.DELIVERED, "No error.")
# Local part (before any +tag, lower-cased) at SIMULATOR_DOMAIN → outcome; anything not listed
# is DELIVERED. The 550 5.1.1 and 552 5.2.2 texts are Postfix's replies, 5.7.1 and 4.4.7 are
# RFC 3463 codes as Exchange words them; "No error." is what real Delivered reports carry; the
# spam/quarantine/suppression/undocumented texts are this sandbox's own wording.
SIMULATOR: Mapping[str, Outcome] = {
    "delivered": DELIVERED,
    "bounce": Outcome(
        DeliveryStatus.BOUNCED,
        "550 5.1.1 <{addr}>: Recipient address rejected: User unknown in virtual mailbox table",
    ),
    "mailboxfull": Outcome(
        DeliveryStatus.FAILED, "552 5.2.2 <{addr}>: Mailbox full, quota exceeded"
    ),
    "spam": Outcome(
        DeliveryStatus.FILTERED_SPAM, "Message was identified as spam by the recipient's server"
    ),
    "quarantine": Outcome(
        DeliveryStatus.QUARANTINED, "Message was quarantined by the recipient's server"
    ),
    # Real Suppressed reports carry neither internetMessageId nor recipientMailServerHostName
    # (azure-rest-api-specs PR #31739).
    "suppressed": Outcome(
        DeliveryStatus.SUPPRESSED,
        "Recipient {addr} is on the suppression list; the message was not sent",
        reaches_server=False,
    ),
    "blocked": Outcome(DeliveryStatus.FAILED, "550 5.7.1 Message rejected due to local policy"),
    "expired": Outcome(
        DeliveryStatus.FAILED,
        "Message expired, delivery attempts exhausted (4.4.7)",
        reaches_server=False,
    ),
    "unknown-status": Outcome(
        DeliveryStatus.UNDOCUMENTED, "451 4.3.0 Temporary condition not described by ACS"
    ),
    "noreport": Outcome(None, ""),
    "opened": Outcome(DeliveryStatus.DELIVERED, "No error.", engagements=(EngagementType.VIEW,)),
    "clicked": Outcome(
        DeliveryStatus.DELIVERED,
        "No error.",
        engagements=(EngagementType.VIEW, EngagementType.CLICK),
    ),
}
CLICKED_URL = "https://sandbox.test/offer?utm_source=acs-sandbox"
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) acs-sandbox"


def simulate(address: str) -> Outcome:
    local, _, domain = address.rpartition("@")
    if domain.lower() != SIMULATOR_DOMAIN:
        return DELIVERED
    return SIMULATOR.get(local.split("+", 1)[0].lower(), DELIVERED)


# ---------------------------------------------------------------------------------------------
# Auth: ACS HMAC-SHA256, mirroring azure.communication.*._shared.policy.HMACCredentialsPolicy


def check_signature(
    *,
    method: str,
    path_and_query: str,
    host: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    now: datetime,
) -> str | None:
    """None when the request is signed with `access_key`, else why not."""
    auth = headers.get("authorization", "")
    date = headers.get("x-ms-date", "")
    content_hash = headers.get("x-ms-content-sha256", "")
    if not auth or not date or not content_hash:
        return "Authorization, x-ms-date and x-ms-content-sha256 headers are required."
    scheme, _, params = auth.partition(" ")
    fields = dict(part.partition("=")[::2] for part in params.split("&"))
    if scheme != "HMAC-SHA256" or fields.get("SignedHeaders") != SIGNED_HEADERS:
        return f"Authorization must be HMAC-SHA256 SignedHeaders={SIGNED_HEADERS}&Signature=..."
    if content_hash != base64.b64encode(hashlib.sha256(body).digest()).decode():
        return "x-ms-content-sha256 does not match the request body."
    try:
        sent = datetime.strptime(date, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    except ValueError:
        return "x-ms-date is not an RFC 1123 date."
    if abs(now - sent) > MAX_CLOCK_SKEW:
        return "x-ms-date is more than 15 minutes away from the server time."
    string_to_sign = f"{method.upper()}\n{path_and_query}\n{date};{host};{content_hash}"
    key = base64.b64decode(access_key)
    expected = base64.b64encode(
        hmac.new(key, string_to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return "The request signature does not match the access key."
    return None


# ---------------------------------------------------------------------------------------------
# Validation of the EmailMessage body: the spec's JSON Schema, then what ACS enforces beyond it

# A verbatim copy of azure-rest-api-specs specification/communication/data-plane/Email/stable/
# 2025-09-01/CommunicationServicesEmail.json (commit 6e3a232), so a clone needs nothing else.
# The 2023-03-31 body differs only by lacking EmailAttachment.contentId, which the schema does
# not forbid either way, so one schema serves both API_VERSIONS.
SPEC_PATH = Path(__file__).with_name("acs-email-2025-09-01.json")


@dataclass(frozen=True)
class Problem:
    code: ErrorCode
    message: str
    target: str

    def as_detail(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "target": self.target}


# Pragmatic addr-spec: a dot-atom-ish local part (Unicode allowed, as for EAI), a dotted domain
# of letter/digit labels (IDN allowed) ending in an alphabetic or punycode TLD.
ADDRESS_RE = re.compile(
    r"^(?!\.)(?!.*\.\.)[^\s@\"(),:;<>\[\]\\]{1,64}(?<!\.)"
    r"@(?=.{1,253}$)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})$"
)


def is_address(value: str) -> bool:
    return ADDRESS_RE.match(value) is not None


# The spec types every field but leaves these to the service. Written as JSON Schema over the
# same body, each with the ACS error it gets: `x-message` is the message when the keyword beside
# it fails (the schema is only read by this module). What ACS itself answers for each is from
# the REST reference and SDK tracebacks; the sandbox's wording is its own.
_ADDRESS_RULES = {"properties": {"address": {"format": "email"}}}
_PRESENT = {"minLength": 1}
SERVICE_RULES: dict[str, Any] = {
    "properties": {
        "senderAddress": {
            "minLength": 1,
            "x-message": "The senderAddress field is required.",
            "format": "email",
        },
        "content": {
            "properties": {
                "subject": {"pattern": r"\S", "x-message": "The subject field is required."}
            },
            # A message needs a body: plain text, HTML or both.
            "anyOf": [
                {"required": ["plainText"], "properties": {"plainText": _PRESENT}},
                {"required": ["html"], "properties": {"html": _PRESENT}},
            ],
            "x-message": "At least one of content.plainText and content.html is required.",
        },
        "recipients": {
            "properties": {
                "to": {
                    "minItems": 1,
                    "x-message": "At least one To recipient is required.",
                    "items": _ADDRESS_RULES,
                },
                "cc": {"items": _ADDRESS_RULES},
                "bcc": {"items": _ADDRESS_RULES},
            }
        },
        "replyTo": {"items": _ADDRESS_RULES},
        "attachments": {
            "items": {
                "properties": {
                    "name": _PRESENT,
                    "contentType": _PRESENT,
                    "contentInBase64": _PRESENT,
                }
            }
        },
    }
}

# Only the two formats the schemas use: `byte` (the spec's, for contentInBase64) and `email`
# (ours). Other values of `format` (the spec's `uuid` headers) are not the body's business.
_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("email")
def _is_address(value: object) -> bool:
    return not isinstance(value, str) or is_address(value)


@_FORMATS.checks("byte", raises=binascii.Error)
def _is_base64(value: object) -> bool:
    if isinstance(value, str):
        base64.b64decode(value, validate=True)
    return True


@functools.cache
def _validator() -> Draft4Validator:
    """Swagger 2.0 schemas are a draft-4 subset; `x-ms-*`, `example` and `x-message` are
    annotations the validator skips."""
    spec = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    schema = {
        "definitions": spec["definitions"],
        "allOf": [{"$ref": "#/definitions/EmailMessage"}, SERVICE_RULES],
    }
    return Draft4Validator(schema, format_checker=_FORMATS)


def _target(path: Iterable[str | int]) -> str:
    """`recipients.to[0].address`, as ACS error details name a field."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def _problems(error: ValidationError) -> list[Problem]:
    path = list(error.absolute_path)
    if error.validator == "required":  # one error per missing name: name it in the target
        present = error.instance if isinstance(error.instance, dict) else {}
        names = error.validator_value if isinstance(error.validator_value, list) else []
        return [
            Problem(ErrorCode.INVALID_REQUEST, f"The {n} field is required.", _target([*path, n]))
            for n in names
            if n not in present
        ]
    where = _target(path)
    if error.validator == "format" and error.validator_value == "email":
        message = f"'{error.instance}' is not a valid email address."
        return [Problem(ErrorCode.INVALID_EMAIL_ADDRESS, message, where)]
    if error.validator == "format" and error.validator_value == "byte":
        return [Problem(ErrorCode.INVALID_ATTACHMENT, f"{path[-1]} is not valid base64.", where)]
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if isinstance(custom := schema.get("x-message"), str):
        message = custom
    elif error.validator == "type":
        message = f"Must be of type {error.validator_value}."
    else:  # jsonschema's own wording, which quotes the value: kept short
        message = textwrap.shorten(error.message, 200)
    return [Problem(ErrorCode.INVALID_REQUEST, message, where)]


def validate_message(body: Any) -> list[Problem]:
    """Every problem with an EmailMessage, one per field; [] when ACS would accept it."""
    out: list[Problem] = []
    for error in _validator().iter_errors(body):
        out.extend(p for p in _problems(error) if p.target not in {o.target for o in out})
    recipients = body.get("recipients") if isinstance(body, dict) else None
    if isinstance(recipients, dict):
        lists = [recipients.get(kind) for kind in ("to", "cc", "bcc")]
        total = sum(len(value) for value in lists if isinstance(value, list))
        if total > MAX_RECIPIENTS:  # across three lists: beyond what a JSON Schema can count
            out.append(
                Problem(
                    ErrorCode.TOO_MANY_RECIPIENTS,
                    f"{total} recipients; at most {MAX_RECIPIENTS} are allowed across "
                    "to, cc and bcc.",
                    "recipients",
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# Events (Event Grid schema, as in the reference examples)


def _iso(ts: datetime) -> str:
    """2023-02-09T19:46:12.248026+00:00, as deliveryAttemptTimestamp/userActionTimestamp."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def _event_time(ts: datetime) -> str:
    """2023-02-09T19:46:12.247800Z, as eventTime."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event(
    config: SandboxConfig, event_type: str, sender: str, message_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": config.resource_topic,
        "subject": f"sender/{sender}/message/{message_id}",
        "data": data,
        "eventType": event_type,
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "eventTime": _event_time(datetime.now(UTC)),
    }


def delivery_report(
    config: SandboxConfig, op: Operation, recipient: str, outcome: Outcome
) -> dict[str, Any]:
    assert outcome.status is not None
    details: dict[str, str] = {"statusMessage": outcome.message.format(addr=recipient)}
    data: dict[str, Any] = {
        "sender": op.sender,
        "recipient": recipient,
        "messageId": op.id,
        "status": str(outcome.status),
        "deliveryStatusDetails": details,
        "deliveryAttemptTimestamp": _iso(datetime.now(UTC)),
    }
    if outcome.reaches_server:
        details["recipientMailServerHostName"] = f"mx.{recipient.rpartition('@')[2].lower()}"
        data["internetMessageId"] = op.internet_message_id
    return _event(config, DELIVERY_EVENT, op.sender, op.id, data)


def engagement_report(
    config: SandboxConfig, op: Operation, recipient: str, kind: EngagementType
) -> dict[str, Any]:
    data = {
        "sender": op.sender,
        "recipient": recipient,
        "messageId": op.id,
        "internetMessageId": op.internet_message_id,
        "userActionTimestamp": _iso(datetime.now(UTC)),
        "engagementContext": CLICKED_URL if kind is EngagementType.CLICK else "",
        "userAgent": USER_AGENT,
        "engagementType": str(kind),
    }
    return _event(config, ENGAGEMENT_EVENT, op.sender, op.id, data)


# ---------------------------------------------------------------------------------------------
# State


@dataclass
class Operation:
    id: str
    sender: str
    recipients: list[str]
    subject: str
    body_hash: str
    html: bool
    tracking_disabled: bool
    accepted_at: datetime
    send_count: int = 1
    status: OperationStatus = OperationStatus.RUNNING

    @property
    def internet_message_id(self) -> str:
        return f"<{self.id.replace('-', '')}@{self.sender.rpartition('@')[2].lower()}>"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sender": self.sender,
            "recipients": self.recipients,
            "subject": self.subject,
            "status": str(self.status),
            "sendCount": self.send_count,
            "acceptedAt": _iso(self.accepted_at),
        }


@dataclass
class Quota:
    """Sliding one-minute and one-hour windows over accepted sends (monotonic seconds)."""

    per_minute: int
    per_hour: int
    sends: deque[float] = field(default_factory=deque)

    def retry_after(self, now: float) -> int | None:
        """Seconds until one more send fits, or None when it fits now."""
        while self.sends and now - self.sends[0] >= 3600:
            self.sends.popleft()
        waits = []
        for window, limit in ((60.0, self.per_minute), (3600.0, self.per_hour)):
            inside = [t for t in self.sends if now - t < window]
            if len(inside) >= limit:
                # The send that must leave the window for the count to drop below the limit.
                oldest = inside[len(inside) - limit] if limit > 0 else now
                waits.append(window - (now - oldest))
        return max(1, math.ceil(max(waits))) if waits else None


@dataclass
class Sandbox:
    config: SandboxConfig
    quota: Quota
    operations: dict[str, Operation] = field(default_factory=dict)  # key: lower-cased id
    events: list[dict[str, Any]] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    client: httpx.AsyncClient | None = None

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def reset(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.operations.clear()
        self.events.clear()
        self.quota = Quota(self.config.quota_per_minute, self.config.quota_per_hour)

    async def publish(self, event: dict[str, Any]) -> None:
        """Keep the event; POST it to the Event Grid topic, retrying with backoff, never raising."""
        self.events.append(event)
        url = self.config.events_url
        if url is None:
            return
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=10.0)
        headers = {"aeg-sas-key": self.config.events_key or ""}
        for attempt in range(1, self.config.publish_attempts + 1):
            try:
                resp = await self.client.post(url, json=[event], headers=headers)
                if resp.is_success:
                    return
                problem = f"HTTP {resp.status_code}: {resp.text[:200]}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.config.publish_attempts:
                logger.warning(
                    "publishing event %s to %s failed (attempt %d): %s",
                    event["id"], url, attempt, problem,
                )  # fmt: skip
                await asyncio.sleep(self.config.publish_backoff_s * 2 ** (attempt - 1))
            else:
                logger.error(
                    "giving up on event %s (%s) after %d attempts: %s",
                    event["id"], event["eventType"], attempt, problem,
                )  # fmt: skip

    async def deliver(self, op: Operation) -> None:
        """Emit every recipient's delivery report, then settle the operation; engagement later."""
        try:
            await asyncio.sleep(self.config.report_delay_s)
            outcomes = [(r, simulate(r)) for r in op.recipients]
            for recipient, outcome in outcomes:
                if outcome.status is not None:
                    await self.publish(delivery_report(self.config, op, recipient, outcome))
            statuses = {o.status for _, o in outcomes if o.status is not None}
            dropped = bool(statuses) and statuses <= DROPPED
            op.status = OperationStatus.FAILED if dropped else OperationStatus.SUCCEEDED
            # Engagement tracking rewrites HTML (pixel, links): no HTML or opted out, no events.
            if op.html and not op.tracking_disabled:
                engaged = [(r, o.engagements) for r, o in outcomes if o.engagements]
                if engaged:
                    self.spawn(self.engage(op, engaged))
        except Exception:  # a background task: log it here, nobody awaits it
            logger.exception("simulating delivery of operation %s failed", op.id)

    async def engage(
        self, op: Operation, engaged: list[tuple[str, tuple[EngagementType, ...]]]
    ) -> None:
        await asyncio.sleep(self.config.engagement_delay_s)
        for recipient, kinds in engaged:
            for kind in kinds:
                await self.publish(engagement_report(self.config, op, recipient, kind))


# ---------------------------------------------------------------------------------------------
# HTTP


def acs_error(
    status: int,
    code: ErrorCode,
    message: str,
    details: list[Problem] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """ACS's error shape (common-types ErrorResponse), with the spec's x-ms-error-code header."""
    error: dict[str, Any] = {"code": str(code), "message": message}
    if details:
        error["details"] = [p.as_detail() for p in details]
    return JSONResponse(
        {"error": error}, status, headers={"x-ms-error-code": str(code), **(headers or {})}
    )


def _raw_target(request: Request) -> str:
    """Path and query exactly as sent, which is what the client signed."""
    path = request.scope.get("raw_path") or request.scope["path"].encode()
    query = request.scope.get("query_string", b"")
    target = path.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


def _authenticate(request: Request, body: bytes, config: SandboxConfig) -> Response | None:
    problem = check_signature(
        method=request.method,
        path_and_query=_raw_target(request),
        host=request.headers.get("host", ""),
        headers=request.headers,
        body=body,
        access_key=config.access_key,
        now=datetime.now(UTC),
    )
    if problem is None:
        return None
    logger.info("401 for %s %s: %s", request.method, request.url.path, problem)
    return acs_error(401, ErrorCode.DENIED, f"Denied by the resource provider. {problem}")


def _api_version(request: Request) -> tuple[str, Response | None]:
    version = request.query_params.get("api-version")
    if not version:
        msg = "The api-version query parameter is required."
        return "", acs_error(400, ErrorCode.MISSING_API_VERSION, msg)
    if version not in API_VERSIONS:
        msg = f"api-version '{version}' is not supported; use one of {', '.join(API_VERSIONS)}."
        return version, acs_error(400, ErrorCode.INVALID_API_VERSION, msg)
    return version, None


def _status_body(op: Operation) -> dict[str, Any]:
    body: dict[str, Any] = {"id": op.id, "status": str(op.status)}
    if op.status is OperationStatus.FAILED:
        body["error"] = {
            "code": str(ErrorCode.EMAIL_DROPPED),
            "message": "Email was dropped after several attempts to deliver.",
        }
    return body


def _accepted(request: Request, op: Operation, version: str, sandbox: Sandbox) -> JSONResponse:
    base = f"{request.url.scheme}://{request.url.netloc}"
    headers = {
        "Operation-Location": f"{base}/emails/operations/{op.id}?api-version={version}",
        "operation-id": op.id,
    }
    if op.status is OperationStatus.RUNNING:  # the spec: only for non-terminal statuses
        headers["retry-after"] = str(sandbox.config.poll_retry_after_s)
    if client_request_id := request.headers.get("x-ms-client-request-id"):
        headers["x-ms-client-request-id"] = client_request_id
    return JSONResponse(_status_body(op), 202, headers=headers)


def create_app(config: SandboxConfig) -> Starlette:
    sandbox = Sandbox(config, Quota(config.quota_per_minute, config.quota_per_hour))

    async def send_email(request: Request) -> Response:
        body = await request.body()
        # ACS counts the whole request, attachments included, against the 10 MB limit.
        if len(body) > MAX_REQUEST_BYTES:
            return acs_error(
                413,
                ErrorCode.REQUEST_TOO_LARGE,
                f"The request is {len(body)} bytes; the limit is {MAX_REQUEST_BYTES} bytes.",
            )
        if denied := _authenticate(request, body, config):
            return denied
        version, bad_version = _api_version(request)
        if bad_version:
            return bad_version
        op_id = request.headers.get("operation-id") or str(uuid.uuid4())
        try:
            uuid.UUID(op_id)
        except ValueError:
            return acs_error(
                400, ErrorCode.INVALID_OPERATION_ID, f"Operation-Id '{op_id}' is not a UUID."
            )
        try:
            message = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return acs_error(400, ErrorCode.INVALID_REQUEST, f"The body is not valid JSON: {exc}")
        if problems := validate_message(message):
            first = problems[0]
            text = first.message if len(problems) == 1 else f"{len(problems)} validation errors."
            return acs_error(400, first.code, text, problems)

        sender: str = message["senderAddress"]
        if sender.rpartition("@")[2].lower() not in {d.lower() for d in config.sender_domains}:
            return acs_error(
                404,
                ErrorCode.DOMAIN_NOT_LINKED,
                "The specified sender domain has not been linked.",
            )

        # ACS adopts the Operation-Id: a retry with the same id and body is the same operation.
        body_hash = hashlib.sha256(body).hexdigest()
        if existing := sandbox.operations.get(op_id.lower()):
            if existing.body_hash != body_hash:
                return acs_error(
                    409,
                    ErrorCode.OPERATION_ID_CONFLICT,
                    f"Operation-Id '{op_id}' was already used for a different message.",
                )
            existing.send_count += 1
            return _accepted(request, existing, version, sandbox)

        if (wait := sandbox.quota.retry_after(time.monotonic())) is not None:
            return acs_error(
                429,
                ErrorCode.TOO_MANY_REQUESTS,
                f"The email sending quota ({sandbox.quota.per_minute}/minute, "
                f"{sandbox.quota.per_hour}/hour) is spent; retry after {wait} seconds.",
                headers={"Retry-After": str(wait)},
            )
        sandbox.quota.sends.append(time.monotonic())

        recipients = message["recipients"]
        content = message["content"]
        op = Operation(
            id=op_id,
            sender=sender,
            recipients=[
                a["address"] for kind in ("to", "cc", "bcc") for a in recipients.get(kind) or []
            ],
            subject=content["subject"],
            body_hash=body_hash,
            html=bool(content.get("html")),
            tracking_disabled=bool(message.get("userEngagementTrackingDisabled")),
            accepted_at=datetime.now(UTC),
        )
        sandbox.operations[op_id.lower()] = op
        sandbox.spawn(sandbox.deliver(op))
        logger.info("accepted %s from %s to %d recipient(s)", op.id, sender, len(op.recipients))
        return _accepted(request, op, version, sandbox)

    async def get_send_result(request: Request) -> Response:
        if denied := _authenticate(request, await request.body(), config):
            return denied
        _, bad_version = _api_version(request)
        if bad_version:
            return bad_version
        op_id = request.path_params["operation_id"]
        op = sandbox.operations.get(op_id.lower())
        if op is None:
            return acs_error(404, ErrorCode.NOT_FOUND, f"Operation '{op_id}' was not found.")
        headers = {}
        if op.status is OperationStatus.RUNNING:
            headers["retry-after"] = str(config.poll_retry_after_s)
        return JSONResponse(_status_body(op), headers=headers)

    async def list_operations(request: Request) -> Response:
        return JSONResponse({"operations": [op.as_json() for op in sandbox.operations.values()]})

    async def list_events(request: Request) -> Response:
        message_id = request.query_params.get("messageId")
        events = [
            e for e in sandbox.events if message_id is None or e["data"]["messageId"] == message_id
        ]
        return JSONResponse({"events": events})

    async def set_quota(request: Request) -> Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not all(
            type(body.get(k, 0)) is int and body.get(k, 0) >= 0 for k in ("perMinute", "perHour")
        ):
            return JSONResponse(
                {"error": 'expected {"perMinute": int >= 0, "perHour": int >= 0}'}, 400
            )
        sandbox.quota.per_minute = body.get("perMinute", sandbox.quota.per_minute)
        sandbox.quota.per_hour = body.get("perHour", sandbox.quota.per_hour)
        return JSONResponse(
            {"perMinute": sandbox.quota.per_minute, "perHour": sandbox.quota.per_hour}
        )

    async def reset(request: Request) -> Response:
        sandbox.reset()
        return Response(status_code=204)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sandbox.client = httpx.AsyncClient(timeout=10.0)
        try:
            yield
        finally:
            for task in list(sandbox.tasks):
                task.cancel()
            await asyncio.gather(*sandbox.tasks, return_exceptions=True)
            await sandbox.client.aclose()

    routes: list[Route] = [
        Route("/emails:send", send_email, methods=["POST"]),
        Route("/emails/operations/{operation_id}", get_send_result, methods=["GET"]),
        Route("/sandbox/operations", list_operations, methods=["GET"]),
        Route("/sandbox/events", list_events, methods=["GET"]),
        Route("/sandbox/quota", set_quota, methods=["POST"]),
        Route("/sandbox/reset", reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = sandbox
    return app


def _parse_args(argv: list[str] | None) -> tuple[SandboxConfig, int, str]:
    defaults = SandboxConfig()
    p = argparse.ArgumentParser(prog="python -m local.acs_sandbox", description=__doc__)
    p.add_argument("--port", type=int, default=8031)
    p.add_argument("--access-key", default=defaults.access_key)
    p.add_argument(
        "--sender-domain",
        action="append",
        dest="sender_domains",
        help=f"linked sender domain (repeatable; default {defaults.sender_domains[0]})",
    )
    p.add_argument("--quota-per-minute", type=int, default=defaults.quota_per_minute)
    p.add_argument("--quota-per-hour", type=int, default=defaults.quota_per_hour)
    p.add_argument("--report-delay", type=float, default=defaults.report_delay_s)
    p.add_argument("--engagement-delay", type=float, default=defaults.engagement_delay_s)
    p.add_argument("--poll-retry-after", type=int, default=defaults.poll_retry_after_s)
    p.add_argument("--events-url", help="Event Grid topic endpoint that receives the events")
    p.add_argument("--events-key", help="sent as the aeg-sas-key header")
    p.add_argument("--resource-topic", default=defaults.resource_topic)
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    config = SandboxConfig(
        access_key=a.access_key,
        sender_domains=tuple(a.sender_domains or defaults.sender_domains),
        quota_per_minute=a.quota_per_minute,
        quota_per_hour=a.quota_per_hour,
        report_delay_s=a.report_delay,
        engagement_delay_s=a.engagement_delay,
        events_url=a.events_url,
        events_key=a.events_key,
        resource_topic=a.resource_topic,
        poll_retry_after_s=a.poll_retry_after,
    )
    return config, a.port, a.log_level


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    config, port, log_level = _parse_args(argv)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    logger.info(
        "ACS Email sandbox on http://127.0.0.1:%d (EmailClient(endpoint, AzureKeyCredential(key)),"
        " key %s); sender domains %s; events -> %s",
        port, config.access_key, ", ".join(config.sender_domains), config.events_url,
    )  # fmt: skip
    uvicorn.run(create_app(config), host="127.0.0.1", port=port, log_level=log_level)


if __name__ == "__main__":
    main()
