"""The running local stack over HTTP (issue #15): the Event Grid webhook and `POST /api/emails`,
each as a ratio to the raw storage work behind it, issued with the SDK from this process
against the same Azurite in the same run.

- Webhook: one Event Grid event per request (Event Grid's default maxEventsPerBatch is 1) from
  K concurrent clients, Delivered reports of our own sends (rows written here beforehand, so
  the host's row cache is cold) and of ids we never minted (first sight), against raw
  single-entity upserts of status-row-sized entities from K threads; the three alternate in
  rounds so a busy machine moves them together.
- Accept: sequential `POST /api/emails` (1 and 10 recipients) while the queue worker drains
  the sends to the sandbox, interleaved with a "raw accept": the accept's Table transaction
  (message row, payload row, a status row per recipient) then one queue put to a scratch queue,
  and a keyed `GET /api/explain` (no storage): the HTTP hop to the host, which the raw accept
  does not make, so the accept's own work is shown beside the ratio.

Storage requests are counted inside the host (bench/hostcount, loaded through PYTHONPATH) per
report and per accept, and in this process per accept (`Sending.accept` run here, every step
timed), so a ratio that misses its target comes with the requests that explain it.

The sandbox quota and the app's send rate are raised so the worker really sends; the
sandbox's delivery reports are held back past the end of the run (unless
SANDBOX_REPORT_DELAY is set) so they do not load the host while latencies are measured.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from local.acs_sandbox import DEFAULT_ACCESS_KEY
from local.azurite import ROOT
from local.ports import free_port
from local.stack import (
    SANDBOX_SENDER,
    Stack,
    StackInfo,
    local_hash_key,
    local_settings,
    wait_healthy,
)
from shared.core import keys, message_ids
from shared.core.settings import SEND_QUEUE
from shared.core.state import Fact, apply_fact, iso
from shared.core.status import SendState, Status
from shared.edge.messages import MessageStore
from shared.edge.sdk_batches import stock_batch_steps
from shared.edge.tables import AFTER_REPLY

from .measure import environment, percentile, pooled
from .payloads import mixed_events, recipients, send_request
from .pipeline_bench import baseline_entities, write_sent_rows
from .report import Figure, figure, heading, line

SECTION = "stack"
SENDER_FUNCTION = "send_queued_email"  # the queue trigger that hands accepted sends to ACS
HOOK_CLIENTS = 8  # Event Grid delivers to one endpoint concurrently
HOOK_REPORTS = 240  # per case, spread over HOOK_ROUNDS alternating rounds
HOOK_ROUNDS = 3
HOOK_WARM = 24  # per case, untimed
ACCEPTS = 200  # sequential requests per size: ≥ 200 samples for a p99
# The floor of any request through the host: keyed, classifier only, no storage.
FLOOR_QUERY = {"status": "Bounced", "message": "550 5.1.1 user unknown"}
RAW_EVERY = 2  # a raw accept after every 2nd request: 100 samples are plenty for a p50
ACCEPT_SIZES = (1, 10)  # recipients per request
ACCEPTS_IN_PROCESS = 20
SCRATCH_QUEUE = "bench-raw-accept"  # the raw accept's queue: never the app's send queue
DELIVERED_ONLY = 10**9  # `mixed_events(failure_every=)`: no failures
BENCH_HASH_KEY = "bench-address-hash-key-not-a-secret-0123456789"
# The webhook cases, and the baseline they are measured against.
RAW, OWN, FIRST = "raw upserts", "own sends (cold cache)", "first sight"


def run() -> list[Figure]:
    heading("4. Running stack: Functions host stand-in + Azurite + Event Grid topic + ACS sandbox")
    env = {
        "SANDBOX_QUOTA_PER_MINUTE": "1000000",
        "SANDBOX_QUOTA_PER_HOUR": "1000000",
        # The app's own ACS rate limit (30/min by default locally) would turn the worker's
        # drain into re-scheduling; the issue asks for latency while sends really go out.
        "SEND_RATE_PER_MINUTE": "1000000",
        "SEND_RATE_PER_HOUR": "1000000",
    }
    if not os.environ.get("SANDBOX_REPORT_DELAY"):
        env["SANDBOX_REPORT_DELAY"] = "3600"
    with _host_counts() as path, _running_stack(env) as info:
        host = _HostRequests(path, info)
        figures = _webhook(info, host)
        for size in ACCEPT_SIZES:
            figures += _accepts(info, host, size)
        figures += _accept_in_process(info)
    # The same accepts with the queue trigger switched off (the host's own
    # `AzureWebJobs.<name>.Disabled` setting): how much of the latency above is the worker's
    # sends sharing the host process, and so its GIL, with the accepts.
    off = {**env, f"AzureWebJobs.{SENDER_FUNCTION}.Disabled": "true"}
    with _host_counts() as path, _running_stack(off) as info:
        for size in ACCEPT_SIZES:
            figures += _accepts(info, _HostRequests(path, info), size, worker=False)
    return figures


@contextmanager
def _host_counts() -> Iterator[Path]:
    """Put bench/hostcount on the stack's PYTHONPATH: its sitecustomize counts each stack
    process's storage requests into `<path>.<pid>`."""
    with tempfile.TemporaryDirectory(prefix="bench-requests-") as folder:
        hook = str(Path(__file__).resolve().parent / "hostcount")
        paths = os.pathsep.join(filter(None, (hook, os.environ.get("PYTHONPATH"))))
        path = Path(folder) / "counts"
        with environment({"BENCH_REQUEST_COUNTS": str(path), "PYTHONPATH": paths}):
            yield path


