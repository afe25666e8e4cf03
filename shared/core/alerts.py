"""Alert vocabulary and payloads (pure): CloudEvents 1.0 that operators subscribe to.

An alert's id is derived from what caused it (e.g. the Event Grid event id of the bounce), so
recording it again — a redelivered report, a retried function — is the same alert: it is
stored once and published under one CloudEvents id that subscribers can deduplicate on.
Payloads never carry a message body or subject; the recipient address is hashed unless
ALERT_ADDRESSES=plain (or left out with ALERT_ADDRESSES=omit).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.core.hashing import address_hash

if TYPE_CHECKING:
    from shared.core.classification import Classification


_NAMESPACE = uuid.UUID("6f0d5c1e-2a57-4c43-9f0e-5a1c2b7d9e31")
SOURCE = "/acs-email-insights"


# How far back the alert history reaches, and what it shows when no `since` is given.
HISTORY_DAYS = 31
HISTORY_DEFAULT_DAYS = 7
# Alert rows are filed under the day of their cause (a report's time), which keeps their create
# idempotent; the listing filters on when they were raised. A cause can precede its alert by
# Event Grid's retry period (24 h) plus clock skew: the listing reads this much further back.
RAISE_SLACK_DAYS = 2


class AlertType(StrEnum):
    HARD_BOUNCED = "AcsEmailInsights.Recipient.HardBounced"  # the address does not exist
    SUPPRESSED = "AcsEmailInsights.Recipient.Suppressed"  # the address went on our list
    SPAM_FILTERED = "AcsEmailInsights.Message.SpamFiltered"  # a receiver filtered it as spam
    QUARANTINED = "AcsEmailInsights.Message.Quarantined"  # quarantined on the way
    SEND_FAILED = "AcsEmailInsights.Send.Failed"  # we could not hand it to ACS, for good
    DELIVERY_STUCK = "AcsEmailInsights.Delivery.Stuck"  # no final report N minutes after sending
    BOUNCE_RATE = "AcsEmailInsights.Sender.BounceRateHigh"  # hard-bounce rate over a threshold
    SPAM_RATE = "AcsEmailInsights.Sender.SpamRateHigh"  # spam/quarantine rate over a threshold
    RATE_RECOVERED = "AcsEmailInsights.Sender.RateRecovered"  # an announced rate is back down


def alert_type_named(name: str) -> AlertType | None:
    """An alert type from its full name or a short one, any case: `AcsEmailInsights.Sender.
    BounceRateHigh`, `Sender.BounceRateHigh` or `BounceRateHigh`."""
    wanted = name.strip().lower()
    for kind in AlertType:
        full = kind.value.lower()
        if wanted in (full, full.split(".", 1)[1], full.rsplit(".", 1)[1]):
            return kind
    return None


# An address inside free text (a local part, @, a domain with a dot), for redaction.
_NOT_IN_ADDRESS = r"\s<>()\[\]\\,;:\"'@"
_ADDRESS_IN_TEXT = re.compile(
    rf"[^{_NOT_IN_ADDRESS}]+@[^{_NOT_IN_ADDRESS}]+\.[^{_NOT_IN_ADDRESS}.]+"
)


class AddressMode(StrEnum):
    HASH = "hash"  # HMAC-SHA256 of the address under ADDRESS_HASH_KEY, first 32 hex characters
    PLAIN = "plain"  # the address itself (only if your subscribers may see addresses)
    OMIT = "omit"  # no address at all, only its domain


@dataclass(frozen=True, slots=True)
class Alert:
    """A CloudEvent we record, then publish: an alert (`AlertType`), or an outcome event for
    apps (`core.feed.OutcomeType`), which is the same record."""

    id: str
    type: StrEnum
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


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """How alerts and events show a recipient: ALERT_ADDRESSES, and the key that hashes."""

    mode: AddressMode
    key: bytes

    def fields(self, address: str | None) -> dict[str, Any]:
        if not address:
            return {"recipientDomain": None}
        domain = address.rpartition("@")[2].lower()
        out: dict[str, Any] = {"recipientDomain": domain}
        if self.mode is AddressMode.PLAIN:
            out["recipient"] = address
        elif self.mode is AddressMode.HASH:
            out["recipientHash"] = address_hash(address, self.key)
        return out

    def redact(self, text: str) -> str:
        """Free text (an ACS error message) with every address in it shown as this policy
        shows a recipient: as is, as `[address <hash>]`, or as `[address]`."""
        if self.mode is AddressMode.PLAIN:
            return text

        def shown(match: re.Match[str]) -> str:
            if self.mode is AddressMode.HASH:
                return f"[address {address_hash(match.group(), self.key)}]"
            return "[address]"

        return _ADDRESS_IN_TEXT.sub(shown, text)

    def key_of(self, address: str) -> str:
        """A stable, non-reversible stand-in for an address inside ids."""
        return address_hash(address, self.key)


def for_report(
    *,
    event_id: str,
    message_id: str,
    recipient: str,
    status: str,
    classification: Classification,
    at: datetime,
    shown: AddressPolicy,
) -> list[Alert]:
    """Alerts one delivery report raises (before suppression, which has its own alert)."""
    kinds = []
    if classification.bounce_type == "hard":
        kinds.append(AlertType.HARD_BOUNCED)
    if status == "spam_filtered":
        kinds.append(AlertType.SPAM_FILTERED)
    if status == "quarantined":
        kinds.append(AlertType.QUARANTINED)
    data = {
        "messageId": message_id,
        **shown.fields(recipient),
        "status": status,
        "reason": classification.reason,
        "bounceType": classification.bounce_type,
        "smtpCode": classification.smtp_code,
        "enhancedCode": classification.enhanced_code,
        "explanation": classification.explanation,
        "action": classification.action,
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
    shown: AddressPolicy,
    message_id: str | None = None,
    expires_at: datetime | None = None,
) -> Alert:
    data = {
        "messageId": message_id,
        **shown.fields(address),
        "reason": reason,
        "origin": origin,
        "expiresAt": expires_at.isoformat() if expires_at else None,
    }
    return Alert(
        alert_id(AlertType.SUPPRESSED, f"{shown.key_of(address)}|{origin}"),
        AlertType.SUPPRESSED,
        f"recipients/{data.get('recipientDomain')}",
        at,
        data,
    )


def for_send_failure(
    *, message_id: str, code: str, explanation: str, at: datetime, shown: AddressPolicy
) -> Alert:
    """ACS's error text can name a recipient: it is redacted as the policy shows addresses."""
    return Alert(
        alert_id(AlertType.SEND_FAILED, message_id),
        AlertType.SEND_FAILED,
        f"messages/{message_id}",
        at,
        {"messageId": message_id, "code": code, "explanation": shown.redact(explanation)},
    )


