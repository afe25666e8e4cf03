"""Event Grid events in, per-recipient state out: parse → classify → store, never a retry storm.

Outcomes of one event, and why:
- recorded / duplicate: a usable report; a redelivery changes nothing and is acknowledged.
- quarantined: malformed; stored with its reason and acknowledged, because Event Grid retrying
  it for 24 h cannot make it well-formed (and would hide real failures in the noise).
- ignored: an event type we do not handle (e.g. a subscription that sends all ACS events);
  counted and acknowledged.
- Transient (raised): storage trouble; the exception makes Event Grid redeliver later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .classification import classify
from .errors import MalformedEvent
from .events import DeliveryReport, EngagementReport, UnknownEvent, parse_event
from .settings import get_settings

if TYPE_CHECKING:
    from .store import MessageStore

log = logging.getLogger(__name__)


class EventOutcome(StrEnum):
    RECORDED = "recorded"  # applied (whether or not it changed the visible status)
    DUPLICATE = "duplicate"  # this event id was recorded before: nothing changed
    QUARANTINED = "quarantined"  # malformed: stored for inspection, acknowledged
    IGNORED = "ignored"  # an event type we do not handle: counted, acknowledged


def _default_store() -> MessageStore:
    from .services import message_store

    return message_store()


def record_event(
    raw: Mapping[str, Any], store: Callable[[], MessageStore] = _default_store
) -> EventOutcome:
    try:
        parsed = parse_event(raw)
    except MalformedEvent as exc:
        event_id = raw.get("id") if isinstance(raw, Mapping) else None
        event_type = raw.get("eventType") or raw.get("type") if isinstance(raw, Mapping) else None
        store().quarantine(
            json.dumps(raw, default=str, ensure_ascii=False),
            exc.reason,
            event_id if isinstance(event_id, str) else None,
            event_type if isinstance(event_type, str) else None,
        )
        log.warning("event quarantined: id=%.64r reason=%s", event_id, exc.reason)
        return EventOutcome.QUARANTINED
    if isinstance(parsed, UnknownEvent):
        store().count("unknown-event-types", parsed.envelope.event_type)
        log.info("event ignored: type=%.128s", parsed.envelope.event_type)
        return EventOutcome.IGNORED
    if isinstance(parsed, DeliveryReport):
        classification = classify(parsed.acs_status, parsed.status_message).to_json()
        result = store().record_delivery(parsed, classification)
        # Also on duplicates: a crash between the two writes is healed by the redelivery,
        # and the suppression write is idempotent on the event id.
        if should_suppress(classification):
            _suppress(parsed, classification)
        _alert(parsed, classification)
    else:
        assert isinstance(parsed, EngagementReport)
        result = store().record_engagement(parsed)
    outcome = EventOutcome.DUPLICATE if result.duplicate else EventOutcome.RECORDED
    _log_recorded(parsed, outcome, result.changed)
    return outcome


# Spam-filtered and quarantined messages say more about the content than the address: they
# suppress only when SUPPRESS_ON_SPAM is set.
_SPAM_REASONS = frozenset({"spamfiltered", "quarantined", "spamdetected"})


def should_suppress(classification: Mapping[str, Any]) -> bool:
    if not classification.get("suppress"):
        return False
    return classification.get("reason") not in _SPAM_REASONS or get_settings().suppress_on_spam


def _suppress(report: DeliveryReport, classification: Mapping[str, Any]) -> None:
    from .services import suppression_list
    from .suppressions import Change

    reason = str(classification.get("reason") or "undefined")
    detail = {
        "messageId": report.message_id,
        "acsStatus": report.acs_status,
        "bounceType": classification.get("bounceType"),
        "smtpCode": classification.get("smtpCode"),
        "enhancedCode": classification.get("enhancedCode"),
        "explanation": classification.get("explanation"),
    }
    changed, state = suppression_list().apply(
        report.recipient,
        Change(
            active=True,
            reason=reason,
            origin=f"event:{report.envelope.event_id}",
            at=report.attempt_at,
            detail=detail,
        ),
    )
    origin = f"event:{report.envelope.event_id}"
    if changed or (state and state.get("active") and state.get("origin") == origin):
        # also when the change was made by an earlier delivery of this event: the alert id is
        # the same, so a crash between the change and its alert cannot lose the alert.
        from .alerts import AddressMode, for_suppression
        from .services import alert_log

        alert_log().raise_alert(
            for_suppression(
                address=report.recipient,
                reason=reason,
                origin=origin,
                at=report.attempt_at,
                mode=AddressMode(get_settings().alert_addresses),
                message_id=report.message_id,
            )
        )
    if changed:
        log.info("suppressed: message=%s reason=%s", report.message_id, reason)


def _alert(report: DeliveryReport, classification: Mapping[str, Any]) -> None:
    from .alerts import AddressMode, for_report
    from .status import from_acs

    alerts = for_report(
        event_id=report.envelope.event_id,
        message_id=report.message_id,
        recipient=report.recipient,
        status=from_acs(report.acs_status).value,
        classification=classification,
        at=report.attempt_at,
        mode=AddressMode(get_settings().alert_addresses),
    )
    if alerts:
        from .services import alert_log

        for alert in alerts:
            alert_log().raise_alert(alert)


def _log_recorded(
    event: DeliveryReport | EngagementReport, outcome: EventOutcome, changed: bool
) -> None:
    who = ""
    if get_settings().log_addresses and event.recipient:
        who = f" recipient={event.recipient}"
    kind = event.acs_status if isinstance(event, DeliveryReport) else event.engagement_type_raw
    log.info(
        "event %s: id=%s message=%s kind=%s changed=%s%s",
        outcome.value,
        event.envelope.event_id,
        event.message_id,
        kind,
        changed,
        who,
    )
