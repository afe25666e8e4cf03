"""Build realistic ACS events for tests (envelopes as ACS sends them, varied by the caller)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.Communication/communicationServices/acs-test"
)
SENDER = "DoNotReply@mail.contoso.com"
# Yesterday 10:00 UTC: recent, like real reports (alert history and retries look back days).
BASE = (datetime.now(UTC) - timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)

STATUS_MESSAGES = {
    "Delivered": "250 2.0.0 OK",
    "Bounced": "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown",
    "Failed": "452 4.2.2 The email account that you tried to reach is over quota",
    "Suppressed": None,
    "Quarantined": "Quarantined",
    "FilteredSpam": "554 5.7.1 Message rejected as spam",
    "Expanded": None,
}


def delivery_event(
    message_id: str,
    recipient: str,
    status: str = "Delivered",
    seconds: float = 0.0,
    event_id: str | None = None,
    status_message: str | None = None,
    cloud: bool = False,
    sender: str = SENDER,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sender": sender,
        "recipient": recipient,
        "messageId": message_id,
        "status": status,
        "deliveryAttemptTimestamp": (BASE + timedelta(seconds=seconds)).isoformat(),
    }
    message = status_message if status_message is not None else STATUS_MESSAGES.get(status)
    if message:
        data["deliveryStatusDetails"] = {"statusMessage": message}
    subject = f"sender/{sender}/message/{message_id}"
    eid = event_id or str(uuid.uuid4())
    if cloud:
        return {
            "id": eid,
            "source": TOPIC,
            "subject": subject,
            "type": "Microsoft.Communication.EmailDeliveryReportReceived",
            "time": (BASE + timedelta(seconds=seconds + 1)).isoformat(),
            "specversion": "1.0",
            "data": data,
        }
    return {
        "id": eid,
        "topic": TOPIC,
        "subject": subject,
        "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
        "eventTime": (BASE + timedelta(seconds=seconds + 1)).isoformat(),
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "data": data,
    }


def engagement_event(
    message_id: str,
    recipient: str | None,
    kind: str = "view",
    seconds: float = 60.0,
    url: str = "",
    user_agent: str = "Mozilla/5.0",
    event_id: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sender": SENDER,
        "messageId": message_id,
        "userActionTimestamp": (BASE + timedelta(seconds=seconds)).isoformat(),
        "engagementContext": url,
        "userAgent": user_agent,
        "engagementType": kind,
    }
    if recipient:
        data["recipient"] = recipient
    return {
        "id": event_id or str(uuid.uuid4()),
        "topic": TOPIC,
        "subject": f"sender/{SENDER}/message/{message_id}",
        "eventType": "Microsoft.Communication.EmailEngagementTrackingReportReceived",
        "eventTime": (BASE + timedelta(seconds=seconds)).isoformat(),
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "data": data,
    }


def record_event(raw: Any) -> Any:
    """Record one event as the Event Grid trigger does (the app's wiring, current settings)."""
    from shared.app import wiring

    return wiring.reports().record(raw)
