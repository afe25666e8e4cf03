"""Storage that accepts connections and never answers (a hung account, a black-holed network):
the health probe says 503 within 5 s and other routes answer 503 with Retry-After instead of
hanging for the SDK's full retry time."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import azure.functions as func
import pytest

import function_app
from shared.app import wiring

from .conftest import TEST_HASH_KEY

ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@pytest.fixture
def silent_storage(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)  # never read, never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    monkeypatch.setenv("AzureWebJobsStorage", conn)
    monkeypatch.setenv("TABLE_PREFIX", "Outage")
    monkeypatch.setenv("ADDRESS_HASH_KEY", TEST_HASH_KEY)
    wiring.reset()
    yield
    wiring.reset()
    stop.set()
    thread.join()
    for c in held:
        c.close()
    listener.close()


def _get(
    route: str, handler: Callable[[func.HttpRequest], func.HttpResponse], **route_params: str
) -> tuple[func.HttpResponse, float]:
    req = func.HttpRequest(
        "GET", f"http://127.0.0.1:7071/api/{route}", route_params=route_params, body=b""
    )
    start = time.monotonic()
    response = handler(req)
    return response, time.monotonic() - start


def test_health_answers_503_within_5_seconds(silent_storage: None) -> None:
    response, took = _get("health", function_app.check_health)
    assert response.status_code == 503
    assert took < 5
    assert json.loads(response.get_body())["status"] == 503


def test_a_lookup_answers_503_with_retry_after_instead_of_hanging(silent_storage: None) -> None:
    response, took = _get("emails/x", function_app.get_message_status, messageId="x")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert took < 40  # the SDK's own retries took 90 s before client timeouts were set
