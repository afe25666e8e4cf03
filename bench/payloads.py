"""ACS delivery-report events and send requests, shaped as ACS and our API clients send them.

The event shape is the one tests/factories.py builds (copied, not imported: the bench does not
depend on the test tree), with times near "now" so reports land after the accepted rows.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.core import message_ids

TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.Communication/communicationServices/acs-bench"
)
SENDER = "DoNotReply@sandbox.test"
DELIVERY_REPORT = "Microsoft.Communication.EmailDeliveryReportReceived"
_serial = itertools.count()  # keeps queue ids unique across calls

# Roughly what a healthy sender sees: mostly Delivered, a few of each failure family. Accepting
# servers put a queue id in their reply (Gmail, Outlook.com, Postfix below), so Delivered texts
# are unique per message and miss the classifier's text cache, as they do in production;
# failure texts repeat and hit it.
DELIVERED_TEXTS = (
    "250 2.0.0 OK  1732{n:06d} d2e1a72fcca58-6c1a2b{n:x}.1 - gsmtp",
    "250 2.6.0 <{n:x}@bench.example> [InternalId=88{n:08d}] Queued mail for delivery",
    "250 2.0.0 Ok: queued as 4Xb{n:07X}",
    "250 2.0.0 OK  1732{n:06d} a1b2c3d4e5f6-{n:x}.2 - gsmtp",
    "250 2.0.0 OK",
    "250 2.6.0 <{n:x}@bench.example> [InternalId=99{n:08d}] Queued mail for delivery",
)
FAILURES = (
    ("Bounced", "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown"),
    ("Failed", "452 4.2.2 The email account that you tried to reach is over quota"),
    ("Suppressed", None),
    ("FilteredSpam", "554 5.7.1 Message rejected as spam"),
)
# A healthy sender's mix: 1 report in FAILURE_EVERY is a failure (4 %), cycling through the
# kinds above. Failures cost more than a delivery (suppression list, alerts, rate counters,
# soft-bounce streak); bench/pipeline_bench.py also measures a failures-only run.
FAILURE_EVERY = 25
MIX_LABEL = f"{100 - 100 // FAILURE_EVERY}% delivered, {100 // FAILURE_EVERY}% failures"


def delivery_event(
    message_id: str,
    recipient: str,
    status: str = "Delivered",
    status_message: str | None = "250 2.0.0 OK",
    at: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    when = at or datetime.now(UTC)
    data: dict[str, Any] = {
        "sender": SENDER,
        "recipient": recipient,
        "messageId": message_id,
        "status": status,
        "deliveryAttemptTimestamp": when.isoformat(),
    }
    if status_message:
        data["deliveryStatusDetails"] = {"statusMessage": status_message}
    return {
        "id": event_id or str(uuid.uuid4()),
        "topic": TOPIC,
        "subject": f"sender/{SENDER}/message/{message_id}",
        "eventType": DELIVERY_REPORT,
        "eventTime": (when + timedelta(seconds=1)).isoformat(),
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "data": data,
    }


def mixed_events(
    targets: list[tuple[str, str]], at: datetime, failure_every: int = FAILURE_EVERY
) -> list[dict[str, Any]]:
    """One report per (message id, recipient): mostly delivered, every `failure_every`-th a
    failure (1 = failures only)."""
    events = []
    for i, (mid, addr) in enumerate(targets):
        if i % failure_every == failure_every - 1:
            status, text = FAILURES[(i // failure_every) % len(FAILURES)]
        else:
            status, text = "Delivered", DELIVERED_TEXTS[i % len(DELIVERED_TEXTS)]
        n = next(_serial)
        message = text.format(n=n) if text else None
        events.append(delivery_event(mid, addr, status, message, at=at))
    return events


def recipients(count: int, tag: str, key: bytes | None = None) -> list[tuple[str, str]]:
    """Fresh (message id, recipient) pairs, one recipient per message; with `key` (the app's
    ADDRESS_HASH_KEY) the ids are ones our accept mints, else foreign ids (first sight)."""
    return [
        (message_ids.new_id(key) if key else str(uuid.uuid4()), f"{tag}{n}@bench.example")
        for n in range(count)
    ]


def send_request(n: int, count: int = 1) -> dict[str, Any]:
    """A `POST /api/emails` body to `count` recipients (the app fills in the default sender)."""
    return {
        "to": [{"address": f"user{n}-{i}@bench.example"} for i in range(count)],
        "subject": f"Benchmark message {n}",
        "plainText": "Hello from the benchmark.",
    }
