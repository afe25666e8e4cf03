"""Stored rows → the camelCase JSON the lookup API returns (pure; documented in openapi.yaml)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from shared.core import keys
from shared.core.state import EVENTS, parse_iso
from shared.core.status import Status

_CLASSIFICATION_FIELDS = (
    "bounceType",
    "retryable",
    "suppress",
    "reason",
    "smtpCode",
    "enhancedCode",
    "explanation",
    "action",
    "anymail",
    "ses",
)


# What to say about recipients that have no ACS outcome yet.
_PENDING_EXPLANATION = {
    Status.ACCEPTED.value: (
        "Accepted by this service and queued; not yet handed to Azure Communication Services.",
        "Nothing to do yet. If it stays here for long, check the send queue and the ACS quota.",
    ),
    Status.SENT.value: (
        "Azure Communication Services accepted the message; no delivery report yet.",
        "Nothing to do yet: delivery reports usually arrive within seconds to minutes.",
    ),
}


def _json_field(row: Mapping[str, Any], name: str) -> Any:
    raw = row.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _classification(row: Mapping[str, Any] | None) -> dict[str, Any]:
    stored = _json_field(row, "classification") if row else None
    if stored:
        return {name: stored.get(name) for name in _CLASSIFICATION_FIELDS}
    out: dict[str, Any] = dict.fromkeys(_CLASSIFICATION_FIELDS)
    status = row.get("status") if row else None
    if status in _PENDING_EXPLANATION:
        out["explanation"], out["action"] = _PENDING_EXPLANATION[status]
        out["retryable"] = False
        out["suppress"] = False
    return out


def engagement_view(row: Mapping[str, Any] | None) -> dict[str, Any]:
    row = row or {}
    clicked = _json_field(row, "clickedUrls") or {}
    return {
        "opens": int(row.get("opens", 0)),
        "clicks": int(row.get("clicks", 0)),
        "firstOpenAt": row.get("firstOpenAt"),
        "lastOpenAt": row.get("lastOpenAt"),
        "firstClickAt": row.get("firstClickAt"),
        "lastClickAt": row.get("lastClickAt"),
        "lastUserAgent": row.get("lastUserAgent"),
        "clickedUrls": [{"url": u, "clicks": n} for u, n in clicked.items()],
        "otherClicks": int(row.get("otherClicks", 0)),
    }


def _timeline_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    entry = {
        "eventId": row.get("eventId"),
        "kind": row.get("kind"),
        "at": row.get("at"),
        "eventType": row.get("eventType"),
        "recordedAt": row.get("recordedAt"),
        "notes": _notes(row.get("notes")),
    }
    if row.get("kind") == "delivery":
        entry |= {
            "acsStatus": row.get("acsStatus"),
            "statusMessage": row.get("statusMessage"),
            "mailServer": row.get("mailServer"),
        }
    else:
        entry |= {
            "engagementType": row.get("engagementType"),
            "context": row.get("context"),
            "userAgent": row.get("userAgent"),
        }
    return entry


def _events(
    status_row: Mapping[str, Any], markers: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Delivery events embedded in the status row plus marker rows (engagement, overflow, rows
    from before events were embedded), once per event id, oldest first."""
    embedded = _json_field(status_row, EVENTS)
    merged: dict[Any, Mapping[str, Any]] = {}
    unnamed: list[Mapping[str, Any]] = []
    for event in [*markers, *(embedded if isinstance(embedded, list) else [])]:
        if not isinstance(event, Mapping):
            continue
        if event.get("eventId") is None:
            unnamed.append(event)
        else:  # a marker row wins: it also has `recordedAt`
            merged.setdefault(event["eventId"], event)
    events = [*merged.values(), *unnamed]
    return sorted(events, key=lambda e: (str(e.get("at", "")), str(e.get("eventId", ""))))


