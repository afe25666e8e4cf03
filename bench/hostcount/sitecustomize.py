"""Counts a stack process's storage requests for bench/stack_bench.py, which puts this folder
on the stack's PYTHONPATH (Python imports `sitecustomize` at start-up; nothing else does).

The host stand-in builds its app's SDK clients itself, so the one seam is azure-core's
transport class, as in `_counted_requests` in stack_bench. Requests from the host's own queue
plumbing (its `host-storage` threads: polls, deletes, which run in .NET on Azure) are left out.
A daemon thread writes `{port: count}` to `$BENCH_REQUEST_COUNTS.<pid>` within 50 ms of a change.
"""

from __future__ import annotations

import os


def _install(path: str) -> None:
    import json
    import threading
    import time
    from collections import Counter
    from typing import Any
    from urllib.parse import urlsplit

    from azure.core.pipeline.transport import RequestsTransport

    counts: Counter[int] = Counter()
    lock = threading.Lock()
    original = RequestsTransport.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        if not threading.current_thread().name.startswith("host-storage"):
            with lock:
                counts[urlsplit(request.url).port or 0] += 1
        return original(self, request, **kwargs)

    RequestsTransport.send = send
    target = f"{path}.{os.getpid()}"

    def write() -> None:
        written = None
        while True:
            with lock:
                text = json.dumps(dict(counts))
            if text != written:
                with open(f"{target}.tmp", "w") as out:
                    out.write(text)
                os.replace(f"{target}.tmp", target)
                written = text
            time.sleep(0.05)

    threading.Thread(target=write, name="bench-request-counts", daemon=True).start()


if os.environ.get("BENCH_REQUEST_COUNTS"):
    _install(os.environ["BENCH_REQUEST_COUNTS"])
