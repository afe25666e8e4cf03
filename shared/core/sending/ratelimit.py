"""The send worker's limiter: send slots reserved on an exact sliding window over the last
minute and the last hour.

Why not a plain token bucket: a bucket of capacity C refilling at C per hour lets C + C through
in one sliding hour (a full bucket, then the refill), which is exactly what ACS's default quota
(30/min, 100/h) answers with 429. Counting sends per second over the last hour never exceeds
either limit.

Why reservations: a burst beyond the quota must wait, and if every waiting message looked
again when the next slot freed, the whole backlog would wake for each slot (a thundering herd:
a 1,000-message burst at 100/h would cost ~3,000 storage calls per slot). Instead each message
reserves the earliest second at which one more send keeps both windows within their limits,
and sleeps until then: it wakes once, to send. Reservations are handed out in time order, so
every counted send is at or before the one being placed, and the window *ending* at a second
is the fullest window containing it: checking that one is exact. Only `HORIZON_S` ahead is
handed out, which bounds the state; a message whose turn lies further out sleeps a random part
of the horizon and asks again, so the far backlog trickles in instead of waking together.

The state is per-second counts (past hour and reservations), a few characters each, kept in
one Table row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MINUTE, HOUR = 60, 3600
HORIZON_S = 900  # how far ahead slots are reserved


@dataclass(frozen=True, slots=True)
class Reservation:
    at: int  # the earliest second (epoch) at which one more send fits
    reserved: bool  # False: `at` lies past the horizon and nothing was taken


def reserve(
    counts: Mapping[int, int],
    now: float,
    per_minute: int,
    per_hour: int,
    horizon: int = HORIZON_S,
) -> tuple[dict[int, int], Reservation]:
    """Reserve the earliest send slot at or after `now` (epoch seconds).

    Returns the new per-second counts (pruned to what a window can still see) and the slot; when
    the slot lies more than `horizon` seconds ahead, the counts are returned unchanged (pruned)
    and nothing is reserved.
    """
    second = int(now)
    kept = {s: n for s, n in counts.items() if s > second - HOUR and n > 0}
    at = max([second, *kept])
    while True:
        in_minute = sum(n for s, n in kept.items() if s > at - MINUTE)
        in_hour = sum(n for s, n in kept.items() if s > at - HOUR)
        if in_minute < per_minute and in_hour < per_hour:
            break
        later = at + 1
        if in_minute >= per_minute:
            later = max(later, _free_at(kept, at, MINUTE, in_minute - per_minute + 1))
        if in_hour >= per_hour:
            later = max(later, _free_at(kept, at, HOUR, in_hour - per_hour + 1))
        at = later
    if at - now > horizon:
        return kept, Reservation(at, reserved=False)
    kept[at] = kept.get(at, 0) + 1
    return kept, Reservation(at, reserved=True)


def _free_at(counts: Mapping[int, int], second: int, window: int, needed: int) -> int:
    """The first second at which enough of the oldest sends in the window ending at `second`
    have left it to free `needed` slots."""
    freed = 0
    for s in sorted(s for s in counts if s > second - window):
        freed += counts[s]
        if freed >= needed:
            return s + window
    return second + 1


def encode(counts: Mapping[int, int]) -> str:
    """Compact text for the counts: the first second, then each next one as a gap from the
    previous, `*n` when more than one send shares a second ("1790000000,1,1*2,5"). A busy hour
    at one send per second is ~2 characters a second, well inside a Table string property."""
    parts: list[str] = []
    previous = None
    for s in sorted(counts):
        gap = str(s if previous is None else s - previous)
        parts.append(gap if counts[s] == 1 else f"{gap}*{counts[s]}")
        previous = s
    return ",".join(parts)


def decode(text: str) -> dict[int, int]:
    """Inverse of `encode`; unreadable text is an empty window (the limiter starts afresh)."""
    counts: dict[int, int] = {}
    second = 0
    try:
        for part in filter(None, text.split(",")):
            gap, _, n = part.partition("*")
            second += int(gap)
            counts[second] = counts.get(second, 0) + (int(n) if n else 1)
    except ValueError:
        return {}
    return counts
