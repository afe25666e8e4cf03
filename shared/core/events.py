"""Parse ACS email events (Event Grid schema or CloudEvents 1.0) into our frozen dataclasses.

The Azure spellings live here and nowhere else. Quirks accepted (see tests/events/ and the
reference payloads): status casing varies (`delivered`/`Delivered`); timestamp keys vary
(`deliveryAttemptTimestamp`/`deliveryAttemptTimeStamp`, `userActionTimestamp`/`...TimeStamp`);
`internetMessageId` and `recipientMailServerHostName` are absent on Suppressed reports;
`messageId` may be missing and is then taken from the subject `sender/{sender}/message/{id}`.
Anything we cannot use raises MalformedEvent with a short, stable reason.

A report stays usable when its free text is odd: a status message or other text that is too
long is cut (the beginning kept, with its original length and SHA-256 in `notes`), control
characters and lone surrogates (which no storage can encode) are removed and noted, and a
report time more than a day in the future is replaced by the time we received it (noted), so
one bad clock cannot pin a recipient's status forever. Identifiers and addresses are not
repaired: an event whose ids are unusable is quarantined.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.core import keys
from shared.core.errors import MalformedEvent

DELIVERY_REPORT_TYPE = "Microsoft.Communication.EmailDeliveryReportReceived"
ENGAGEMENT_REPORT_TYPE = "Microsoft.Communication.EmailEngagementTrackingReportReceived"

# Limits past which an event is not something ACS sends: quarantined rather than stored.
MAX_ID_LENGTH = 256
MAX_ADDRESS_LENGTH = 320  # 64 local part + @ + 255 domain (RFC 5321 §4.5.3.1)
MAX_STATUS_MESSAGE_LENGTH = 16_384  # multi-line SMTP replies run to a few KB at most
MAX_TEXT_LENGTH = 4_096  # user agent, engagement context (a URL), host names

# C0/C1 control characters; a status message may keep TAB, LF and CR (multi-line SMTP replies).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_WHITESPACE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SUBJECT_MESSAGE_ID = re.compile(r"/message/([^/]+)/?$")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # json.loads pairs valid ones: these are lone
# Report times before this, or past what datetime can hold, are not times ACS sends.
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)  # clock skew we accept before using the receipt time


class Schema(StrEnum):
    EVENT_GRID = "eventgrid"  # Event Grid schema: eventType, eventTime, topic, dataVersion
    CLOUD_EVENTS = "cloudevents"  # CloudEvents 1.0: type, time, source, specversion


class EngagementType(StrEnum):
    VIEW = "view"  # the tracking pixel loaded (an "open")
    CLICK = "click"  # a tracked link was followed
    UNKNOWN = "unknown"  # a value ACS may add later; kept raw in the timeline


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    event_type: str
    schema: Schema
    event_time: datetime | None
    subject: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    envelope: Envelope
    message_id: str
    sender: str | None
    recipient: str
    acs_status: str  # verbatim, e.g. "Delivered", "delivered", "FilteredSpam"
    status_message: str | None
    attempt_at: datetime  # deliveryAttemptTimestamp, else the event time
    internet_message_id: str | None
    mail_server: str | None
    notes: tuple[str, ...] = ()  # what was repaired to keep the report (see module docstring)


@dataclass(frozen=True, slots=True)
class EngagementReport:
    envelope: Envelope
    message_id: str
    sender: str | None
    recipient: str | None  # older payloads carry none: engagement is then message-level
    engagement_type: EngagementType
    engagement_type_raw: str
    context: str | None  # the clicked URL for clicks
    user_agent: str | None
    action_at: datetime
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    envelope: Envelope


ParsedEvent = DeliveryReport | EngagementReport | UnknownEvent


def parse_event(raw: Any, received_at: datetime | None = None) -> ParsedEvent:
    """One event (already JSON-decoded) in either schema → our dataclass, or MalformedEvent.
    `received_at` (default: now) stands in for a report time far in the future."""
    if not isinstance(raw, Mapping):
        raise MalformedEvent("event is not a JSON object")
    envelope = _envelope(raw)
    kind = envelope.event_type.lower()
    received = received_at or datetime.now(UTC)
    if kind == DELIVERY_REPORT_TYPE.lower():
        return _delivery(envelope, _data(raw), received)
    if kind == ENGAGEMENT_REPORT_TYPE.lower():
        return _engagement(envelope, _data(raw), received)
    return UnknownEvent(envelope)


def _envelope(raw: Mapping[str, Any]) -> Envelope:
    if "specversion" in raw:
        schema, type_key, time_key = Schema.CLOUD_EVENTS, "type", "time"
    else:
        schema, type_key, time_key = Schema.EVENT_GRID, "eventType", "eventTime"
    event_id = _identifier(raw.get("id"), "id")
    event_type = raw.get(type_key)
    if not isinstance(event_type, str) or not event_type.strip():
        raise MalformedEvent(f"missing {type_key}")
    subject = raw.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise MalformedEvent("subject is not a string")
    event_time = _timestamp(raw.get(time_key), time_key, required=False)
    return Envelope(event_id, event_type.strip(), schema, event_time, subject, raw)


def _data(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    data = raw.get("data")
    if isinstance(
        data, str | bytes
    ):  # some senders double-encode; accept a JSON object in a string
        try:
            data = json.loads(data)
        except ValueError:
            raise MalformedEvent("data is not valid JSON") from None
    if not isinstance(data, Mapping):
        raise MalformedEvent("data is not a JSON object")
    return data


def _get(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in data:
            return data[key]
    return None


def _delivery(envelope: Envelope, data: Mapping[str, Any], received: datetime) -> DeliveryReport:
    recipient = _address(data.get("recipient"), "recipient", required=True)
    assert recipient is not None
    status = _vocabulary_value(data.get("status"), "status")
    details = data.get("deliveryStatusDetails")
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise MalformedEvent("deliveryStatusDetails is not an object")
    notes: list[str] = []
    status_message = _text(
        details.get("statusMessage"),
        "statusMessage",
        notes,
        MAX_STATUS_MESSAGE_LENGTH,
        _CONTROL_EXCEPT_WHITESPACE,
    )
    attempt_at = _occurred_at(
        envelope, data, received, notes, "deliveryAttemptTimestamp", "deliveryAttemptTimeStamp"
    )
    message_id = _message_id(envelope, data)
    _check_keys(recipient, message_id, envelope.event_id)
    return DeliveryReport(
        envelope=envelope,
        message_id=message_id,
        sender=_address(data.get("sender"), "sender", required=False),
        recipient=recipient,
        acs_status=status.strip(),
        status_message=status_message or None,
        attempt_at=attempt_at,
        internet_message_id=_text(data.get("internetMessageId"), "internetMessageId", notes),
        mail_server=_text(details.get("recipientMailServerHostName"), "mailServer", notes),
        notes=tuple(notes),
    )


def _engagement(
    envelope: Envelope, data: Mapping[str, Any], received: datetime
) -> EngagementReport:
    raw_type = _vocabulary_value(data.get("engagementType"), "engagementType")
    try:
        engagement_type = EngagementType(raw_type.strip().lower())
    except ValueError:
        engagement_type = EngagementType.UNKNOWN
    notes: list[str] = []
    action_at = _occurred_at(
        envelope, data, received, notes, "userActionTimestamp", "userActionTimeStamp"
    )
    message_id = _message_id(envelope, data)
    recipient = _address(data.get("recipient"), "recipient", required=False)
    _check_keys(recipient or keys.MESSAGE_LEVEL, message_id, envelope.event_id)
    return EngagementReport(
        envelope=envelope,
        message_id=message_id,
        sender=_address(data.get("sender"), "sender", required=False),
        recipient=recipient,
        engagement_type=engagement_type,
        engagement_type_raw=raw_type.strip(),
        context=_text(data.get("engagementContext"), "engagementContext", notes) or None,
        user_agent=_text(data.get("userAgent"), "userAgent", notes) or None,
        action_at=action_at,
        notes=tuple(notes),
    )


def _check_keys(address: str, message_id: str, event_id: str) -> None:
    """Every key the event makes must fit a Table key (1 KiB); the longest is the timeline row
    `t|<address>|<event id>` in the message's partition."""
    longest = keys.timeline_row(keys.address_key(address), event_id)
    if not keys.fits(longest) or not keys.fits(keys.message_key(message_id)):
        raise MalformedEvent("recipient or ids too long for a storage key once escaped")


