"""Pure per-recipient state transitions: (stored row, new fact) → new row, or None if unchanged.

Rows are plain dicts of Table properties (camelCase) so the store can write them as they are.
Every function here is order-independent by construction: status fields follow the precedence
in `status.py`; times merge by min/max; counters add (each event is applied exactly once: the
store detects a duplicate from the event list in the status row, or from the event's marker row
written in the same transaction as the row); the embedded event list is the longest prefix,
in (at, event id) order, of all the recipient's delivery events that fits the row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from shared.core import keys
from shared.core.events import DeliveryReport, EngagementReport, EngagementType
from shared.core.status import Status, from_acs, precedence

if TYPE_CHECKING:
    from shared.core.classification import Classification

Row = dict[str, Any]

# Distinct clicked URLs kept per recipient; clicks on the rest are counted in `otherClicks`.
MAX_CLICKED_URLS = 50
# Each URL's share of the clickedUrls property (32 K UTF-16 units; JSON with ASCII escapes, so
# its length is what Table Storage counts): 50 × 580 stays under 30,000 whatever the URLs hold.
MAX_URL_JSON_CHARS = 580
MAX_STORED_STATUS_MESSAGE = 4_096

# Properties the store owns (keys, etag, timestamps): ignored when comparing rows.
_STORE_FIELDS = frozenset({"PartitionKey", "RowKey", "updatedAt"})

# Delivery events embedded in the status row: `events` is a JSON list of timeline entries in
# (at, event id) order, so the row is the recipient's timeline and idempotency record and a
# report costs one read and one conditional write. A Table string property holds 32 K UTF-16
# units and json.dumps escapes every non-ASCII character, so characters = units; the cap leaves
# room for the row's other properties well inside the 1 MiB entity limit. Events past the cap
# get their own `t|` marker row (`EVENTS_OVERFLOW` names the first of them).
MAX_EMBEDDED_EVENTS: Final = 16
MAX_EMBEDDED_CHARS: Final = 28_000
EVENTS: Final = "events"
EVENTS_OVERFLOW: Final = "eventsOverflow"
# Differs per delivery of one event (wall clock): kept on marker rows, never embedded, so the
# row stays the same whatever the arrival order.
ARRIVAL_FIELD: Final = "recordedAt"


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing learned about a recipient: an ACS report, or our own accept/send/failure."""

    status: Status
    at: datetime
    event_id: str
    acs_status: str | None = None
    status_message: str | None = None
    classification: Classification | None = None
    mail_server: str | None = None
    internet_message_id: str | None = None
    sender: str | None = None
    accepted_at: datetime | None = None
    sent_at: datetime | None = None


def fact_from_report(report: DeliveryReport, classification: Classification) -> Fact:
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


@dataclass(frozen=True, slots=True)
class ReportDecision:
    """What recording one delivery report takes, decided from the status row just read."""

    duplicate: bool  # the event is recorded already: write nothing
    row: Row | None  # the status row to write; None when it stays as it is
    marker: bool = False  # the event needs its own `t|` row (same transaction as the row)
    evicted: tuple[Row, ...] = ()  # entries pushed out of the row: `t|` rows, same transaction


def timeline_entry(report: DeliveryReport | EngagementReport) -> Row:
    """The compact timeline entry of one report (an item of `events`, or a marker row, to
    which the store adds `recordedAt`)."""
    env = report.envelope
    entry: Row = {
        "eventId": env.event_id,
        "eventType": env.event_type,
        "schema": env.schema.value,
        "eventTime": iso(env.event_time) if env.event_time else None,
    }
    if isinstance(report, DeliveryReport):
        entry |= {
            "kind": "delivery",
            "at": iso(report.attempt_at),
            "acsStatus": report.acs_status,
            "statusMessage": (report.status_message or "")[:MAX_STORED_STATUS_MESSAGE] or None,
            "mailServer": report.mail_server,
        }
    else:
        entry |= {
            "kind": "engagement",
            "at": iso(report.action_at),
            "engagementType": report.engagement_type_raw,
            "context": report.context,
            "userAgent": report.user_agent,
        }
    if report.notes:  # a string: marker rows store the entry as Table properties
        entry["notes"] = json.dumps(list(report.notes))
    return {k: v for k, v in entry.items() if v is not None}


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
    row = _applied(current, fact, address, message_id)
    if current is not None and _same(current, row):
        return None
    return row


