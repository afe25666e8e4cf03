"""Outcome events for apps: a projection that publishes one CloudEvent per change of a
recipient's outcome (and its first open and click); a timer retries failed publishes.

Once per change, as seen by a subscriber that deduplicates on the CloudEvents id: the id comes
from message, recipient and outcome (shared/core/feed.py). A change publishes at once (grouped
with concurrent reports, shared/edge/outcome_events.py); a crash after the status write and
before the publish is healed by the redelivery: a duplicate of the report that decided the row
publishes then, unless the log shows the event went out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from shared.core.alerts import AddressPolicy
from shared.core.events import EngagementType
from shared.core.feed import OutcomeEvent, OutcomeType, for_engagement, for_status_row, outcome_type
from shared.core.state import iso

if TYPE_CHECKING:
    from shared.app.deliverability import MessageFacts
    from shared.core.classification import Classification
    from shared.core.events import DeliveryReport, EngagementReport
    from shared.edge.messages import Recorded

log = logging.getLogger(__name__)


class EventLog(Protocol):
    def publish(self, event: OutcomeEvent) -> None: ...

    def record(self, event: OutcomeEvent) -> bool: ...

    def publish_pending(self) -> int: ...


class OutcomeFeed:
    def __init__(self, log_: EventLog | None, facts: MessageFacts, shown: AddressPolicy) -> None:
        self.log = log_
        self.facts = facts
        self.shown = shown

    def delivery_recorded(
        self, report: DeliveryReport, classification: Classification, result: Recorded
    ) -> None:
        if self.log is None:
            return
        row = result.row
        kind = outcome_type(row)
        if kind is None or row is None:
            return
        if result.duplicate:
            if row.get("eventId") != report.envelope.event_id:
                return  # only the report that decided the row may have lost its event
        elif not result.changed or outcome_type(result.previous) is kind:
            return  # the outcome did not change (a later attempt, the same result)
        summary = self.facts.summary(report.message_id, row) if row.get("acceptedAt") else None
        event = for_status_row(report.message_id, row, summary, self.shown)
        if event is None:
            return
        if result.duplicate:  # a redelivery: published unless it went out before
            if not self.log.record(event):
                return
        else:
            self.log.publish(event)
        log.info("outcome event %s: message=%s", kind.value, report.message_id)

    def engagement_recorded(self, report: EngagementReport, result: Recorded) -> None:
        if self.log is None or not report.recipient:
            return
        if report.engagement_type is EngagementType.VIEW:
            kind, first, count = OutcomeType.OPENED, "firstOpenAt", "opens"
        elif report.engagement_type is EngagementType.CLICK:
            kind, first, count = OutcomeType.CLICKED, "firstClickAt", "clicks"
        else:
            return
        previous, row = result.previous or {}, result.row or {}
        if result.duplicate:  # heal a lost event: only the event that made it the first
            if row.get(first) != iso(report.action_at):
                return
        elif int(previous.get(count, 0)) or not int(row.get(count, 0)):
            return  # not the first
        event = for_engagement(
            report.message_id,
            report.recipient,
            kind,
            report.action_at,
            self.facts.summary(report.message_id),
            self.shown,
            report.context,
        )
        if result.duplicate:
            self.log.record(event)
        else:
            self.log.publish(event)

    def publish_pending(self) -> int:
        return 0 if self.log is None else self.log.publish_pending()
