"""The running local stack over HTTP: the Event Grid webhook, and `POST /api/emails` against
sending straight to ACS (the sandbox) with the real SDK, on the same machine in the same run.

The sandbox quota is raised so direct SDK sends are not throttled, and (unless
SANDBOX_REPORT_DELAY is set) its delivery reports are held back past the end of the run, so the
reports it would emit for every send do not load the host while latencies are measured.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.data.tables import TableServiceClient

from local.acs_sandbox import DEFAULT_ACCESS_KEY
from local.azurite import ROOT
from local.ports import free_port
from local.stack import SANDBOX_SENDER, Stack, StackInfo, local_hash_key, local_settings
from shared.edge.messages import MessageStore

from .measure import WORKERS, chunks, environment, percentile, pooled
from .payloads import acs_message, mixed_events, recipients, send_request
from .pipeline_bench import write_sent_rows
from .report import Figure, figure, heading, line

SECTION = "stack"
WEBHOOK_EVENTS = 1_200
WEBHOOK_BATCH = 10  # Event Grid's default maxEventsPerBatch is 1; 10 is a common setting
WEBHOOK_CLIENTS = 4
LATENCY_SENDS = 100
CONCURRENT_SENDS = 240
ACCEPTS_IN_PROCESS = 30
SENDER_FUNCTION = "send_queued_email"  # the queue trigger that hands accepted sends to ACS


def run() -> list[Figure]:
    heading("4. Running stack: Functions host stand-in + Azurite + Event Grid topic + ACS sandbox")
    env = {"SANDBOX_QUOTA_PER_MINUTE": "100000", "SANDBOX_QUOTA_PER_HOUR": "100000"}
    if not os.environ.get("SANDBOX_REPORT_DELAY"):
        env["SANDBOX_REPORT_DELAY"] = "3600"
    with _running_stack(env) as info:
        figures = _webhook(info) + _sends(info)
    # The same probes with the queue trigger switched off (the host's own
    # `AzureWebJobs.<name>.Disabled` setting): how much of the latency above is the sender
    # sharing the host process, and so its GIL, with the accepts. The accept steps are timed
    # here too, so no backlog of sends competes with them for the two cores.
    with _running_stack({**env, f"AzureWebJobs.{SENDER_FUNCTION}.Disabled": "true"}) as info:
        sends, sdk_p50 = _sends_without_sender(info)
        figures += sends + _accept_in_process(info, sdk_p50)
    return figures


@contextmanager
def _running_stack(env: dict[str, str]) -> Iterator[StackInfo]:
    with environment(env), _stack_json_kept():
        stack = Stack(None, free_port(), quiet=True)
        try:
            started = time.perf_counter()
            info = stack.start()
            _wait_healthy(info)
            line("stack up and healthy after", f"{time.perf_counter() - started:,.1f} s")
            yield info
        finally:
            stack.stop()


@contextmanager
def _stack_json_kept() -> Iterator[None]:
    """Stack.start() writes .local-data/stack.json: put back a `make run` stack's file, or
    leave no trace if there was none."""
    folder = ROOT / ".local-data"
    path = folder / "stack.json"
    existed = folder.exists()
    saved = path.read_text() if path.exists() else None
    try:
        yield
    finally:
        if saved is not None:
            path.write_text(saved)
        else:
            path.unlink(missing_ok=True)
            if not existed:
                with suppress(OSError):  # only if empty: the topics may have dead-lettered
                    folder.rmdir()


def _wait_healthy(info: StackInfo, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{info.base_url}/api/health", timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the stack's /api/health did not answer 200")
        time.sleep(0.2)


def _webhook(info: StackInfo) -> list[Figure]:
    prefix = local_settings().get("TABLE_PREFIX") or "Email"
    service = TableServiceClient.from_connection_string(info.storage_connection_string)
    store = MessageStore(service, prefix)
    store.create_tables()
    now = datetime.now(UTC)
    # Messages the stack sent: ids minted under its ADDRESS_HASH_KEY (`message_ids`).
    key = os.environ.get("ADDRESS_HASH_KEY") or local_hash_key(ROOT / ".local-data")
    pairs = recipients(WEBHOOK_EVENTS + 100, "hook", key.encode())
    write_sent_rows(store, pairs, now)
    events = mixed_events(pairs, now + timedelta(seconds=2))
    warm, timed = events[:100], events[100:]

    url = (
        f"{info.base_url}/runtime/webhooks/eventgrid"
        f"?functionName=record_delivery_report&code={info.function_key}"
    )
    headers = {"aeg-event-type": "Notification"}
    failures: list[int] = []

    def deliver(batches: list[Any]) -> None:
        with httpx.Client(headers=headers, timeout=60) as client:
            for batch in batches:
                reply = client.post(url, json=list(batch))
                if reply.status_code != 200:
                    failures.append(reply.status_code)

    def spread(items: list[Any]) -> list[list[Any]]:
        batches = list(chunks(items, WEBHOOK_BATCH))
        return [batches[i::WEBHOOK_CLIENTS] for i in range(WEBHOOK_CLIENTS)]

    with ThreadPoolExecutor(WEBHOOK_CLIENTS) as pool:
        list(pool.map(deliver, spread(warm)))
        failures.clear()
        start = time.perf_counter()
        list(pool.map(deliver, spread(timed)))
        elapsed = time.perf_counter() - start
    line(
        f"{len(timed):,} events, batches of {WEBHOOK_BATCH}, {WEBHOOK_CLIENTS} clients",
        f"{len(failures)} non-200 replies",
    )
    return [figure(SECTION, "webhook reports/s", len(timed) / elapsed, "/s", digits=0)]


def _clients(info: StackInfo) -> tuple[httpx.Client, EmailClient]:
    """Both paths from this process over warm keep-alive HTTP: the app through the host, and
    the ACS SDK straight to the sandbox."""
    app = httpx.Client(
        base_url=info.base_url,
        headers={"x-functions-key": info.function_key},
        timeout=60,
        limits=httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS),
    )
    assert info.sandbox_url is not None, "the bench needs the ACS sandbox, not a real resource"
    return app, EmailClient(info.sandbox_url, AzureKeyCredential(DEFAULT_ACCESS_KEY))


def _post(app: httpx.Client, n: int) -> int:
    return app.post("/api/emails", json=send_request(n)).status_code


def _sdk_send(sdk: EmailClient, n: int) -> None:
    sdk.begin_send(acs_message(n, SANDBOX_SENDER), operation_id=str(uuid.uuid4()), polling=False)


@dataclass
class _Latencies:
    app_s: list[float]
    sdk_s: list[float]
    sdk_cpu_s: list[float]  # this thread's CPU per SDK call: what one send costs a client
    rejects: int

    @staticmethod
    def ms(samples: list[float]) -> tuple[float, float]:
        """p50 and p99, in ms."""
        return percentile(samples, 50) * 1000, percentile(samples, 99) * 1000


def _latencies(app: httpx.Client, sdk: EmailClient) -> _Latencies:
    for n in range(5):  # warm up both paths (connections, first-use clients, tables)
        _post(app, n)
        _sdk_send(sdk, n)
    result = _Latencies([], [], [], 0)
    for n in range(LATENCY_SENDS):  # interleaved, so drift hits both alike
        start = time.perf_counter()
        result.rejects += _post(app, n) != 202
        result.app_s.append(time.perf_counter() - start)
        start, cpu = time.perf_counter(), time.thread_time()
        _sdk_send(sdk, n)
        result.sdk_s.append(time.perf_counter() - start)
        result.sdk_cpu_s.append(time.thread_time() - cpu)
    return result


def _sends(info: StackInfo) -> list[Figure]:
    """Send latency against the SDK, then accepted sends/s."""
    app, sdk = _clients(info)
    statuses: list[int] = []

    with app:
        lat = _latencies(app, sdk)
        app_rate = pooled(lambda n: statuses.append(_post(app, n)), range(CONCURRENT_SENDS))
        accepted = sum(1 for s in statuses if s == 202)
        sdk_rate = pooled(lambda n: _sdk_send(sdk, n), range(CONCURRENT_SENDS))

    app_ms, sdk_ms = lat.ms(lat.app_s), lat.ms(lat.sdk_s)
    line(f"{LATENCY_SENDS} sequential sends each, interleaved", f"{lat.rejects} non-202")
    line("POST /api/emails, p50 / p99", f"{app_ms[0]:,.1f} / {app_ms[1]:,.1f} ms")
    line("SDK begin_send(polling=False), p50 / p99", f"{sdk_ms[0]:,.1f} / {sdk_ms[1]:,.1f} ms")
    line("  SDK client CPU per send, p50", f"{percentile(lat.sdk_cpu_s, 50) * 1000:,.1f} ms")
    figs = [
        figure(SECTION, "send latency p50, app ÷ SDK", app_ms[0] / sdk_ms[0], at_most=1.5),
        figure(SECTION, "send latency p99, app ÷ SDK", app_ms[1] / sdk_ms[1], at_most=1.5),
    ]
    line(
        f"{CONCURRENT_SENDS} sends, {WORKERS} concurrent clients",
        f"{accepted} accepted (202), {CONCURRENT_SENDS - accepted} not",
    )
    rate = app_rate * accepted / CONCURRENT_SENDS
    figs.append(figure(SECTION, "accepted sends/s, 8 clients", rate, "/s", digits=0))
    line("  for scale: SDK sends/s straight to the sandbox", f"{sdk_rate:,.0f} /s")
    return figs


def _sends_without_sender(info: StackInfo) -> tuple[list[Figure], float]:
    """The latency probes alone; also returns the SDK p50 (ms)."""
    app, sdk = _clients(info)
    with app:
        lat = _latencies(app, sdk)
    app_ms, sdk_ms = lat.ms(lat.app_s), lat.ms(lat.sdk_s)
    line(f"same probes, {SENDER_FUNCTION} switched off", f"{lat.rejects} non-202")
    line("  POST /api/emails, p50 / p99", f"{app_ms[0]:,.1f} / {app_ms[1]:,.1f} ms")
    line("  SDK begin_send(polling=False), p50 / p99", f"{sdk_ms[0]:,.1f} / {sdk_ms[1]:,.1f} ms")
    figures = [
        figure(SECTION, "send latency p50, app ÷ SDK, sender off", app_ms[0] / sdk_ms[0]),
        figure(SECTION, "send latency p99, app ÷ SDK, sender off", app_ms[1] / sdk_ms[1]),
    ]
    return figures, sdk_ms[0]


def _accept_in_process(info: StackInfo, sdk_p50_ms: float) -> list[Figure]:
    """What `POST /api/emails` does under the host: Sending.accept in this process, requests
    counted per storage service and each storage step timed, to show where the latency goes."""
    from shared.app import wiring as services

    ports = {
        urlsplit(part.split("=", 1)[1]).port: part.split("Endpoint=", 1)[0].lower()
        for part in info.storage_connection_string.split(";")
        if "Endpoint=http" in part
    }
    settings = {
        **local_settings(),
        "AzureWebJobsStorage": info.storage_connection_string,
        "ADDRESS_HASH_KEY": "bench-address-hash-key-not-a-secret-0123456789",
        "ACS_ENDPOINT": info.sandbox_url or "",
        "ACS_KEY": DEFAULT_ACCESS_KEY,
    }
    with environment(settings):
        services.reset()
        try:
            sending = services.sending()
            body = json.dumps(send_request(0)).encode()
            sending.accept(body, "application/json", None, info.base_url)  # first use
            seconds, cpu = [], []
            with _counted_requests() as counts, _timed_steps() as steps:
                for _ in range(ACCEPTS_IN_PROCESS):
                    start, used = time.perf_counter(), time.process_time()
                    sending.accept(body, "application/json", None, info.base_url)
                    seconds.append(time.perf_counter() - start)
                    cpu.append(time.process_time() - used)
        finally:
            services.reset()
    per_send = {ports.get(port, str(port)): n / ACCEPTS_IN_PROCESS for port, n in counts.items()}
    shown = ", ".join(f"{name} {n:g}" for name, n in sorted(per_send.items()))
    line(
        f"Sending.accept in-process, {ACCEPTS_IN_PROCESS} sequential",
        f"p50 {percentile(seconds, 50) * 1000:,.1f} ms, "
        f"client CPU (all threads) {percentile(cpu, 50) * 1000:,.1f} ms",
    )
    line("  requests per accepted send, by storage service", shown)
    p50 = {name: _step_p50(samples) for name, samples in steps.items()}
    for name, (wall_ms, cpu_ms) in p50.items():
        line(f"  {name}, p50 wall / CPU", f"{wall_ms:,.1f} / {cpu_ms:,.1f} ms")
    # The steps that must follow one another: the reads decide the rows, the rows must be
    # committed before the index and the queue (which go out together) may point at them.
    figures = [figure(SECTION, "round trips/accepted send (in-process)", sum(per_send.values()))]
    path = ["suppression read", "accept transaction"]
    if all(name in p50 for name in path):
        # The reads run beside the key's claim, before the transaction; the index writes
        # beside the queue put.
        tail = max((p50[n][0] for n in ("index write", "queue put") if n in p50), default=0.0)
        critical = sum(p50[n][0] for n in path) + tail
        line("  critical path: read + transaction + max(index, queue)", f"{critical:,.1f} ms")
        figures.append(
            figure(SECTION, "storage critical path ÷ SDK p50 (floor)", critical / sdk_p50_ms)
        )
    return figures


# Which accept step an SDK call is, by client method and table (the prefix stripped).
_STEPS = {
    ("get_entity", "Suppressions"): "suppression read",
    ("create_entity", "Idempotency"): "idempotency claim",
    ("submit_transaction", "Messages"): "accept transaction",
    ("upsert_entity", "RecipientIndex"): "index write",
    ("send_message", ""): "queue put",
}


def _step_p50(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return (
        percentile([wall for wall, _ in samples], 50) * 1000,
        percentile([cpu for _, cpu in samples], 50) * 1000,
    )


@contextmanager
def _timed_steps() -> Iterator[dict[str, list[tuple[float, float]]]]:
    """Time each accept step at the SDK method (wall, and the calling thread's CPU: request
    building, signing, multipart encoding and parsing all happen there)."""
    from azure.data.tables import TableClient
    from azure.storage.queue import QueueClient

    steps: dict[str, list[tuple[float, float]]] = {}
    lock = threading.Lock()
    originals: list[tuple[type, str, Any]] = []

    def timed(cls: type, method: str) -> None:
        original = getattr(cls, method)

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            table = getattr(self, "table_name", "")
            name = next(
                (v for (m, t), v in _STEPS.items() if m == method and table.endswith(t)), None
            )
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(self, *args, **kwargs)
            finally:
                if name is not None:
                    with lock:
                        steps.setdefault(name, []).append(
                            (time.perf_counter() - start, time.thread_time() - cpu)
                        )

        originals.append((cls, method, original))
        setattr(cls, method, call)

    for method in ("get_entity", "create_entity", "submit_transaction", "upsert_entity"):
        timed(TableClient, method)
    timed(QueueClient, "send_message")
    try:
        yield steps
    finally:
        for cls, method, original in originals:
            setattr(cls, method, original)


@contextmanager
def _counted_requests() -> Iterator[Counter[int | None]]:
    """Count every azure-core request by port. The app builds its own clients
    (shared/edge/clients.py), so there is no seam to pass a hook through; the transport class
    is the one place."""
    from azure.core.pipeline.transport import RequestsTransport

    counts: Counter[int | None] = Counter()
    original = RequestsTransport.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        counts[urlsplit(request.url).port] += 1
        return original(self, request, **kwargs)

    RequestsTransport.send = send
    try:
        yield counts
    finally:
        RequestsTransport.send = original
