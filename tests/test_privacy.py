"""Retention (hourly bounded purge, times injected) and erasure (DELETE /api/recipients/{address})
against Azurite: what goes, what stays, what is kept under a keyed hash."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import azure.functions as func
import pytest

import function_app
from local.ports import free_port
from shared.app import privacy as privacy_app
from shared.app import wiring as services
from shared.core import keys, privacy
from shared.core.errors import InvalidInput
from shared.core.state import day_of, engagement_index_partition
from shared.edge import tables

from .conftest import TEST_HASH_KEY
from .factories import delivery_event, engagement_event, record_event
from .send_harness import SANDBOX_SETTINGS, post

GONE = "Gone.User@Example.com"
KEEP = "keep@example.com"
OPERATOR = {"operator": "alice", "reason": f"ticket 4711 from {GONE}"}


@pytest.fixture
def env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for name, value in SANDBOX_SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ALERT_ADDRESSES", "plain")  # alerts then hold addresses: erased too
    # Outcome events recorded, their publishing failing (nothing listens): they stay pending.
    monkeypatch.setenv("OUTCOME_EVENTS_TOPIC_ENDPOINT", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("OUTCOME_EVENTS_TOPIC_KEY", "k")
    monkeypatch.setenv("OUTCOME_EVENT_ADDRESSES", "plain")  # pending events hold it: erased too
    services.reset()
    yield app_env
    services.reset()


def send(to: list[str], key: str | None = None) -> str:
    reply = post(
        {"to": [{"address": a} for a in to], "subject": "Hello", "plainText": "Hi"},
        key=key,
    )
    assert reply.status == 202, reply.body
    return str(reply.body["messageId"])


def bounce(message_id: str, address: str) -> None:
    message = f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    record_event(delivery_event(message_id, address, "Bounced", status_message=message))


def all_rows(env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of this test (its table prefix), by table name."""
    from azure.data.tables import TableServiceClient

    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    prefix = env["TABLE_PREFIX"]
    return {
        t.name: [dict(e) for e in service.get_table_client(t.name).list_entities()]
        for t in service.list_tables()
        if t.name.startswith(prefix)
    }


def mentioning(env: dict[str, str], text: str) -> list[tuple[str, str, str]]:
    found = []
    for table, rows in all_rows(env).items():
        for row in rows:
            for name, value in row.items():
                if isinstance(value, str) and text.lower() in value.lower():
                    found.append((table, str(row["RowKey"]), name))
    return found


