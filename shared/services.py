"""Clients built on first use from settings (never at import: cold start and import safety)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from .settings import get_settings

if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient

    from .store import MessageStore


@cache
def table_service() -> TableServiceClient:
    from azure.data.tables import TableServiceClient

    settings = get_settings()
    if settings.storage_connection_string:
        return TableServiceClient.from_connection_string(settings.storage_connection_string)
    from azure.identity import DefaultAzureCredential

    url = f"https://{settings.storage_account_name}.table.core.windows.net"
    return TableServiceClient(endpoint=url, credential=DefaultAzureCredential())


@cache
def message_store() -> MessageStore:
    from .store import MessageStore

    store = MessageStore(table_service(), get_settings().table_prefix)
    store.create_tables()
    return store


def reset() -> None:
    """Forget every client (tests switch settings between cases)."""
    get_settings.cache_clear()
    table_service.cache_clear()
    message_store.cache_clear()