def _storage_ports(conn: str) -> dict[int | None, str]:
    """Azurite's ports by service (table, queue, blob), from the connection string."""
    return {
        urlsplit(part.split("=", 1)[1]).port: part.split("Endpoint=", 1)[0].lower()
        for part in conn.split(";")
        if "Endpoint=http" in part
    }


class _HostRequests:
    """The storage requests the host's functions have made so far, by service (its queue
    polling left out). Also counts the host's timers (a few requests a minute): noise."""

    def __init__(self, path: Path, info: StackInfo) -> None:
        self.file = Path(f"{path}.{info.pids[0]}")  # Stack starts the host first
        self.ports = _storage_ports(info.storage_connection_string)

    def now(self) -> Counter[str]:
        time.sleep(0.15)  # the counting thread writes within 50 ms of a change
        if not self.file.exists():
            raise RuntimeError(f"{self.file} missing: the host did not load bench/hostcount")
        counts = json.loads(self.file.read_text())
        return Counter({self.ports.get(int(port), "other"): n for port, n in counts.items()})


@contextmanager
def _running_stack(env: dict[str, str]) -> Iterator[StackInfo]:
    with environment(env), _stack_json_kept():
        stack = Stack(None, free_port(), quiet=True)
        try:
            started = time.perf_counter()
            info = stack.start()
            wait_healthy(info.base_url)
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


def _prefix() -> str:
    return local_settings().get("TABLE_PREFIX") or "Email"


def _stack_hash_key() -> bytes:
    """The ADDRESS_HASH_KEY the stack's host runs with (as Stack.start chooses it)."""
    key = local_settings().get("ADDRESS_HASH_KEY") or local_hash_key(ROOT / ".local-data")
    return key.encode()


# --- webhook ----------------------------------------------------------------------------