def erase(address: str, body: Any = OPERATOR, content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    # The URL as it arrives (percent-encoded); the route parameter as the host decodes it.
    path = quote(address, safe="@", errors="surrogatepass")
    req = func.HttpRequest(
        "DELETE",
        f"http://127.0.0.1:7071/api/recipients/{path}",
        headers={"content-type": content_type},
        route_params={"address": address},
        body=raw,
    )
    resp = function_app.erase_recipient(req)
    return resp.status_code, json.loads(resp.get_body() or b"null")


def table(env: dict[str, str], name: str) -> list[dict[str, Any]]:
    return all_rows(env).get(env["TABLE_PREFIX"] + name, [])


# --- retention --------------------------------------------------------------------------------


def test_purge_deletes_what_is_past_retention_and_keeps_the_suppression_list(
    env: dict[str, str],
) -> None:
    sent = send([GONE, KEEP], key="retention-key-1")
    bounce(sent, GONE)  # status row, suppression, alert, outcome event
    foreign = str(uuid.uuid4())  # mail not sent through us: known from its report alone
    record_event(delivery_event(foreign, KEEP, "Delivered"))
    record_event(engagement_event(foreign, KEEP))
    record_event({"id": "bad", "eventType": "Microsoft.Communication.EmailDeliveryReportReceived"})
    assert table(env, "Quarantine")
    assert table(env, "Alerts")
    assert table(env, "OutcomeEvents")
    assert table(env, "Activity")
    assert len(table(env, "Expiry")) == 2  # one entry per message, not per recipient
    before = {name: len(rows) for name, rows in all_rows(env).items() if rows}

    now = datetime.now(UTC)
    kept = services.privacy().purge(now + timedelta(days=60))  # RETENTION_DAYS 90: all kept
    assert kept.get("messages", 0) == 0
    assert {name: len(rows) for name, rows in all_rows(env).items() if rows} == before

    done = services.privacy().purge(now + timedelta(days=92))
    assert done["messages"] == 2
    assert done["recipientIndex"] == 4  # three recipients' histories, one engagement entry
    assert done["alerts"] >= 1
    assert done["quarantine"] == 1
    assert done["outcomeEvents"] >= 1
    for name in ("Messages", "RecipientIndex", "Expiry", "Quarantine", "Alerts"):
        assert table(env, name) == [], name
    assert table(env, "OutcomeEvents") == []
    assert done["activity"] >= 2  # the console's outcome rows (and their hour marks) too
    assert table(env, "Activity") == []
    # The suppression list is kept: the bounced address is still refused.
    assert set(services.suppression_list().active_for([GONE])) == {GONE.lower()}
    assert table(env, "Suppressions")
    # A second run finds nothing left.
    again = services.privacy().purge(now + timedelta(days=92))
    assert again.get("messages", 0) == 0
    assert again["alerts"] == 0


def test_purge_is_bounded_per_run_and_continues_next_run(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(privacy_app, "PURGE_MESSAGES_PER_RUN", 2)
    for _ in range(5):
        record_event(delivery_event(str(uuid.uuid4()), KEEP, "Delivered"))
    later = datetime.now(UTC) + timedelta(days=100)
    assert [services.privacy().purge(later).get("messages", 0) for _ in range(4)] == [2, 2, 1, 0]
    assert table(env, "Messages") == []
    assert table(env, "RecipientIndex") == []


def test_a_message_changed_after_it_was_filed_is_refiled_not_deleted(env: dict[str, str]) -> None:
    message_id = str(uuid.uuid4())
    record_event(delivery_event(message_id, KEEP, "Delivered"))
    store = services.message_store()
    long_ago = datetime.now(UTC) - timedelta(days=200)
    assert table(env, "Expiry") == []  # known from its report: found through its activity row
    store.note_expiry(message_id, long_ago)  # filed 200 days ago, yet its rows are new
    done = services.privacy().purge()
    assert done.get("messagesKept") == 1
    assert done.get("messages", 0) == 0
    assert services.message_store().message_rows(message_id)
    (moved,) = table(env, "Expiry")
    assert moved["PartitionKey"].startswith(day_of(datetime.now(UTC)))


def test_an_engagement_only_message_is_purged_after_retention(env: dict[str, str]) -> None:
    """Opens and clicks of a message no send and no delivery report named (its report lost,
    or mail sent elsewhere through the same resource) still leave with their message."""
    message_id = str(uuid.uuid4())
    record_event(engagement_event(message_id, KEEP, "view", 5))
    record_event(engagement_event(message_id, KEEP, "click", 9, "https://x.example/a"))
    record_event(engagement_event(message_id, None, "view", 7))  # names no recipient
    store = services.message_store()
    assert len(store.message_rows(message_id)) == 5  # two engagement rows, three markers
    # An entry a race left beside the row's own (two first engagements at once): it goes too.
    stray = {"indexRk": keys.newest_first(1, message_id), "address": KEEP}
    store.write_index(engagement_index_partition(keys.address_key(KEEP)), message_id, stray)
    now = datetime.now(UTC)
    assert services.privacy().purge(now + timedelta(days=60)).get("messages", 0) == 0
    done = services.privacy().purge(now + timedelta(days=92))
    assert done["messages"] == 1
    assert done["recipientIndex"] == 2
    for name in ("Messages", "RecipientIndex", "Expiry"):
        assert table(env, name) == [], name


def test_a_message_known_from_its_reports_is_found_through_its_activity_rows(
    env: dict[str, str],
) -> None:
    """First sight writes no expiry entry (two requests, not three): each report's activity
    row, filed by the report's hour, is how retention finds the message. One whose rows
    changed since is kept, and filed in the expiry index from then on."""
    old, recent = str(uuid.uuid4()), str(uuid.uuid4())
    hundred_days = -100 * 86_400
    record_event(delivery_event(old, KEEP, "Delivered"))
    record_event(delivery_event(recent, KEEP, "Delivered", seconds=hundred_days))
    assert table(env, "Expiry") == []
    now = datetime.now(UTC)
    done = services.privacy().purge(now)  # the old report's hour is past retention
    assert done.get("messagesKept") == 1  # its rows were written just now: kept
    (filed,) = table(env, "Expiry")
    assert filed["messageId"] == recent
    assert services.message_store().message_rows(recent)
    done = services.privacy().purge(now + timedelta(days=92))
    assert done["messages"] == 2
    assert table(env, "Messages") == []
    assert table(env, "Activity") == []
    assert table(env, "Expiry") == []


def test_outcome_events_are_found_by_hour_without_reading_the_records(
    env: dict[str, str],
) -> None:
    bounce(str(uuid.uuid4()), GONE)
    rows = table(env, "OutcomeEvents")
    # Nothing listens in this env: the event waits in the pending partition, filed by its hour.
    (pending,) = [r for r in rows if r["PartitionKey"] == "pending"]
    at = datetime.fromisoformat(json.loads(pending["event"])["time"])
    assert pending["hour"] == at.astimezone(UTC).strftime("%Y%m%d%H")
    # Retention is one key range: an hour before the cutoff, and pending rows of such hours.
    assert (
        services.privacy().purge(datetime.now(UTC) + timedelta(days=60)).get("outcomeEvents", 0)
        == 0
    )
    assert table(env, "OutcomeEvents")


# --- erasure ----------------------------------------------------------------------------------


def test_erasure_removes_the_address_everywhere_and_keeps_outcomes_by_hash(
    env: dict[str, str],
) -> None:
    sent = send([GONE, KEEP], key="erasure-key-1")
    bounce(sent, GONE)
    record_event(engagement_event(sent, GONE))  # a marker row and an engagement row
    foreign = str(uuid.uuid4())
    bounce(foreign, GONE.upper())
    record_event(
        {"id": "bad-1", "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
         "data": {"recipient": GONE, "messageId": 7}}
    )  # fmt: skip
    assert mentioning(env, GONE)
    hashed = privacy.erasure_hash(GONE, TEST_HASH_KEY.encode())

    status, body = erase(GONE)
    assert status == 200, body
    assert body["addressHash"] == hashed
    assert body["stillSuppressed"] is True
    erased = body["erased"]
    assert erased["recipientIndex"] == 3  # two messages of its history, one engagement entry
    assert erased["quarantine"] == 1
    assert erased["messageRows"] >= 4  # two status rows, an engagement row, a marker row
    assert erased["suppressions"] >= 3  # state, audit trail, domain listing
    assert erased["alerts"] >= 1
    assert "idempotency" not in erased  # the key's record is the message row: no address
    assert erased["payloads"] == 1
    assert body["thisRequest"] == erased
    assert body["requests"] == 1

    # Nowhere in any table, in any spelling (the outcome events hold only the hash).
    assert mentioning(env, GONE) == []
    assert mentioning(env, "gone.user%40example.com") == []
    # The outcome is kept under the hash: the message still says its recipient bounced.
    view = services.lookups().message(sent)
    by_address = {r["address"]: r for r in view["recipients"]}
    erased_view = by_address[privacy.erased_key(hashed)]
    assert erased_view["status"] == "bounced"
    assert erased_view["reason"] == "userunknown"
    assert "[erased]" in erased_view["statusMessage"]
    assert erased_view["engagement"]["opens"] == 1
    assert erased_view["timeline"]
    assert by_address[KEEP]["status"] == "accepted"
    assert services.lookups().recipient_history(GONE, {})["emails"] == []
    # The payload not yet sent no longer has the recipient; the other is still sent to.
    payload = json.loads(services.message_store().payload(sent) or "{}")
    assert [r["address"] for r in payload["recipients"]["to"]] == [KEEP]
    # Audited by hash: operator and reason, the address redacted from the reason.
    (audit,) = services.erasure_log().audit(hashed)
    assert audit["operator"] == "alice"
    assert audit["reason"] == "ticket 4711 from [erased]"


def test_an_erased_suppressed_address_stays_suppressed(env: dict[str, str]) -> None:
    bounce(str(uuid.uuid4()), GONE)
    assert erase(GONE)[0] == 200
    suppressions = services.suppression_list()
    assert suppressions.get(GONE) is not None
    assert set(suppressions.active_for([GONE, KEEP])) == {GONE.lower()}
    refused = post(
        {"to": [{"address": GONE.upper()}, {"address": KEEP}], "subject": "Hi", "plainText": "Hi"}
    )
    assert refused.status == 202
    assert [r["status"] for r in refused.body["recipients"]] == ["suppressed", "accepted"]
    # Only an operator's reactivation after the erasure re-enables it.
    req = func.HttpRequest(
        "DELETE",
        f"http://127.0.0.1:7071/api/suppressions/{GONE}",
        headers={"content-type": "application/json"},
        route_params={"address": GONE},
        body=json.dumps({"operator": "bob", "reason": "asked to be mailed again"}).encode(),
    )
    assert function_app.reactivate_address(req).status_code == 200
    assert suppressions.active_for([GONE]) == {}


def test_an_address_not_suppressed_gets_no_tombstone(env: dict[str, str]) -> None:
    record_event(delivery_event(str(uuid.uuid4()), GONE, "Delivered"))
    status, body = erase(GONE)
    assert status == 200
    assert body["stillSuppressed"] is False
    assert services.suppression_list().get(GONE) is None


def test_a_repeat_answers_the_same_counts_and_finds_what_came_since(env: dict[str, str]) -> None:
    bounce(str(uuid.uuid4()), GONE)
    first = erase(GONE)[1]
    second = erase(GONE)[1]
    assert second["erased"] == first["erased"]
    assert second["thisRequest"] == {}
    assert second["requests"] == 2
    record_event(delivery_event(str(uuid.uuid4()), GONE, "Delivered"))  # a late report
    third = erase(GONE)[1]
    assert third["thisRequest"]["recipientIndex"] == 1
    assert third["erased"]["recipientIndex"] == first["erased"]["recipientIndex"] + 1
    assert mentioning(env, GONE) == []


def test_an_engagement_only_recipient_is_erased(env: dict[str, str]) -> None:
    """A recipient known only from its opens and clicks: found and erased all the same."""
    message_id = str(uuid.uuid4())
    record_event(engagement_event(message_id, GONE, "view", 5))
    record_event(engagement_event(message_id, GONE.upper(), "click", 9, f"https://x/?u={GONE}"))
    assert mentioning(env, GONE)
    status, body = erase(GONE)
    assert status == 200, body
    assert body["thisRequest"]["recipientIndex"] == 1
    assert body["thisRequest"]["messageRows"] == 3  # the engagement row, two marker rows
    assert mentioning(env, GONE) == []
    hashed = privacy.erasure_hash(GONE, TEST_HASH_KEY.encode())
    view = services.lookups().message(message_id)
    (erased,) = view["recipients"]
    assert erased["address"] == privacy.erased_key(hashed)
    assert erased["engagement"]["opens"] == 1
    assert erased["engagement"]["clicks"] == 1
    # Erased, the message still leaves with retention (its index entry went with the erasure).
    done = services.privacy().purge(datetime.now(UTC) + timedelta(days=92))
    assert done["messages"] == 1
    assert table(env, "Messages") == []


def test_idn_spellings_erase_one_mailbox(env: dict[str, str]) -> None:
    record_event(delivery_event(str(uuid.uuid4()), "user@xn--bcher-kva.example", "Bounced"))
    status, body = erase("User@bücher.example")
    assert status == 200
    assert body["erased"]["recipientIndex"] == 1
    assert mentioning(env, "user@xn--bcher-kva.example") == []
    assert services.suppression_list().active_for(["user@bücher.example"])
    same = privacy.erasure_hash("USER@xn--bcher-kva.example", TEST_HASH_KEY.encode())
    assert body["addressHash"] == same


@pytest.mark.parametrize(
    ("address", "body", "content_type", "status", "field"),
    [
        ("a\ud800b@example.com", OPERATOR, "application/json", 400, "address"),
        ("x" * 5000 + "@example.com", OPERATOR, "application/json", 400, "address"),
        ("no-at-sign", OPERATOR, "application/json", 400, "address"),
        ("a\x00b@example.com", OPERATOR, "application/json", 400, "address"),
        ("a@example.com", {"operator": "alice"}, "application/json", 400, "reason"),
        (
            "a@example.com",
            {"operator": "a", "reason": "r" * 300},
            "application/json",
            400,
            "reason",
        ),
        ("a@example.com", {"operator": "a", "reason": "r", "x": 1}, "application/json", 400, "x"),
        ("a@example.com", b"operator=alice", "text/plain", 415, None),
        ("a@example.com", b"{not json", "application/json", 400, None),
    ],
)
def test_hostile_input_is_a_clear_4xx(
    env: dict[str, str], address: str, body: Any, content_type: str, status: int, field: str | None
) -> None:
    got, problem = erase(address, body, content_type)
    assert got == status, problem
    assert problem["status"] == status
    assert problem["title"]
    if field:
        assert field in [e["field"] for e in problem["errors"]]
    assert table(env, "Erasures") == []  # nothing was done, nothing audited


def test_checked_address_refuses_before_any_work() -> None:
    with pytest.raises(InvalidInput):
        privacy.checked_address("x" * 10_000_000)


def test_erased_row_keys_and_redaction() -> None:
    addr = keys.address_key(GONE)
    assert privacy.erased_row_key(f"r|{addr}", addr, "h") == "r|~h"
    assert privacy.erased_row_key(f"t|{addr}|ev-1", addr, "h") == "t|~h|ev-1"
    assert privacy.erased_row_key(f"r|{addr}.au", addr, "h") is None
    assert privacy.erased_row_key("m", addr, "h") is None
    forms = privacy.address_forms(GONE)
    text = f'to <{GONE.upper()}> or "{json.dumps(GONE)}" or ?u=gone.user%40example.com'
    assert GONE.lower() not in str(privacy.redact(text, forms)).lower()
    assert "gone.user%40" not in str(privacy.redact(text, forms))


def test_the_routes_are_registered(app_functions: list[Any]) -> None:
    found = {fn.get_function_name(): fn for fn in app_functions}
    http = next(b for b in found["erase_recipient"].get_bindings() if b.type == "httpTrigger")
    assert http.route == "recipients/{address}"
    assert [str(getattr(m, "value", m)) for m in http.methods] == ["DELETE"]
    timer = next(b for b in found["purge_expired_data"].get_bindings() if b.type == "timerTrigger")
    assert timer.schedule == "0 5 * * * *"  # NCRONTAB, six fields: hourly at minute 5


def test_an_accept_filed_while_an_erasure_ran_is_erased_too(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An accept's history entries follow its 202: an erasure that looks at the history in
    between finds nothing of that message. Filing ends with a look at the erasures running or
    just ended, and erases the recipient from the message then."""
    store = services.message_store()
    real = store.write_index
    erasure_done = threading.Event()

    def after_the_erasure(addr: str, message_id: str, row: Any) -> None:
        erasure_done.wait(10)
        real(addr, message_id, row)

    monkeypatch.setattr(store, "write_index", after_the_erasure)
    body = {"to": [{"address": GONE}, {"address": KEEP}], "subject": "Hello", "plainText": "Hi"}
    reply = post(body, settle=False)
    assert reply.status == 202
    sent = str(reply.body["messageId"])
    status, erased = erase(GONE)
    assert status == 200, erased
    assert "recipientIndex" not in erased["thisRequest"]  # the message was not in the history
    erasure_done.set()
    assert tables.AFTER_REPLY.settle(10)

    assert mentioning(env, GONE) == []
    hashed = privacy.erasure_hash(GONE, TEST_HASH_KEY.encode())
    view = services.lookups().message(sent)
    assert {r["address"] for r in view["recipients"]} == {privacy.erased_key(hashed), KEEP}
    payload = json.loads(store.payload(sent) or "{}")
    assert [r["address"] for r in payload["recipients"]["to"]] == [KEEP]
    assert services.lookups().recipient_history(GONE, {})["emails"] == []
    (kept,) = services.lookups().recipient_history(KEEP, {})["emails"]
    assert kept["messageId"] == sent


def test_a_send_after_an_erasure_ended_keeps_its_recipient(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only erasures that ran during the accept count: one that ended before it (by more than
    the clocks' slack) leaves a new send to the address alone."""
    assert erase(GONE)[0] == 200
    within_slack = send([GONE, KEEP])  # its accept is within CLOCK_SLACK of the erasure's end
    assert services.lookups().recipient_history(GONE, {})["emails"] == []
    monkeypatch.setattr(privacy_app, "CLOCK_SLACK", timedelta(0))
    time.sleep(0.01)
    after = send([GONE])
    (entry,) = services.lookups().recipient_history(GONE, {})["emails"]
    assert entry["messageId"] == after != within_slack
    payload = json.loads(services.message_store().payload(after) or "{}")
    assert [r["address"] for r in payload["recipients"]["to"]] == [GONE]