def for_stuck_delivery(
    *,
    message_id: str,
    sender: str | None,
    recipients: list[str],
    sent_at: str | None,
    minutes: int,
    at: datetime,
    shown: AddressPolicy,
) -> Alert:
    listed = [shown.fields(r) for r in recipients]
    return Alert(
        alert_id(AlertType.DELIVERY_STUCK, message_id),
        AlertType.DELIVERY_STUCK,
        f"messages/{message_id}",
        at,
        {
            "messageId": message_id,
            "senderDomain": sender.rpartition("@")[2].lower() if sender else None,
            "sentAt": sent_at,
            "stuckAfterMinutes": minutes,
            "recipientCount": len(recipients),
            "recipients": listed[:50],
            "recipientDomain": listed[0]["recipientDomain"] if len(listed) == 1 else None,
            "explanation": (
                f"ACS accepted this message but sent no final delivery report for "
                f"{len(recipients)} recipient(s) within {minutes} minutes."
            ),
            "action": (
                "Look the message up (GET /api/emails/{messageId}); check the Event Grid "
                "subscription for EmailDeliveryReportReceived and its dead-letter location."
            ),
        },
    )


def for_rate(
    *,
    domain: str,
    metric: str,
    level: str | None,
    recovered: bool,
    rate: float | None,
    counts: Mapping[str, int],
    thresholds: Mapping[str, float],
    window_minutes: int,
    episode_since: str,
    paused: bool,
    at: datetime,
) -> Alert:
    """A sender-domain rate alert; one id per (domain, metric, level, episode start)."""
    if recovered:
        kind = AlertType.RATE_RECOVERED
    else:
        kind = AlertType.BOUNCE_RATE if metric == "bounce" else AlertType.SPAM_RATE
    what = "hard-bounce" if metric == "bounce" else "spam-filtered/quarantined"
    shown = "n/a" if rate is None else f"{rate:.2f}%"
    if recovered:
        explanation = f"The {what} rate of {domain} is back down to {shown}."
    else:
        explanation = (
            f"The {what} rate of {domain} is {shown} over the last {window_minutes} minutes "
            f"({level}; threshold {thresholds.get(level or '', 0):g}%)."
        )
    return Alert(
        alert_id(kind, f"{domain}|{metric}|{level}|{episode_since}"),
        kind,
        f"senders/{domain}",
        at,
        {
            "senderDomain": domain,
            "metric": metric,
            "level": level,
            "ratePercent": None if rate is None else round(rate, 4),
            **counts,
            "thresholdsPercent": dict(thresholds),
            "windowMinutes": window_minutes,
            "paused": paused,
            "explanation": explanation,
            "action": (
                "Sends from this domain are on hold until an operator resumes them "
                f"(POST /api/senders/{domain}/resume)."
                if paused
                else "Check the recipients of recent sends (list hygiene, a bad import, "
                "content) before reputation suffers."
            )
            if not recovered
            else "Nothing; keep watching.",
        },
    )
