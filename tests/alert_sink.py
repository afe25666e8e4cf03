"""Reading what the local Event Grid topic's alert sink received, and the alert history API."""

from __future__ import annotations

import json
import time
from typing import Any

import azure.functions as func
import httpx

import function_app

TOPIC_KEY = "alerts-test-key"


def received(topic: str, expected: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The alerts the sink got, once `expected` arrived and nothing is pending (or on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        events: list[dict[str, Any]] = httpx.get(f"{topic}/sinks/alerts").json()
        status = httpx.get(f"{topic}/status").json()
        if (len(events) >= expected and status["pending"] == 0) or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def alerts_api(**params: str) -> dict[str, Any]:
    req = func.HttpRequest(
        "GET", "http://127.0.0.1:7071/api/alerts", params=params, route_params={}, body=b""
    )
    resp = function_app.list_alerts(req)
    assert resp.status_code == 200, resp.get_body()
    return dict(json.loads(resp.get_body()))