def _webhook(info: StackInfo, host: _HostRequests) -> list[Figure]:
    conn = info.storage_connection_string
    service = TableServiceClient.from_connection_string(conn)
    store = MessageStore(service, _prefix())
    store.create_tables()
    baseline = service.get_table_client(f"{_prefix()}BenchBaseline")
    with suppress(ResourceExistsError):
        baseline.create_table()

    total = HOOK_WARM + HOOK_REPORTS
    now = datetime.now(UTC)
    # Our own sends: ids minted under the stack's key, rows written by this process (as the
    # send path leaves them), so the host knows them as ours but has none of them cached.
    own_pairs = recipients(total, "hook-own", _stack_hash_key())
    write_sent_rows(store, own_pairs, now)
    sent = {
        "sender": SANDBOX_SENDER,
        "acceptedAt": iso(now),
        "sentAt": iso(now),
        "recipientCount": 1,
        "sendState": SendState.SENT.value,
        "payload": "table",
    }
    pooled(lambda pair: store.write_message(pair[0], sent), own_pairs)  # the message rows
    own = mixed_events(own_pairs, now + timedelta(seconds=2), DELIVERED_ONLY)
    first = mixed_events(recipients(total, "hook-first"), now, DELIVERED_ONLY)
    # Raw upserts of the row a delivered report writes (its event embedded), one partition each.
    entities = baseline_entities(mixed_events(recipients(total, "hook-raw"), now, DELIVERED_ONLY))

    url = (
        f"{info.base_url}/runtime/webhooks/eventgrid"
        f"?functionName=record_delivery_report&code={info.function_key}"
    )
    limits = httpx.Limits(max_connections=HOOK_CLIENTS, max_keepalive_connections=HOOK_CLIENTS)
    client = httpx.Client(headers={"aeg-event-type": "Notification"}, timeout=60, limits=limits)
    replies: Counter[int] = Counter()

    def deliver(event: dict[str, Any]) -> None:
        replies[client.post(url, json=[event]).status_code] += 1  # Event Grid posts an array

    def upsert(entity: dict[str, Any]) -> None:
        baseline.upsert_entity(entity, mode=UpdateMode.REPLACE)

    cases: list[tuple[str, Callable[[Any], None], list[Any]]] = [
        (RAW, upsert, entities),
        (OWN, deliver, own),
        (FIRST, deliver, first),
    ]
    elapsed = dict.fromkeys((name for name, _, _ in cases), 0.0)
    requests = {name: Counter[str]() for name, _, _ in cases}
    cpu: dict[str, dict[str, float]] = {name: {} for name, _, _ in cases}
    size = HOOK_REPORTS // HOOK_ROUNDS
    with client:
        for _, fn, items in cases:  # connections, first-use clients, Azurite's code paths
            pooled(fn, items[:HOOK_WARM], HOOK_CLIENTS)
        replies.clear()
        for r in range(HOOK_ROUNDS):
            start = HOOK_WARM + r * size
            for name, fn, items in cases[r % 3 :] + cases[: r % 3]:  # each goes first once
                batch = items[start : start + size]
                before, used = host.now(), _cpu_seconds(info)
                elapsed[name] += len(batch) / pooled(fn, batch, HOOK_CLIENTS)
                for process, seconds in _cpu_seconds(info).items():
                    cpu[name][process] = cpu[name].get(process, 0.0) + seconds - used[process]
                requests[name] += host.now() - before
    timed = size * HOOK_ROUNDS
    rate = {name: timed / seconds for name, seconds in elapsed.items()}
    delivered = _delivered_share(store, own_pairs[HOOK_WARM:])

    line(
        f"{timed:,} per case, 1 event/request, {HOOK_CLIENTS} clients, {HOOK_ROUNDS} rounds",
        ", ".join(f"{n:,}× {code}" for code, n in sorted(replies.items())),
    )
    line(f"raw upsert_entity, {HOOK_CLIENTS} threads (baseline)", f"{rate[RAW]:,.0f} /s")
    line("own sends: status rows now delivered (sample)", f"{delivered:.0%}")
    # Work the host does after replying (buffered flushes) or on its timers lands here.
    line("host requests while raw upserts ran", _per(requests[RAW], 1))
    figures = []
    for case, target in ((OWN, 0.6), (FIRST, 0.4)):
        figures += [
            figure(SECTION, f"webhook reports/s, {case}", rate[case], "/s", digits=0),
            figure(SECTION, f"  {case}: ÷ raw upserts/s", rate[case] / rate[RAW], at_least=target),
        ]
        storage = sum(n for service, n in requests[case].items() if service != "other")
        figures.append(figure(SECTION, f"  {case}: storage requests/report", storage / timed))
        line(f"    host requests/report by service ({case})", _per(requests[case], timed))
    # Where the time goes: CPU per item by process. The machine's cores bound the rate at
    # cores ÷ (CPU per item, all processes): the raw upserts spend only Azurite's and a client's.
    cores = os.cpu_count() or 1
    for case in (RAW, OWN, FIRST):
        per: dict[str, float] = {n: sec * 1000 / timed for n, sec in cpu[case].items()}
        shown = ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(per.items()))
        cpu_ms = sum(per.values())
        line(f"  CPU ms per item by process ({case})", f"{shown}; total {cpu_ms:.1f}")
        line(
            f"    {cores} cores ÷ that CPU: the rate CPU alone allows",
            f"{cores * 1000 / cpu_ms:,.0f} /s",
        )
    return figures