def recipient_view(
    address: str,
    status_row: Mapping[str, Any] | None,
    engagement_row: Mapping[str, Any] | None,
    timeline: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    row = status_row or {}
    status = row.get("status")
    events = _events(row, timeline)
    return {
        "address": row.get("address") or address,
        "status": status,
        "acsStatus": row.get("acsStatus"),
        "statusMessage": row.get("statusMessage"),
        **_classification(status_row),
        "acceptedAt": row.get("acceptedAt"),
        "sentAt": row.get("sentAt"),
        "finalAt": row.get("finalAt"),
        "latencyMs": row.get("latencyMs"),
        "mailServer": row.get("mailServer"),
        "internetMessageId": row.get("internetMessageId"),
        "engagement": engagement_view(engagement_row),
        "timeline": [_timeline_entry(e) for e in events],
    }


def message_view(message_id: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The whole message from its partition's rows; None when nothing is known about it."""
    summary: Mapping[str, Any] = {}
    statuses: dict[str, Mapping[str, Any]] = {}
    engagement: dict[str, Mapping[str, Any]] = {}
    timelines: dict[str, list[Mapping[str, Any]]] = {}
    seen = False
    for row in rows:
        seen = True
        rk = str(row["RowKey"])
        kind, _, rest = rk.partition(keys.SEPARATOR)
        if rk == keys.MESSAGE_ROW:
            summary = row
        elif kind == keys.STATUS_PREFIX:
            statuses[rest] = row
        elif kind == keys.ENGAGEMENT_PREFIX:
            engagement[rest] = row
        elif kind == keys.TIMELINE_PREFIX:
            addr = rest.rsplit(keys.SEPARATOR, 1)[0]
            timelines.setdefault(addr, []).append(row)
    if not seen:
        return None
    # Older engagement payloads name no recipient: with one recipient, they are surely theirs.
    addrs = sorted(set(statuses) | (set(engagement) - {keys.MESSAGE_LEVEL}))
    message_level = engagement.get(keys.MESSAGE_LEVEL)
    if message_level is not None and len(addrs) == 1:
        engagement[addrs[0]] = _merge_engagement(engagement.get(addrs[0]), message_level)
        timelines.setdefault(addrs[0], []).extend(timelines.pop(keys.MESSAGE_LEVEL, []))
        message_level = None
    recipients = [
        recipient_view(
            keys.decode(addr),
            statuses.get(addr),
            engagement.get(addr),
            timelines.get(addr, []),
        )
        for addr in addrs
    ]
    senders = [r.get("sender") for r in statuses.values() if r.get("sender")]
    return {
        "messageId": message_id,
        "sender": summary.get("sender") or (senders[0] if senders else None),
        "acceptedAt": summary.get("acceptedAt"),
        "sendState": summary.get("sendState"),
        "tags": _json_field(summary, "tags"),
        "metadata": _json_field(summary, "metadata"),
        "recipientCount": len(recipients),
        "recipients": recipients,
        "unattributedEngagement": (
            engagement_view(message_level) if message_level is not None else None
        ),
    }


def _merge_engagement(row: Mapping[str, Any] | None, extra: Mapping[str, Any]) -> Mapping[str, Any]:
    if row is None:
        return extra
    merged = dict(row)
    for name in ("opens", "clicks", "otherClicks", "otherEvents"):
        merged[name] = int(row.get(name, 0)) + int(extra.get(name, 0))
    for name in ("firstOpenAt", "firstClickAt"):
        merged[name] = min(filter(None, [row.get(name), extra.get(name)]), default=None)
    for name in ("lastOpenAt", "lastClickAt"):
        merged[name] = max(filter(None, [row.get(name), extra.get(name)]), default=None)
    urls = _json_field(row, "clickedUrls") or {}
    for url, n in (_json_field(extra, "clickedUrls") or {}).items():
        urls[url] = urls.get(url, 0) + n
    merged["clickedUrls"] = json.dumps(urls)
    if str(extra.get("userAgentMark", "")) > str(row.get("userAgentMark", "")):
        merged["lastUserAgent"] = extra.get("lastUserAgent")
    return merged


def history_view(
    address: str, items: Iterable[Mapping[str, Any]], continuation: str | None
) -> dict[str, Any]:
    out = []
    for item in items:
        row = item.get("statusRow") or {}
        classification = _classification(item.get("statusRow"))
        out.append(
            {
                "messageId": item.get("messageId"),
                "at": item.get("at"),
                "sender": item.get("sender") or row.get("sender"),
                "status": row.get("status"),
                "reason": classification["reason"],
                "bounceType": classification["bounceType"],
                "explanation": classification["explanation"],
                "finalAt": row.get("finalAt"),
                "latencyMs": row.get("latencyMs"),
            }
        )
    return {"address": address, "emails": out, "continuation": continuation}


def state_view(
    address: str, row: dict[str, Any] | None, audit: list[dict[str, Any]]
) -> dict[str, Any]:
    row = row or {}
    expires = parse_iso(row.get("expiresAt"))
    active = bool(row.get("active")) and (expires is None or expires > datetime.now(UTC))
    return {
        "address": row.get("address") or address,
        "status": "suppressed" if active else "active",
        "reason": row.get("reason"),
        "origin": row.get("origin"),
        "firstSeen": row.get("firstSeen"),
        "lastSeen": row.get("lastSeen"),
        "hits": int(row.get("hits", 0)),
        "expiresAt": row.get("expiresAt"),
        "reactivatedAt": row.get("reactivatedAt"),
        "audit": [
            {
                "action": a.get("action"),
                "reason": a.get("reason"),
                "origin": a.get("origin"),
                "at": a.get("at"),
                "recordedAt": a.get("recordedAt"),
                "changedState": a.get("changedState"),
                "detail": json.loads(a["detail"]) if a.get("detail") else None,
            }
            for a in audit
        ],
    }


def alert_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row.get("alertId"),
        "type": row.get("type"),
        "time": row.get("time"),
        "raisedAt": row.get("recordedAt"),
        "subject": row.get("subject"),
        "messageId": row.get("messageId"),
        "recipientDomain": row.get("recipientDomain"),
        "publishState": row.get("publishState"),
        "publishedAt": row.get("publishedAt"),
        "attempts": row.get("attempts"),
        "data": (_json_field(row, "event") or {}).get("data"),
    }


def _notes(value: Any) -> list[str] | None:
    """What was repaired to keep a report (a list in embedded events, JSON on marker rows)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    return [str(n) for n in value] if isinstance(value, list) and value else None
