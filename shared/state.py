"""Pure per-recipient state transitions: (stored row, new fact) → new row, or None if unchanged.

Rows are plain dicts of Table properties (camelCase) so the store can write them as they are.
Every function here is order-independent by construction: status fields follow the precedence
in `status.py`; times merge by min/max; counters add (each event is applied exactly once,
because the store writes the event's marker row in the same transaction).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import keys
from .events import DeliveryReport, EngagementReport, EngagementType
from .status import Status, from_acs, precedence

Row = dict[str, Any]

# Distinct clicked URLs kept per recipient; clicks on the rest are counted in `otherClicks`.
MAX_CLICKED_URLS = 50
MAX_STORED_STATUS_MESSAGE = 4_096

# Properties the store owns (keys, etag, timestamps): ignored when comparing rows.
_STORE_FIELDS = frozenset({"PartitionKey", "RowKey", "updatedAt"})


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing learned about a recipient: an ACS report, or our own accept/send/failure."""

    status: Status
    at: datetime
    event_id: str
    acs_status: str | None = None
    status_message: str | None = None
    classification: Mapping[str, Any] | None = None
    mail_server: str | None = None
    internet_message_id: str | None = None
    sender: str | None = None
    accepted_at: datetime | None = None
    sent_at: datetime | None = None


def fact_from_report(report: DeliveryReport, classification: Mapping[str, Any]) -> Fact:
    return Fact(
        status=from_acs(report.acs_status),
        at=report.attempt_at,
        event_id=report.envelope.event_id,
        acs_status=report.acs_status,
        status_message=report.status_message,
        classification=classification,
        mail_server=report.mail_server,
        internet_message_id=report.internet_message_id,
        sender=report.sender,
    )


def iso(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def parse_iso(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


def _min_iso(a: Any, b: datetime | None) -> Any:
    if b is None:
        return a
    if not a:
        return iso(b)
    return min(a, iso(b))


def row_precedence(row: Mapping[str, Any]) -> tuple[int, str, int, str] | None:
    at = parse_iso(row.get("at"))
    status = row.get("status")
    if at is None or not status:
        return None
    return precedence(Status(status), at, str(row.get("eventId", "")))


def apply_fact(
    current: Mapping[str, Any] | None, fact: Fact, address: str, message_id: str
) -> Row | None:
    """The recipient's status row after `fact`; None when the stored row already says it all."""
    row: Row = dict(current) if current else {"address": address}
    old = row_precedence(row) if current else None
    if old is None or precedence(fact.status, fact.at, fact.event_id) > old:
        row.update(
            status=fact.status.value,
            at=iso(fact.at),
            eventId=fact.event_id,
            acsStatus=fact.acs_status,
            statusMessage=(fact.status_message or "")[:MAX_STORED_STATUS_MESSAGE] or None,
            classification=json.dumps(fact.classification) if fact.classification else None,
            mailServer=fact.mail_server,
            internetMessageId=fact.internet_message_id,
            finalAt=iso(fact.at) if _is_final(fact) else None,
        )
    # Facts about the send itself merge whatever their precedence (a late `sent` still counts).
    row["acceptedAt"] = _min_iso(row.get("acceptedAt"), fact.accepted_at)
    row["sentAt"] = _min_iso(row.get("sentAt"), fact.sent_at)
    if not row.get("sender") and fact.sender:
        row["sender"] = fact.sender
    row["latencyMs"] = _latency_ms(row)
    _place_in_index(row, fact, message_id)
    if current is not None and _same(current, row):
        return None
    return row


def _place_in_index(row: Row, fact: Fact, message_id: str) -> None:
    """Where the message sorts in the address's history: when we accepted it, if we did;
    otherwise the earliest fact seen. A min, so the same whatever the order of events."""
    basis = row.get("acceptedAt") or min(filter(None, [row.get("indexAt"), iso(fact.at)]))
    if basis != row.get("indexAt"):
        at = datetime.fromisoformat(basis)
        row["indexAt"] = basis
        row["indexRk"] = keys.newest_first(int(at.timestamp() * 1000), message_id)


def _is_final(fact: Fact) -> bool:
    return fact.status not in {Status.ACCEPTED, Status.SENT}


def _latency_ms(row: Mapping[str, Any]) -> int | None:
    final = parse_iso(row.get("finalAt"))
    start = parse_iso(row.get("sentAt")) or parse_iso(row.get("acceptedAt"))
    if final is None or start is None:
        return None
    return max(0, round((final - start).total_seconds() * 1000))


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = (set(a) | set(b)) - _STORE_FIELDS
    return all(a.get(k) == b.get(k) for k in keys)


def apply_engagement(current: Mapping[str, Any] | None, report: EngagementReport) -> Row:
    """Engagement counters after one (new) engagement event; never touches delivery status."""
    row: Row = dict(current) if current else {"opens": 0, "clicks": 0, "otherEvents": 0}
    at = iso(report.action_at)
    if report.engagement_type is EngagementType.VIEW:
        row["opens"] = int(row.get("opens", 0)) + 1
        row["firstOpenAt"] = min(filter(None, [row.get("firstOpenAt"), at]))
        row["lastOpenAt"] = max(filter(None, [row.get("lastOpenAt"), at]))
    elif report.engagement_type is EngagementType.CLICK:
        row["clicks"] = int(row.get("clicks", 0)) + 1
        row["firstClickAt"] = min(filter(None, [row.get("firstClickAt"), at]))
        row["lastClickAt"] = max(filter(None, [row.get("lastClickAt"), at]))
        if report.context:
            _count_url(row, report.context)
    else:
        row["otherEvents"] = int(row.get("otherEvents", 0)) + 1
    if report.user_agent:
        mark = f"{at}|{report.envelope.event_id}"
        if mark > str(row.get("userAgentMark", "")):
            row["lastUserAgent"] = report.user_agent
            row["userAgentMark"] = mark
    return row


def _count_url(row: Row, url: str) -> None:
    """Keep the MAX_CLICKED_URLS lexicographically smallest URLs exactly; count the rest.

    A URL dropped once can never re-enter (the smaller ones that pushed it out never leave),
    so the final set and every kept count are the same whatever the event order.
    """
    urls: dict[str, int] = json.loads(row.get("clickedUrls") or "{}")
    urls[url] = urls.get(url, 0) + 1
    while len(urls) > MAX_CLICKED_URLS:
        dropped = max(urls)
        row["otherClicks"] = int(row.get("otherClicks", 0)) + urls.pop(dropped)
    row["clickedUrls"] = json.dumps(dict(sorted(urls.items())))
