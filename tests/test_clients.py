"""The SDK clients' transport: no per-request look at ~/.netrc and the environment's proxies
unless a proxy is configured (it cost a third of the host's CPU per delivery report)."""

from __future__ import annotations

import os

import pytest

from shared.core.settings import load_settings
from shared.edge.clients import Clients, transport_options

from .conftest import TEST_HASH_KEY

CONN = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
)
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


def _clients(monkeypatch: pytest.MonkeyPatch) -> Clients:
    monkeypatch.setenv("AzureWebJobsStorage", CONN)
    monkeypatch.setenv("ADDRESS_HASH_KEY", TEST_HASH_KEY)
    return Clients(load_settings(os.environ))


def test_no_environment_lookups_per_request_without_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    assert transport_options() == {"use_env_settings": False}
    clients = _clients(monkeypatch)
    transport = clients.table_service._client._client._pipeline._transport  # type: ignore[attr-defined]
    assert transport._use_env_settings is False
    queue = clients.send_queue._client._client._pipeline._transport  # type: ignore[attr-defined]
    assert queue._use_env_settings is False


def test_a_configured_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert transport_options() == {"use_env_settings": True}
    transport = _clients(monkeypatch).table_service._client._client._pipeline._transport  # type: ignore[attr-defined]
    assert transport._use_env_settings is True
