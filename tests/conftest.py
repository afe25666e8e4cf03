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
REFERENCE_EVENTS_DIR = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "acs-events"
)


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
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from shared import settings

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
