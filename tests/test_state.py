"""Pure state transitions: any order, any number of duplicates, same final row."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import DeliveryReport, EngagementReport, parse_event
from shared.state import Fact, apply_engagement, apply_fact, fact_from_report
from shared.status import Status, precedence

from .factories import BASE, delivery_event, engagement_event

MID = "m-1"
ADDR = "Alice@Example.com"
T0 = BASE


def _fold(facts: list[Fact]) -> dict[str, object] | None:
    row: dict[str, object] | None = None
    for fact in facts:
        new = apply_fact(row, fact, ADDR, MID)
        if new is not None:
            row = new
    return row


def _report_fact(status: str, seconds: float, event_id: str) -> Fact:
    parsed = parse_event(delivery_event(MID, ADDR, status, seconds, event_id))
    assert isinstance(parsed, DeliveryReport)
    return fact_from_report(parsed, {"reason": status.lower()})


FACTS = st.lists(
    st.tuples(
        st.sampled_from(["Delivered", "Bounced", "Failed", "Expanded", "FilteredSpam", "Weird"]),
        st.integers(min_value=0, max_value=5),  # few distinct times: ties are exercised
        st.integers(min_value=0, max_value=9),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(FACTS, st.randoms(use_true_random=False), st.integers(min_value=0, max_value=3))
def test_permutations_and_duplicates_converge(
    spec: list[tuple[str, int, int]], rnd: object, dupes: int
) -> None:
    facts = [_report_fact(s, t, f"ev-{i}-{n}") for i, (s, t, n) in enumerate(spec)]
    facts.insert(0, Fact(Status.ACCEPTED, T0, "accept", accepted_at=T0))
    facts.append(Fact(Status.SENT, T0 + timedelta(seconds=1), "sent", sent_at=T0))
    expected = _fold(facts)
    shuffled = facts + facts[:dupes]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert _fold(shuffled) == expected


def test_outcome_beats_sent_whatever_the_clock() -> None:
    late_sent = Fact(Status.SENT, T0 + timedelta(days=1), "sent", sent_at=T0 + timedelta(days=1))
    delivered = _report_fact("Delivered", 0, "ev")
    row = _fold([delivered, late_sent])
    assert row is not None
    assert row["status"] == "delivered"
    assert row["sentAt"] == late_sent.at.isoformat(timespec="microseconds")


def test_later_outcome_wins_and_ties_are_deterministic() -> None:
    soft = _report_fact("Failed", 0, "a")
    delivered = _report_fact("Delivered", 10, "b")
    assert _fold([delivered, soft])["status"] == "delivered"  # type: ignore[index]
    tie = [_report_fact("Delivered", 5, "x"), _report_fact("Bounced", 5, "y")]
    results = {_fold(list(p))["status"] for p in itertools.permutations(tie)}  # type: ignore[index]
    assert results == {"bounced"}


def test_latency_from_sent_to_final() -> None:
    facts = [
        Fact(Status.SENT, T0, "sent", sent_at=T0),
        _report_fact("Delivered", 2.5, "d"),  # factories' BASE is T0
    ]
    row = _fold(facts)
    assert row is not None
    assert row["latencyMs"] == 2500


def test_unchanged_row_is_none() -> None:
    fact = _report_fact("Delivered", 1, "d")
    row = apply_fact(None, fact, ADDR, MID)
    assert row is not None
    assert apply_fact(row, fact, ADDR, MID) is None


def test_precedence_ranks() -> None:
    t = T0
    assert precedence(Status.SENT, t, "a") > precedence(Status.ACCEPTED, t + timedelta(1), "a")
    assert precedence(Status.UNKNOWN, t, "a") > precedence(Status.SENT, t + timedelta(1), "a")


ENGAGEMENTS = st.lists(
    st.tuples(
        st.sampled_from(["view", "click", "forward"]),
        st.integers(min_value=0, max_value=4),
        st.sampled_from(["https://a.example/1", "https://a.example/2", ""]),
        st.sampled_from(["UA-1", "UA-2", ""]),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=200, deadline=None)
@given(ENGAGEMENTS, st.randoms(use_true_random=False))
def test_engagement_order_independent(spec: list[tuple[str, int, str, str]], rnd: object) -> None:
    reports = []
    for i, (kind, t, url, ua) in enumerate(spec):
        parsed = parse_event(engagement_event(MID, ADDR, kind, t, url, ua, f"g-{i}"))
        assert isinstance(parsed, EngagementReport)
        reports.append(parsed)

    def fold(items: list[EngagementReport]) -> dict[str, object]:
        row: dict[str, object] | None = None
        for r in items:
            row = apply_engagement(row, r)
        assert row is not None
        return row

    expected = fold(reports)
    shuffled = list(reports)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert fold(shuffled) == expected
    assert expected["opens"] == sum(1 for s in spec if s[0] == "view")


def test_clicked_urls_cap_is_order_independent() -> None:
    reports = []
    for i in range(60):
        ev = engagement_event(MID, ADDR, "click", i, f"https://x.example/{i:03d}", event_id=f"c{i}")
        parsed = parse_event(ev)
        assert isinstance(parsed, EngagementReport)
        reports.append(parsed)
    forward: dict[str, object] | None = None
    for r in reports:
        forward = apply_engagement(forward, r)
    backward: dict[str, object] | None = None
    for r in reversed(reports):
        backward = apply_engagement(backward, r)
    assert forward == backward
    assert forward is not None
    assert len(json.loads(str(forward["clickedUrls"]))) == 50
    assert forward["otherClicks"] == 10
