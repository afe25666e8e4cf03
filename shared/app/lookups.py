"""Support's questions: one message, one address's history, the alerts raised, and what a
bounce text means. Each reads the request's parameters, asks the edge, and shapes a view."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.core import views
from shared.core.alerts import (
    HISTORY_DAYS,
    HISTORY_DEFAULT_DAYS,
    RAISE_SLACK_DAYS,
    AlertType,
    alert_type_named,
)
from shared.core.classification import KNOWN_ACS_STATUSES, classify
from shared.core.errors import InvalidInput, NotFound, Problem
from shared.core.events import MAX_ADDRESS_LENGTH, MAX_ID_LENGTH
from shared.core.paging import NOT_OURS, encode_token, is_table_token
from shared.core.params import Params

if TYPE_CHECKING:
    from shared.edge.alert_log import AlertLog
    from shared.edge.messages import MessageStore

MAX_EXPLAIN_TEXT = 16_384


class Lookups:
    def __init__(self, store: MessageStore, alerts: AlertLog) -> None:
        self.store = store
        self.alerts = alerts

    def message(self, message_id: str) -> dict[str, Any]:
        message_id = message_id.strip()
        if not message_id or len(message_id) > MAX_ID_LENGTH:
            raise InvalidInput("Invalid message id", [Problem("messageId", "1 to 256 characters")])
        view = views.message_view(message_id, self.store.message_rows(message_id))
        if view is None:
            raise NotFound(f"No message with id {message_id!r} is known")
        return view

    def recipient_history(self, address: str, query: Mapping[str, str]) -> dict[str, Any]:
        params = Params(query)
        limit = params.limit(20)
        token = params.table_token()
        address = address.strip()
        if "@" not in address or len(address) > MAX_ADDRESS_LENGTH:
            params.problems.append(Problem("address", "must be an email address"))
        params.check()
        items, next_token = self.store.recipient_history(address, limit, token)
        return views.history_view(address, items, encode_token(next_token) if next_token else None)

    def alerts_raised(self, query: Mapping[str, str]) -> dict[str, Any]:
        """Alerts raised since `since`, one UTC day (partition, the day of their cause) after
        another, newest first, back to `since` less RAISE_SLACK_DAYS. A continuation names a
        day inside that window, so no token can make one request read more than
        HISTORY_DAYS + RAISE_SLACK_DAYS partitions."""
        params = Params(query)
        limit = params.limit(50)
        now = datetime.now(UTC)
        since = params.time("since") or now - timedelta(days=HISTORY_DEFAULT_DAYS)
        if since < now - timedelta(days=HISTORY_DAYS):
            params.problems.append(Problem("since", f"at most {HISTORY_DAYS} days ago"))
        alert_type = None
        if name := params.text("type"):
            kind = alert_type_named(name)
            if kind is None:
                short = ", ".join(t.value.rsplit(".", 1)[1] for t in AlertType)
                params.problems.append(Problem("type", f"one of {short} (or the full type)"))
            else:
                alert_type = kind.value
        day, token = now.strftime("%Y-%m-%d"), None
        oldest = (since - timedelta(days=RAISE_SLACK_DAYS)).strftime("%Y-%m-%d")
        cursor = params.token()
        if cursor is not None:
            day, token = _alert_cursor(cursor, oldest, day, params)
        params.check()
        items: list[dict[str, Any]] = []
        next_cursor = None
        while day >= oldest and len(items) < limit:
            page, token = self.alerts.day_page(day, since, alert_type, limit - len(items), token)
            items += page
            if token:
                next_cursor = encode_token({"day": day, "token": token})
                break
            day = (datetime.fromisoformat(day) - timedelta(days=1)).strftime("%Y-%m-%d")
            if day >= oldest and len(items) >= limit:
                next_cursor = encode_token({"day": day, "token": None})
        return {"alerts": [views.alert_view(r) for r in items], "continuation": next_cursor}


def _alert_cursor(value: Any, oldest: str, today: str, params: Params) -> tuple[str, Any]:
    """The (day, Table token) inside an alerts continuation, checked to lie in the window."""
    try:
        if not isinstance(value, dict):
            raise ValueError
        day = str(value["day"])
        datetime.strptime(day, "%Y-%m-%d")  # a date: validates the format
        token = value.get("token")
        if token is not None and not is_table_token(token):
            raise ValueError
        if not oldest <= day <= today:
            raise ValueError
        return day, token
    except (ValueError, KeyError):
        params.problems.append(NOT_OURS)
        return today, None


def explain(query: Mapping[str, str]) -> dict[str, Any]:
    params = Params(query)
    status = params.text("status", 64)
    message = params.text("message", MAX_EXPLAIN_TEXT)
    if not status and not message and not params.problems:
        params.problems.append(Problem("message", "give a status message and/or an ACS status"))
    known = {_letters(s) for s in KNOWN_ACS_STATUSES}  # as the classifier reads a status
    if status and _letters(status) not in known:
        params.problems.append(Problem("status", f"one of {', '.join(KNOWN_ACS_STATUSES)}"))
    params.check()
    return classify(status, message).to_json()


def _letters(status: str) -> str:
    return re.sub(r"[^a-z]", "", status.lower())  # "Filtered Spam", "FILTERED_SPAM" → filteredspam
