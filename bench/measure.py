"""Measuring tools shared by the sections: request counting, pooled throughput, percentiles."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

# Functions runs invocations concurrently; this is the pool size for "as the app runs" figures.
WORKERS = 8


class RequestCounter:
    """Counts HTTP requests on the wire, retries included: pass as `raw_request_hook=`.

    azure-data-tables builds its own policy list and drops `per_call_policies` and
    `per_retry_policies`, but keeps azure-core's CustomHookPolicy, which runs after the retry
    policy (once per attempt) and is shared with every `get_table_client()` of the service.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def __call__(self, request: Any) -> None:
        with self._lock:
            self.value += 1


def pooled(fn: Callable[[T], Any], items: Sequence[T], workers: int = WORKERS) -> float:
    """Run fn over items on a thread pool; returns items per second (wall clock)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        start = time.perf_counter()
        for _ in pool.map(fn, items):
            pass
        elapsed = time.perf_counter() - start
    return len(items) / elapsed


def percentile(samples: Iterable[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sample."""
    data = sorted(samples)
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
