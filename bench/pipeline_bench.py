"""Delivery reports through `ReportRecorder.record` into Azurite: throughput, round trips, CPU.

Throughput is given as a ratio to raw single-entity upserts into the same Azurite from the same
thread pool, measured in alternating rounds in this run, so a busy machine moves both together.
The reports are a healthy sender's mix (`bench/payloads.py`: 4 % failures). The recorder also
does what a failure asks beyond its status row (suppression list, alerts, sender counters,
soft-bounce streaks): every request the app makes is counted, side effects included, and a
failures-only run and the store's own share (`record_delivery` alone) are shown apart.

The common path is run twice: as the instance that sent the messages (its row cache holds the
`sent` rows, so a report is one conditional write) and as another instance (a cold cache: a
read, then the write), which is what a scaled-out app sees for most reports.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import TableServiceClient, UpdateMode

from local.azurite import start_azurite
from shared.app import wiring as services
from shared.app.reports import EventOutcome, ReportRecorder
from shared.core.classification import Classification, classify, clear_cache
from shared.core.events import DeliveryReport, parse_event
from shared.core.settings import get_settings
from shared.core.state import (
    Fact,
    apply_fact,
    decide_report,
    fact_from_report,
    iso,
    timeline_entry,
)
from shared.core.status import SendState, Status
from shared.edge.messages import MessageStore

from .measure import RequestCounter, chunks, environment, pooled
from .payloads import MIX_LABEL, SENDER, mixed_events, recipients
from .report import Figure, figure, heading, line

SECTION = "pipeline"
REPORTS = 800  # common path: the message was accepted (and sent) by us first
ROUNDS = 4  # baseline and reports alternate in this many rounds
STORE_ONLY = 400  # the same mix through the store alone: its share of a report's time
FIRST_SIGHT = 300  # reports for messages we hold no row for
DUPLICATES = 200  # redeliveries of reports already recorded
BREAKDOWN = 200  # requests of each kind timed alone, to show where a report's time goes
DELIVERED_ONLY = 200  # the common path proper: a delivered report of our own send
FAILURES_ONLY = 200  # every report a failure: the side effects' cost
CPU_ITERATIONS = 20_000
PREFIX = "Bench"
BENCH_HASH_KEY = "bench-address-hash-key-not-a-secret-0123456789"
OURS = BENCH_HASH_KEY.encode()  # ids our accept would mint (`message_ids`)


def run() -> list[Figure]:
    heading("1. Delivery-report pipeline: ReportRecorder.record → Azurite")
    azurite = start_azurite()
    try:
        settings = {
            "AzureWebJobsStorage": azurite.connection_string,
            "ADDRESS_HASH_KEY": BENCH_HASH_KEY,
            "TABLE_PREFIX": PREFIX,
        }
        with environment(settings):
            services.reset()
            try:
                return _measure(azurite.connection_string)
            finally:
                services.reset()
    finally:
        azurite.stop()


def _measure(conn: str) -> list[Figure]:
    wire = RequestCounter()
    service = TableServiceClient.from_connection_string(conn, raw_request_hook=wire)
    # Every edge object the recorder is handed (suppression list, alert log, sender counters)
    # shares this client, so the side effects' requests are counted too.
    services.clients().table_service = service
    cache_bytes = get_settings().row_cache_mb << 20  # the default ROW_CACHE_MB
    store = MessageStore(service, PREFIX, cache_bytes)  # the instance that sent the messages
    store.create_tables()
    other = MessageStore(service, PREFIX)  # another instance: no cached rows
    baseline_table = service.get_table_client(f"{PREFIX}Baseline")
    baseline_table.create_table()

    settings = get_settings()
    side = (services.suppression_list(), services.alert_log(), services.sender_health())
    here, elsewhere_recorder = (ReportRecorder(settings, s, *side) for s in (store, other))

    def record(event: dict[str, Any]) -> EventOutcome:
        return here.record(event)

    def record_elsewhere(event: dict[str, Any]) -> EventOutcome:
        return elsewhere_recorder.record(event)

    now = datetime.now(UTC)
    accepted = recipients(REPORTS, "sent", OURS)
    sent_rows = write_sent_rows(store, accepted, now)
    events = mixed_events(accepted, now + timedelta(seconds=2))
    entities = baseline_entities(events)
    elsewhere = recipients(REPORTS, "elsewhere", OURS)
    write_sent_rows(other, elsewhere, now)  # sent by the other instance: not cached here
    cold_events = mixed_events(elsewhere, now + timedelta(seconds=2))

    # Warm up: connections, Azurite's code paths, the classifier's indexes.
    warm = recipients(40, "warm", OURS)
    write_sent_rows(store, warm, now)
    pooled(record, mixed_events(warm, now + timedelta(seconds=2)))
    pooled(lambda e: baseline_table.upsert_entity(e, mode=UpdateMode.REPLACE), entities[:50])

    upsert_s = report_s = cold_s = 0.0
    outcomes: Counter[EventOutcome] = Counter()
    report_requests = cold_requests = 0
    size = REPORTS // ROUNDS
    rounds = zip(
        chunks(events, size), chunks(cold_events, size), chunks(entities, size), strict=True
    )
    for batch, cold_batch, upserts in rounds:
        upsert_s += len(upserts) / pooled(
            lambda e: baseline_table.upsert_entity(e, mode=UpdateMode.REPLACE), upserts
        )
        before = wire.value
        start = time.perf_counter()
        outcomes.update(_pooled_outcomes(record, batch))
        report_s += time.perf_counter() - start
        report_requests += wire.value - before
        before = wire.value
        start = time.perf_counter()
        _pooled_outcomes(record_elsewhere, cold_batch)
        cold_s += time.perf_counter() - start
        cold_requests += wire.value - before
    upserts_per_s = REPORTS / upsert_s
    reports_per_s = REPORTS / report_s
    cold_per_s = REPORTS / cold_s

    # The store's share: the same mix through record_delivery alone (parsed and classified
    # beforehand), against the same baseline.
    store_only = recipients(STORE_ONLY, "store", OURS)
    write_sent_rows(store, store_only, now)
    reports = [_classified(e) for e in mixed_events(store_only, now + timedelta(seconds=2))]
    store_upserts_per_s = pooled(
        lambda e: baseline_table.upsert_entity(e, mode=UpdateMode.REPLACE), entities[:STORE_ONLY]
    )
    store_per_s = pooled(lambda r: store.record_delivery(*r), reports)

    fresh = recipients(FIRST_SIGHT, "fresh")
    before = wire.value
    start = time.perf_counter()
    first_outcomes = _pooled_outcomes(record, mixed_events(fresh, now))
    first_per_s = FIRST_SIGHT / (time.perf_counter() - start)
    first_trips = (wire.value - before) / FIRST_SIGHT

    before = wire.value
    dup_outcomes = _pooled_outcomes(record, events[:DUPLICATES])
    dup_trips = (wire.value - before) / DUPLICATES

    delivered = recipients(DELIVERED_ONLY, "delivered", OURS)
    write_sent_rows(store, delivered, now)
    before = wire.value
    _pooled_outcomes(record, mixed_events(delivered, now + timedelta(seconds=2), 10**9))
    delivered_trips = (wire.value - before) / DELIVERED_ONLY
    delivered = recipients(DELIVERED_ONLY, "delivered-elsewhere", OURS)
    write_sent_rows(other, delivered, now)
    before = wire.value
    _pooled_outcomes(record_elsewhere, mixed_events(delivered, now + timedelta(seconds=2), 10**9))
    delivered_cold_trips = (wire.value - before) / DELIVERED_ONLY

    failing = recipients(FAILURES_ONLY, "failing", OURS)
    write_sent_rows(store, failing, now)
    before = wire.value
    start = time.perf_counter()
    _pooled_outcomes(record, mixed_events(failing, now + timedelta(seconds=2), 1))
    failures_per_s = FAILURES_ONLY / (time.perf_counter() - start)
    failure_trips = (wire.value - before) / FAILURES_ONLY

    # Where a report's time goes: its two requests, alone, through the same pool.
    sample = entities[:BREAKDOWN]
    read: dict[str, Any] = {}

    def get(e: dict[str, Any]) -> None:
        read[e["PartitionKey"]] = baseline_table.get_entity(e["PartitionKey"], "r")

    reads_per_s = pooled(get, sample)
    writes_per_s = pooled(lambda e: _replace_if_match(baseline_table, e, read), sample)

    cpu_us, cpu_cold_us = _cpu_per_report(events, sent_rows)

    line("setup: accepted+sent rows written before timing", f"{REPORTS:,} messages × 2")
    line("row cache (ROW_CACHE_MB) of the sending instance", f"{cache_bytes >> 20} MB")
    line("mix", MIX_LABEL)
    line("outcomes (common path)", _outcomes(outcomes))
    line("raw upsert_entity, 8 threads (baseline)", f"{upserts_per_s:,.0f} upserts/s")
    line("  breakdown: raw get_entity, 8 threads", f"{reads_per_s:,.0f} /s")
    line("  breakdown: raw replace under If-Match, 8 threads", f"{writes_per_s:,.0f} /s")
    io_bound = 1 / (1 / reads_per_s + 1 / writes_per_s)
    line("  → one read + one conditional write back to back", f"{io_bound:,.0f} /s")
    line(
        "  store path alone (record_delivery, same mix)",
        f"{store_per_s:,.0f} /s = {store_per_s / store_upserts_per_s:.2f} × upserts",
    )
    figs = [
        figure(SECTION, "reports/s, 8 threads (common path)", reports_per_s, "/s", digits=0),
        figure(SECTION, "reports/s ÷ upserts/s", reports_per_s / upserts_per_s, at_least=0.5),
        figure(
            SECTION, "round trips/report (delivered, this instance)", delivered_trips, at_most=2
        ),
        figure(
            SECTION, "round trips/report (mix, side effects included)", report_requests / REPORTS
        ),
        figure(SECTION, "  another instance: reports/s ÷ upserts/s", cold_per_s / upserts_per_s),
        figure(
            SECTION,
            "round trips/report (delivered, another instance)",
            delivered_cold_trips,
            at_most=2,
        ),
    ]
    line("  another instance: round trips/report (mix)", f"{cold_requests / REPORTS:.2f}")
    line("failures only (bounced/failed/suppressed/spam)", f"{failures_per_s:,.0f} reports/s")
    figs.append(
        figure(SECTION, "round trips/report (failure, side effects included)", failure_trips)
    )
    line("outcomes (first sight)", _outcomes(first_outcomes))
    figs.append(figure(SECTION, "round trips/report (first sight)", first_trips))
    line("reports/s (first sight)", f"{first_per_s:,.0f} /s")
    line("outcomes (redelivered duplicates)", _outcomes(dup_outcomes))
    figs.append(figure(SECTION, "round trips/report (duplicate)", dup_trips))
    name = "CPU µs/report (parse+classify+decide)"
    figs.append(figure(SECTION, name, cpu_us, "µs", at_most=100, digits=1))
    line("  same, classifier text cache cleared before each", f"{cpu_cold_us:,.1f} µs")
    return figs


def write_sent_rows(
    store: MessageStore, pairs: list[tuple[str, str]], now: datetime
) -> dict[str, dict[str, Any]]:
    """Write the rows the send path leaves behind: the accept's transaction (message row and a
    status row carrying the message's size, tags and metadata, as `Sending` writes it), then
    the worker's `sent`; returns the status rows by id."""
    rows: dict[str, dict[str, Any]] = {}
    summary = {
        "sender": SENDER,
        "acceptedAt": iso(now),
        "recipientCount": 1,
        "sendState": SendState.QUEUED.value,
        "payload": "table",
        "sizeBytes": 2_000,
    }

    def accept(pair: tuple[str, str]) -> None:
        mid, addr = pair
        accepted = Fact(Status.ACCEPTED, now, "accept", sender=SENDER, accepted_at=now)
        row = apply_fact(None, accepted, addr, mid)
        assert row is not None
        copied = {"updatedAt": iso(now), "sizeBytes": 2_000, "tags": "", "metadata": ""}
        store.accept(mid, summary, None, [{**row, **copied}])
        result = store.record_fact(mid, addr, Fact(Status.SENT, now, "sent", sent_at=now))
        assert result.row is not None
        rows[mid] = dict(result.row)

    pooled(accept, pairs)
    return rows


