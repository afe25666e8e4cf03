"""Session fixtures: one real Azurite per test session, settings pointing at it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.azurite import Azurite, start_azurite

EVENTS_DIR = Path(__file__).parent / "events"
# Real ACS payloads and specs, copied from ../shared/reference (a user's clone has no ../shared;
# tests/test_reference_copies.py keeps the copies equal to it where it is present).
REFERENCE_DIR = Path(__file__).parent / "reference"
REFERENCE_EVENTS_DIR = REFERENCE_DIR / "acs-events"


TEST_HASH_KEY = "test-address-hash-key-0123456789abcdef"


def load_event(name: str) -> Any:
    """A recorded payload from tests/events/ (the Powertools way: one loader for every test)."""
    return json.loads((EVENTS_DIR / name).read_text())


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    az = start_azurite()
    try:
        yield az
    finally:
        az.stop()


@pytest.fixture(scope="session")
def storage_connection_string(azurite: Azurite) -> str:
    return azurite.connection_string


@pytest.fixture
def table_prefix() -> str:
    """A fresh table-name prefix per test, so tests never see each other's rows."""
    return "T" + uuid.uuid4().hex[:10]


@pytest.fixture
def app_env(
    storage_connection_string: str, table_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Point the app's settings at the session Azurite with this test's table prefix."""
    env = {
        "AzureWebJobsStorage": storage_connection_string,
        "TABLE_PREFIX": table_prefix,
        "ADDRESS_HASH_KEY": TEST_HASH_KEY,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from shared.core import settings

    settings.get_settings.cache_clear()
    yield env
    settings.get_settings.cache_clear()


def registered_functions() -> list[Any]:
    """function_app's registered functions; get_functions() may be called only once per app."""
    import function_app

    cached = getattr(function_app, "_test_functions", None)
    if cached is None:
        cached = function_app.app.get_functions()
        function_app._test_functions = cached  # type: ignore[attr-defined]
    return list(cached)


@pytest.fixture(scope="session")
def app_functions() -> list[Any]:
    return registered_functions()


@pytest.fixture(scope="session")
def alert_topic() -> Iterator[str]:
    """A local Event Grid topic (CloudEvents) with one sink subscription named `alerts`."""
    from .alert_sink import TOPIC_KEY
    from .servers import cloudevents_topic

    with cloudevents_topic(TOPIC_KEY, "alerts") as url:
        yield url


@pytest.fixture
def alerts_env(
    app_env: dict[str, str], alert_topic: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """app_env with alerts published to `alert_topic` (its sink emptied first); yields its URL."""
    import httpx

    from shared.app import wiring as services

    from .alert_sink import TOPIC_KEY

    monkeypatch.setenv("ALERTS_TOPIC_ENDPOINT", f"{alert_topic}/api/events")
    monkeypatch.setenv("ALERTS_TOPIC_KEY", TOPIC_KEY)
    httpx.delete(f"{alert_topic}/sinks/alerts")
    services.reset()
    yield alert_topic
    services.reset()


@pytest.fixture(scope="session")
def send_capture() -> Iterator[Any]:
    """Where the sandbox publishes its delivery reports (an Event Grid publish endpoint)."""
    from .servers import Capture, serve

    cap = Capture()
    with serve(cap.app) as url:
        cap.url = url  # type: ignore[attr-defined]
        yield cap


@pytest.fixture(scope="session")
def send_sandbox(send_capture: Any) -> Iterator[str]:
    """The local ACS sandbox, fast: reports within 10 ms, a quota far above any test's load."""
    from local.acs_sandbox import SandboxConfig, create_app

    from .servers import serve

    config = SandboxConfig(
        events_url=send_capture.url + "/api/events",
        events_key="k",
        report_delay_s=0.01,
        engagement_delay_s=0.01,
        quota_per_minute=10_000,
        quota_per_hour=100_000,
        poll_retry_after_s=0,
    )
    with serve(create_app(config)) as url:
        yield url


@pytest.fixture
def send_env(
    app_env: dict[str, str],
    send_sandbox: str,
    send_capture: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    """app_env plus the sandbox as ACS, a sandbox sender, an empty send queue and capture."""
    import httpx

    from local.acs_sandbox import DEFAULT_ACCESS_KEY
    from shared.app import wiring as services

    from .send_harness import SANDBOX_SETTINGS

    values = {"ACS_ENDPOINT": send_sandbox, "ACS_KEY": DEFAULT_ACCESS_KEY, **SANDBOX_SETTINGS}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    services.reset()
    httpx.post(f"{send_sandbox}/sandbox/reset")
    httpx.post(f"{send_sandbox}/sandbox/quota", json={"perMinute": 10_000, "perHour": 100_000})
    send_capture.take()
    services.outbox().queue.clear_messages()
    yield {**app_env, **values}
    services.reset()
