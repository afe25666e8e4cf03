"""Table transactions (`$batch`) without azure-core's per-request thread pools.

azure-core (1.41) prepares every multipart request, and parses every multipart response, on a
`ThreadPoolExecutor` it creates and shuts down inside that one call: for a Table transaction of
three entities that is five thread starts and joins, to run `StorageHeadersPolicy` (a few dict
writes per entity) on threads that share the GIL anyway. Measured against Azurite: a 3-entity
transaction costs 9.9 ms of client CPU with the pools and 7.6 ms without (a 10-entity one 15.3
and 12.4), and every accept and send makes one.

`inline_batch_steps` swaps in the same two steps run inline: the same policies, applied in the
same order, the first exception raised. It patches two private functions of azure-core, only
when they are the ones described above (they create a `ThreadPoolExecutor`); an azure-core that
changed them is left alone. tests/test_sdk_batches.py pins that the stock functions still create
the pools (it fails when azure-core stops doing so: remove this module then) and that our
transactions behave the same, errors included, against Azurite.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_stock: dict[str, Any] = {}  # what we replaced, to restore (`stock_batch_steps`)


def _targets() -> tuple[Any, Any, Any]:
    from azure.core.pipeline import _base as pipeline_base
    from azure.core.pipeline.transport import _base as transport_base
    from azure.core.rest import _http_response_impl as rest_responses

    return pipeline_base, transport_base, rest_responses


def _prepare_inline(request: Any) -> None:
    """`Pipeline._prepare_multipart_mixed_request`, without the thread pool: the multipart
    request's policies' `on_request`, on each part (a changeset's parts first)."""
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline._tools import await_result

    info = request.multipart_mixed_info
    if not info:
        return
    parts, policies, options = info[0], info[1], info[3]
    for part in parts:
        if part.multipart_mixed_info:
            _prepare_inline(part)
        pipeline_request = PipelineRequest(part, PipelineContext(None, **options))
        for policy in policies:
            await_result(policy.on_request, pipeline_request)


def _parts_inline(response: Any) -> list[Any]:
    """`_parts_helper`, without the thread pool: the raw parts of a multipart/mixed response,
    each passed through the request's policies' `on_response`."""
    from azure.core.pipeline import PipelineContext, PipelineRequest, PipelineResponse
    from azure.core.pipeline._tools import await_result

    if not response.content_type or not response.content_type.startswith("multipart/mixed"):
        raise ValueError("You can't get parts if the response is not multipart/mixed")
    parts: list[Any] = response._get_raw_parts()
    info = response.request.multipart_mixed_info
    if info:
        for part in parts:
            context = PipelineContext(None)
            pipeline_request = PipelineRequest(part.request, context)
            pipeline_response = PipelineResponse(part.request, part, context=context)
            for policy in info[1]:
                await_result(policy.on_response, pipeline_request, pipeline_response)
    return parts


def _makes_pools(function: Any) -> bool:
    code = getattr(function, "__code__", None)
    return code is not None and "ThreadPoolExecutor" in code.co_names


def inline_batch_steps() -> bool:
    """Run azure-core's multipart steps inline from now on, process-wide (idempotent). False
    when azure-core's functions are not the pooled ones this replaces (nothing done)."""
    pipeline_base, transport_base, rest_responses = _targets()
    with _lock:
        if _stock:
            return True
        prepare = pipeline_base.Pipeline.__dict__.get("_prepare_multipart_mixed_request")
        parts = getattr(rest_responses, "_parts_helper", None)
        if not isinstance(prepare, staticmethod) or not _makes_pools(prepare.__func__):
            return False
        if parts is None or getattr(transport_base, "_parts_helper", None) is not parts:
            return False
        if not _makes_pools(parts):
            return False
        _stock.update(prepare=prepare, parts=parts)
        pipeline_base.Pipeline._prepare_multipart_mixed_request = staticmethod(_prepare_inline)
        rest_responses._parts_helper = _parts_inline
        transport_base._parts_helper = _parts_inline
        return True


@contextmanager
def stock_batch_steps() -> Iterator[None]:
    """azure-core's own steps for the duration (the bench's raw baseline, which stands for the
    SDK as shipped, and the test that pins them); not for use while other threads send."""
    pipeline_base, transport_base, rest_responses = _targets()
    with _lock:
        stock = dict(_stock)
        _stock.clear()
    if not stock:
        yield
        return
    pipeline_base.Pipeline._prepare_multipart_mixed_request = stock["prepare"]
    rest_responses._parts_helper = stock["parts"]
    transport_base._parts_helper = stock["parts"]
    try:
        yield
    finally:
        inline_batch_steps()
