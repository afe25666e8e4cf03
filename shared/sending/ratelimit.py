"""The send worker's limiter: an exact sliding window over the last minute and the last hour.

Why not a plain token bucket: a bucket of capacity C refilling at C per hour lets C + C through
in one sliding hour (a full bucket, then the refill), which is exactly what ACS's default quota
(30/min, 100/h) answers with 429. Counting sends per second over the last hour never exceeds
either limit; the state is at most 3,600 small counters and lives in one Table row.
"""

from __future__ import annotations

from collections.abc import Mapping


def try_take(
    counts: Mapping[int, int], now: float, per_minute: int, per_hour: int
) -> tuple[dict[int, int], float]:
    """Take one send slot at `now` (epoch seconds).

    Returns the new per-second counts (pruned to the last hour) and 0.0 when the slot was
    taken, or the unchanged counts and the seconds to wait until a slot frees up.
    """
    second = int(now)
    kept = {s: n for s, n in counts.items() if s > second - 3600}
    in_hour = sum(kept.values())
    in_minute = sum(n for s, n in kept.items() if s > second - 60)
    if in_minute < per_minute and in_hour < per_hour:
        kept[second] = kept.get(second, 0) + 1
        return kept, 0.0
    wait = 0.0
    if in_minute >= per_minute:
        wait = max(wait, _free_at(kept, second, 60, in_minute - per_minute + 1) - now)
    if in_hour >= per_hour:
        wait = max(wait, _free_at(kept, second, 3600, in_hour - per_hour + 1) - now)
    return dict(counts), max(wait, 0.001)


def _free_at(counts: Mapping[int, int], second: int, window: int, needed: int) -> float:
    """When enough of the oldest sends in the window have aged out to free `needed` slots."""
    freed = 0
    for s in sorted(s for s in counts if s > second - window):
        freed += counts[s]
        if freed >= needed:
            return float(s + window)
    return float(second + 1)
