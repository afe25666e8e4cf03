"""OpenTelemetry goes on with the first Azure client when the App Insights connection string is
set (with the app's user-assigned identity for Entra ingestion), once, and never locally."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from shared.core.settings import load_settings
from shared.edge import telemetry

from .conftest import TEST_HASH_KEY

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "ADDRESS_HASH_KEY": TEST_HASH_KEY}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import azure.monitor.opentelemetry as distro

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(distro, "configure_azure_monitor", lambda **kw: seen.append(kw))
    monkeypatch.setattr(telemetry, "_configured", threading.Event())
    return seen


def test_off_without_a_connection_string(calls: list[dict[str, Any]]) -> None:
    assert telemetry.configure(load_settings(BASE)) is False
    assert calls == []


def test_on_once_with_the_connection_string_and_the_identity(calls: list[dict[str, Any]]) -> None:
    from azure.identity import ManagedIdentityCredential

    settings = load_settings(
        {
            "AzureWebJobsStorage__accountName": "stemail",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
            "ADDRESS_HASH_KEY": TEST_HASH_KEY,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x;IngestionEndpoint=y",
        }
    )
    assert telemetry.configure(settings) is True
    assert telemetry.configure(settings) is False  # once per process
    (options,) = calls
    assert options["connection_string"] == "InstrumentationKey=x;IngestionEndpoint=y"
    assert isinstance(options["credential"], ManagedIdentityCredential)


def test_the_wiring_turns_it_on_with_the_first_client(
    calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.app import wiring

    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=x")
    wiring.reset()
    try:
        wiring.clients()
        assert [c["connection_string"] for c in calls] == ["InstrumentationKey=x"]
    finally:
        wiring.reset()
