"""Sender-domain health in Table Storage: sharded rate counters, alert episodes, auto-pause.

Tables (prefixed by TABLE_PREFIX):
- `<p>SenderCounters`  PartitionKey = `<domain>|<shard>`, RowKey = bucket start (`YYYYMMDDHHMM`
  UTC); properties `sent`, `hard`, `spam`. An increment is an ETag read-modify-write of one row
  in a randomly chosen shard, so neither a row nor a partition takes a domain's whole write rate
  (README: scale math). Counting the window is one range query per shard.
- `<p>Senders`  PartitionKey = `senders`, RowKey = domain: when the domain was last active, the
  episode of each metric (`shared/rates.py`), the pause, and alerts decided but not yet recorded
  (`pendingAlerts`, written in the same ETag update as the decision, so a crash between the two
  cannot lose an alert: the next evaluation records them; alert ids are deterministic).

Only hard bounces, spam reports, sends from our worker and reports of mail not sent through us
are counted: a delivered report of our own send costs nothing here. Counting is at most once:
it follows a first recording of the report, so a crash in between loses one count (a statistic,
not state), and a redelivery never counts twice.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Mapping
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient, UpdateMode

from shared.core import keys
from shared.core.alerts import Alert, AlertType, for_rate
from shared.core.errors import Transient
from shared.core.rates import Counts, Episode, Level, Metric, RatePolicy, Transition, evaluate
from shared.core.state import iso, parse_iso
from shared.edge.tables import (
    FANOUT,
    MAX_CONFLICT_RETRIES,
    backoff,
    etag_of,
    put_entity,
    read_entity,
    storage_errors,
)

if TYPE_CHECKING:
    from shared.edge.alert_log import AlertLog

log = logging.getLogger(__name__)

NOT_JUDGED = "not_judged"  # a level below RATE_MIN_VOLUME: too few sends to say "ok"

REGISTRY = "senders"
# How long `add_soon` holds counts before writing them: the loss window of a crash.
FLUSH_AFTER_S = 5.0


def _bucket(at: datetime, minutes: int) -> str:
    at = at.astimezone(UTC)
    floored = at.replace(second=0, microsecond=0) - timedelta(minutes=at.minute % minutes)
    return floored.strftime("%Y%m%d%H%M")


class SenderHealth:
    def __init__(
        self,
        service: TableServiceClient,
        prefix: str,
        policy: RatePolicy,
        shards: int,
        alerts: AlertLog,
        auto_pause: bool = False,
    ) -> None:
        self.alerts = alerts
        self.counters = service.get_table_client(f"{prefix}SenderCounters")
        self.senders = service.get_table_client(f"{prefix}Senders")
        self.policy = policy
        self.shards = shards
        self.auto_pause = auto_pause  # a critical rate also pauses the domain
        self._pending: dict[tuple[str, datetime], Counts] = {}
        self._pending_lock = threading.Lock()
        self._flush_timer: threading.Timer | None = None

    def create_tables(self) -> None:
        for table in (self.counters, self.senders):
            with storage_errors(), suppress(ResourceExistsError):
                table.create_table()

    # --- counting -----------------------------------------------------------------------

    def add(self, domain: str, counts: Counts, now: datetime | None = None) -> None:
        """Add to this minute's counters of `domain` (one shard, chosen at random)."""
        if not domain or counts == Counts():
            return
        now = now or datetime.now(UTC)
        shard = random.randrange(self.shards)  # noqa: S311 - load spreading only
        pk = f"{keys.encode(domain)}|{shard:02d}"
        rk = _bucket(now, self.policy.bucket_minutes)
        for attempt in range(MAX_CONFLICT_RETRIES):
            row = read_entity(self.counters, pk, rk)
            entity = {
                "PartitionKey": pk,
                "RowKey": rk,
                "sent": int((row or {}).get("sent", 0)) + counts.sent,
                "hard": int((row or {}).get("hard", 0)) + counts.hard,
                "spam": int((row or {}).get("spam", 0)) + counts.spam,
            }
            if not put_entity(self.counters, entity, etag_of(row)):
                backoff(attempt)
                continue
            if row is None:  # a new bucket row: (re)register the domain as active
                self._touch(domain, now)
            return
        raise Transient("sender counter kept changing under us")

    def add_soon(self, domain: str, counts: Counts, now: datetime | None = None) -> None:
        """`add`, batched per instance: counts wait in memory up to FLUSH_AFTER_S, then one
        write per domain and minute adds them up (off the request that counted them). A crash
        loses at most the last FLUSH_AFTER_S of these counts (statistics, not state); the
        first-sight path counts this way, so its report costs no counter request."""
        if not domain or counts == Counts():
            return
        bucket = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
        with self._pending_lock:
            held = self._pending.get((domain, bucket), Counts())
            self._pending[(domain, bucket)] = held + counts
            if self._flush_timer is None:
                self._flush_timer = threading.Timer(FLUSH_AFTER_S, self._flush_on_timer)
                self._flush_timer.daemon = True
                self._flush_timer.start()

    def flush(self) -> None:
        """Write the counts `add_soon` holds (the timer does this; tests and shutdown too)."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
            timer, self._flush_timer = self._flush_timer, None
        if timer is not None:
            timer.cancel()
        failed: list[tuple[tuple[str, datetime], Counts]] = []
        for (domain, bucket), counts in pending.items():
            try:
                self.add(domain, counts, bucket)
            except Transient as exc:  # kept for the next flush: counted late, not lost
                log.warning("sender counters not flushed yet (%s)", exc)
                failed.append(((domain, bucket), counts))
        if failed:
            for key, counts in failed:
                self.add_soon(key[0], counts, key[1])

    def _flush_on_timer(self) -> None:
        try:
            self.flush()
        except Exception:  # a timer thread has no caller to raise to
            log.exception("sender counter flush failed")

    def _touch(self, domain: str, now: datetime) -> None:
        entity = {
            "PartitionKey": REGISTRY,
            "RowKey": keys.encode(domain),
            "domain": domain,
            "lastActive": iso(now),
        }
        with storage_errors():
            self.senders.upsert_entity(entity, mode=UpdateMode.MERGE)

    def window_counts(self, domain: str, now: datetime, since: datetime | None = None) -> Counts:
        """The counts of the sliding window ending now (or starting after `since`)."""
        width = self.policy.bucket_minutes
        first = _bucket(now - self.policy.window, width)
        if since is not None and since > now - self.policy.window:
            # from the first whole bucket after `since` (a resume): the counts that caused
            # the pause, even those in the resume's own bucket, must not count again
            first = max(first, _bucket(since + timedelta(minutes=width), width))
        prefix = keys.encode(domain).replace("'", "''")

        def shard_total(shard: int) -> Counts:
            query = f"PartitionKey eq '{prefix}|{shard:02d}' and RowKey ge '{first}'"
            total = Counts()
            with storage_errors():
                for row in self.counters.query_entities(query, select=["sent", "hard", "spam"]):
                    total += Counts(
                        int(row.get("sent", 0)), int(row.get("hard", 0)), int(row.get("spam", 0))
                    )
            return total

        return sum(FANOUT.map(shard_total, range(self.shards)), Counts())

    # --- evaluation (timer) ---------------------------------------------------------------

    def evaluate_all(self, now: datetime | None = None) -> list[Alert]:
        """Judge every domain that was active in the window or is in an episode or paused."""
        self.flush()  # this instance's batched counts first
        now = now or datetime.now(UTC)
        with storage_errors():
            rows = list(self.senders.query_entities(f"PartitionKey eq '{REGISTRY}'"))
        raised: list[Alert] = []
        for row in rows:
            active = parse_iso(row.get("lastActive"))
            in_episode = any(
                Episode.from_json(_json(row.get(m.value))).level is not Level.OK for m in Metric
            )
            recent = active is not None and now - active <= self.policy.window
            if recent or in_episode or row.get("pendingAlerts"):
                raised += self.evaluate(str(row.get("domain") or keys.decode(row["RowKey"])), now)
        return raised

    def evaluate(self, domain: str, now: datetime) -> list[Alert]:
        """Judge one domain; returns the alerts recorded by this call."""
        for attempt in range(MAX_CONFLICT_RETRIES):
            row = read_entity(self.senders, REGISTRY, keys.encode(domain))
            if row is None:
                return []
            pending = _alerts(row.get("pendingAlerts"))
            if pending:  # decided before, not yet recorded (a crash): record them first
                return self._record(row, pending)
            since = parse_iso(row.get("windowStart"))
            counts = self.window_counts(domain, now, since)
            paused = bool(row.get("paused"))
            updates: dict[str, Any] = {}
            alerts: list[Alert] = []
            for metric in Metric:
                before = Episode.from_json(_json(row.get(metric.value)))
                after, transition = evaluate(before, counts, metric, self.policy, now)
                if after == before:
                    continue
                updates[metric.value] = json.dumps(after.to_json())
                if after.level is Level.CRITICAL and self.auto_pause and not paused:
                    paused = True
                    updates |= {"paused": True, "pausedAt": iso(now), "pauseReason": metric.value}
                if transition is not Transition.NONE:
                    alerts.append(self._alert(domain, metric, after, before, counts, paused, now))
            if not updates:
                return []
            if alerts:
                updates["pendingAlerts"] = json.dumps([a.cloud_event() for a in alerts])
            if not self._update(row, updates):
                backoff(attempt)
                continue
            if paused and not row.get("paused"):
                log.warning("sender %s paused: critical %s rate", domain, updates["pauseReason"])
            return self._record({**row, **updates}, alerts)
        raise Transient("sender row kept changing under us")

    def _alert(
        self,
        domain: str,
        metric: Metric,
        after: Episode,
        before: Episode,
        counts: Counts,
        paused: bool,
        now: datetime,
    ) -> Alert:
        recovered = after.level is Level.OK
        level = before.level if recovered else after.level
        thresholds = self.policy.thresholds(metric)
        since = before.since if recovered else after.since
        return for_rate(
            domain=domain,
            metric=metric.value,
            level=level.value,
            recovered=recovered,
            rate=counts.rate(metric),
            counts={"sent": counts.sent, "hardBounces": counts.hard, "spamReports": counts.spam},
            thresholds={"warning": thresholds.warning, "critical": thresholds.critical},
            window_minutes=int(self.policy.window.total_seconds() // 60),
            episode_since=(since or now).isoformat(),
            paused=paused and not recovered,
            at=now,
        )

    def _record(self, row: Mapping[str, Any], alerts: list[Alert]) -> list[Alert]:
        for alert in alerts:
            self.alerts.raise_alert(alert)
        # Recorded: clear them. A 412 (changed meanwhile) leaves them for the next evaluation,
        # which records them again as the no-op it is (same alert ids).
        fresh = read_entity(self.senders, REGISTRY, row["RowKey"])
        if fresh is not None and fresh.get("pendingAlerts"):
            waiting = {a.id for a in _alerts(fresh["pendingAlerts"])}
            if waiting <= {a.id for a in alerts}:  # never clear ones decided after ours
                self._update(fresh, {"pendingAlerts": None})
        return alerts

    # --- pause --------------------------------------------------------------------------

    def is_paused(self, domain: str) -> bool:
        row = read_entity(self.senders, REGISTRY, keys.encode(domain)) if domain else None
        return bool(row and row.get("paused"))

    def resume(self, domain: str, operator: str, reason: str | None, now: datetime) -> bool | None:
        """Lift the pause; False when the domain was not paused (nothing changed), None when
        nothing was ever sent from or reported for it.

        The rate window restarts at the resume, and both episodes end quietly: the counts that
        caused the pause must not pause the domain again on the next evaluation.
        """
        for attempt in range(MAX_CONFLICT_RETRIES):
            row = read_entity(self.senders, REGISTRY, keys.encode(domain))
            if row is None:
                return None
            if not row.get("paused"):
                return False
            updates: dict[str, Any] = {
                "paused": False,
                "resumedAt": iso(now),
                "resumedBy": operator,
                "resumeReason": reason,
                "windowStart": iso(now),
            }
            for metric in Metric:
                episode = Episode.from_json(_json(row.get(metric.value)))
                if episode.level is not Level.OK:
                    updates[metric.value] = json.dumps(episode.ended(now).to_json())
            if self._update(row, updates):
                log.info("sender %s resumed by an operator", domain)
                return True
            backoff(attempt)
        raise Transient("sender row kept changing under us")

    def view(self, domain: str, now: datetime | None = None) -> dict[str, Any] | None:
        self.flush()
        now = now or datetime.now(UTC)
        row = read_entity(self.senders, REGISTRY, keys.encode(domain))
        if row is None:
            return None
        counts = self.window_counts(domain, now, parse_iso(row.get("windowStart")))
        policy = self.policy
        metrics = {}
        for metric in Metric:
            episode = Episode.from_json(_json(row.get(metric.value)))
            thresholds = policy.thresholds(metric)
            rate = counts.rate(metric)
            judged = counts.sent >= policy.min_volume or episode.level is not Level.OK
            metrics[metric.value] = {
                "ratePercent": None if rate is None else round(rate, 4),
                "level": episode.level.value if judged else NOT_JUDGED,
                "levelSince": episode.since.isoformat() if episode.since else None,
                "warningPercent": thresholds.warning,
                "criticalPercent": thresholds.critical,
            }
        return {
            "domain": row.get("domain") or domain,
            "lastActive": row.get("lastActive"),
            "window": {
                "minutes": int(policy.window.total_seconds() // 60),
                "since": row.get("windowStart"),
                "minVolume": policy.min_volume,
                "sent": counts.sent,
                "hardBounces": counts.hard,
                "spamReports": counts.spam,
                "judged": counts.sent >= policy.min_volume,
            },
            "bounce": metrics["bounce"],
            "spam": metrics["spam"],
            "paused": bool(row.get("paused")),
            "pausedAt": row.get("pausedAt") if row.get("paused") else None,
            "pauseReason": row.get("pauseReason") if row.get("paused") else None,
            "resumedAt": row.get("resumedAt"),
            "resumedBy": row.get("resumedBy"),
        }

    # --- plumbing -----------------------------------------------------------------------

    def _update(self, row: Any, updates: Mapping[str, Any]) -> bool:
        """Merge `updates` into the row under its ETag; False when it changed meanwhile."""
        entity = {k: v for k, v in {**row, **updates}.items() if v is not None}
        return put_entity(self.senders, entity, etag_of(row))


def _json(value: Any) -> Mapping[str, Any] | None:
    return json.loads(value) if isinstance(value, str) and value else None


def _alerts(value: Any) -> list[Alert]:
    if not isinstance(value, str) or not value:
        return []
    out = []
    for event in json.loads(value):
        out.append(
            Alert(
                id=event["id"],
                type=AlertType(event["type"]),
                subject=event["subject"],
                time=datetime.fromisoformat(event["time"]),
                data=event.get("data") or {},
            )
        )
    return out