def _applied(current: Mapping[str, Any] | None, fact: Fact, address: str, message_id: str) -> Row:
    row: Row = dict(current) if current else {"address": address}
    old = row_precedence(row) if current else None
    at = iso(fact.at)
    if old is None or precedence(fact.status, fact.at, fact.event_id) > old:
        row.update(
            status=fact.status.value,
            at=at,
            eventId=fact.event_id,
            acsStatus=fact.acs_status,
            statusMessage=(fact.status_message or "")[:MAX_STORED_STATUS_MESSAGE] or None,
            classification=(
                json.dumps(fact.classification.to_json()) if fact.classification else None
            ),
            mailServer=fact.mail_server,
            internetMessageId=fact.internet_message_id,
            finalAt=at if _is_final(fact) else None,
        )
    # Facts about the send itself merge whatever their precedence (a late `sent` still counts).
    row["acceptedAt"] = _min_iso(row.get("acceptedAt"), fact.accepted_at)
    row["sentAt"] = _min_iso(row.get("sentAt"), fact.sent_at)
    if not row.get("sender") and fact.sender:
        row["sender"] = fact.sender
    row["latencyMs"] = _latency_ms(row)
    _place_in_index(row, at, message_id)
    return row


def decide_report(
    current: Mapping[str, Any] | None,
    fact: Fact,
    entry: Mapping[str, Any],
    address: str,
    message_id: str,
) -> ReportDecision:
    """Apply a delivery report (`fact`, timeline `entry`) to the status row just read.

    The row keeps the longest prefix, in (at, event id) order, of the recipient's events that
    fits (MAX_EMBEDDED_EVENTS, MAX_EMBEDDED_CHARS), and the sort key of the first event past it
    (`eventsOverflow`). So every event sorting before that key is either in the list (a
    duplicate) or new; every event from that key on lives in a marker row, whose create fails
    (409) on a duplicate. A new event inserted before the key may push the list's tail out:
    those entries become marker rows. Prefix and key depend only on the set of events, so the
    rows are the same whatever the arrival order.
    """
    if current is not None and is_legacy_row(current):
        return ReportDecision(False, apply_fact(current, fact, address, message_id), marker=True)
    key = _sort_key(entry)
    overflow = _overflow_key(current)
    if overflow is not None and key >= overflow:
        if key == overflow:  # the first overflowed event itself: recorded
            return ReportDecision(duplicate=True, row=None)
        return ReportDecision(False, apply_fact(current, fact, address, message_id), marker=True)
    events = embedded_events(current)
    event_id = entry.get("eventId")
    if any(e.get("eventId") == event_id for e in events):
        return ReportDecision(duplicate=True, row=None)
    item = dict(entry)
    item.pop(ARRIVAL_FIELD, None)
    kept = sorted([*events, item], key=_sort_key)
    pushed: list[Row] = []
    text = _dumps(kept)
    while kept and (len(kept) > MAX_EMBEDDED_EVENTS or len(text) > MAX_EMBEDDED_CHARS):
        pushed.append(kept.pop())
        text = _dumps(kept)
    new = _applied(current, fact, address, message_id)  # changed: the list or the overflow
    new[EVENTS] = text
    if pushed:
        first = _sort_key(pushed[-1])
        new[EVENTS_OVERFLOW] = json.dumps(list(min(first, overflow) if overflow else first))
    return ReportDecision(
        duplicate=False,
        row=new,
        marker=any(p is item for p in pushed),
        evicted=tuple(p for p in pushed if p is not item),
    )


def is_legacy_row(row: Mapping[str, Any]) -> bool:
    """A row that took ACS reports before events were embedded: its events are marker rows
    only, so it keeps that layout (a redelivered old event then still fails on its marker).
    Rows written since always carry `events` once a report was applied; our own facts never
    set `acsStatus`. (An old row whose winner is our own send failure reads as new: an old
    report redelivered there is listed again, and the view, deduplicating by event id, shows
    it once.)"""
    return EVENTS not in row and EVENTS_OVERFLOW not in row and bool(row.get("acsStatus"))


def embedded_events(row: Mapping[str, Any] | None) -> list[Row]:
    raw = row.get(EVENTS) if row else None
    if not raw:
        return []
    events = json.loads(raw)
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []


def index_may_be_missing(row: Mapping[str, Any], fact: Fact) -> bool:
    """Whether a redelivered `fact` may be the one that placed the message in the address's
    history, so its index write may have been lost to a crash after the row write: re-write it.
    When our accept placed it (the outbox writes that entry), or another event did (its own
    redelivery heals), a duplicate costs no write at all."""
    return not row.get("acceptedAt") and row.get("indexAt") == iso(fact.at)


def _sort_key(entry: Mapping[str, Any]) -> tuple[str, str]:
    return (str(entry.get("at") or ""), str(entry.get("eventId") or ""))


def _overflow_key(row: Mapping[str, Any] | None) -> tuple[str, str] | None:
    raw = row.get(EVENTS_OVERFLOW) if row else None
    if not raw:
        return None
    at, event_id = json.loads(raw)
    return (str(at), str(event_id))


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # ensure_ascii: characters = UTF-16 units


def _dumps(events: list[Row]) -> str:
    return _COMPACT.encode(events)