def _occurred_at(
    envelope: Envelope,
    data: Mapping[str, Any],
    received: datetime,
    notes: list[str],
    key: str,
    other_spelling: str,
) -> datetime:
    """The report's own timestamp (either key spelling), else the envelope's time; the receipt
    time when that lies more than a day in the future."""
    at = _timestamp(_get(data, key, other_spelling), key, required=False) or envelope.event_time
    if at is None:
        raise MalformedEvent(f"no {key} and no event time")
    if at > received + FUTURE_SLACK:
        notes.append(f"{key} {at.isoformat()} lies in the future; the receipt time is used")
        at = received
    return at


def _vocabulary_value(value: Any, name: str) -> str:
    """A short vocabulary word such as a status or an engagement type."""
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(f"missing {name}")
    if len(value) > 64 or _CONTROL.search(value) or _SURROGATE.search(value):
        raise MalformedEvent(f"{name} is longer than 64 characters or has control characters")
    return value


def _message_id(envelope: Envelope, data: Mapping[str, Any]) -> str:
    value = data.get("messageId")
    if value is None or value == "":
        match = _SUBJECT_MESSAGE_ID.search(envelope.subject or "")
        if match is None:
            raise MalformedEvent("missing messageId (and none in the subject)")
        value = match.group(1)
    return _identifier(value, "messageId")


