"""Run an ASGI app (sandbox, topic, capture endpoint) with uvicorn in a thread, for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from local.ports import free_port


@contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[str]:
    """uvicorn on `port` (a free one by default) in a thread; yields the base URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "uvicorn did not stop"


@contextmanager
def cloudevents_topic(key: str, sink: str) -> Iterator[str]:
    """A local Event Grid topic (CloudEvents, `aeg-sas-key` = `key`) with one subscription whose
    events land in its own sink `/sinks/<sink>`; yields the topic's base URL."""
    import httpx

    from local.eventgrid_topic import Schema, TopicConfig, create_app

    with serve(create_app(TopicConfig(key=key, schema=Schema.CLOUDEVENTS))) as url:
        reply = httpx.post(
            f"{url}/subscriptions", json={"name": sink, "endpoint": f"{url}/sinks/{sink}"}
        )
        assert reply.status_code == 201, reply.text
        yield url


class Capture:
    """An Event Grid publish endpoint that just keeps what it is sent."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/api/events", self._publish, methods=["POST"])])

    async def _publish(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            self.events.extend(body if isinstance(body, list) else [body])
        return Response(status_code=200)

    def take(self) -> list[dict[str, Any]]:
        with self.lock:
            out, self.events = self.events, []
        return out
