"""Record one ACS report from Event Grid: parse → classify → store, then what the outcome asks
for (suppression, soft-bounce streak, alerts, sender counters). Never a retry storm.

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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from shared.core import message_ids
from shared.core.alerts import for_report, for_suppression
from shared.core.classification import Classification, Confidence, Reason, classify
from shared.core.errors import MalformedEvent
from shared.core.events import DeliveryReport, EngagementReport, UnknownEvent, parse_event
from shared.core.rates import Counts, domain_of
from shared.core.state import parse_iso
from shared.core.status import Status, from_acs
from shared.core.suppression import Change

if TYPE_CHECKING:
    from shared.core.settings import Settings
    from shared.edge.alert_log import AlertLog
    from shared.edge.messages import MessageStore, Recorded
    from shared.edge.senders import SenderHealth
    from shared.edge.suppressions import SuppressionList

log = logging.getLogger(__name__)
# Threads for a report's projections beyond the first (which runs on the caller's thread).
_PROJECTING = ThreadPoolExecutor(max_workers=16, thread_name_prefix="projections")


class EventOutcome(StrEnum):
    RECORDED = "recorded"  # applied (whether or not it changed the visible status)
    DUPLICATE = "duplicate"  # this event id was recorded before: nothing changed
    QUARANTINED = "quarantined"  # malformed: stored for inspection, acknowledged
    IGNORED = "ignored"  # an event type we do not handle: counted, acknowledged


# Spam-filtered and quarantined messages say more about the content than the address: they
# suppress only when SUPPRESS_ON_SPAM is set.
_SPAM_REASONS = frozenset({Reason.spamfiltered, Reason.quarantined, Reason.spamdetected})
# Soft bounces that say something about the address (not about us, the content or the network
# on our side): a streak of them suppresses the address for a while.
_STREAK_REASONS = frozenset(
    {Reason.mailboxfull, Reason.suspend, Reason.expired, Reason.systemfull, Reason.mailererror}
)


class Projection(Protocol):
    """A read model kept beside the status rows (an index, a rollup, an outcome feed): told
    about every report after its status row was written, duplicates included (it must be
    idempotent on the event id), so a crash between the two writes is healed by the
    redelivery."""

    def delivery_recorded(
        self, report: DeliveryReport, classification: Classification, result: Recorded
    ) -> None: ...

    def engagement_recorded(self, report: EngagementReport, result: Recorded) -> None: ...


class ReportRecorder:
    def __init__(
        self,
        settings: Settings,
        store: MessageStore,
        suppressions: SuppressionList,
        alerts: AlertLog,
        senders: SenderHealth,
        projections: Sequence[Projection] = (),
    ) -> None:
        self.projections = tuple(projections)
        self.settings = settings
        self.store = store
        self.suppressions = suppressions
        self.alerts = alerts
        self.senders = senders
        self.shown = settings.address_policy()
        self.id_key = settings.address_hash_key.encode()

    def record(self, raw: Mapping[str, Any]) -> EventOutcome:
        try:
            parsed = parse_event(raw)
        except MalformedEvent as exc:
            return self._quarantine(raw, exc.reason)
        if isinstance(parsed, UnknownEvent):
            self.store.count("unknown-event-types", parsed.envelope.event_type)
            log.info("event ignored: type=%.128s", parsed.envelope.event_type)
            return EventOutcome.IGNORED
        if isinstance(parsed, DeliveryReport):
            classification = classify(parsed.acs_status, parsed.status_message)
            ours = message_ids.is_ours(self.id_key, parsed.message_id)
            result = self.store.record_delivery(parsed, classification, ours=ours)
            # Also on duplicates: a crash between the two writes is healed by the redelivery,
            # and the suppression write is idempotent on the event id.
            if self.should_suppress(classification):
                self._suppress(parsed, classification)
            elif self._in_streak(classification):
                self._note_soft_bounce(parsed, classification)
            self._alert(parsed, classification)
            if not result.duplicate:  # counted at most once (see shared/edge/senders.py)
                self._count(parsed, classification, result.previous)
            self._project(
                lambda projection: projection.delivery_recorded(parsed, classification, result)
            )
        else:
            assert isinstance(parsed, EngagementReport)
            result = self.store.record_engagement(parsed)
            self._project(lambda projection: projection.engagement_recorded(parsed, result))
        outcome = EventOutcome.DUPLICATE if result.duplicate else EventOutcome.RECORDED
        self._log_recorded(parsed, outcome, result.changed)
        return outcome

    def _project(self, tell: Callable[[Projection], None]) -> None:
        """Tell every projection, at once: each writes its own rows (the outcome feed publishes
        and records, the activity index writes), so a report waits for the slowest, not the sum.
        Their own pool, not the storage fan-out pool: a projection may wait in a group commit
        whose leader needs that pool."""
        if not self.projections:
            return
        first, *rest = self.projections
        pending = [_PROJECTING.submit(tell, projection) for projection in rest]
        try:
            tell(first)
        finally:
            wait(pending)
        for future in pending:
            future.result()

    def _quarantine(self, raw: Mapping[str, Any], reason: str) -> EventOutcome:
        event_id = raw.get("id") if isinstance(raw, Mapping) else None
        event_type = raw.get("eventType") or raw.get("type") if isinstance(raw, Mapping) else None
        self.store.quarantine(
            json.dumps(raw, default=str),  # ASCII: lone surrogates escaped, length = UTF-16 units
            reason,
            event_id if isinstance(event_id, str) else None,
            event_type if isinstance(event_type, str) else None,
        )
        log.warning("event quarantined: id=%.64r reason=%s", event_id, reason)
        return EventOutcome.QUARANTINED

    def should_suppress(self, classification: Classification) -> bool:
        if not classification.suppress:
            return False
        return classification.reason not in _SPAM_REASONS or self.settings.suppress_on_spam

    def _suppress(
        self,
        report: DeliveryReport,
        classification: Classification,
        origin: str | None = None,
        expires_at: datetime | None = None,
        note: str | None = None,
        at: datetime | None = None,
        reason: str | None = None,
    ) -> None:
        reason = reason or str(classification.reason or Reason.undefined)
        origin = origin or f"event:{report.envelope.event_id}"
        detail = {
            "messageId": report.message_id,
            "acsStatus": report.acs_status,
            "bounceType": classification.bounce_type,
            "smtpCode": classification.smtp_code,
            "enhancedCode": classification.enhanced_code,
            "explanation": classification.explanation,
            "note": note,
        }
        changed, state = self.suppressions.apply(
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
            # also when the change was made by an earlier delivery of this event: the alert id
            # is the same, so a crash between the change and its alert cannot lose the alert.
            self.alerts.raise_alert(
                for_suppression(
                    address=report.recipient,
                    reason=reason,
                    origin=origin,
                    at=at or report.attempt_at,
                    shown=self.shown,
                    message_id=report.message_id,
                    expires_at=expires_at,
                )
            )
        if changed:
            log.info("suppressed: message=%s reason=%s", report.message_id, reason)

    def _in_streak(self, classification: Classification) -> bool:
        """Soft bounces about the address count toward a streak, and so does a hard bounce we
        are not sure of (low confidence: a generic code decided): it suppresses only when it
        repeats, never on one doubtful reply."""
        if self.settings.soft_bounce_streak <= 0:
            return False
        if classification.bounce_type == "hard":
            return classification.confidence is Confidence.low
        return classification.bounce_type == "soft" and classification.reason in _STREAK_REASONS

    def _note_soft_bounce(self, report: DeliveryReport, classification: Classification) -> None:
        """SOFT_BOUNCE_STREAK soft bounces within the window, with no delivery to the address
        since the first of them, suppress it until SOFT_BOUNCE_SUPPRESS_HOURS after the last."""
        settings = self.settings
        streak = self.suppressions.note_soft_bounce(
            report.recipient,
            report.envelope.event_id,
            report.attempt_at,
            timedelta(hours=settings.soft_bounce_window_hours),
            settings.soft_bounce_streak,
        )
        if len(streak) < settings.soft_bounce_streak:
            return
        first = streak[0][0]
        history, _ = self.store.recipient_history(report.recipient, 20, None)
        for item in history:
            row = item.get("statusRow") or {}
            if row.get("status") == "delivered" and str(row.get("at", "")) > first:
                return  # it delivered in between: not a streak
        last_at, last_id = streak[-1]
        last = parse_iso(last_at)
        assert last is not None
        self._suppress(
            report,
            classification,
            origin=f"streak:{last_id}",
            expires_at=last + timedelta(hours=settings.soft_bounce_suppress_hours),
            note=f"{len(streak)} soft bounces ({classification.reason}) since {first}",
            at=last,  # the streak's, not this report's: a redelivered member changes nothing
            reason="softbouncestreak",
        )

    def _count(
        self,
        report: DeliveryReport,
        classification: Classification,
        previous: Mapping[str, Any] | None,
    ) -> None:
        status = from_acs(report.acs_status)
        if status is Status.EXPANDED:
            return
        # Mail sent through our worker is counted when sent (our accept wrote the row); mail
        # sent some other way is counted the first time a report names the recipient (no row
        # yet), so rates work without our send endpoint too.
        counts = Counts(
            sent=1 if previous is None else 0,
            hard=1 if classification.bounce_type == "hard" else 0,
            spam=1 if status in (Status.SPAM_FILTERED, Status.QUARANTINED) else 0,
        )
        if counts == Counts():  # a delivered report of our own send: no counter write
            return
        if previous is None:  # first sight: batched, so the report is its two writes alone
            self.senders.add_soon(domain_of(report.sender), counts)
        else:
            self.senders.add(domain_of(report.sender), counts)

    def _alert(self, report: DeliveryReport, classification: Classification) -> None:
        for alert in for_report(
            event_id=report.envelope.event_id,
            message_id=report.message_id,
            recipient=report.recipient,
            status=from_acs(report.acs_status).value,
            classification=classification,
            at=report.attempt_at,
            shown=self.shown,
        ):
            self.alerts.raise_alert(alert)

    def _log_recorded(
        self, event: DeliveryReport | EngagementReport, outcome: EventOutcome, changed: bool
    ) -> None:
        who = ""
        if self.settings.log_addresses and event.recipient:
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
