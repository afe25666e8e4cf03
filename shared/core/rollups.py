"""Deliverability rollups (pure): where a recipient's final outcome counts, and what the counts say.

A recipient counts once, in the UTC hour of its final outcome, under each dimension value of
that outcome (`place`). The counts are kept as deltas: recording a report moves the recipient
from the place of its status row before (`Recorded.previous`) to the place of the row after
(`Recorded.row`): -1 there, +1 here. The rows follow the status precedence, which is a total
order over a recipient's events, so whatever the order the reports came in the deltas telescope
to exactly one +1 at the place of the final row; a duplicate changes no row and moves nothing.
Only rows an ACS report decided count (`acsStatus` set): our own facts (accepted, sent, a send
that failed before ACS had it) are not delivery outcomes.

Cells are fixed-size count vectors plus a latency histogram with fixed log-spaced buckets, so
cells of any hours, shards and instances merge by addition (`Cell.add`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from shared.core.providers import provider_of
from shared.core.state import parse_iso


class Outcome(StrEnum):
    DELIVERED = "delivered"  # the recipient's server accepted it
    HARD_BOUNCED = "hardBounced"  # refused, and the classifier says the address is dead
    SOFT_BOUNCED = "softBounced"  # ACS `Bounced`, for a reason that is not the address
    FAILED = "failed"  # ACS `Failed` (soft: expired, mailbox full, network, …)
    SUPPRESSED = "suppressed"  # ACS did not send: on its suppression list
    SPAM_FILTERED = "spamFiltered"  # ACS `FilteredSpam`
    QUARANTINED = "quarantined"  # ACS `Quarantined`
    EXPANDED = "expanded"  # a distribution list expanded (its members report on their own)


OUTCOMES: Final = tuple(Outcome)
OPENS: Final = len(OUTCOMES)  # index of the unique-opens count in a cell's vector
CLICKS: Final = OPENS + 1
WIDTH: Final = CLICKS + 1


class Dimension(StrEnum):
    RECIPIENT_DOMAIN = "recipientDomain"  # the part after @, lower-cased
    MAILBOX_PROVIDER = "mailboxProvider"  # shared/core/providers.py
    SENDER_DOMAIN = "senderDomain"  # the MailFrom domain
    SENDER = "sender"  # the MailFrom address (ours, never a recipient's)
    REASON = "reason"  # the classifier's reason; `none` for delivered and expanded
    SIZE_CLASS = "sizeClass"  # known for our own sends (SizeClass)
    TOTAL = "total"  # one group: everything
    # Kept for /api/reports/failures, not offered as groupBy (scope `*` only, failures only):
    REASON_CODE = "reasonCode"  # "<reason> <enhanced code>"
    REASON_DOMAIN = "reasonDomain"  # "<reason> <recipient domain>"


PUBLIC_DIMENSIONS: Final = tuple(
    d for d in Dimension if d not in (Dimension.REASON_CODE, Dimension.REASON_DOMAIN)
)


class TimeGroup(StrEnum):
    HOUR = "hour"  # a time series, one group per UTC hour
    DAY = "day"  # a time series, one group per UTC day


class SizeClass(StrEnum):
    UNDER_100KB = "<100KB"  # KB = 1,000 bytes, MB = 1,000,000 (the message as we accepted it)
    TO_1MB = "100KB-1MB"
    TO_5MB = "1-5MB"
    TO_10MB = "5-10MB"
    OVER_10MB = ">10MB"
    UNKNOWN = "unknown"  # not sent through our endpoint: we never saw the message


def size_class(size: int | None) -> SizeClass:
    if size is None:
        return SizeClass.UNKNOWN
    for bound, cls in (
        (100_000, SizeClass.UNDER_100KB),
        (1_000_000, SizeClass.TO_1MB),
        (5_000_000, SizeClass.TO_5MB),
        (10_000_000, SizeClass.TO_10MB),
    ):
        if size < bound:
            return cls
    return SizeClass.OVER_10MB


NO_REASON: Final = "none"
OTHER: Final = "(other)"  # where a full row's new groups go (see merge_into)

# --- latency histogram ------------------------------------------------------------------------
# Bucket i ≥ 1 holds latencies in [γ^(i-1), γ^i) ms and stands for 2γ^i/(γ+1), which is within
# ALPHA of every value in it: γ = (1+α)/(1-α). Bucket 0 holds < 1 ms. A value's bucket depends on
# nothing else, so histograms of any hours merge by adding counts. 1 ms to 7 days is ~510
# buckets; a real hour of one group uses a few dozen (deliveries cluster within seconds).
ALPHA: Final = 0.02
GAMMA: Final = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA: Final = math.log(GAMMA)


def bucket_of(ms: float) -> int:
    if ms < 1:
        return 0
    return math.floor(math.log(ms) / _LOG_GAMMA) + 1


def bucket_value(bucket: int) -> float:
    if bucket <= 0:
        return 0.0
    return 2 * GAMMA**bucket / (GAMMA + 1)


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The value of rank ceil(q·n) (1-based), within ALPHA of that sample; None when empty."""
    total = sum(c for c in histogram.values() if c > 0)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += max(0, histogram[bucket])
        if seen >= rank:
            return bucket_value(bucket)
    return bucket_value(max(histogram))


