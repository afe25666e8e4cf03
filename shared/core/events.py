"""Parse ACS email events (Event Grid schema or CloudEvents 1.0) into our frozen dataclasses.

The Azure spellings live here and nowhere else. Quirks accepted (see tests/events/ and the
reference payloads): status casing varies (`delivered`/`Delivered`); timestamp keys vary
(`deliveryAttemptTimestamp`/`deliveryAttemptTimeStamp`, `userActionTimestamp`/`...TimeStamp`);
`internetMessageId` and `recipientMailServerHostName` are absent on Suppressed reports;
`messageId` may be missing and is then taken from the subject `sender/{sender}/message/{id}`.
Anything we cannot use raises MalformedEvent with a short, stable reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

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


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    envelope: Envelope


ParsedEvent = DeliveryReport | EngagementReport | UnknownEvent


def parse_event(raw: Any) -> ParsedEvent:
    """One event (already JSON-decoded) in either schema → our dataclass, or MalformedEvent."""
    if not isinstance(raw, Mapping):
        raise MalformedEvent("event is not a JSON object")
    envelope = _envelope(raw)
    kind = envelope.event_type.lower()
    if kind == DELIVERY_REPORT_TYPE.lower():
        return _delivery(envelope, _data(raw))
    if kind == ENGAGEMENT_REPORT_TYPE.lower():
        return _engagement(envelope, _data(raw))
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


def _delivery(envelope: Envelope, data: Mapping[str, Any]) -> DeliveryReport:
    recipient = _address(data.get("recipient"), "recipient", required=True)
    assert recipient is not None
    status = _vocabulary_value(data.get("status"), "status")
    details = data.get("deliveryStatusDetails")
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise MalformedEvent("deliveryStatusDetails is not an object")
    status_message = _text(
        details.get("statusMessage"),
        "statusMessage",
        MAX_STATUS_MESSAGE_LENGTH,
        _CONTROL_EXCEPT_WHITESPACE,
    )
    attempt_at = _occurred_at(
        envelope, data, "deliveryAttemptTimestamp", "deliveryAttemptTimeStamp"
    )
    return DeliveryReport(
        envelope=envelope,
        message_id=_message_id(envelope, data),
        sender=_address(data.get("sender"), "sender", required=False),
        recipient=recipient,
        acs_status=status.strip(),
        status_message=status_message or None,
        attempt_at=attempt_at,
        internet_message_id=_text(data.get("internetMessageId"), "internetMessageId"),
        mail_server=_text(details.get("recipientMailServerHostName"), "mailServer"),
    )


def _engagement(envelope: Envelope, data: Mapping[str, Any]) -> EngagementReport:
    raw_type = _vocabulary_value(data.get("engagementType"), "engagementType")
    try:
        engagement_type = EngagementType(raw_type.strip().lower())
    except ValueError:
        engagement_type = EngagementType.UNKNOWN
    action_at = _occurred_at(envelope, data, "userActionTimestamp", "userActionTimeStamp")
    return EngagementReport(
        envelope=envelope,
        message_id=_message_id(envelope, data),
        sender=_address(data.get("sender"), "sender", required=False),
        recipient=_address(data.get("recipient"), "recipient", required=False),
        engagement_type=engagement_type,
        engagement_type_raw=raw_type.strip(),
        context=_text(data.get("engagementContext"), "engagementContext") or None,
        user_agent=_text(data.get("userAgent"), "userAgent") or None,
        action_at=action_at,
    )


def _occurred_at(
    envelope: Envelope, data: Mapping[str, Any], key: str, other_spelling: str
) -> datetime:
    """The report's own timestamp (either key spelling), else the envelope's time."""
    at = _timestamp(_get(data, key, other_spelling), key, required=False) or envelope.event_time
    if at is None:
        raise MalformedEvent(f"no {key} and no event time")
    return at


def _vocabulary_value(value: Any, name: str) -> str:
    """A short vocabulary word such as a status or an engagement type."""
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(f"missing {name}")
    if len(value) > 64 or _CONTROL.search(value):
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
    if _CONTROL.search(text):
        raise MalformedEvent(f"{name} contains control characters")
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
    if _CONTROL.search(text) or "@" not in text or " " in text:
        raise MalformedEvent(f"{name} is not an email address")
    return text


def _text(
    value: Any,
    name: str,
    limit: int = MAX_TEXT_LENGTH,
    forbidden: re.Pattern[str] = _CONTROL,
) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{name} is not a string")
    if len(value) > limit:
        raise MalformedEvent(f"{name} longer than {limit} characters")
    if forbidden.search(value):
        raise MalformedEvent(f"{name} contains control characters")
    return value.strip()


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
    return parsed.astimezone(UTC)
