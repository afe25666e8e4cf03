"""The ACS Email client (built on first use) and one send call that never waits on the poller."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from .settings import get_settings

if TYPE_CHECKING:
    from azure.communication.email import EmailClient

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SendAnswer:
    status: int | None  # HTTP status; None when ACS could not be reached or timed out
    error_code: str | None = None
    error_message: str | None = None
    retry_after: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@cache
def email_client() -> EmailClient:
    from azure.communication.email import EmailClient

    settings = get_settings()
    # We schedule retries ourselves through the queue: the SDK must not sleep on 429s.
    options: dict[str, Any] = {"retry_total": 0, "connection_timeout": 10, "read_timeout": 30}
    if settings.acs_connection_string:
        return EmailClient.from_connection_string(settings.acs_connection_string, **options)
    if not settings.acs_endpoint:
        raise RuntimeError(
            "set ACS_ENDPOINT (with ACS_KEY or managed identity) or ACS_CONNECTION_STRING"
        )
    if settings.acs_key:
        from azure.core.credentials import AzureKeyCredential

        return EmailClient(settings.acs_endpoint, AzureKeyCredential(settings.acs_key), **options)
    from azure.identity import DefaultAzureCredential

    return EmailClient(settings.acs_endpoint, DefaultAzureCredential(), **options)


def send(message: dict[str, Any], operation_id: str) -> SendAnswer:
    """Hand one message to ACS. ACS adopts `operation_id`, so a resend after a crash is the
    same operation (no second email), and delivery reports carry it as their messageId."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    try:
        email_client().begin_send(message, operation_id=operation_id, polling=False)
        return SendAnswer(202)  # begin_send raises on anything but ACS's 202 Accepted
    except HttpResponseError as exc:
        error = getattr(exc, "error", None)
        headers: Any = getattr(exc.response, "headers", None) or {}
        return SendAnswer(
            status=exc.status_code,
            error_code=getattr(error, "code", None) or _header(headers, "x-ms-error-code"),
            error_message=(getattr(error, "message", None) or str(exc.message or ""))[:1000],
            retry_after=_header(headers, "Retry-After"),
        )
    except (ServiceRequestError, ServiceResponseError) as exc:
        log.warning("ACS unreachable for %s: %s", operation_id, type(exc).__name__)
        return SendAnswer(None, error_message=type(exc).__name__)


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name) if headers else None
    return str(value) if value is not None else None
