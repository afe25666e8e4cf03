"""Pure state transitions: any order, any number of duplicates, same final row."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.classification import classify
from shared.core.events import DeliveryReport, EngagementReport, parse_event
from shared.core.state import (
    EVENTS,
    MAX_EMBEDDED_CHARS,
    MAX_EMBEDDED_EVENTS,
    Fact,
    apply_engagement,
    apply_fact,
    decide_report,
    embedded_events,
    fact_from_report,
    index_may_be_missing,
    timeline_entry,
)
from shared.core.status import Status, precedence

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
    return fact_from_report(parsed, classify(parsed.acs_status, parsed.status_message))


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


Markers = dict[str, dict[str, object]]


def _report(
    status: str, seconds: float, event_id: str, message: str | None = None
) -> DeliveryReport:
    parsed = parse_event(delivery_event(MID, ADDR, status, seconds, event_id, message))
    assert isinstance(parsed, DeliveryReport)
    return parsed


def _record_all(
    reports: list[DeliveryReport], row: dict[str, object] | None = None
) -> tuple[dict[str, object] | None, Markers, int]:
    """What the store does with each report's decision; marker rows keyed by event id (minus
    `recordedAt`, the arrival time the store adds). Returns the final row, the marker rows and
    how many reports were recorded (not duplicates)."""
    markers: Markers = {}
    recorded = 0
    for report in reports:
        fact = fact_from_report(report, classify(report.acs_status, report.status_message))
        entry = timeline_entry(report)
        decision = decide_report(row, fact, entry, ADDR, MID)
        if decision.duplicate:
            continue
        if decision.marker:
            if entry["eventId"] in markers:
                continue  # the marker create fails (409): the transaction wrote nothing
            markers[entry["eventId"]] = entry
        for old in decision.evicted:
            markers[str(old["eventId"])] = old
        if decision.row is not None:
            row = decision.row
        recorded += 1
    return row, markers, recorded


# Status messages of every size: short, long, over the stored limit, escaped ×6 and ×12 in JSON.
MESSAGES = ["250 2.0.0 OK", "550 " + "x" * 3_000, "452 " + "y" * 9_000, "é" * 4_000, "😀" * 3_000]

REPORTS = st.lists(
    st.tuples(
        st.sampled_from(["Delivered", "Bounced", "Failed", "Expanded"]),
        st.integers(min_value=0, max_value=5),
        st.sampled_from(range(len(MESSAGES))),
    ),
    min_size=1,
    max_size=3 * MAX_EMBEDDED_EVENTS // 2,
)


@settings(max_examples=150, deadline=None)
@given(REPORTS, st.randoms(use_true_random=False), st.integers(min_value=0, max_value=6))
def test_embedded_events_any_order_same_rows_exact_dedup(
    spec: list[tuple[str, int, int]], rnd: object, dupes: int
) -> None:
    reports = [_report(s, t, f"ev-{i}", MESSAGES[m]) for i, (s, t, m) in enumerate(spec)]
    expected = _record_all(reports)
    shuffled = reports + [reports[rnd.randrange(len(reports))] for _ in range(dupes)]  # type: ignore[attr-defined]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    got = _record_all(shuffled)
    assert got == expected
    row, markers, recorded = got
    assert recorded == len(reports)  # every duplicate seen, nothing recorded twice
    assert row is not None
    embedded = [str(e["eventId"]) for e in embedded_events(row)]
    assert not set(embedded) & set(markers)
    assert sorted(embedded + list(markers)) == sorted(r.envelope.event_id for r in reports)
    assert len(embedded) <= MAX_EMBEDDED_EVENTS
    assert len(str(row[EVENTS])) <= MAX_EMBEDDED_CHARS
    assert str(row[EVENTS]).isascii()  # characters = UTF-16 units
    # The list is the earliest events: every marker sorts after every embedded event.
    order = sorted(reports, key=lambda r: (r.attempt_at, r.envelope.event_id))
    assert embedded == [r.envelope.event_id for r in order[: len(embedded)]]


def test_common_path_embeds_and_sees_duplicates() -> None:
    sent = _fold([Fact(Status.SENT, T0, "sent", accepted_at=T0, sent_at=T0)])
    report = _report("Delivered", 2, "d")
    row, markers, recorded = _record_all([report, report], sent)
    assert (recorded, markers) == (1, {})
    assert row is not None
    (entry,) = embedded_events(row)
    assert entry["eventId"] == "d"
    assert "recordedAt" not in entry  # arrival time: would make the row order-dependent
    assert set(entry) >= {"eventType", "schema", "eventTime", "kind", "at", "acsStatus"}
    assert row["status"] == "delivered"


def test_legacy_row_keeps_marker_rows() -> None:
    """A row that took reports before events were embedded has no list: markers only."""
    old = _fold([_report_fact("Failed", 1, "old")])
    assert old is not None
    assert EVENTS not in old
    fact = _report_fact("Delivered", 2, "new")
    decision = decide_report(old, fact, {"eventId": "new"}, ADDR, MID)
    assert decision.marker
    assert not decision.duplicate
    assert decision.row is not None
    assert EVENTS not in decision.row


def test_index_healed_only_by_the_event_that_placed_it() -> None:
    first = _report_fact("Failed", 1, "a")
    later = _report_fact("Delivered", 5, "b")
    row = _fold([first, later])
    assert row is not None
    assert index_may_be_missing(row, first)
    assert not index_may_be_missing(row, later)
    accepted = _fold([Fact(Status.ACCEPTED, T0, "accept", accepted_at=T0), first])
    assert accepted is not None
    assert not index_may_be_missing(accepted, first)  # the outbox wrote that index entry


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