# --- cells ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Cell:
    """Counts of one group in one hour (or day): outcomes, unique opens/clicks, and the
    delivery-latency histogram (delivered recipients whose send time we know)."""

    counts: list[int] = field(default_factory=lambda: [0] * WIDTH)
    latency: dict[int, int] = field(default_factory=dict)

    def add(self, other: Cell, sign: int = 1) -> None:
        for i, value in enumerate(other.counts):
            self.counts[i] += sign * value
        for bucket, value in other.latency.items():
            self.latency[bucket] = self.latency.get(bucket, 0) + sign * value

    def to_json(self) -> dict[str, Any]:
        """`{"n": counts, "h": [first bucket, count, count, …]}`: the histogram dense from its
        first to its last bucket (a day of one group is a few dozen adjacent buckets: ~3
        characters each, where a sparse map took ~9, and the 30-day query reads that text)."""
        out: dict[str, Any] = {"n": self.counts}
        used = [b for b, c in self.latency.items() if c]
        if used:
            lo, hi = min(used), max(used)
            out["h"] = [lo, *(self.latency.get(b, 0) for b in range(lo, hi + 1))]
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Cell:
        counts = list(raw.get("n", []))[:WIDTH]
        counts += [0] * (WIDTH - len(counts))
        dense = raw.get("h")
        latency = {}
        if dense:
            lo = dense[0]
            latency = {lo + i: c for i, c in enumerate(dense[1:]) if c}
        return cls(counts, latency)

    def add_json(self, raw: Mapping[str, Any]) -> None:
        """`add(Cell.from_json(raw))` in one pass (the query path merges thousands of these)."""
        counts = self.counts
        for i, value in enumerate(raw.get("n", ())):
            if i < WIDTH:
                counts[i] += value
        dense = raw.get("h")
        if dense:
            latency = self.latency
            for bucket, value in enumerate(dense[1:], dense[0]):
                if value:
                    latency[bucket] = latency.get(bucket, 0) + value

    @property
    def recipients(self) -> int:
        return sum(self.counts[:OPENS])


# --- where a status row counts ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    """Where one recipient's outcome counts: its hour, outcome, latency bucket, and the value of
    every dimension."""

    hour: str  # YYYYMMDDHH, UTC
    outcome: Outcome
    latency_bucket: int | None  # delivered with a known send time only
    values: tuple[tuple[Dimension, str], ...]

    def value(self, dim: Dimension) -> str:
        return dict(self.values)[dim]


def outcome_of(status: str | None, bounce_type: str | None) -> Outcome | None:
    match status:
        case "delivered":
            return Outcome.DELIVERED
        case "expanded":
            return Outcome.EXPANDED
        case "bounced":
            return Outcome.HARD_BOUNCED if bounce_type == "hard" else Outcome.SOFT_BOUNCED
        case "failed":
            return Outcome.HARD_BOUNCED if bounce_type == "hard" else Outcome.FAILED
        case "suppressed":
            return Outcome.SUPPRESSED
        case "spam_filtered":
            return Outcome.SPAM_FILTERED
        case "quarantined":
            return Outcome.QUARANTINED
    return None  # accepted/sent (not final) and `unknown` (a status ACS may add later)


def domain(address: Any) -> str:
    text = str(address or "").strip().lower()
    return text.rpartition("@")[2] if "@" in text else ""


def hour_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d%H")


def classification_fields(row: Mapping[str, Any]) -> Mapping[str, Any]:
    raw = row.get("classification")
    if not isinstance(raw, str) or not raw:
        return {}
    parsed = json.loads(raw)
    return parsed if isinstance(parsed, dict) else {}


def place(row: Mapping[str, Any] | None, size: int | None) -> Place | None:
    """Where this status row counts, or None (no ACS outcome decided it). `size` is the
    message's size in bytes when we sent it (status row `sizeBytes`, else the message row)."""
    if not row or not row.get("acsStatus"):
        return None
    fields = classification_fields(row)
    outcome = outcome_of(row.get("status"), fields.get("bounceType"))
    at = parse_iso(row.get("at"))
    if outcome is None or at is None:
        return None
    latency = row.get("latencyMs")
    bucket = None
    if outcome is Outcome.DELIVERED and isinstance(latency, int | float):
        bucket = bucket_of(float(latency))
    recipient_domain = domain(row.get("address")) or "unknown"
    sender = str(row.get("sender") or "").strip().lower() or "unknown"
    reason = str(fields.get("reason") or NO_REASON)
    values = [
        (Dimension.RECIPIENT_DOMAIN, recipient_domain),
        (Dimension.MAILBOX_PROVIDER, provider_of(row.get("mailServer"), recipient_domain).value),
        (Dimension.SENDER_DOMAIN, domain(sender) or "unknown"),
        (Dimension.SENDER, sender),
        (Dimension.REASON, reason),
        (Dimension.SIZE_CLASS, size_class(size).value),
        (Dimension.TOTAL, "all"),
    ]
    if outcome not in (Outcome.DELIVERED, Outcome.EXPANDED):
        code = fields.get("enhancedCode") or fields.get("smtpCode") or "-"
        values += [
            (Dimension.REASON_CODE, f"{reason} {code}"),
            (Dimension.REASON_DOMAIN, f"{reason} {recipient_domain}"),
        ]
    return Place(hour_of(at), outcome, bucket, tuple(values))


