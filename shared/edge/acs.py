"""ACS Email: one send call that never waits on the poller, its answer as plain data."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

if TYPE_CHECKING:
    from collections.abc import Callable

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


class AcsEmail:
    def __init__(self, client: Callable[[], EmailClient]) -> None:
        self._client = client  # built on the first send: a report-only instance never needs it

    def send(self, message: dict[str, Any], operation_id: str) -> SendAnswer:
        """Hand one message to ACS. ACS adopts `operation_id`, so a resend after a crash is the
        same operation (no second email), and delivery reports carry it as their messageId."""
        try:
            self._client().begin_send(message, operation_id=operation_id, polling=False)
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
