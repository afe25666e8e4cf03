"""The SDK clients' transport: no per-request look at ~/.netrc and the environment's proxies
unless a proxy is configured (it cost a third of the host's CPU per delivery report)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from shared.core.settings import load_settings
from shared.edge.clients import TOPIC_OPTIONS, Clients, transport_options
from shared.edge.outcome_events import build_publisher

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


def _transports(obj: Any, depth: int = 0, seen: set[int] | None = None) -> list[Any]:
    """Every azure-core RequestsTransport reachable from an SDK client's attributes."""
    from azure.core.pipeline.transport import RequestsTransport

    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 8:
        return []
    seen.add(id(obj))
    if isinstance(obj, RequestsTransport):
        return [obj]
    found = []
    for value in list(getattr(obj, "__dict__", {}).values()):
        found += _transports(value, depth + 1, seen)
    return found


def _retry_totals(obj: Any) -> list[int]:
    from azure.core.pipeline.policies import RetryPolicy

    pipeline = obj._client._client._pipeline
    return [
        getattr(policy, "_policy", policy).total_retries
        for policy in pipeline._impl_policies
        if isinstance(getattr(policy, "_policy", policy), RetryPolicy)
    ]


def test_topic_publishers_keep_our_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Alerts and outcome events publish with one retry, short timeouts and no per-request
    environment lookups: the publisher really carries them."""
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALERTS_TOPIC_ENDPOINT", "http://127.0.0.1:9/api/events")
    monkeypatch.setenv("ALERTS_TOPIC_KEY", "key")
    alerts = _clients(monkeypatch).alert_publisher
    outcomes = build_publisher("http://127.0.0.1:9/api/events", "key", lambda: None)  # type: ignore[arg-type,return-value]
    for publisher in (alerts, outcomes):
        (transport,) = _transports(publisher)
        assert transport._use_env_settings is False
        assert transport.connection_config.timeout == TOPIC_OPTIONS["connection_timeout"]
        assert transport.connection_config.read_timeout == TOPIC_OPTIONS["read_timeout"]
        assert _retry_totals(publisher) == [TOPIC_OPTIONS["retry_total"]]


def test_the_public_event_grid_client_still_drops_its_options() -> None:
    """Why `topic_publisher` builds the SDK's inner client: the public one, given the same
    options, does not pass them on. When an SDK release fixes that, this fails: use the public
    client again."""
    from azure.core.credentials import AzureKeyCredential
    from azure.eventgrid import EventGridPublisherClient

    public = EventGridPublisherClient(
        "http://127.0.0.1:9/api/events", AzureKeyCredential("key"), use_env_settings=False,
        **TOPIC_OPTIONS,
    )  # fmt: skip
    (transport,) = _transports(public)
    assert transport._use_env_settings is True
    assert transport.connection_config.timeout != TOPIC_OPTIONS["connection_timeout"]
