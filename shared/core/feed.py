"""Outcome events for apps (pure): one CloudEvent per change of a recipient's outcome.

The id is derived from message, recipient and outcome, so the same change recorded twice (a
redelivered report, a retried function) is one event, published under one CloudEvents id that
subscribers can deduplicate on. A recipient whose outcome moves (a soft failure, then delivered
on a later attempt) gets one event per outcome it reached. Payloads never carry a body or
subject; the recipient is hashed unless OUTCOME_EVENT_ADDRESSES=plain (left out with `omit`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeAlias

from shared.core.alerts import AddressMode, AddressPolicy, Alert
from shared.core.rollups import classification_fields
from shared.core.state import parse_iso

_NAMESPACE = uuid.UUID("0b7a4c22-9d0e-4f55-8a3c-61e2f4b8d7a9")


class OutcomeType(StrEnum):
    DELIVERED = "Email.Delivered"  # the recipient's server accepted the message
    BOUNCED = "Email.Bounced"  # ACS Bounced (see bounceType: hard = the address is dead)
    FAILED = "Email.Failed"  # ACS Failed (expired, mailbox full, network, …)
    SUPPRESSED = "Email.Suppressed"  # ACS suppressed it: nothing was sent
    SPAM_FILTERED = "Email.SpamFiltered"  # the receiver or ACS filtered it as spam
    QUARANTINED = "Email.Quarantined"  # ACS quarantined it
    OPENED = "Email.Opened"  # the first open of this recipient (tracking pixel)
    CLICKED = "Email.Clicked"  # the first click of this recipient on a tracked link


_BY_STATUS = {
    "delivered": OutcomeType.DELIVERED,
    "bounced": OutcomeType.BOUNCED,
    "failed": OutcomeType.FAILED,
    "suppressed": OutcomeType.SUPPRESSED,
    "spam_filtered": OutcomeType.SPAM_FILTERED,
    "quarantined": OutcomeType.QUARANTINED,
}


# An outcome event is recorded and published exactly like an alert: one CloudEvent record.
OutcomeEvent: TypeAlias = Alert


def event_id(message_id: str, recipient: str, kind: OutcomeType) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{message_id}|{recipient.strip().lower()}|{kind.value}"))


def outcome_type(row: Mapping[str, Any] | None) -> OutcomeType | None:
    """The outcome a status row announces: only rows an ACS report decided (`acsStatus`)."""
    if not row or not row.get("acsStatus"):
        return None
    return _BY_STATUS.get(str(row.get("status")))


def _json_map(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str) and value:
        parsed = json.loads(value)
        return parsed if isinstance(parsed, dict) else None
    return None


def _caller_fields(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """The caller's own labels from the message row (our sends only)."""
    summary = summary or {}
    return {"tags": _json_map(summary.get("tags")), "metadata": _json_map(summary.get("metadata"))}


def for_status_row(
    message_id: str,
    row: Mapping[str, Any],
    summary: Mapping[str, Any] | None,
    shown: AddressPolicy,
) -> OutcomeEvent | None:
    kind = outcome_type(row)
    at = parse_iso(row.get("at"))
    address = str(row.get("address") or "")
    if kind is None or at is None or not address:
        return None
    fields = classification_fields(row)
    data = {
        "messageId": message_id,
        **shown.fields(address),
        "status": row.get("status"),
        "acsStatus": row.get("acsStatus"),
        "at": row.get("at"),
        "reason": fields.get("reason"),
        "bounceType": fields.get("bounceType"),
        "smtpCode": fields.get("smtpCode"),
        "enhancedCode": fields.get("enhancedCode"),
        "explanation": fields.get("explanation"),
        "action": fields.get("action"),
        "latencyMs": row.get("latencyMs"),
        "sender": row.get("sender"),
        **_caller_fields(summary),
        "eventId": row.get("eventId"),
    }
    return OutcomeEvent(
        event_id(message_id, address, kind), kind, f"messages/{message_id}", at, data
    )


def for_engagement(
    message_id: str,
    recipient: str,
    kind: OutcomeType,
    at: datetime,
    summary: Mapping[str, Any] | None,
    shown: AddressPolicy,
    context: str | None,
) -> OutcomeEvent:
    data = {
        "messageId": message_id,
        **shown.fields(recipient),
        "at": at.isoformat(),
        # A tracked link can carry the recipient's own tokens: shown only where addresses are.
        "url": context if kind is OutcomeType.CLICKED and shown.mode is AddressMode.PLAIN else None,
        **_caller_fields(summary),
    }
    return OutcomeEvent(
        event_id(message_id, recipient, kind), kind, f"messages/{message_id}", at, data
    )