def _place_in_index(row: Row, at: str, message_id: str) -> None:
    """Where the message sorts in the address's history: when we accepted it, if we did;
    otherwise the earliest fact seen. A min, so the same whatever the order of events."""
    basis = row.get("acceptedAt") or min(filter(None, [row.get("indexAt"), at]))
    if basis != row.get("indexAt"):
        when = datetime.fromisoformat(basis)
        row["indexAt"] = basis
        row["indexRk"] = keys.newest_first(int(when.timestamp() * 1000), message_id)


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
    _place_engagement(row, at, report)
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


# An engagement row's place in the address's history, kept apart from the status rows' places:
# RecipientIndex partition `<address key>|g` (an address key holds no literal `|`), RowKey
# `indexRk` = newest-first earliest engagement | message. Erasure and retention find an
# engagement-only recipient by it; the history lists the status rows' partition only. Apart, a
# status row moving its entry can never delete an engagement row's (their keys may be equal).
ENGAGEMENT_INDEX_SUFFIX: Final = f"{keys.SEPARATOR}g"


def engagement_index_partition(addr_key: str) -> str:
    return f"{addr_key}{ENGAGEMENT_INDEX_SUFFIX}"


def _place_engagement(row: Row, at: str, report: EngagementReport) -> None:
    """The earliest engagement seen (a min: the same whatever the order of events) places the
    recipient in the engagement index and files the message for retention. An event naming no
    recipient files the message only (no address to index)."""
    basis = min(filter(None, [row.get("indexAt"), at]))
    if basis == row.get("indexAt"):
        return
    row["indexAt"] = basis
    if report.recipient:
        when = datetime.fromisoformat(basis)
        row["indexRk"] = keys.newest_first(int(when.timestamp() * 1000), report.message_id)


@dataclass(frozen=True, slots=True)
class EngagementPlacement:
    """The index and retention writes one engagement row write takes (usually none)."""

    index_rk: str | None = None  # write this entry (first engagement, or an earlier one)
    stale_rk: str | None = None  # then drop this one, once the row says `index_rk`
    expiry_at: datetime | None = None  # file the message's retention entry under this day

    def __bool__(self) -> bool:
        return bool(self.index_rk or self.expiry_at)


def engagement_placement(
    current: Mapping[str, Any] | None, row: Mapping[str, Any]
) -> EngagementPlacement:
    """What writing `row` over `current` moves: nothing on a later click or open (the common
    case), an index entry when the earliest engagement moved, an Expiry entry when its day did.
    The entry of the later day is left: an earlier one makes the purge look sooner, and it may
    be the status rows' entry too (a message's Expiry entries only say when to look)."""
    before = current or {}
    new_rk, old_rk = row.get("indexRk"), before.get("indexRk")
    at, old_at = parse_iso(row.get("indexAt")), parse_iso(before.get("indexAt"))
    moved_day = at is not None and (old_at is None or day_of(at) != day_of(old_at))
    return EngagementPlacement(
        index_rk=new_rk if new_rk and new_rk != old_rk else None,
        stale_rk=old_rk if new_rk and old_rk and new_rk != old_rk else None,
        expiry_at=at if moved_day else None,
    )


def day_of(at: datetime) -> str:
    """The UTC day of `at` (`YYYY-MM-DD`): retention's day keys (`core.privacy`)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d")


def engagement_placed_by(row: Mapping[str, Any], report: EngagementReport) -> bool:
    """Whether a redelivered `report` is the engagement that placed the row (its index and
    Expiry writes may have been lost to a crash after the row write: re-write them)."""
    return row.get("indexAt") == iso(report.action_at)


def _count_url(row: Row, url: str) -> None:
    """Keep the MAX_CLICKED_URLS lexicographically smallest URLs exactly; count the rest.

    A URL dropped once can never re-enter (the smaller ones that pushed it out never leave),
    so the final set and every kept count are the same whatever the event order.
    """
    urls: dict[str, int] = json.loads(row.get("clickedUrls") or "{}")
    url = _url_key(url)
    urls[url] = urls.get(url, 0) + 1
    while len(urls) > MAX_CLICKED_URLS:
        dropped = max(urls)
        row["otherClicks"] = int(row.get("otherClicks", 0)) + urls.pop(dropped)
    row["clickedUrls"] = json.dumps(dict(sorted(urls.items())))


def _url_key(url: str) -> str:
    """The URL as counted: cut (marked with …) so its JSON form fits MAX_URL_JSON_CHARS."""
    if len(json.dumps(url)) <= MAX_URL_JSON_CHARS:
        return url
    cut = url[: MAX_URL_JSON_CHARS - 8]
    while len(json.dumps(cut + "…")) > MAX_URL_JSON_CHARS:
        cut = cut[: -max(1, (len(json.dumps(cut + "…")) - MAX_URL_JSON_CHARS) // 6)]
    return cut + "…"
