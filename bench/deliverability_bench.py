"""Deliverability rollups: the extra storage requests per report on the common path, and a
30-day report query over 50 groups, against Azurite.

Common path: a delivered report of our own send, recorded by the instance that sent it (status
rows carry `sizeBytes`, as our accept writes them). The same reports go through a recorder
without projections and one with the rollup projection, every request on the wire counted;
the rollup buffer is flushed every FLUSH_EVERY reports (what one instance receiving 20 reports/s
flushes every ROLLUP_FLUSH_SECONDS = 5 s), so the flushes' writes are in the figure.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import TableServiceClient

from local.azurite import start_azurite
from shared.app import wiring as services
from shared.app.deliverability import Deliverability, DeliverabilityProjection, MessageFacts
from shared.app.reports import ReportRecorder
from shared.core.rollups import (
    OUTCOMES,
    Cell,
    Dimension,
    Outcome,
    RowId,
    bucket_of,
    group_key,
)
from shared.core.settings import get_settings
from shared.core.state import Fact, apply_fact, iso
from shared.core.status import Status
from shared.edge.messages import MessageStore
from shared.edge.rollups import RollupStore

from .measure import RequestCounter, environment
from .payloads import SENDER, delivery_event
from .report import Figure, figure, heading, line

SECTION = "deliverability"
PREFIX = "BenchRollups"
REPORTS = 400  # per recorder
FLUSH_EVERY = 100
DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "contoso.com", "fabrikam.de")
QUERY_DAYS = 30
QUERY_GROUPS = 50
QUERY_RUNS = 15


def run() -> list[Figure]:
    heading("7. Deliverability rollups: extra requests per report; a 30-day query")
    azurite = start_azurite()
    try:
        settings = {
            "AzureWebJobsStorage": azurite.connection_string,
            "ADDRESS_HASH_KEY": "bench-address-hash-key-not-a-secret-0123456789",
            "EMAIL_STORAGE_CONNECTION_STRING": "",
            "TABLE_PREFIX": PREFIX,
        }
        with environment(settings):
            services.reset()
            try:
                return _report_cost(azurite.connection_string) + _query_time(
                    azurite.connection_string
                )
            finally:
                services.reset()
    finally:
        azurite.stop()


def _sent(store: MessageStore, count: int, tag: str, now: datetime) -> list[tuple[str, str]]:
    """Messages accepted and sent the way our send path leaves them (one recipient each)."""
    pairs = []
    for n in range(count):
        mid, addr = f"{tag}-{n}-{random.getrandbits(32):08x}", f"{tag}{n}@{DOMAINS[n % 5]}"
        accepted = Fact(Status.ACCEPTED, now, "accept", sender=SENDER, accepted_at=now)
        row = apply_fact(None, accepted, addr, mid)
        assert row is not None
        summary = {"sender": SENDER, "acceptedAt": iso(now), "sizeBytes": 40_000}
        store.accept(mid, summary, None, [{**row, "sizeBytes": 40_000}])
        store.record_fact(mid, addr, Fact(Status.SENT, now, "sent", sent_at=now))
        pairs.append((mid, addr))
    return pairs


def _report_cost(conn: str) -> list[Figure]:
    wire = RequestCounter()
    service = TableServiceClient.from_connection_string(conn, raw_request_hook=wire)
    services.clients().table_service = service
    settings = get_settings()
    store = MessageStore(service, PREFIX, settings.row_cache_mb << 20)
    store.create_tables()
    rollups = RollupStore(service, PREFIX, settings.rollup_shards, 3600, background=False)
    rollups.create_table()
    side = (services.suppression_list(), services.alert_log(), services.sender_health())
    plain = ReportRecorder(settings, store, *side)
    projection = DeliverabilityProjection(rollups, MessageFacts(store))
    with_rollups = ReportRecorder(settings, store, *side, projections=[projection])
    now = datetime.now(UTC)
    warm = _sent(store, 20, "warm", now)
    for mid, addr in warm:
        with_rollups.record(delivery_event(mid, addr, at=now + timedelta(seconds=3)))
    rollups.flush()

    def requests(recorder: ReportRecorder, tag: str, flush_every: int | None) -> float:
        pairs = _sent(store, REPORTS, tag, now)
        before = wire.value
        for n, (mid, addr) in enumerate(pairs, 1):
            recorder.record(delivery_event(mid, addr, at=now + timedelta(seconds=3)))
            if flush_every and n % flush_every == 0:
                rollups.flush()
        if flush_every:
            rollups.flush()
        return (wire.value - before) / REPORTS

    base = requests(plain, "plain", None)
    rolled = requests(with_rollups, "rolled", FLUSH_EVERY)
    busy = requests(with_rollups, "busy", FLUSH_EVERY * 5)
    line("requests per delivered report, no rollups", f"{base:.2f}")
    line(f"… with rollups (flush every {FLUSH_EVERY} reports)", f"{rolled:.2f}")
    line(f"… with rollups (flush every {FLUSH_EVERY * 5} reports)", f"{busy:.2f}")
    return [
        figure(
            SECTION,
            f"extra requests/report (flush every {FLUSH_EVERY})",
            rolled - base,
            at_most=1.0,
        ),
        figure(SECTION, f"extra requests/report (flush every {FLUSH_EVERY * 5})", busy - base),
    ]


def _query_time(conn: str) -> list[Figure]:
    """Rows of QUERY_DAYS days × QUERY_GROUPS recipient domains (hour and day rows, as a real
    flush writes them), then the report grouped by recipient domain over the whole window."""
    service = TableServiceClient.from_connection_string(conn)
    settings = get_settings()
    rollups = RollupStore(service, PREFIX + "Q", settings.rollup_shards, 3600, background=False)
    rollups.create_table()
    rng = random.Random(5)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=QUERY_DAYS)
    domains = [f"d{n:02d}.example" for n in range(QUERY_GROUPS)]
    at = start
    while at < end:
        hour, day = f"h{at:%Y%m%d%H}", f"d{at:%Y%m%d}"
        cells: list[tuple[RowId, str, Cell]] = []
        for domain in domains:
            cell = Cell()
            cell.counts[OUTCOMES.index(Outcome.DELIVERED)] = rng.randint(20, 200)
            cell.counts[OUTCOMES.index(Outcome.HARD_BOUNCED)] = rng.randint(0, 5)
            for _ in range(12):  # a spread of delivery times: a dozen buckets per group-hour
                bucket = bucket_of(rng.lognormvariate(9.5, 1.0))
                cell.latency[bucket] = cell.latency.get(bucket, 0) + rng.randint(1, 10)
            key = group_key(Dimension.RECIPIENT_DOMAIN, domain)
            for period in (hour, day):
                cells.append((("*", Dimension.RECIPIENT_DOMAIN.value, period), key, cell))
        rollups.add(cells)
        at += timedelta(hours=1)
    rollups.flush()
    reports = Deliverability(settings, rollups)
    query = {"from": start.isoformat(), "to": end.isoformat(), "groupBy": "recipientDomain"}
    answer: dict[str, Any] = reports.report(query)
    assert len(answer["groups"]) == QUERY_GROUPS, len(answer["groups"])
    times = []
    for _ in range(QUERY_RUNS):
        t0 = time.perf_counter()
        reports.report(query)
        times.append((time.perf_counter() - t0) * 1000)
    median = statistics.median(times)
    line(
        f"report over {QUERY_DAYS} days × {QUERY_GROUPS} groups, median of {QUERY_RUNS}",
        f"{median:.0f} ms",
    )
    return [
        figure(
            SECTION,
            f"query {QUERY_DAYS} days × {QUERY_GROUPS} groups (median)",
            median,
            "ms",
            at_most=200,
            digits=0,
        )
    ]
