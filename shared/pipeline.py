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
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .core.classification import classify
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
        elif _in_streak(classification):
            _note_soft_bounce(parsed, classification)
        _alert(parsed, classification)
        if not result.duplicate:  # counted at most once (see shared/senders.py)
            _count(parsed, classification, result.previous)
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


def _suppress(
    report: DeliveryReport,
    classification: Mapping[str, Any],
    origin: str | None = None,
    expires_at: datetime | None = None,
    note: str | None = None,
    at: datetime | None = None,
) -> None:
    from .services import suppression_list
    from .suppressions import Change

    reason = str(classification.get("reason") or "undefined")
    origin = origin or f"event:{report.envelope.event_id}"
    detail = {
        "messageId": report.message_id,
        "acsStatus": report.acs_status,
        "bounceType": classification.get("bounceType"),
        "smtpCode": classification.get("smtpCode"),
        "enhancedCode": classification.get("enhancedCode"),
        "explanation": classification.get("explanation"),
        "note": note,
    }
    changed, state = suppression_list().apply(
        report.recipient,
        Change(
            active=True,
            reason=reason,
            origin=origin,
            at=at or report.attempt_at,
            detail={k: v for k, v in detail.items() if v is not None},
            expires_at=expires_at,
        ),
    )
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
                at=at or report.attempt_at,
                mode=AddressMode(get_settings().alert_addresses),
                message_id=report.message_id,
                expires_at=expires_at,
            )
        )
    if changed:
        log.info("suppressed: message=%s reason=%s", report.message_id, reason)


# Soft bounces that say something about the address (not about us, the content or the network
# on our side): a streak of them suppresses the address for a while.
_STREAK_REASONS = frozenset({"mailboxfull", "suspend", "expired", "systemfull", "mailererror"})


def _in_streak(classification: Mapping[str, Any]) -> bool:
    return (
        classification.get("bounceType") == "soft"
        and classification.get("reason") in _STREAK_REASONS
        and get_settings().soft_bounce_streak > 0
    )


def _note_soft_bounce(report: DeliveryReport, classification: Mapping[str, Any]) -> None:
    """SOFT_BOUNCE_STREAK soft bounces within the window, with no delivery to the address
    since the first of them, suppress it until SOFT_BOUNCE_SUPPRESS_HOURS after the last."""
    from datetime import timedelta

    from .services import message_store, suppression_list
    from .state import parse_iso

    settings = get_settings()
    streak = suppression_list().note_soft_bounce(
        report.recipient,
        report.envelope.event_id,
        report.attempt_at,
        timedelta(hours=settings.soft_bounce_window_hours),
        settings.soft_bounce_streak,
    )
    if len(streak) < settings.soft_bounce_streak:
        return
    first = streak[0][0]
    history, _ = message_store().recipient_history(report.recipient, 20, None)
    for item in history:
        row = item.get("statusRow") or {}
        if row.get("status") == "delivered" and str(row.get("at", "")) > first:
            return  # it delivered in between: not a streak
    last_at, last_id = streak[-1]
    last = parse_iso(last_at)
    assert last is not None
    _suppress(
        report,
        {**classification, "reason": "softbouncestreak"},
        origin=f"streak:{last_id}",
        expires_at=last + timedelta(hours=settings.soft_bounce_suppress_hours),
        note=f"{len(streak)} soft bounces ({classification.get('reason')}) since {first}",
        at=last,  # the streak's, not this report's: a redelivered member changes nothing
    )


def _count(
    report: DeliveryReport, classification: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> None:
    from .rates import Counts
    from .senders import domain_of
    from .services import sender_health
    from .status import Status, from_acs

    status = from_acs(report.acs_status)
    if status is Status.EXPANDED:
        return
    # Mail sent through our worker is counted when sent (our accept wrote the row); mail sent
    # some other way is counted the first time a report names the recipient (no row yet), so
    # rates work without our send endpoint too.
    counts = Counts(
        sent=1 if previous is None else 0,
        hard=1 if classification.get("bounceType") == "hard" else 0,
        spam=1 if status in (Status.SPAM_FILTERED, Status.QUARANTINED) else 0,
    )
    if counts != Counts():  # a delivered report of our own send: no counter, no client built
        sender_health().add(domain_of(report.sender), counts)


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