def _replace_if_match(table: Any, entity: dict[str, Any], read: dict[str, Any]) -> None:
    """The shape of a report's write: replace the status row only if unchanged since read."""
    etag = read[entity["PartitionKey"]].metadata["etag"]
    table.update_entity(
        entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
    )


def _classified(raw: dict[str, Any]) -> tuple[DeliveryReport, Classification]:
    parsed = parse_event(raw)
    assert isinstance(parsed, DeliveryReport)
    return parsed, classify(parsed.acs_status, parsed.status_message)


def _pooled_outcomes(record: Any, events: Any) -> Counter[EventOutcome]:
    outcomes: Counter[EventOutcome] = Counter()
    pooled(lambda e: outcomes.update([record(e)]), events)
    return outcomes


def _outcomes(counts: Counter[EventOutcome]) -> str:
    return ", ".join(f"{k.value} {v:,}" for k, v in sorted(counts.items()))


def baseline_entities(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entity per report, the size of the status row a report writes (its event embedded),
    in its own partition."""
    entities = []
    for raw in events:
        parsed, classification = _classified(raw)
        fact = fact_from_report(parsed, classification)
        entry = timeline_entry(parsed)
        row = decide_report(None, fact, entry, parsed.recipient, parsed.message_id).row
        assert row is not None
        clean = {k: v for k, v in row.items() if v is not None}
        entities.append({**clean, "PartitionKey": f"b-{parsed.message_id}", "RowKey": "r"})
    return entities


def _cpu_per_report(
    events: list[dict[str, Any]], rows: dict[str, dict[str, Any]]
) -> tuple[float, float]:
    """process_time µs per report of the decisions ReportRecorder.record makes around its I/O."""

    def decide(raw: dict[str, Any], cold: bool) -> None:
        parsed = parse_event(raw)
        assert isinstance(parsed, DeliveryReport)
        if cold:
            clear_cache()
        classification = classify(parsed.acs_status, parsed.status_message)
        fact = fact_from_report(parsed, classification)
        entry = timeline_entry(parsed)
        row = rows[parsed.message_id]
        decide_report(row, fact, entry, parsed.recipient, parsed.message_id)

    results = []
    for cold in (False, True):
        clear_cache()
        for raw in events[:200]:
            decide(raw, cold)
        start = time.process_time()
        for i in range(CPU_ITERATIONS):
            decide(events[i % len(events)], cold)
        results.append((time.process_time() - start) / CPU_ITERATIONS * 1e6)
    return results[0], results[1]
