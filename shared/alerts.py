"""Alert vocabulary and payloads (pure): CloudEvents 1.0 that operators subscribe to.

An alert's id is derived from what caused it (e.g. the Event Grid event id of the bounce), so
recording it again — a redelivered report, a retried function — is the same alert: it is
stored once and published under one CloudEvents id that subscribers can deduplicate on.
Payloads never carry a message body or subject; the recipient address is hashed unless
ALERT_ADDRESSES=plain (or left out with ALERT_ADDRESSES=omit).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

_NAMESPACE = uuid.UUID("6f0d5c1e-2a57-4c43-9f0e-5a1c2b7d9e31")
SOURCE = "/acs-email-insights"


class AlertType(StrEnum):
    HARD_BOUNCED = "AcsEmailInsights.Recipient.HardBounced"  # the address does not exist
    SUPPRESSED = "AcsEmailInsights.Recipient.Suppressed"  # the address went on our list
    SPAM_FILTERED = "AcsEmailInsights.Message.SpamFiltered"  # a receiver filtered it as spam
    QUARANTINED = "AcsEmailInsights.Message.Quarantined"  # quarantined on the way
    SEND_FAILED = "AcsEmailInsights.Send.Failed"  # we could not hand it to ACS, for good


class AddressMode(StrEnum):
    HASH = "hash"  # sha256 of the lower-cased address, first 32 hex characters
    PLAIN = "plain"  # the address itself (only if your subscribers may see addresses)
    OMIT = "omit"  # no address at all, only its domain


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    type: AlertType
    subject: str
    time: datetime
    data: Mapping[str, Any] = field(default_factory=dict)

    def cloud_event(self) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": self.id,
            "source": SOURCE,
            "type": self.type.value,
            "subject": self.subject,
            "time": self.time.isoformat(),
            "datacontenttype": "application/json",
            "data": dict(self.data),
        }


def alert_id(alert_type: AlertType, cause: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{alert_type.value}|{cause}"))


def recipient_fields(address: str | None, mode: AddressMode) -> dict[str, Any]:
    if not address:
        return {"recipientDomain": None}
    domain = address.rpartition("@")[2].lower()
    out: dict[str, Any] = {"recipientDomain": domain}
    if mode is AddressMode.PLAIN:
        out["recipient"] = address
    elif mode is AddressMode.HASH:
        out["recipientHash"] = hashlib.sha256(address.strip().lower().encode()).hexdigest()[:32]
    return out


def for_report(
    *,
    event_id: str,
    message_id: str,
    recipient: str,
    status: str,
    classification: Mapping[str, Any],
    at: datetime,
    mode: AddressMode,
) -> list[Alert]:
    """Alerts one delivery report raises (before suppression, which has its own alert)."""
    kinds = []
    if classification.get("bounceType") == "hard":
        kinds.append(AlertType.HARD_BOUNCED)
    if status == "spam_filtered":
        kinds.append(AlertType.SPAM_FILTERED)
    if status == "quarantined":
        kinds.append(AlertType.QUARANTINED)
    data = {
        "messageId": message_id,
        **recipient_fields(recipient, mode),
        "status": status,
        "reason": classification.get("reason"),
        "bounceType": classification.get("bounceType"),
        "smtpCode": classification.get("smtpCode"),
        "enhancedCode": classification.get("enhancedCode"),
        "explanation": classification.get("explanation"),
        "action": classification.get("action"),
        "eventId": event_id,
    }
    return [
        Alert(alert_id(kind, event_id), kind, f"messages/{message_id}", at, data) for kind in kinds
    ]


def for_suppression(
    *,
    address: str,
    reason: str,
    origin: str,
    at: datetime,
    mode: AddressMode,
    message_id: str | None = None,
) -> Alert:
    data = {
        "messageId": message_id,
        **recipient_fields(address, mode),
        "reason": reason,
        "origin": origin,
    }
    return Alert(
        alert_id(AlertType.SUPPRESSED, f"{address.lower()}|{origin}"),
        AlertType.SUPPRESSED,
        f"recipients/{data.get('recipientDomain')}",
        at,
        data,
    )


def for_send_failure(*, message_id: str, code: str, explanation: str, at: datetime) -> Alert:
    return Alert(
        alert_id(AlertType.SEND_FAILED, message_id),
        AlertType.SEND_FAILED,
        f"messages/{message_id}",
        at,
        {"messageId": message_id, "code": code, "explanation": explanation},
    )
