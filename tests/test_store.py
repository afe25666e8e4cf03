"""The store against a real Azurite: idempotent, order-independent, no lost updates."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient, UpdateMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core import keys, views
from shared.core.classification import classify
from shared.core.errors import Transient
from shared.core.events import DeliveryReport, EngagementReport, parse_event
from shared.core.state import (
    EVENTS,
    MAX_EMBEDDED_EVENTS,
    Fact,
    day_of,
    embedded_events,
    engagement_index_partition,
    iso,
    timeline_entry,
)
from shared.core.status import Status
from shared.edge.messages import MessageStore, RowCache

from .factories import BASE, delivery_event, engagement_event

CACHE_BYTES = 4 << 20


@pytest.fixture(scope="module", params=[CACHE_BYTES, 0], ids=["row-cache", "no-cache"])
def store(storage_connection_string: str, request: pytest.FixtureRequest) -> MessageStore:
    """Every store test runs as the instance that wrote the rows (its cache answers the reads)
    and as one that did not (every report reads the row first)."""
    service = TableServiceClient.from_connection_string(storage_connection_string)
    s = MessageStore(service, "S" + uuid.uuid4().hex[:8], cache_bytes=request.param)
    s.create_tables()
    return s


def _delivery(event: dict[str, Any]) -> DeliveryReport:
    parsed = parse_event(event)
    assert isinstance(parsed, DeliveryReport)
    return parsed


def _record(store: MessageStore, event: dict[str, Any]) -> Any:
    parsed = parse_event(event)
    if isinstance(parsed, EngagementReport):
        return store.record_engagement(parsed)
    assert isinstance(parsed, DeliveryReport)
    return store.record_delivery(parsed, classify(parsed.acs_status, parsed.status_message))


def _final(store: MessageStore, message_id: str) -> dict[str, Any]:
    """Every row of the message, minus what legitimately differs (write times, etags), and
    every recipient-index and retention (Expiry) entry naming it: those must not depend on the
    order of events either. (An Expiry partition's shard digit hashes the message id: the day
    is what is compared.)"""
    rows: dict[str, Any] = {}
    for row in store.message_rows(message_id):
        rows[row["RowKey"]] = {
            k: v for k, v in row.items() if k not in {"updatedAt", "recordedAt", "Timestamp"}
        }
    named = f"messageId eq '{message_id}'"
    for entry in store.index.query_entities(named):
        rows[f"index {entry['PartitionKey']} {entry['RowKey']}"] = dict(entry)
    for entry in store.expiry.query_entities(named):
        day = str(entry["PartitionKey"]).rpartition("|")[0]
        rows[f"expiry {day} {entry['RowKey']}"] = {
            k: v for k, v in entry.items() if k != "PartitionKey"
        }
    return rows


def test_record_and_lookup(store: MessageStore) -> None:
    mid = str(uuid.uuid4())
    result = _record(store, delivery_event(mid, "Alice@Example.com", "Delivered", 3))
    assert result.changed
    assert not result.duplicate
    view = views.message_view(mid, store.message_rows(mid))
    assert view is not None
    (recipient,) = view["recipients"]
    assert recipient["address"] == "Alice@Example.com"
    assert recipient["status"] == "delivered"
    assert len(recipient["timeline"]) == 1


def test_duplicate_event_is_one(store: MessageStore) -> None:
    mid = str(uuid.uuid4())
    event = delivery_event(mid, "bob@example.com", "Bounced", 1)
    first = _record(store, event)
    again = [_record(store, event) for _ in range(3)]
    assert first.changed
    assert all(r.duplicate and not r.changed for r in again)
    rows = store.message_rows(mid)
    assert not [r for r in rows if r["RowKey"].startswith("t|")]  # the status row holds it
    (status,) = rows
    assert [e["eventId"] for e in embedded_events(status)] == [event["id"]]
    view = views.message_view(mid, rows)
    assert view is not None
    assert len(view["recipients"][0]["timeline"]) == 1


def test_address_case_insensitive_and_unsafe_characters(store: MessageStore) -> None:
    mid = "weird/id#1?x\\y"
    odd = "o'brien/#?\\%|x@Example.com"
    _record(store, delivery_event(mid, odd, "Failed", 1))
    _record(store, delivery_event(mid, odd.upper(), "Delivered", 2))
    view = views.message_view(mid, store.message_rows(mid))
    assert view is not None
    (recipient,) = view["recipients"]
    assert recipient["status"] == "delivered"
    assert len(recipient["timeline"]) == 2
    items, _ = store.recipient_history(odd.lower(), 10, None)
    assert [i["messageId"] for i in items] == [mid]


def test_history_newest_first_and_paged(store: MessageStore) -> None:
    addr = f"hist-{uuid.uuid4().hex[:6]}@example.com"
    mids = [str(uuid.uuid4()) for _ in range(5)]
    for n, mid in enumerate(mids):
        _record(store, delivery_event(mid, addr, "Delivered", n * 60))
    page1, token = store.recipient_history(addr, 3, None)
    assert token
    page2, token2 = store.recipient_history(addr, 3, token)
    assert token2 is None
    got = [i["messageId"] for i in page1 + page2]
    assert got == list(reversed(mids))
    assert all(i["statusRow"]["status"] == "delivered" for i in page1 + page2)


EVENT_SPECS = st.lists(
    st.tuples(
        st.sampled_from(["a@example.com", "B@example.com"]),
        st.sampled_from(["Delivered", "Bounced", "Failed", "Expanded", "view", "click"]),
        st.integers(min_value=0, max_value=3),
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(EVENT_SPECS, st.randoms(use_true_random=False), st.integers(min_value=0, max_value=3))
def test_permutations_with_duplicates_give_identical_rows(
    store: MessageStore, spec: list[tuple[str, str, int]], rnd: Any, dupes: int
) -> None:
    def events_for(mid: str) -> list[dict[str, Any]]:
        out = []
        for i, (addr, kind, t) in enumerate(spec):
            eid = f"ev-{i}"
            if kind in {"view", "click"}:
                out.append(engagement_event(mid, addr, kind, t, f"https://x/{t}", event_id=eid))
            else:
                out.append(delivery_event(mid, addr, kind, t, event_id=eid))
        return out

    mid_a, mid_b = str(uuid.uuid4()), str(uuid.uuid4())
    for event in events_for(mid_a):
        _record(store, event)
    shuffled = events_for(mid_b)
    shuffled += [shuffled[rnd.randrange(len(shuffled))] for _ in range(dupes)]
    rnd.shuffle(shuffled)
    for event in shuffled:
        _record(store, event)

    def normalized(mid: str) -> str:
        return json.dumps(_final(store, mid), sort_keys=True).replace(mid, "MID")

    assert normalized(mid_a) == normalized(mid_b)


def test_concurrent_writers_lose_nothing(store: MessageStore) -> None:
    mid = str(uuid.uuid4())
    addr = "race@example.com"
    events = [delivery_event(mid, addr, "Failed", n, event_id=f"f{n}") for n in range(12)]
    events.append(delivery_event(mid, addr, "Delivered", 100, event_id="winner"))
    views_ = [engagement_event(mid, addr, "view", 200 + n, event_id=f"v{n}") for n in range(12)]
    barrier = threading.Barrier(len(events) + len(views_))
    errors: list[BaseException] = []

    def run(event: dict[str, Any]) -> None:
        try:
            barrier.wait()
            for _ in range(5):  # a Transient is Event Grid's cue to redeliver: do as it does
                try:
                    _record(store, event)
                    break
                except Transient:
                    continue
            else:
                raise AssertionError("still contended after 5 deliveries")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in events + views_]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = {r["RowKey"]: r for r in store.message_rows(mid)}
    status = rows[keys.status_row(keys.address_key(addr))]
    assert status["status"] == "delivered"
    assert status["eventId"] == "winner"
    engagement = rows[keys.engagement_row(keys.address_key(addr))]
    assert engagement["opens"] == 12
    # Racing first engagements each wrote an index entry: the earliest's is there (erasure
    # finds the recipient by it); one a race left stray names the message too, and retention
    # deletes every entry naming it (`engagement_entries`).
    assert engagement["indexAt"] == iso(BASE + timedelta(seconds=200))
    assert engagement["indexRk"] in _engagement_entries(store, addr)
    mine = store.engagement_entries(keys.address_key(addr), mid)
    assert engagement["indexRk"] in [rk for _, rk in mine]
    assert all(mid in rk for _, rk in mine)
    assert sum(1 for k in rows if k.startswith("t|")) == 12  # engagement events
    assert len(embedded_events(status)) == 13  # every delivery report, none lost
    view = views.message_view(mid, rows.values())
    assert view is not None
    assert len(view["recipients"][0]["timeline"]) == 25


def _overflowing_events(mid: str, addr: str) -> list[dict[str, Any]]:
    """More delivery reports than the status row holds, some with long replies (the size cap)."""
    events = []
    for n in range(MAX_EMBEDDED_EVENTS + 6):
        message = "452 4.2.2 over quota " + "z" * (3_000 if n % 4 == 0 else 10)
        events.append(
            delivery_event(mid, addr, "Failed", n % 7, event_id=f"e{n:02d}", status_message=message)
        )
    return events


def test_past_the_cap_events_overflow_to_marker_rows_in_any_order(store: MessageStore) -> None:
    addr = "busy@example.com"
    mid_a, mid_b = str(uuid.uuid4()), str(uuid.uuid4())
    forward = [_record(store, e) for e in _overflowing_events(mid_a, addr)]
    backward = _overflowing_events(mid_b, addr)[::-1]
    results = [_record(store, e) for e in backward + backward[::3]]
    assert not any(r.duplicate for r in forward)
    assert [r.duplicate for r in results] == [False] * len(backward) + [True] * len(backward[::3])
    # Redeliveries of embedded, overflowed and pushed-out events alike are duplicates.
    assert all(_record(store, e).duplicate for e in _overflowing_events(mid_a, addr))

    def normalized(mid: str) -> str:
        return json.dumps(_final(store, mid), sort_keys=True).replace(mid, "MID")

    assert normalized(mid_a) == normalized(mid_b)
    rows = store.message_rows(mid_a)
    status = next(r for r in rows if r["RowKey"].startswith("r|"))
    markers = [r for r in rows if r["RowKey"].startswith("t|")]
    assert markers
    assert len(embedded_events(status)) + len(markers) == MAX_EMBEDDED_EVENTS + 6
    view = views.message_view(mid_a, rows)
    assert view is not None
    timeline = view["recipients"][0]["timeline"]
    assert len(timeline) == MAX_EMBEDDED_EVENTS + 6
    assert timeline == sorted(timeline, key=lambda e: (e["at"], e["eventId"]))


def test_rows_from_before_embedding_keep_their_marker_rows(store: MessageStore) -> None:
    """A status row and marker written the old way: a redelivery is still a duplicate."""
    mid, addr = str(uuid.uuid4()), "legacy@example.com"
    old = delivery_event(mid, addr, "Failed", 1, event_id="old")
    _record(store, old)
    pk, rk = keys.message_key(mid), keys.status_row(keys.address_key(addr))
    row = store.messages.get_entity(pk, rk)
    (entry,) = embedded_events(row)
    legacy = {k: v for k, v in row.items() if k != EVENTS}
    store.messages.upsert_entity(legacy, mode=UpdateMode.REPLACE)
    marker_rk = keys.timeline_row(keys.address_key(addr), "old")
    store.messages.create_entity({**entry, "PartitionKey": pk, "RowKey": marker_rk})
    assert _record(store, old).duplicate
    assert not _record(store, delivery_event(mid, addr, "Delivered", 2, event_id="new")).duplicate
    rows = store.message_rows(mid)
    assert {r["RowKey"] for r in rows if r["RowKey"].startswith("t|")} == {
        marker_rk,
        keys.timeline_row(keys.address_key(addr), "new"),
    }
    view = views.message_view(mid, rows)
    assert view is not None
    assert [e["eventId"] for e in view["recipients"][0]["timeline"]] == ["old", "new"]
    assert view["recipients"][0]["status"] == "delivered"


def _counted_store(conn: str, prefix: str, cache_bytes: int) -> tuple[MessageStore, list[str]]:
    requests: list[str] = []
    service = TableServiceClient.from_connection_string(
        conn, raw_request_hook=lambda r: requests.append(r.http_request.method)
    )
    store = MessageStore(service, prefix, cache_bytes=cache_bytes)
    store.create_tables()
    return store, requests


def test_round_trips(storage_connection_string: str) -> None:
    """Common path: a read and one write; a duplicate: the read alone (plus the index write
    when the redelivered event is the one that placed the message in the history)."""
    store, requests = _counted_store(storage_connection_string, "R" + uuid.uuid4().hex[:8], 0)

    def trips(event: dict[str, Any]) -> list[str]:
        requests.clear()
        _record(store, event)
        return list(requests)

    sent_mid, fresh_mid = str(uuid.uuid4()), str(uuid.uuid4())
    store.record_fact(sent_mid, "s@example.com", Fact(Status.SENT, BASE, "sent", accepted_at=BASE))
    report = delivery_event(sent_mid, "s@example.com", "Delivered", 2)
    assert trips(report) == ["GET", "PUT"]
    assert trips(report) == ["GET"]
    first_sight = delivery_event(fresh_mid, "f@example.com", "Delivered", 2)
    # read, create, then the index upsert (retention finds it through its activity row)
    assert sorted(trips(first_sight)) == ["GET", "PATCH", "POST"]
    # heals an index write a crash may have lost
    assert sorted(trips(first_sight)) == ["GET", "PATCH"]


def test_round_trips_with_the_row_cache(storage_connection_string: str) -> None:
    """The instance that wrote the row skips the read: one write per report, and a duplicate
    costs nothing. A row another instance changed since fails the write (412) and is read."""
    prefix = "C" + uuid.uuid4().hex[:8]
    ours, requests = _counted_store(storage_connection_string, prefix, CACHE_BYTES)
    other, _ = _counted_store(storage_connection_string, prefix, CACHE_BYTES)

    def trips(store: MessageStore, event: dict[str, Any]) -> list[str]:
        requests.clear()
        _record(store, event)
        return list(requests)

    mid, addr = str(uuid.uuid4()), "s@example.com"
    ours.record_fact(mid, addr, Fact(Status.SENT, BASE, "sent", accepted_at=BASE))
    expanded = delivery_event(mid, addr, "Expanded", 1, event_id="expanded")
    assert trips(ours, expanded) == ["PUT"]
    assert trips(ours, expanded) == []  # the cached row already holds the event
    _record(other, delivery_event(mid, addr, "Bounced", 5, event_id="bounced"))
    late = delivery_event(mid, addr, "Delivered", 2, event_id="delivered")
    assert trips(ours, late) == ["PUT", "GET", "PUT"]  # stale: 412, read, write
    assert trips(ours, late) == []
    row = ours.messages.get_entity(keys.message_key(mid), keys.status_row(keys.address_key(addr)))
    assert row["status"] == "bounced"  # the later attempt wins; nothing lost
    assert [e["eventId"] for e in embedded_events(row)] == ["expanded", "delivered", "bounced"]
    cached = ours.cache.get(row["PartitionKey"], row["RowKey"])
    assert cached is not None
    assert cached[0] == row.metadata["etag"]
    # Past the embedded cap an event is a marker row in one transaction with the status row:
    # the ETag the transaction returned is cached too, so the next report reads nothing.
    full = str(uuid.uuid4())
    for n in range(MAX_EMBEDDED_EVENTS):
        _record(ours, delivery_event(full, addr, "Failed", n, event_id=f"e{n:02d}"))
    assert trips(ours, delivery_event(full, addr, "Failed", 50, event_id="over1")) == ["POST"]
    assert trips(ours, delivery_event(full, addr, "Failed", 51, event_id="over2")) == ["POST"]


def test_row_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    cache = RowCache(10_000)
    row = {"PartitionKey": "p", "RowKey": "r", "events": "x" * 700}  # ≈ 1 KB with overhead
    for n in range(12):
        cache.put(f"m{n}", "r", f"e{n}", row)
        if n == 1:
            assert cache.get("m0", "r") == ("e0", row)  # m0 is now the most recently used
    assert len(cache) < 12
    assert cache.get("m0", "r") is not None
    assert cache.get("m1", "r") is None  # least recently used: evicted
    assert cache.get("m11", "r") == ("e11", row)
    cache.put("m11", "r", "e12", row)  # a newer write replaces the entry
    assert cache.get("m11", "r") == ("e12", row)
    cache.forget("m11", "r")
    assert cache.get("m11", "r") is None
    cache.put("huge", "r", "e", {"events": "x" * 5_000})  # over an eighth: never cached
    assert cache.get("huge", "r") is None
    cache.put("m2", "r", None, row)  # no ETag: nothing to write against
    assert cache.get("m2", "r") is None
    off = RowCache(0)
    off.put("m", "r", "e", row)
    assert off.get("m", "r") is None


def test_view_merges_embedded_and_marker_events_once() -> None:
    parsed = _delivery(delivery_event("m", "x@example.com", "Delivered", 1, event_id="both"))
    entry = timeline_entry(parsed)
    status = {"RowKey": "r|x@example.com", "status": "delivered", EVENTS: json.dumps([entry])}
    marker = {**entry, "recordedAt": iso(BASE), "RowKey": "t|x@example.com|both"}
    view = views.message_view("m", [status, marker])
    assert view is not None
    (event,) = view["recipients"][0]["timeline"]
    assert event["recordedAt"] == iso(BASE)  # the marker row's copy
    assert set(event) == {
        "eventId",
        "kind",
        "at",
        "eventType",
        "recordedAt",
        "notes",
        "acsStatus",
        "statusMessage",
        "mailServer",
    }


def test_engagement_without_recipient_attributed_to_single_recipient(store: MessageStore) -> None:
    mid = str(uuid.uuid4())
    _record(store, delivery_event(mid, "solo@example.com", "Delivered", 1))
    _record(store, engagement_event(mid, None, "view", 5))
    view = views.message_view(mid, store.message_rows(mid))
    assert view is not None
    assert view["recipients"][0]["engagement"]["opens"] == 1
    assert view["unattributedEngagement"] is None


def test_quarantine_truncates_safely(store: MessageStore) -> None:
    raw = "x" * 200_000
    store.quarantine(raw, "statusMessage longer than 16384 characters", "evt-1", "T")
    rows = list(store.quarantine_table.list_entities())
    mine = [r for r in rows if r.get("eventId") == "evt-1"]
    assert mine
    assert mine[0]["rawLength"] == 200_000
    assert len(mine[0]["raw"]) <= 30_000


def _foreign(store: MessageStore, event: dict[str, Any]) -> Any:
    parsed = _delivery(event)
    classification = classify(parsed.acs_status, parsed.status_message)
    return store.record_delivery(parsed, classification, ours=False)


@pytest.mark.parametrize("cache_bytes", [0, CACHE_BYTES], ids=["no-cache", "row-cache"])
def test_first_sight_is_two_requests_in_parallel(
    storage_connection_string: str, cache_bytes: int
) -> None:
    """A report of a message not sent through us: create the status row and the index entry
    at once, no read first. Its redelivery reads (the create fails) and writes nothing new;
    a report whose row existed after all drops the index entry it guessed."""
    prefix = "F" + uuid.uuid4().hex[:8]
    store, requests = _counted_store(storage_connection_string, prefix, cache_bytes)

    def trips(event: dict[str, Any]) -> list[str]:
        requests.clear()
        _foreign(store, event)
        return sorted(requests)

    mid, addr = str(uuid.uuid4()), "first@example.com"
    report = delivery_event(mid, addr, "Delivered", 2)
    # status row create ∥ index upsert: the two the report needs, nothing else (retention
    # finds the message through the report's activity row)
    assert trips(report) == ["PATCH", "POST"]
    # A redelivery: the create fails, the row read shows the event; the index entry is
    # written again (it heals a crash after the row write) and kept. On the instance that
    # created the row its cache answers: only the index heal.
    expected = ["PATCH"] if cache_bytes else ["GET", "PATCH", "PATCH", "POST"]
    assert trips(report) == expected
    items, _ = store.recipient_history(addr, 10, None)
    assert [i["messageId"] for i in items] == [mid]

    # Not first sight after all (an accepted message, hinted wrongly): create fails, read,
    # write, and the guessed index entry, sorted elsewhere, is deleted.
    ours_mid = str(uuid.uuid4())
    store.record_fact(ours_mid, addr, Fact(Status.SENT, BASE, "sent", accepted_at=BASE))
    store.write_index(keys.address_key(addr), ours_mid, _status_row(store, ours_mid, addr))
    requests.clear()
    _foreign(store, delivery_event(ours_mid, addr, "Delivered", 3))
    if cache_bytes:  # this instance wrote the row: its cache says it exists, no guess
        assert requests == ["PUT"]
    else:
        assert sorted(requests) == ["DELETE", "GET", "PATCH", "POST", "PUT"]
    items, _ = store.recipient_history(addr, 10, None)
    assert sorted(i["messageId"] for i in items) == sorted([mid, ours_mid])
    assert _status_row(store, ours_mid, addr)["status"] == "delivered"


def test_history_skips_an_index_entry_its_row_does_not_point_to(
    storage_connection_string: str,
) -> None:
    """A leftover entry (a guess whose delete a crash lost) does not show the message twice."""
    store, _ = _counted_store(storage_connection_string, "H" + uuid.uuid4().hex[:8], 0)
    mid, addr = str(uuid.uuid4()), "left@example.com"
    _foreign(store, delivery_event(mid, addr, "Delivered", 2))
    stray = {**_status_row(store, mid, addr), "indexRk": keys.newest_first(1, mid)}
    store.write_index(keys.address_key(addr), mid, stray)
    items, _ = store.recipient_history(addr, 10, None)
    assert [i["messageId"] for i in items] == [mid]
    assert items[0]["RowKey"] == _status_row(store, mid, addr)["indexRk"]


def _status_row(store: MessageStore, mid: str, addr: str) -> dict[str, Any]:
    pk, rk = keys.message_key(mid), keys.status_row(keys.address_key(addr))
    return dict(store.messages.get_entity(pk, rk))


def _engagement_entries(store: MessageStore, addr: str) -> list[str]:
    partition = engagement_index_partition(keys.address_key(addr)).replace("'", "''")
    return [e["RowKey"] for e in store.index.query_entities(f"PartitionKey eq '{partition}'")]


def _engagement(store: MessageStore, event: dict[str, Any]) -> Any:
    parsed = parse_event(event)
    assert isinstance(parsed, EngagementReport)
    return store.record_engagement(parsed)


def test_engagement_places_the_recipient_at_its_earliest_engagement(
    storage_connection_string: str,
) -> None:
    """Erasure and retention find a recipient known only from opens and clicks: the first
    engagement writes its engagement-index entry and the message's Expiry entry beside the
    row's transaction; a later one writes nothing more; an earlier one moves the entry."""
    store, requests = _counted_store(storage_connection_string, "G" + uuid.uuid4().hex[:8], 0)

    def trips(event: dict[str, Any]) -> list[str]:
        requests.clear()
        _engagement(store, event)
        return sorted(requests)

    mid, addr = str(uuid.uuid4()), f"eng-{uuid.uuid4().hex[:6]}@example.com"
    at = {
        n: keys.newest_first(int((BASE + timedelta(seconds=n)).timestamp() * 1000), mid)
        for n in (-90_000, 5, 30)
    }
    # read, then the transaction ∥ index upsert ∥ Expiry entry
    assert trips(engagement_event(mid, addr, "view", 30, event_id="late")) == [
        "GET",
        "PATCH",
        "POST",
        "PUT",
    ]
    assert _engagement_entries(store, addr) == [at[30]]
    assert trips(engagement_event(mid, addr, "click", 60, "https://x/", event_id="later")) == [
        "GET",
        "POST",
    ]
    # An earlier one the same day: the entry moves (the Expiry day stays).
    assert trips(engagement_event(mid, addr, "view", 5, event_id="early")) == [
        "DELETE",
        "GET",
        "PATCH",
        "POST",
    ]
    assert _engagement_entries(store, addr) == [at[5]]
    # A day earlier still: the entry moves and the message is filed under that day too.
    assert trips(engagement_event(mid, addr, "view", -90_000, event_id="eve")) == [
        "DELETE",
        "GET",
        "PATCH",
        "POST",
        "PUT",
    ]
    assert _engagement_entries(store, addr) == [at[-90_000]]
    days = sorted(
        str(e["PartitionKey"])[:10] for e in store.expiry.query_entities(f"messageId eq '{mid}'")
    )
    assert days == sorted({day_of(BASE - timedelta(seconds=90_000)), day_of(BASE)})
    # A redelivered later event: the read and the refused marker, nothing written.
    assert trips(engagement_event(mid, addr, "view", 5, event_id="early")) == ["GET", "GET", "POST"]
    # The history (status rows' partition) is as before: no send or report named the address.
    assert store.recipient_history(addr, 10, None)[0] == []
    # No recipient named: the message is filed for retention, nothing is indexed.
    other = str(uuid.uuid4())
    assert trips(engagement_event(other, None, "view", 5)) == ["GET", "POST", "PUT"]
    assert [e["messageId"] for e in store.expiry.query_entities(f"messageId eq '{other}'")] == [
        other
    ]


def test_redelivered_placing_engagement_heals_a_lost_index_write(store: MessageStore) -> None:
    """The row is committed before (or beside) its entries: a crash may lose them, and the
    redelivery of the engagement that placed the row writes them again."""
    mid, addr = str(uuid.uuid4()), f"heal-{uuid.uuid4().hex[:6]}@example.com"
    first = engagement_event(mid, addr, "view", 5, event_id="first")
    _engagement(store, first)
    _engagement(store, engagement_event(mid, addr, "view", 9, event_id="second"))
    (entry,) = _engagement_entries(store, addr)
    (expiry,) = store.expiry.query_entities(f"messageId eq '{mid}'")
    store.index.delete_entity(engagement_index_partition(keys.address_key(addr)), entry)
    store.drop_expiry(expiry)
    assert _engagement(store, engagement_event(mid, addr, "view", 9, event_id="second")).duplicate
    assert _engagement_entries(store, addr) == []  # not the placing one: nothing written
    assert _engagement(store, first).duplicate
    assert _engagement_entries(store, addr) == [entry]
    assert [e["RowKey"] for e in store.expiry.query_entities(f"messageId eq '{mid}'")] == [
        keys.message_key(mid)
    ]
