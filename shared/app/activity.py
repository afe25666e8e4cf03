"""Recent activity: the outcome index written as reports are recorded (a `Projection`) and as we
decide outcomes ourselves, and read newest first by `GET /api/emails`; plus resolving the RFC
5322 Message-ID that ACS reports back to our message id."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.core import keys
from shared.core.activity import (
    ACTIVITY_SHARDS,
    MAX_DETAIL,
    Outcome,
    Search,
    activity_view,
    internet_id,
    parse_search,
    time_key,
)
from shared.core.errors import InvalidInput, NotFound, Problem
from shared.core.events import MAX_TEXT_LENGTH
from shared.core.exports import to_csv, wants_csv
from shared.core.paging import encode_token
from shared.core.replies import Document
from shared.core.status import Status

if TYPE_CHECKING:
    from shared.app.deliverability import MessageFacts
    from shared.core.classification import Classification
    from shared.core.events import DeliveryReport, EngagementReport
    from shared.edge.activity import ActivityIndex
    from shared.edge.messages import MessageStore, Recorded

# Our own outcomes as status rows record them (eventId of the fact that decided the row).
_OWN_EVENTS = {"accept": "accept", "send-failed": "send"}
_OWN_STATUSES = frozenset({Status.SUPPRESSED.value, Status.FAILED.value})
# One search reads at most this many (hour × every shard) rounds, then answers with what it
# has and a continuation: a narrow filter over a busy window cannot make one request scan it all.
MAX_ROUNDS = 24
CSV_COLUMNS = (
    "at",
    "messageId",
    "recipient",
    "status",
    "reason",
    "bounceType",
    "sender",
    "tags",
    "acsStatus",
    "detail",
)


class ActivityFeed:
    """Writes the index: told about every delivery report (`Projection`), and about the
    outcomes we decide (`own_outcomes`: suppressed at accept, send failed for good)."""

    def __init__(self, index: ActivityIndex, store: MessageStore, facts: MessageFacts) -> None:
        self.index = index
        self.store = store
        self.facts = facts

    def delivery_recorded(
        self, report: DeliveryReport, classification: Classification, result: Recorded
    ) -> None:
        outcome = Outcome(
            message_id=report.message_id,
            recipient=report.recipient,
            status=_status_of(report.acs_status),
            at=report.attempt_at,
            event_id=report.envelope.event_id,
            source="report",
            sender=report.sender or (result.row or {}).get("sender"),
            acs_status=report.acs_status,
            reason=None if classification.reason is None else str(classification.reason),
            bounce_type=None
            if classification.bounce_type is None
            else str(classification.bounce_type),
            detail=(report.status_message or "")[:MAX_DETAIL] or None,
            tags=self._message_tags(report.message_id, result.row),
        )
        link = None
        if report.internet_message_id and internet_id(report.internet_message_id):
            link = {
                "internetMessageId": report.internet_message_id,
                "messageId": report.message_id,
            }
        self.index.put(outcome.entity(), ACTIVITY_SHARDS, link)

    def engagement_recorded(self, report: EngagementReport, result: Recorded) -> None:
        """Opens and clicks are not outcomes: the message view shows them, the feed does not."""

    def own_outcomes(self, message_id: str) -> None:
        """Index the outcomes we decided for `message_id` (recipients suppressed at accept, or
        all of them when the send failed for good), read back from its status rows."""
        rows = self.store.message_rows(message_id)
        summary = next((r for r in rows if r.get("RowKey") == keys.MESSAGE_ROW), {})
        tags = _json_map(summary.get("tags"))
        for row in rows:
            if not str(row.get("RowKey", "")).startswith(keys.STATUS_PREFIX + keys.SEPARATOR):
                continue
            event_id = str(row.get("eventId") or "")
            source = _OWN_EVENTS.get(event_id.split(":", 1)[0])
            if source is None or row.get("status") not in _OWN_STATUSES or not row.get("at"):
                continue
            classification = _json_map(row.get("classification")) or {}
            outcome = Outcome(
                message_id=message_id,
                recipient=str(row.get("address")),
                status=str(row["status"]),
                at=datetime.fromisoformat(str(row["at"])),
                event_id=event_id,
                source=source,
                sender=row.get("sender") or summary.get("sender"),
                reason=classification.get("reason"),
                bounce_type=classification.get("bounceType"),
                detail=classification.get("explanation") or row.get("statusMessage"),
                tags=tags,
            )
            self.index.put(outcome.entity(), ACTIVITY_SHARDS, None)

    def _message_tags(
        self, message_id: str, status_row: Mapping[str, Any] | None
    ) -> Mapping[str, str] | None:
        """The tags the sender gave our send API; none for mail sent straight through ACS (its
        status row has no `acceptedAt`): no read then, nor for rows our accept copied them to."""
        if not status_row or not status_row.get("acceptedAt"):
            return None
        return _json_map((self.facts.summary(message_id, status_row) or {}).get("tags"))


class Activity:
    """Reads: the activity search and the Message-ID lookup, both on `GET /api/emails`."""

    def __init__(self, index: ActivityIndex) -> None:
        self.index = index

    def emails(
        self, query: Mapping[str, str], accept: str | None, base_url: str = ""
    ) -> dict[str, Any] | Document:
        if "internetMessageId" in query:
            return self.resolve(query.get("internetMessageId") or "", base_url)
        csv = wants_csv(accept)
        search = parse_search(query, datetime.now(UTC), csv=csv)
        rows, cursor = self.search(search)
        token = encode_token({"b": cursor[0], "k": cursor[1]}) if cursor else None
        if not csv:
            return {"emails": [activity_view(r) for r in rows], "continuation": token}
        headers = {"Content-Disposition": 'attachment; filename="email-activity.csv"'}
        if token:
            headers["Link"] = f'<?{_next_query(query, token)}>; rel="next"'
        return Document(
            to_csv(CSV_COLUMNS, [activity_view(r) for r in rows]),
            "text/csv; charset=utf-8",
            headers,
        )

    def search(self, search: Search) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
        """Up to `limit` matching rows newest first, and where the next page starts (None when
        the window is exhausted). The hours come from the directory, newest first, from the
        cursor's on; within an hour, RowKey > the last key handed out, so no token holds
        Table continuations and none can be replayed to read outside the window."""
        start = search.cursor[0] if search.cursor else search.first_bucket()
        hours = self.index.buckets(search.last_bucket(), start)
        # RowKey > time_key(until): at or before `until`; < the key of `since` less 1 ms: at
        # or after `since` (keys are newest first).
        newest = time_key(search.until)
        oldest = f"{int(time_key(search.since)) + 1:013d}"
        found: list[dict[str, Any]] = []
        rounds = 0
        for hour, shards in hours:
            after = search.cursor[1] if search.cursor and hour == search.cursor[0] else newest
            while True:
                if rounds == MAX_ROUNDS:
                    return found, (hour, after)
                rounds += 1
                want = search.limit if search.tag else search.limit - len(found)
                rows, exhausted = self.index.newest(
                    hour, shards, after, oldest, search.server_filter(), want
                )
                for row in rows:
                    after = str(row["RowKey"])
                    if search.matches(row):
                        found.append(row)
                        if len(found) == search.limit:
                            return found, (hour, after)
                if exhausted:
                    break
        return found, None

    def resolve(self, value: str, base_url: str) -> dict[str, Any]:
        text = value.strip()
        problems = []
        if not internet_id(text):
            problems.append(Problem("internetMessageId", "required: the Message-ID ACS reported"))
        elif len(text) > MAX_TEXT_LENGTH or not text.isprintable():
            problems.append(
                Problem("internetMessageId", f"1 to {MAX_TEXT_LENGTH} printable characters")
            )
        if problems:
            raise InvalidInput("Invalid query parameters", problems)
        rows = self.index.messages_for(text)
        if not rows:
            raise NotFound("No report with this Message-ID has been recorded")
        return {
            "internetMessageId": rows[0].get("internetMessageId") or text,
            "messages": [
                {
                    "messageId": r.get("messageId"),
                    "lookupUrl": f"{base_url.rstrip('/')}/api/emails/{r.get('messageId')}",
                }
                for r in rows
            ],
        }


def _status_of(acs_status: str) -> str:
    from shared.core.status import from_acs

    return from_acs(acs_status).value


def _json_map(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _next_query(query: Mapping[str, str], token: str) -> str:
    from urllib.parse import urlencode

    return urlencode(
        {**{k: v for k, v in query.items() if k != "continuation"}, "continuation": token}
    )
