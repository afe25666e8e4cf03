"""The timers' use cases: publish pending alerts, judge sender rates, and raise `Delivery.Stuck`
for messages ACS accepted whose final report never came."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.core import keys
from shared.core.alerts import Alert, for_stuck_delivery
from shared.core.status import Status

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.core.settings import Settings
    from shared.edge.alert_log import AlertLog
    from shared.edge.inflight import InFlight
    from shared.edge.messages import MessageStore
    from shared.edge.senders import SenderHealth

log = logging.getLogger(__name__)


def health(ping: Callable[[], None]) -> dict[str, str]:
    """200 when storage answers; Transient (→ 503) when it does not."""
    ping()
    return {"status": "ok", "storage": "ok"}


class Monitoring:
    def __init__(
        self,
        settings: Settings,
        store: MessageStore,
        in_flight: InFlight,
        alerts: AlertLog,
        senders: SenderHealth,
    ) -> None:
        self.store = store
        self.in_flight = in_flight
        self.alerts = alerts
        self.senders = senders
        self.shown = settings.address_policy()

    def publish_pending_alerts(self) -> int:
        return self.alerts.publish_pending()

    def evaluate_sender_rates(self) -> list[Alert]:
        return self.senders.evaluate_all()

    def detect_stuck(self, now: datetime | None = None) -> list[Alert]:
        """Check every watched message that is due, once; returns the alerts raised. The alert
        id is the message id's, so a run that crashed before `done` raises it again, a no-op."""
        now = now or datetime.now(UTC)
        raised = []
        for row in self.in_flight.due(now):
            alert = self._stuck(row, now)
            if alert is not None:
                self.alerts.raise_alert(alert)
                raised.append(alert)
                log.warning("delivery stuck: message=%s", row["messageId"])
            self.in_flight.done(row)
        return raised

    def _stuck(self, row: Any, now: datetime) -> Alert | None:
        message_id = str(row["messageId"])
        stuck = [
            str(r.get("address") or keys.decode(r["RowKey"][2:]))
            for r in self.store.message_rows(message_id)
            if str(r.get("RowKey", "")).startswith(f"{keys.STATUS_PREFIX}{keys.SEPARATOR}")
            and r.get("status") == Status.SENT.value
        ]
        if not stuck:
            return None
        return for_stuck_delivery(
            message_id=message_id,
            sender=row.get("sender"),
            recipients=sorted(stuck),
            sent_at=row.get("sentAt"),
            minutes=int(row.get("afterMinutes", 0)),
            at=now,
            shown=self.shown,
        )
