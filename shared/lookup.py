"""Support's questions, answered from the store: one message, or one address's history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import views
from .errors import InvalidInput, NotFound, Problem
from .events import MAX_ADDRESS_LENGTH, MAX_ID_LENGTH

if TYPE_CHECKING:
    from .store import MessageStore

MAX_PAGE = 100


def get_message(store: MessageStore, message_id: str) -> dict[str, Any]:
    message_id = message_id.strip()
    if not message_id or len(message_id) > MAX_ID_LENGTH:
        raise InvalidInput("Invalid message id", [Problem("messageId", "1 to 256 characters")])
    view = views.message_view(message_id, store.message_rows(message_id))
    if view is None:
        raise NotFound(f"No message with id {message_id!r} is known")
    return view


def recipient_history(
    store: MessageStore, address: str, limit: int, continuation: str | None
) -> dict[str, Any]:
    address = address.strip()
    if "@" not in address or len(address) > MAX_ADDRESS_LENGTH:
        raise InvalidInput("Invalid address", [Problem("address", "must be an email address")])
    items, token = store.recipient_history(address, limit, continuation)
    return views.history_view(address, items, token)