def engagement_place(
    status_row: Mapping[str, Any] | None,
    recipient: str,
    sender: str | None,
    at: datetime,
    size: int | None,
) -> Place:
    """Where a recipient's first open or click counts: the hour it happened, under the
    dimension values of its delivery (or of the engagement report when no status row is
    known). The outcome field is unused for engagement (the vector's OPENS/CLICKS count)."""
    base = place(status_row, size)
    if base is not None:
        values = tuple(v for v in base.values if v[0] in PUBLIC_DIMENSIONS)
        return Place(hour_of(at), base.outcome, None, values)
    recipient_domain = domain(recipient) or "unknown"
    sender_text = str(sender or "").strip().lower() or "unknown"
    values_list = [
        (Dimension.RECIPIENT_DOMAIN, recipient_domain),
        (Dimension.MAILBOX_PROVIDER, provider_of(None, recipient_domain).value),
        (Dimension.SENDER_DOMAIN, domain(sender_text) or "unknown"),
        (Dimension.SENDER, sender_text),
        (Dimension.REASON, NO_REASON),
        (Dimension.SIZE_CLASS, size_class(size).value),
        (Dimension.TOTAL, "all"),
    ]
    return Place(hour_of(at), Outcome.DELIVERED, None, tuple(values_list))


# --- rows: which stored rows a place touches ------------------------------------------------
# A row holds one (scope, row dimension, period)'s groups. Scopes answer the filters: `*` (no
# filter) and `s:<sender domain>` keep one row per dimension, so a query reads only the
# dimension it groups by; `r:<recipient domain>` and `sr:<sender domain>|<recipient domain>` are
# small (one domain's traffic) and keep every dimension in one row (ALL), so a long tail of
# recipient domains costs one row write per domain per flush, not one per dimension. Periods:
# hour rows everywhere, and day rows for the two wide scopes, so a 90-day window reads ≤ 90 rows
# plus ≤ 46 edge hours per shard.

ALL: Final = "all"
RowId = tuple[str, str, str]  # (scope, row dimension or ALL, period: "h<YYYYMMDDHH>"/"d<YYYYMMDD>")


def scope_of(sender_domain: str | None, recipient_domain: str | None) -> str:
    if sender_domain and recipient_domain:
        return f"sr:{sender_domain}|{recipient_domain}"
    if sender_domain:
        return f"s:{sender_domain}"
    if recipient_domain:
        return f"r:{recipient_domain}"
    return "*"


def per_dimension(scope: str) -> bool:
    """Whether a scope keeps one row per dimension (else one ALL row) and day rows."""
    return scope == "*" or scope.startswith("s:")


def group_key(dim: Dimension, value: str) -> str:
    return f"{dim.value}={value}"


def cells_of(place: Place, sign: int, engagement: tuple[bool, bool] | None = None) -> Iterator[
    tuple[RowId, str, Cell]
]:  # fmt: skip
    """Every (row, group, delta) a recipient at `place` contributes, with `sign` ±1. With
    `engagement` (opened, clicked) the delta is a first open/click instead of an outcome."""
    delta = Cell()
    if engagement is None:
        delta.counts[OUTCOMES.index(place.outcome)] = sign
        if place.latency_bucket is not None:
            delta.latency[place.latency_bucket] = sign
    else:
        delta.counts[OPENS] = sign if engagement[0] else 0
        delta.counts[CLICKS] = sign if engagement[1] else 0
    sender_domain = place.value(Dimension.SENDER_DOMAIN)
    recipient_domain = place.value(Dimension.RECIPIENT_DOMAIN)
    hour, day = f"h{place.hour}", f"d{place.hour[:8]}"
    for scope, fixed in (
        ("*", ()),
        (scope_of(sender_domain, None), (Dimension.SENDER_DOMAIN,)),
        (scope_of(None, recipient_domain), (Dimension.RECIPIENT_DOMAIN,)),
        (
            scope_of(sender_domain, recipient_domain),
            (Dimension.SENDER_DOMAIN, Dimension.RECIPIENT_DOMAIN),
        ),
    ):
        wide = per_dimension(scope)
        for dim, value in place.values:
            if dim in fixed or (scope != "*" and dim not in PUBLIC_DIMENSIONS):
                continue
            key = group_key(dim, value)
            if wide:
                yield (scope, dim.value, hour), key, delta
                yield (scope, dim.value, day), key, delta
            else:
                yield (scope, ALL, hour), key, delta