def _identifier(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(f"missing {name}")
    text: str = value.strip()
    if len(text) > MAX_ID_LENGTH:
        raise MalformedEvent(f"{name} longer than {MAX_ID_LENGTH} characters")
    if _CONTROL.search(text) or _SURROGATE.search(text):
        raise MalformedEvent(f"{name} contains control characters or invalid Unicode")
    return text


def _address(value: Any, name: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise MalformedEvent(f"missing {name}")
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{name} is not a string")
    text: str = value.strip()
    if len(text) > MAX_ADDRESS_LENGTH:
        raise MalformedEvent(f"{name} longer than {MAX_ADDRESS_LENGTH} characters")
    if _CONTROL.search(text) or _SURROGATE.search(text) or "@" not in text or " " in text:
        raise MalformedEvent(f"{name} is not an email address")
    return text


def _text(
    value: Any,
    name: str,
    notes: list[str],
    limit: int = MAX_TEXT_LENGTH,
    forbidden: re.Pattern[str] = _CONTROL,
) -> str | None:
    """Free text, kept: cut past `limit`, control characters and lone surrogates removed,
    each repair noted."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{name} is not a string")
    if len(value) > limit:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        notes.append(f"{name} cut to {limit} of {len(value)} characters (sha256 {digest})")
        value = value[:limit]
    if forbidden.search(value) or _SURROGATE.search(value):
        notes.append(f"{name}: control characters or invalid Unicode removed")
        value = _SURROGATE.sub("\ufffd", forbidden.sub("", value))
    return str(value).strip()


def _timestamp(value: Any, name: str, *, required: bool) -> datetime | None:
    if value is None or value == "":
        if required:
            raise MalformedEvent(f"missing {name}")
        return None
    if isinstance(value, datetime):  # azure.functions has already parsed envelope times
        parsed = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise MalformedEvent(f"{name} is not an ISO 8601 timestamp") from None
    else:
        raise MalformedEvent(f"{name} is not an ISO 8601 timestamp")
    if parsed.tzinfo is None:  # ACS always sends an offset; a bare time is read as UTC
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
        parsed.timestamp()  # year 1 or 9999 with an offset: OverflowError
    except (OverflowError, ValueError):
        raise MalformedEvent(f"{name} is out of range") from None
    if parsed < _EARLIEST:
        raise MalformedEvent(f"{name} is out of range")
    return parsed
