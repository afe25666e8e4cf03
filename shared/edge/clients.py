"""Every Azure SDK client, built once from settings on first use (never at import: cold start
and import safety). Locally a connection string (Azurite); in Azure the app's managed identity."""

from __future__ import annotations

import logging
import os
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from shared.core.settings import SEND_QUEUE, Settings, SettingsError

if TYPE_CHECKING:
    from azure.communication.email import EmailClient
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import ContainerClient
    from azure.storage.queue import QueueClient


def quiet_sdk_request_logs() -> None:
    """azure-core logs every request and response at INFO (0.5–1 ms of CPU each, ~4 ms per
    accepted send, and most of an Application Insights bill): keep its warnings and errors.
    Set the logger `azure.core.pipeline.policies.http_logging_policy` lower to see them all."""
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)


# A storage outage must not hang a request for the SDK's full retry time (90 s seen): fail a
# connection in 3 s, a response in 10 s, retry twice; the caller then answers 503 + Retry-After
# (HTTP) or raises so the platform retries (triggers).
STORAGE_OPTIONS: dict[str, Any] = {
    "connection_timeout": 3,
    "read_timeout": 10,
    "retry_total": 2,
    "retry_backoff_factor": 0.4,
    "retry_backoff_max": 2,
}


def transport_options() -> dict[str, Any]:
    """`requests` looks for a ~/.netrc and works out proxies from the environment on every
    request when the SDK lets it (`use_env_settings`, on by default): a third of the host's CPU
    per delivery report in a profile (`stat` calls). Kept on only when a proxy is configured,
    the one environment setting an app in Azure may rely on."""
    proxied = any(
        os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
    )
    return {"use_env_settings": proxied}


class TopicPublisher(Protocol):
    """What we use of an Event Grid publisher: send a list of CloudEvents (raises on failure)."""

    def send(self, events: Any, **kwargs: Any) -> None: ...


# One quick retry inline (the alert and outcome timers do the patient retrying), and short
# timeouts: a webhook call that publishes must not hang on a slow topic.
TOPIC_OPTIONS: dict[str, Any] = {"retry_total": 1, "connection_timeout": 5, "read_timeout": 10}


def topic_publisher(endpoint: str, credential: Any) -> TopicPublisher:
    """A publisher to an Event Grid topic (basic tier) that keeps our options.

    azure-eventgrid 4.22's `EventGridPublisherClient` builds its basic-tier client without the
    keyword arguments it is given: retries, timeouts and `use_env_settings` are silently
    dropped (the SDK's 3 retries and 300 s timeouts, and a ~/.netrc and proxy lookup per
    publish, 3 % of the host's CPU per report in a profile). Its inner client, which that
    class wraps, takes them. tests/test_clients.py pins both facts, so an SDK that changes
    either fails a test instead of quietly taking our options away again."""
    from azure.eventgrid._legacy import EventGridPublisherClient  # private: see the docstring

    client: TopicPublisher = EventGridPublisherClient(
        endpoint, credential, **TOPIC_OPTIONS, **transport_options()
    )
    return client


class Clients:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.options = {**STORAGE_OPTIONS, **transport_options()}
        quiet_sdk_request_logs()

    @cached_property
    def credential(self) -> TokenCredential:
        """The app's managed identity: a user-assigned one when `AzureWebJobsStorage__clientId`
        names it (as the host uses it), else whatever DefaultAzureCredential finds."""
        client_id = self.settings.storage_client_id
        if client_id:
            from azure.identity import ManagedIdentityCredential

            return ManagedIdentityCredential(client_id=client_id)
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def _account_url(self, service: str) -> str:
        uri = {
            "table": self.settings.storage_table_uri,
            "queue": self.settings.storage_queue_uri,
            "blob": self.settings.storage_blob_uri,
        }[service]
        return uri or f"https://{self.settings.storage_account_name}.{service}.core.windows.net"

    @cached_property
    def table_service(self) -> TableServiceClient:
        from azure.data.tables import TableServiceClient

        from shared.edge.sdk_batches import inline_batch_steps

        inline_batch_steps()  # transactions without azure-core's per-request thread pools
        conn = self.settings.storage_connection_string
        if conn:
            return TableServiceClient.from_connection_string(conn, **self.options)
        return TableServiceClient(
            endpoint=self._account_url("table"), credential=self.credential, **self.options
        )

    @cached_property
    def send_queue(self) -> QueueClient:
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        # The Functions queue trigger expects base64 message text (host default messageEncoding).
        encode = TextBase64EncodePolicy()
        conn = self.settings.storage_connection_string
        if conn:
            return QueueClient.from_connection_string(
                conn, SEND_QUEUE, message_encode_policy=encode, **self.options
            )
        return QueueClient(
            self._account_url("queue"),
            SEND_QUEUE,
            credential=self.credential,
            message_encode_policy=encode,
            **self.options,
        )

    @cached_property
    def payload_container(self) -> ContainerClient:
        from azure.storage.blob import BlobServiceClient

        conn = self.settings.storage_connection_string
        if conn:
            blobs = BlobServiceClient.from_connection_string(conn, **self.options)
        else:
            blobs = BlobServiceClient(self._account_url("blob"), self.credential, **self.options)
        return blobs.get_container_client(self.settings.payload_container)

    @cached_property
    def alert_publisher(self) -> TopicPublisher | None:
        settings = self.settings
        if not settings.alerts_topic_endpoint:
            return None
        credential: Any
        if settings.alerts_topic_key:
            from azure.core.credentials import AzureKeyCredential

            credential = AzureKeyCredential(settings.alerts_topic_key)
        else:
            credential = self.credential
        return topic_publisher(settings.alerts_topic_endpoint, credential)

    @cached_property
    def email(self) -> EmailClient:
        from azure.communication.email import EmailClient

        settings = self.settings
        # We schedule retries ourselves through the queue: the SDK must not sleep on 429s.
        options: dict[str, Any] = {
            "retry_total": 0,
            "connection_timeout": 10,
            "read_timeout": 30,
            **transport_options(),
        }
        if settings.acs_connection_string:
            return EmailClient.from_connection_string(settings.acs_connection_string, **options)
        if not settings.acs_endpoint:
            raise SettingsError(
                "set ACS_ENDPOINT (with ACS_KEY or managed identity) or ACS_CONNECTION_STRING"
            )
        if settings.acs_key:
            from azure.core.credentials import AzureKeyCredential

            return EmailClient(
                settings.acs_endpoint, AzureKeyCredential(settings.acs_key), **options
            )
        return EmailClient(settings.acs_endpoint, self.credential, **options)
