"""Deliverability reports: the rollup projection fed by every recorded report, and the two
report queries (`/api/reports/deliverability`, `/api/reports/failures`)."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared.core import keys
from shared.core.classification import REASONS, Reason
from shared.core.errors import Problem
from shared.core.params import Params
from shared.core.replies import Reply
from shared.core.rollups import (
    ALL,
    NO_REASON,
    PUBLIC_DIMENSIONS,
    Cell,
    Dimension,
    RowId,
    TimeGroup,
    cells_of,
    engagement_place,
    group_key,
    group_view,
    is_empty,
    per_dimension,
    place,
    scope_of,
    to_csv,
)

if TYPE_CHECKING:
    from shared.core.classification import Classification
    from shared.core.events import DeliveryReport, EngagementReport
    from shared.core.settings import Settings
    from shared.edge.messages import MessageStore, Recorded

# What the message row says that reports do not; our accept copies them into every status row.
FACTS = ("sizeBytes", "tags", "metadata")
MAX_WINDOW = timedelta(days=90)
DEFAULT_WINDOW = timedelta(hours=24)
MAX_GROUPS = 90 * 24  # an hourly series over the longest window
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


class Rollups(Protocol):
    """What the projection and the queries need of the rollup rows (shared/edge/rollups.py)."""

    def add(self, cells: Iterable[tuple[RowId, str, Cell]]) -> None: ...

    def flush(self, wait: bool = True) -> int: ...

    def read(
        self, scope: str, dimension: str, ranges: Iterable[tuple[str, str]]
    ) -> list[tuple[str, dict[str, Any]]]: ...


class MessageFacts:
    """What the message row says that status rows may not: size, tags and metadata. Read once
    per message per instance (they never change after the accept), and only for our own sends."""

    def __init__(self, store: MessageStore, capacity: int = 4_096) -> None:
        self.store = store
        self.capacity = capacity
        self._rows: OrderedDict[str, Mapping[str, Any] | None] = OrderedDict()
        self._lock = threading.Lock()

    def summary(
        self, message_id: str, status_row: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any] | None:
        """Size, tags and metadata: copied into each status row by our accept (`FACTS`), so a
        report of our send needs no read; rows written before that read the message row."""
        if status_row is not None and all(k in status_row for k in FACTS):
            return {k: status_row.get(k) for k in FACTS}
        with self._lock:
            if message_id in self._rows:
                self._rows.move_to_end(message_id)
                return self._rows[message_id]
        row = self.store.message(message_id)
        kept = None if row is None else {k: row.get(k) for k in FACTS}
        with self._lock:
            self._rows[message_id] = kept
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)
        return kept

    def size(self, message_id: str, row: Mapping[str, Any] | None) -> int | None:
        """The message's size: from the status row (our accept writes it there), else from the
        message row when we sent it (rows written before sizes were copied), else unknown."""
        if not row:
            return None
        if isinstance(row.get("sizeBytes"), int):
            return int(row["sizeBytes"])
        if not row.get("acceptedAt"):
            return None  # not sent through us: there is no message row to read
        summary = self.summary(message_id) or {}
        value = summary.get("sizeBytes")
        return int(value) if isinstance(value, int) else None

    def status_row(self, message_id: str, address: str) -> Mapping[str, Any] | None:
        from shared.edge.tables import read_entity

        pk, rk = keys.message_key(message_id), keys.status_row(keys.address_key(address))
        cached = self.store.cache.get(pk, rk)
        if cached is not None:
            return cached[1]
        found: Mapping[str, Any] | None = read_entity(self.store.messages, pk, rk)
        return found


class DeliverabilityProjection:
    """Moves a recipient's count from where its status row counted before the report to where
    it counts after (shared/core/rollups.py); duplicates and no-op reports move nothing."""

    def __init__(self, rollups: Rollups, facts: MessageFacts) -> None:
        self.rollups = rollups
        self.facts = facts

    def delivery_recorded(
        self, report: DeliveryReport, classification: Classification, result: Recorded
    ) -> None:
        if result.duplicate or not result.changed:
            return
        size = self.facts.size(report.message_id, result.row or result.previous)
        before, after = place(result.previous, size), place(result.row, size)
        if before == after:
            return
        cells: list[tuple[RowId, str, Cell]] = []
        if before is not None:
            cells += cells_of(before, -1)
        if after is not None:
            cells += cells_of(after, +1)
        self.rollups.add(cells)

    def engagement_recorded(self, report: EngagementReport, result: Recorded) -> None:
        if result.duplicate or not report.recipient:
            return
        previous, row = result.previous or {}, result.row or {}
        opened = not int(previous.get("opens", 0)) and int(row.get("opens", 0)) > 0
        clicked = not int(previous.get("clicks", 0)) and int(row.get("clicks", 0)) > 0
        if not (opened or clicked):
            return  # not a first open or click: unique counts stay as they are
        status = self.facts.status_row(report.message_id, report.recipient)
        size = self.facts.size(report.message_id, status)
        at = engagement_place(status, report.recipient, report.sender, report.action_at, size)
        self.rollups.add(cells_of(at, +1, engagement=(opened, clicked)))


class Deliverability:
    """The report queries: parameters → rollup rows → groups."""

    def __init__(self, settings: Settings, rollups: Rollups) -> None:
        self.rollups = rollups
        self.slo_ms = settings.delivery_slo_minutes * 60_000

    def report(self, query: Mapping[str, str], accept: str | None = None) -> Any:
        params = Params(query)
        start, end = _window(params)
        group_by = params.text("groupBy", 64) or Dimension.TOTAL.value
        allowed = [d.value for d in PUBLIC_DIMENSIONS] + [t.value for t in TimeGroup]
        if group_by not in allowed:
            params.problems.append(Problem("groupBy", f"one of {', '.join(allowed)}"))
        sender_domain = _domain(params, "senderDomain")
        recipient_domain = _domain(params, "recipientDomain")
        fmt = (params.text("format", 16) or "").lower()
        if fmt not in ("", "json", "csv"):
            params.problems.append(Problem("format", "json or csv"))
        series = group_by in (TimeGroup.HOUR, TimeGroup.DAY)
        limit = params.integer("limit", MAX_GROUPS if series else 100, 1, MAX_GROUPS)
        params.check()
        self.rollups.flush()  # this instance's own recent reports too
        scope = scope_of(sender_domain, recipient_domain)
        if series:
            groups = self._series(scope, start, end, TimeGroup(group_by))
        else:
            groups = self._groups(
                scope, start, end, Dimension(group_by), sender_domain, recipient_domain
            )
        total = Cell()
        for cell in groups.values():
            total.add(cell)
        views = [group_view(key, cell, self.slo_ms) for key, cell in groups.items()]
        if series:
            views.sort(key=lambda g: g["key"])
        else:
            views = [g for g, c in zip(views, groups.values(), strict=True) if not is_empty(c)]
            views.sort(key=lambda g: (-g["recipients"], g["key"]))
        shown = views[:limit]
        body = {
            "from": start.isoformat().replace("+00:00", "Z"),
            "to": end.isoformat().replace("+00:00", "Z"),
            "groupBy": group_by,
            "senderDomain": sender_domain,
            "recipientDomain": recipient_domain,
            "sloMinutes": self.slo_ms // 60_000,
            "groups": shown,
            "totals": {
                k: v for k, v in group_view("total", total, self.slo_ms).items() if k != "key"
            },
        }
        if fmt == "csv" or (not fmt and "text/csv" in (accept or "").lower()):
            return Reply(
                200,
                to_csv(shown),
                {
                    "Content-Type": "text/csv; charset=utf-8",
                    "Content-Disposition": 'attachment; filename="deliverability.csv"',
                },
            )
        return body

    def failures(self, query: Mapping[str, str]) -> dict[str, Any]:
        params = Params(query)
        start, end = _window(params)
        limit = params.integer("limit", 10, 1, 100)
        params.check()
        self.rollups.flush()
        by_reason = self._read("*", Dimension.REASON, start, end)
        codes = self._read("*", Dimension.REASON_CODE, start, end)
        domains = self._read("*", Dimension.REASON_DOMAIN, start, end)
        failed = {
            r: c.recipients for r, c in by_reason.items() if r != NO_REASON and c.recipients > 0
        }
        total = sum(failed.values())
        items = []
        for reason, count in sorted(failed.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]:
            info = REASONS.get(Reason(reason)) if reason in Reason.__members__ else None
            items.append(
                {
                    "reason": reason,
                    "count": count,
                    "share": round(count / total, 6) if total else None,
                    "bounceType": info.bounce_type.value if info else None,
                    "explanation": info.meaning if info else None,
                    "action": info.action if info else None,
                    "enhancedCodes": _top(codes, reason, 5, "code"),
                    "recipientDomains": _top(domains, reason, 5, "domain"),
                }
            )
        return {
            "from": start.isoformat().replace("+00:00", "Z"),
            "to": end.isoformat().replace("+00:00", "Z"),
            "failures": total,
            "reasons": items,
        }

    # --- reading rollup rows ------------------------------------------------------------

    def _groups(
        self,
        scope: str,
        start: datetime,
        end: datetime,
        dim: Dimension,
        sender_domain: str | None,
        recipient_domain: str | None,
    ) -> dict[str, Cell]:
        fixed = {
            Dimension.SENDER_DOMAIN: sender_domain,
            Dimension.RECIPIENT_DOMAIN: recipient_domain,
        }
        if fixed.get(dim):  # grouped by what the filter fixes: one group, the filter's value
            total = self._read(scope, Dimension.TOTAL, start, end)
            return {str(fixed[dim]): cell for cell in total.values()}
        return self._read(scope, dim, start, end)

    def _read(self, scope: str, dim: Dimension, start: datetime, end: datetime) -> dict[str, Cell]:
        wide = per_dimension(scope)
        rows = self.rollups.read(scope, dim.value if wide else ALL, _ranges(start, end, wide))
        prefix = group_key(dim, "")
        out: dict[str, Cell] = {}
        for _, content in rows:
            for key, raw in content.items():
                if key.startswith(prefix):
                    name = key[len(prefix) :]
                    cell = out.get(name)
                    if cell is None:
                        cell = out[name] = Cell()
                    cell.add_json(raw)
        return out

    def _series(
        self, scope: str, start: datetime, end: datetime, unit: TimeGroup
    ) -> dict[str, Cell]:
        wide = per_dimension(scope)
        dim = Dimension.TOTAL.value if wide else ALL
        ranges = _ranges(start, end, wide and unit is TimeGroup.DAY)
        total_key = group_key(Dimension.TOTAL, "all")
        step = timedelta(hours=1) if unit is TimeGroup.HOUR else timedelta(days=1)
        out: dict[str, Cell] = {}
        at = start if unit is TimeGroup.HOUR else start.replace(hour=0)
        while at < end:  # every period of the window, empty ones too (a chart needs the gaps)
            out[_period_label(at, unit)] = Cell()
            at += step
        for period, content in self.rollups.read(scope, dim, ranges):
            raw = content.get(total_key)
            if raw is not None:
                out.setdefault(_label_of_row(period, unit), Cell()).add_json(raw)
        return out


def _window(params: Params) -> tuple[datetime, datetime]:
    """[from, to) in whole UTC hours: `from` rounded down, `to` up; at most MAX_WINDOW."""
    now = datetime.now(UTC)
    end = params.time("to") or now
    start = params.time("from") or end - DEFAULT_WINDOW
    end_utc = end.astimezone(UTC)
    floor_end = end_utc.replace(minute=0, second=0, microsecond=0)
    end = floor_end if floor_end == end_utc else floor_end + timedelta(hours=1)
    start = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if start >= end:
        params.problems.append(Problem("from", "must be before `to`"))
    elif end - start > MAX_WINDOW + timedelta(hours=1):
        params.problems.append(Problem("from", "the window may span at most 90 days"))
    return start, end


def _domain(params: Params, name: str) -> str | None:
    value = params.text(name, 253)
    if value is None:
        return None
    value = value.lower()
    if not _DOMAIN.match(value):
        params.problems.append(Problem(name, "a domain name such as example.com"))
        return None
    return value


def _hour_key(at: datetime) -> str:
    return "h" + at.strftime("%Y%m%d%H")


def _day_key(at: datetime) -> str:
    return "d" + at.strftime("%Y%m%d")


def _ranges(start: datetime, end: datetime, days: bool) -> list[tuple[str, str]]:
    """Inclusive RowKey ranges covering [start, end): whole UTC days as day rows (when the
    scope keeps them), the rest as hour rows."""
    hour = timedelta(hours=1)
    if not days:
        return [(_hour_key(start), _hour_key(end - hour))]
    first_day = start.replace(hour=0)
    if first_day < start:
        first_day += timedelta(days=1)
    last_day = end.replace(hour=0)
    if first_day >= last_day:
        return [(_hour_key(start), _hour_key(end - hour))]
    out = [(_day_key(first_day), _day_key(last_day - timedelta(days=1)))]
    if start < first_day:
        out.append((_hour_key(start), _hour_key(first_day - hour)))
    if last_day < end:
        out.append((_hour_key(last_day), _hour_key(end - hour)))
    return out


def _period_label(at: datetime, unit: TimeGroup) -> str:
    if unit is TimeGroup.HOUR:
        return at.strftime("%Y-%m-%dT%H:00:00Z")
    return at.strftime("%Y-%m-%d")


def _label_of_row(period: str, unit: TimeGroup) -> str:
    kind, digits = period[0], period[1:]
    if kind == "h" and unit is TimeGroup.HOUR:
        return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}T{digits[8:10]}:00:00Z"
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}"


def _top(cells: Mapping[str, Cell], reason: str, n: int, name: str) -> list[dict[str, Any]]:
    prefix = reason + " "
    found = [(k[len(prefix) :], c.recipients) for k, c in cells.items() if k.startswith(prefix)]
    found = [(k, v) for k, v in found if v > 0]
    found.sort(key=lambda kv: (-kv[1], kv[0]))
    return [{name: k, "count": v} for k, v in found[:n]]
