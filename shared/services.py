"""Clients built on first use from settings (never at import: cold start and import safety)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from .settings import SEND_QUEUE, get_settings

if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient

    from .alerting import AlertLog
    from .senders import SenderHealth
    from .sending.outbox import Outbox
    from .store import MessageStore
    from .stuck import InFlight
    from .suppressions import SuppressionList


@cache
def table_service() -> TableServiceClient:
    from azure.data.tables import TableServiceClient

    quiet_sdk_request_logs()
    settings = get_settings()
    if settings.storage_connection_string:
        return TableServiceClient.from_connection_string(settings.storage_connection_string)
    from azure.identity import DefaultAzureCredential

    url = f"https://{settings.storage_account_name}.table.core.windows.net"
    return TableServiceClient(endpoint=url, credential=DefaultAzureCredential())


@cache
def message_store() -> MessageStore:
    from .store import MessageStore

    settings = get_settings()
    store = MessageStore(table_service(), settings.table_prefix, settings.row_cache_mb << 20)
    store.create_tables()
    return store


@cache
def suppression_list() -> SuppressionList:
    from .suppressions import SuppressionList

    suppressions = SuppressionList(table_service(), get_settings().table_prefix)
    suppressions.create_table()
    return suppressions


@cache
def outbox() -> Outbox:
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    from .sending.outbox import Outbox

    settings = get_settings()
    # The Functions queue trigger expects base64 message text (host default messageEncoding).
    encode = TextBase64EncodePolicy()
    if settings.storage_connection_string:
        conn = settings.storage_connection_string
        queue = QueueClient.from_connection_string(conn, SEND_QUEUE, message_encode_policy=encode)
        blobs = BlobServiceClient.from_connection_string(conn)
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
        account = settings.storage_account_name
        queue = QueueClient(
            f"https://{account}.queue.core.windows.net",
            SEND_QUEUE,
            credential=credential,
            message_encode_policy=encode,
        )
        blobs = BlobServiceClient(f"https://{account}.blob.core.windows.net", credential)
    box = Outbox(
        message_store(),
        table_service(),
        queue,
        blobs.get_container_client(settings.payload_container),
        settings.table_prefix,
    )
    box.create()
    return box


@cache
def alert_log() -> AlertLog:
    from .alerting import AlertLog

    settings = get_settings()
    publisher = None
    if settings.alerts_topic_endpoint:
        from azure.eventgrid import EventGridPublisherClient

        credential: object
        if settings.alerts_topic_key:
            from azure.core.credentials import AzureKeyCredential

            credential = AzureKeyCredential(settings.alerts_topic_key)
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        # One quick retry inline; the publish_pending_alerts timer does the patient retrying.
        publisher = EventGridPublisherClient(
            settings.alerts_topic_endpoint, credential, retry_total=1, connection_timeout=5
        )
    log = AlertLog(table_service(), settings.table_prefix, publisher)
    log.create_table()
    return log


@cache
def sender_health() -> SenderHealth:
    from .senders import SenderHealth

    settings = get_settings()
    health = SenderHealth(
        table_service(),
        settings.table_prefix,
        settings.rate_policy(),
        settings.rate_counter_shards,
        settings.auto_pause,
    )
    health.create_tables()
    return health


@cache
def in_flight() -> InFlight:
    from .stuck import InFlight

    tracker = InFlight(table_service(), get_settings().table_prefix, message_store())
    tracker.create_table()
    return tracker


def quiet_sdk_request_logs() -> None:
    """azure-core logs every request and response at INFO (0.5–1 ms of CPU each, ~4 ms per
    accepted send, and most of an Application Insights bill): keep its warnings and errors.
    Set the logger `azure.core.pipeline.policies.http_logging_policy` lower to see them all."""
    import logging

    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)


def reset() -> None:
    """Forget every client (tests switch settings between cases)."""
    from . import acs

    get_settings.cache_clear()
    table_service.cache_clear()
    message_store.cache_clear()
    suppression_list.cache_clear()
    outbox.cache_clear()
    alert_log.cache_clear()
    sender_health.cache_clear()
    in_flight.cache_clear()
    acs.email_client.cache_clear()
