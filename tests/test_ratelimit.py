"""The send-slot limiter (pure): exact windows, earliest slots, the horizon, its stored form."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.sending.ratelimit import HORIZON_S, decode, encode, reserve

T0 = 1_790_000_000


def _fits(sends: list[int], at: int, per_minute: int, per_hour: int) -> bool:
    """Brute force: one more send at `at` keeps every window containing it within limits. A
    window's count only rises where a send enters it, so the fullest window containing `at`
    ends at `at` or at a later send less than a window away."""
    with_it = [*sends, at]
    for window, limit in ((60, per_minute), (3600, per_hour)):
        for end in [at, *(s for s in sends if at <= s < at + window)]:
            if sum(1 for s in with_it if end - window < s <= end) > limit:
                return False
    return True


def test_a_burst_is_spread_over_the_windows_and_the_rest_waits_past_the_horizon() -> None:
    counts: dict[int, int] = {}
    slots = []
    for _ in range(130):
        counts, slot = reserve(counts, T0 + 0.25, per_minute=30, per_hour=100)
        slots.append(slot)
    reserved = [s.at - T0 for s in slots if s.reserved]
    assert reserved == [0] * 30 + [60] * 30 + [120] * 30 + [180] * 10
    # The 101st send fits only when the first sends leave the hour: past the horizon, so it
    # is not reserved and the counts stay as they were.
    assert {s.at - T0 for s in slots if not s.reserved} == {3600}
    assert sum(counts.values()) == 100


def test_old_sends_leave_the_window() -> None:
    counts = {T0 - 3600: 5, T0 - 30: 1}
    counts, slot = reserve(counts, T0, per_minute=2, per_hour=2)
    assert slot.reserved
    assert slot.at == T0
    assert T0 - 3600 not in counts  # pruned: no window can see it any more


REQUESTS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=400), st.integers(min_value=1, max_value=4)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(REQUESTS, st.integers(min_value=1, max_value=5), st.integers(min_value=1, max_value=12))
def test_every_slot_is_the_earliest_that_keeps_both_windows(
    requests: list[tuple[int, int]], per_minute: int, per_hour: int
) -> None:
    counts: dict[int, int] = {}
    sends: list[int] = []
    now = T0
    for step, burst in requests:
        now += step  # requests arrive in time order, several at a moment
        for _ in range(burst):
            counts, slot = reserve(counts, now, per_minute, per_hour, horizon=600)
            earliest = next(
                t for t in range(now, now + 8000) if _fits(sends, t, per_minute, per_hour)
            )
            assert slot.at == earliest
            assert slot.reserved == (earliest - now <= 600)
            if slot.reserved:
                sends.append(slot.at)
    for window, limit in ((60, per_minute), (3600, per_hour)):
        for s in sends:  # every window ending at a send holds at most `limit` sends
            assert sum(1 for x in sends if s - window < x <= s) <= limit


@given(
    st.dictionaries(
        st.integers(min_value=T0 - 3600, max_value=T0 + HORIZON_S),
        st.integers(min_value=1, max_value=500),
    )
)
def test_stored_form_round_trips(counts: dict[int, int]) -> None:
    assert decode(encode(counts)) == counts


def test_stored_form_stays_small_and_bad_text_starts_afresh() -> None:
    busy = {T0 + s: 3 for s in range(-3600, HORIZON_S)}  # every second of the hour and horizon
    assert len(encode(busy)) < 32_000  # a Table string property holds 32 K UTF-16 units
    assert decode("") == {}
    assert decode("12,x") == {}