MAX_GROUPS_PER_ROW: Final = 500
FULL_ROW_CHARS: Final = 250_000  # a Table entity holds 1 MiB (≈ 500 K ASCII characters)


def merge_into(content: dict[str, Cell], deltas: Mapping[str, Cell], size_chars: int) -> None:
    """Add `deltas` to a stored row's groups. A group not yet in a full row goes to its
    dimension's OTHER group. Groups are never removed (a zero stays), so the row's set of
    groups only grows: once full it stays full, and a -1 always lands where its +1 did."""
    full = len(content) >= MAX_GROUPS_PER_ROW or size_chars >= FULL_ROW_CHARS
    for key, delta in deltas.items():
        target = key
        if key not in content and full:
            target = f"{key.partition('=')[0]}={OTHER}"
        content.setdefault(target, Cell()).add(delta)


def encode_content(content: Mapping[str, Cell]) -> str:
    return json.dumps({k: c.to_json() for k, c in content.items()}, separators=(",", ":"))


def decode_content(text: str) -> dict[str, Cell]:
    if not text:
        return {}
    return {k: Cell.from_json(v) for k, v in json.loads(text).items()}


# --- answering --------------------------------------------------------------------------------

COLUMNS: Final = (
    "key",
    "recipients",
    *(o.value for o in OUTCOMES),
    "deliveryRate",
    "hardBounceRate",
    "spamRate",
    "latencyP50Ms",
    "latencyP90Ms",
    "latencyP99Ms",
    "withinSlo",
    "opens",
    "clicks",
)


def _rate(part: int, whole: int) -> float | None:
    return None if whole <= 0 else round(max(0.0, min(1.0, part / whole)), 6)


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value)


def group_view(key: str, cell: Cell, slo_ms: float) -> dict[str, Any]:
    """One group of the answer; rates are fractions in [0, 1], None when nothing to divide."""
    n = cell.counts
    recipients = cell.recipients
    by = {o: n[i] for i, o in enumerate(OUTCOMES)}
    hist = {b: c for b, c in cell.latency.items() if c > 0}
    timed = sum(hist.values())
    within = sum(c for b, c in hist.items() if bucket_value(b) <= slo_ms)
    return {
        "key": key,
        "recipients": recipients,
        **{o.value: by[o] for o in OUTCOMES},
        "deliveryRate": _rate(by[Outcome.DELIVERED], recipients),
        "hardBounceRate": _rate(by[Outcome.HARD_BOUNCED], recipients),
        "spamRate": _rate(by[Outcome.SPAM_FILTERED] + by[Outcome.QUARANTINED], recipients),
        "latencyMs": {
            "p50": _ms(percentile(hist, 0.50)),
            "p90": _ms(percentile(hist, 0.90)),
            "p99": _ms(percentile(hist, 0.99)),
        },
        "withinSlo": _rate(within, timed),
        "opens": n[OPENS],
        "clicks": n[CLICKS],
    }


def merged(cells: Iterable[tuple[str, Cell]]) -> dict[str, Cell]:
    out: dict[str, Cell] = {}
    for key, cell in cells:
        out.setdefault(key, Cell()).add(cell)
    return out


def is_empty(cell: Cell) -> bool:
    return not any(cell.counts)


# Characters a spreadsheet reads as the start of a formula (OWASP "CSV injection").
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r", "\n")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def to_csv(groups: Iterable[Mapping[str, Any]]) -> str:
    """The groups as CSV (COLUMNS, one row per group); text cells that a spreadsheet would run
    as a formula are prefixed with a quote."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for g in groups:
        lat = g["latencyMs"]
        row = [g["key"], g["recipients"], *(g[o.value] for o in OUTCOMES)]
        row += [g["deliveryRate"], g["hardBounceRate"], g["spamRate"]]
        row += [lat["p50"], lat["p90"], lat["p99"], g["withinSlo"], g["opens"], g["clicks"]]
        writer.writerow([_csv_cell(v) for v in row])
    return out.getvalue()
