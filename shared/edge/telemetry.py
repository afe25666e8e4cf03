"""OpenTelemetry to Application Insights (azure-monitor-opentelemetry), on when
APPLICATIONINSIGHTS_CONNECTION_STRING is set (in Azure; off locally). Configured once, when the
first trigger builds its clients, so the import (~0.3 s) stays out of cold start."""

from __future__ import annotations

import threading
from typing import Any

from shared.core.settings import Settings

_lock = threading.Lock()
_configured = threading.Event()


def configure(settings: Settings) -> bool:
    """Send this process's traces, requests to Azure SDKs and log records (WARNING and up; our
    logs carry message ids, never bodies, and addresses only with LOG_ADDRESSES) to
    Application Insights. Entra-only ingestion uses the app's managed identity. Returns whether
    this call configured it."""
    if not settings.appinsights_connection_string:
        return False
    with _lock:
        if _configured.is_set():
            return False
        from azure.monitor.opentelemetry import configure_azure_monitor

        options: dict[str, Any] = {"connection_string": settings.appinsights_connection_string}
        if settings.storage_client_id:  # the user-assigned identity azd creates
            from azure.identity import ManagedIdentityCredential

            options["credential"] = ManagedIdentityCredential(client_id=settings.storage_client_id)
        configure_azure_monitor(**options)
        _configured.set()
        return True