def _cpu_seconds(info: StackInfo) -> dict[str, float]:
    """CPU seconds used so far (user + system) by the host, Azurite, the stack's other
    processes (ACS sandbox, event topics) and this one (the bench's clients)."""
    tick = os.sysconf("SC_CLK_TCK")

    def of(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

    host, *others, azurite = info.pids
    return {
        "host": of(host),
        "Azurite": of(azurite),
        "other stack": sum(of(pid) for pid in others),
        "bench clients": time.process_time(),
    }


def _per(counts: Counter[str], items: int) -> str:
    """`table 2.01, queue 0, other 1` per item; `other` is not storage (the event topics)."""
    return ", ".join(f"{name} {n / items:.2f}" for name, n in sorted(counts.items())) or "none"


def _delivered_share(store: MessageStore, pairs: list[tuple[str, str]], sample: int = 30) -> float:
    """Of a sample of our sends, the share whose status row now says delivered: the requests
    timed above did the work, not just answer 200."""
    step = max(1, len(pairs) // sample)
    picked = pairs[::step][:sample]
    done = 0
    for mid, _ in picked:
        rows = store.message_rows(mid)
        done += any(row.get("status") == Status.DELIVERED.value for row in rows)
    return done / len(picked)


# --- accept -----------------------------------------------------------------------------


class _RawAccept:
    """The storage work of an accept, straight from the SDK: the Table transaction the app
    submits (`MessageStore.accept`: message row, payload row, a status row per recipient,
    similar sizes) then one queue put, to a scratch queue so the worker never sees it. The SDK
    as shipped: default transport options, and azure-core's own `$batch` steps even when this
    process built the app's clients (which run them inline, `shared/edge/sdk_batches.py`)."""

    def __init__(self, conn: str) -> None:
        service = TableServiceClient.from_connection_string(conn)
        self.messages: TableClient = service.get_table_client(f"{_prefix()}Messages")
        self.queue = QueueClient.from_connection_string(
            conn, SCRATCH_QUEUE, message_encode_policy=TextBase64EncodePolicy()
        )
        with suppress(ResourceExistsError):
            self.queue.create_queue()
        self.key = BENCH_HASH_KEY.encode()

    def __call__(self, n: int, count: int) -> None:
        now = datetime.now(UTC)
        mid = message_ids.new_id(self.key)
        pk = keys.message_key(mid)
        request = send_request(n, count)
        message = {
            "senderAddress": SANDBOX_SENDER,
            "recipients": {"to": request["to"]},
            "content": {"subject": request["subject"], "plainText": request["plainText"]},
        }
        payload = json.dumps(message, separators=(",", ":"))
        summary = {
            "sender": SANDBOX_SENDER,
            "acceptedAt": iso(now),
            "recipientCount": count,
            "sendState": SendState.QUEUED.value,
            "payload": "table",
            "sizeBytes": len(payload),
        }
        ops: list[Any] = [
            ("create", {**summary, "PartitionKey": pk, "RowKey": keys.MESSAGE_ROW}),
            ("create", {"PartitionKey": pk, "RowKey": "p", "c00": payload}),
        ]
        for to in request["to"]:
            address = to["address"]
            fact = Fact(Status.ACCEPTED, now, "accept", sender=SANDBOX_SENDER, accepted_at=now)
            row = apply_fact(None, fact, address, mid)
            assert row is not None
            entity = {k: v for k, v in row.items() if v is not None}
            entity |= {"updatedAt": iso(now), "sizeBytes": len(payload)}
            rk = keys.status_row(keys.address_key(address))
            ops.append(
                (
                    "upsert",
                    {**entity, "PartitionKey": pk, "RowKey": rk},
                    {"mode": UpdateMode.REPLACE},
                )
            )
        with stock_batch_steps():  # the SDK as shipped, whatever this process turned on
            self.messages.submit_transaction(ops)
        self.queue.send_message(json.dumps({"messageId": mid, "attempt": 0}))


def _sandbox_sends(info: StackInfo) -> int:
    """How many sends the sandbox has taken so far: the worker's progress."""
    reply = httpx.get(f"{info.sandbox_url}/sandbox/operations", timeout=30)
    return len(reply.json()["operations"])


def _accepts(
    info: StackInfo, host: _HostRequests, count: int, *, worker: bool = True
) -> list[Figure]:
    """Sequential POST /api/emails to `count` recipients, interleaved with raw accepts (so
    drift hits both alike). `worker` False: the stack's sender is switched off (no targets:
    it shows the worker's share)."""
    assert info.sandbox_url is not None, "the bench needs the ACS sandbox, not a real resource"
    raw = _RawAccept(info.storage_connection_string)
    backlog = QueueClient.from_connection_string(info.storage_connection_string, SEND_QUEUE)
    app = httpx.Client(
        base_url=info.base_url, headers={"x-functions-key": info.function_key}, timeout=60
    )
    app_s: list[float] = []
    raw_s: list[float] = []
    floor_s: list[float] = []  # a keyed request that touches no storage: the HTTP hop alone
    rejects = 0
    with app:
        for n in range(5):  # warm: connections, first-use clients, the tables' code paths
            app.post("/api/emails", json=send_request(n, count))
            raw(n, count)
        sent_before, requests_before = _sandbox_sends(info), host.now()
        depth = []
        for n in range(ACCEPTS):
            body = send_request(n, count)
            start = time.perf_counter()
            rejects += app.post("/api/emails", json=body).status_code != 202
            app_s.append(time.perf_counter() - start)
            if n % RAW_EVERY == 0:
                start = time.perf_counter()
                raw(n, count)
                raw_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                app.get("/api/explain", params=FLOOR_QUERY).raise_for_status()
                floor_s.append(time.perf_counter() - start)
            if n % (ACCEPTS // 4) == ACCEPTS // 8:
                depth.append(backlog.get_queue_properties().approximate_message_count)
        sent = _sandbox_sends(info) - sent_before
        requests = host.now() - requests_before

    app_p50, app_p99 = percentile(app_s, 50) * 1000, percentile(app_s, 99) * 1000
    raw_p50, raw_p99 = percentile(raw_s, 50) * 1000, percentile(raw_s, 99) * 1000
    floor_p50 = percentile(floor_s, 50) * 1000
    who = f"{count} recipient{'s' if count > 1 else ''}"

    def beyond() -> Figure:  # printed when made: after the lines it explains
        return figure(
            SECTION,
            f"(accept p50 − HTTP hop p50) ÷ raw p50, {who}{'' if worker else ', worker off'}",
            (app_p50 - floor_p50) / raw_p50,
        )

    hop = "  the HTTP hop alone: GET /api/explain (keyed, no storage), p50"
    if not worker:
        line(f"{ACCEPTS} sequential accepts, {who}, worker OFF", f"{rejects} non-202")
        line("  POST /api/emails, p50 / p99", f"{app_p50:,.1f} / {app_p99:,.1f} ms")
        line("  raw accept (transaction + queue put), p50", f"{raw_p50:,.1f} ms")
        line(hop, f"{floor_p50:,.1f} ms")
        return [
            figure(SECTION, f"accept p50 ÷ raw p50, {who}, worker off", app_p50 / raw_p50),
            beyond(),
        ]
    line(f"{ACCEPTS} sequential accepts, {who}, {len(raw_s)} raw between", f"{rejects} non-202")
    line(
        "  worker meanwhile: sends to the sandbox, send queue depth",
        f"{sent:,} sent, depth {' → '.join(str(d) for d in depth)}",
    )
    line("  host requests/accept, the worker's sends included", _per(requests, ACCEPTS))
    line("  POST /api/emails, p50 / p99", f"{app_p50:,.1f} / {app_p99:,.1f} ms")
    line("  raw accept (transaction + queue put), p50 / p99", f"{raw_p50:,.1f} / {raw_p99:,.1f} ms")
    line(hop, f"{floor_p50:,.1f} ms")
    figures = [
        figure(SECTION, f"accept p50 ÷ raw p50, {who}", app_p50 / raw_p50, at_most=1.5),
        figure(SECTION, f"accept p99 ÷ accept p50, {who}", app_p99 / app_p50, at_most=3),
        beyond(),
    ]
    return figures


def _accept_in_process(info: StackInfo) -> list[Figure]:
    """What `POST /api/emails` does under the host: Sending.accept in this process, requests
    counted per storage service and each storage step timed, to show where the latency goes."""
    from shared.app import wiring as services

    ports = _storage_ports(info.storage_connection_string)
    settings = {
        **local_settings(),
        "AzureWebJobsStorage": info.storage_connection_string,
        "ADDRESS_HASH_KEY": BENCH_HASH_KEY,
        "ACS_ENDPOINT": info.sandbox_url or "",
        "ACS_KEY": DEFAULT_ACCESS_KEY,
    }
    figures = []
    with environment(settings):
        services.reset()
        try:
            sending = services.sending()
            for count in ACCEPT_SIZES:
                figures += _accept_steps(sending, info, ports, count)
        finally:
            services.reset()
    return figures


def _accept_steps(
    sending: Any, info: StackInfo, ports: dict[int | None, str], count: int
) -> list[Figure]:
    body = json.dumps(send_request(0, count)).encode()
    sending.accept(body, "application/json", None, info.base_url)  # first use
    AFTER_REPLY.settle(10)
    seconds, cpu, replied = [], [], 0
    with _counted_requests() as counts, _timed_steps() as steps:
        for _ in range(ACCEPTS_IN_PROCESS):
            before = sum(counts.values())
            start, used = time.perf_counter(), time.process_time()
            sending.accept(body, "application/json", None, info.base_url)
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - used)
            replied += sum(counts.values()) - before
            AFTER_REPLY.settle(10)  # the index and expiry writes that follow the reply
    per_send = {ports.get(port, str(port)): n / ACCEPTS_IN_PROCESS for port, n in counts.items()}
    shown = ", ".join(f"{name} {n:g}" for name, n in sorted(per_send.items()))
    who = f"{count} recipient{'s' if count > 1 else ''}"
    line(
        f"Sending.accept in-process, {who}, {ACCEPTS_IN_PROCESS} sequential",
        f"p50 {percentile(seconds, 50) * 1000:,.1f} ms, "
        f"client CPU (all threads) {percentile(cpu, 50) * 1000:,.1f} ms",
    )
    line("  storage requests per accept, by service (after the reply included)", shown)
    line("  … of them before the reply", f"{replied / ACCEPTS_IN_PROCESS:g}")
    p50 = {name: _step_p50(samples) for name, samples in steps.items()}
    for name, (wall_ms, cpu_ms) in p50.items():
        line(f"  {name}, p50 wall / CPU (per call)", f"{wall_ms:,.1f} / {cpu_ms:,.1f} ms")
    requests = sum(per_send.values())
    figures = [
        figure(SECTION, f"storage requests/accept, {who} (in-process)", requests),
        figure(SECTION, f"… before the reply, {who}", replied / ACCEPTS_IN_PROCESS),
    ]
    # Two rounds before the reply: the suppression reads beside the transaction, then the
    # queue put (the index writes and the expiry entry follow the reply).
    first = [p50[n][0] for n in ("suppression read", "accept transaction") if n in p50]
    if first and "queue put" in p50:
        critical = max(first) + p50["queue put"][0]
        line("  critical path: max(read, transaction) + queue put", f"{critical:,.1f} ms")
    return figures


# Which accept step an SDK call is, by client method and table (the prefix stripped).
_STEPS = {
    ("get_entity", "Suppressions"): "suppression read",
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
