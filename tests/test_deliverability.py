"""Deliverability rollups and reports: reports recorded through the app's wiring into Azurite,
answered through the HTTP functions, checked against a brute-force count of the same events."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

import function_app
from shared.app import wiring as services
from shared.core.providers import Provider, provider_of
from shared.core.rollups import ALPHA, Cell, bucket_of, bucket_value, merge_into, percentile
from shared.core.state import Fact
from shared.core.status import Status

from .factories import BASE, delivery_event, engagement_event, record_event

WINDOW = {
    "from": (BASE - timedelta(hours=2)).isoformat(),
    "to": (BASE + timedelta(hours=3)).isoformat(),
}


@pytest.fixture
def env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("ROLLUP_FLUSH_SECONDS", "3600")  # flushed by the queries, not the clock
    services.reset()
    yield app_env
    services.reset()


def get(route: str, params: dict[str, str], accept: str | None = None) -> func.HttpResponse:
    req = func.HttpRequest(
        "GET",
        f"http://127.0.0.1:7071/api/reports/{route}",
        params=params,
        route_params={},
        headers={"accept": accept} if accept else {},
        body=b"",
    )
    handler = {
        "deliverability": function_app.get_deliverability_report,
        "failures": function_app.get_failure_report,
    }[route]
    return handler(req)


def report(**params: str) -> dict[str, Any]:
    resp = get("deliverability", {**WINDOW, **params})
    assert resp.status_code == 200, resp.get_body()
    return dict(json.loads(resp.get_body()))


def by_key(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["key"]: g for g in answer["groups"]}


def with_mx(event: dict[str, Any], host: str | None) -> dict[str, Any]:
    if host:
        event["data"].setdefault("deliveryStatusDetails", {})["recipientMailServerHostName"] = host
    return event


# (recipient domain, MX host the report names, expected provider)
DOMAINS = [
    ("gmail.com", "gmail-smtp-in.l.google.com", "google"),
    ("contoso.com", "contoso-com.mail.protection.outlook.com", "microsoft"),
    ("yahoo.com", None, "yahoo"),  # no host in the report: the consumer domain says it
    ("fabrikam.de", "mx00.emig.gmx.net", "gmx"),
    ("bank.example", "mx0a-001.pphosted.com", "proofpoint"),
    ("tiny.example", None, "other"),
]
# final ACS status → (expected outcome column, expected reason)
FINALS = [
    ("Delivered", None, "delivered", "none"),
    ("Bounced", "550 5.1.1 <x>: Recipient address rejected: User unknown", "hardBounced",
     "userunknown"),
    ("Failed", "452 4.2.2 The email account that you tried to reach is over quota", "failed",
     "mailboxfull"),
    ("FilteredSpam", "554 5.7.1 Message rejected as spam", "spamFiltered", None),
    ("Quarantined", "Quarantined", "quarantined", None),
    ("Suppressed", None, "suppressed", None),
]  # fmt: skip


def test_counts_are_exact_under_duplicates_and_reordering(env: dict[str, str]) -> None:
    rng = random.Random(7)
    events: list[dict[str, Any]] = []
    expected: dict[str, Counter[str]] = {"recipientDomain": Counter(), "mailboxProvider": Counter()}
    outcome_total: Counter[str] = Counter()
    for n in range(60):
        dom, host, provider = DOMAINS[n % len(DOMAINS)]
        status, text, column, _ = FINALS[n % len(FINALS)]
        mid, rcpt = str(uuid.uuid4()), f"user{n}@{dom}"
        # an earlier soft failure that the final report supersedes (the count must move)
        if n % 3 == 0:
            early = delivery_event(mid, rcpt, "Failed", 1, status_message="421 4.4.2 timeout")
            events.append(with_mx(early, host))
        final = delivery_event(mid, rcpt, status, 30 + n, status_message=text)
        events.append(with_mx(final, host if status not in ("Suppressed",) else None))
        expected["recipientDomain"][dom] += 1
        expected["mailboxProvider"][provider if status != "Suppressed" or not host else
                                    provider_of(None, dom).value] += 1  # fmt: skip
        outcome_total[column] += 1
    deliveries = events * 3
    rng.shuffle(deliveries)
    for event in deliveries:
        record_event(event)

    total = report()["totals"]
    assert total["recipients"] == 60
    for column in ("delivered", "hardBounced", "failed", "spamFiltered", "quarantined"):
        assert total[column] == outcome_total[column], column
    assert total["suppressed"] == outcome_total["suppressed"]
    assert total["softBounced"] == 0  # the superseded soft failures moved away entirely
    for dim, counts in expected.items():
        got = {k: g["recipients"] for k, g in by_key(report(groupBy=dim)).items()}
        assert got == dict(counts), dim
    groups = report(groupBy="recipientDomain")["groups"]
    assert [g["recipients"] for g in groups] == sorted(
        (g["recipients"] for g in groups), reverse=True
    )
    for g in groups:
        for rate in ("deliveryRate", "hardBounceRate", "spamRate"):
            assert 0 <= g[rate] <= 1
    reasons = by_key(report(groupBy="reason"))
    assert reasons["userunknown"]["hardBounced"] == outcome_total["hardBounced"]
    assert reasons["none"]["delivered"] == outcome_total["delivered"]


def test_a_superseding_report_moves_the_count_to_its_hour(env: dict[str, str]) -> None:
    mid, rcpt = str(uuid.uuid4()), "late@contoso.com"
    record_event(delivery_event(mid, rcpt, "Failed", 60, status_message="421 4.4.2 timeout"))
    hour = by_key(report(groupBy="hour"))
    assert hour[BASE.strftime("%Y-%m-%dT%H:00:00Z")]["failed"] == 1
    # delivered on a retry in the next hour: the recipient leaves hour 10's failures
    record_event(delivery_event(mid, rcpt, "Delivered", 3_700))
    hour = by_key(report(groupBy="hour"))
    first, second = (
        BASE.strftime("%Y-%m-%dT%H:00:00Z"),
        (BASE + timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z"),
    )
    assert (hour[first]["failed"], hour[first]["recipients"]) == (0, 0)
    assert (hour[second]["delivered"], hour[second]["recipients"]) == (1, 1)
    assert report()["totals"]["recipients"] == 1
    # an older report arriving late changes nothing (the precedence keeps the delivery)
    record_event(delivery_event(mid, rcpt, "Bounced", 30))
    assert report()["totals"]["delivered"] == 1
    days = report(groupBy="day")["groups"]
    assert sum(d["recipients"] for d in days) == 1


def _sent(mid: str, rcpt: str, at: datetime, size: int | None = None) -> None:
    """The rows our send path leaves behind: the message row, and a `sent` status row."""
    store = services.message_store()
    if size is not None:
        store.write_message(mid, {"sizeBytes": size, "sender": "DoNotReply@mail.contoso.com"})
    fact = Fact(Status.SENT, at, "sent", sender="DoNotReply@mail.contoso.com", accepted_at=at,
                sent_at=at)  # fmt: skip
    store.record_fact(mid, rcpt, fact)


def test_latency_percentiles_match_brute_force_within_the_stated_error(env: dict[str, str]) -> None:
    rng = random.Random(11)
    latencies: list[int] = []
    for n in range(300):
        mid = str(uuid.uuid4())
        rcpt = f"p{n}@gmail.com"
        latency_ms = max(50, int(rng.lognormvariate(math.log(20_000), 1.2)))
        _sent(mid, rcpt, BASE)
        record_event(delivery_event(mid, rcpt, "Delivered", latency_ms / 1000))
        latencies.append(latency_ms)
    answer = report(groupBy="mailboxProvider")
    google = by_key(answer)["google"]
    ordered = sorted(latencies)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        truth = ordered[math.ceil(q * len(ordered)) - 1]
        assert abs(google["latencyMs"][name] - truth) <= ALPHA * truth + 1, name
    slo = 5 * 60_000
    low = sum(1 for x in latencies if x <= slo * (1 - ALPHA)) / len(latencies)
    high = sum(1 for x in latencies if x <= slo * (1 + ALPHA)) / len(latencies)
    assert low - 1e-6 <= google["withinSlo"] <= high + 1e-6
    assert answer["sloMinutes"] == 5


def test_size_class_and_sender_groups(env: dict[str, str]) -> None:
    sizes = {"a": 20_000, "b": 250_000, "c": 3_000_000, "d": 12_000_000}
    for name, size in sizes.items():
        mid = str(uuid.uuid4())
        _sent(mid, f"{name}@gmail.com", BASE, size)
        record_event(delivery_event(mid, f"{name}@gmail.com", "Delivered", 5))
    record_event(delivery_event(str(uuid.uuid4()), "e@gmail.com", "Delivered", 5))  # not ours
    got = {k: g["recipients"] for k, g in by_key(report(groupBy="sizeClass")).items()}
    assert got == {"<100KB": 1, "100KB-1MB": 1, "1-5MB": 1, ">10MB": 1, "unknown": 1}
    senders = by_key(report(groupBy="sender"))
    assert senders["donotreply@mail.contoso.com"]["recipients"] == 5
    domains = report(groupBy="senderDomain", senderDomain="mail.contoso.com")
    assert [(g["key"], g["recipients"]) for g in domains["groups"]] == [("mail.contoso.com", 5)]


def test_filters_answer_from_their_own_rows(env: dict[str, str]) -> None:
    other = "news@mail.fabrikam.com"
    for n, (sender, dom) in enumerate(
        [(None, "gmail.com"), (None, "gmail.com"), (other, "gmail.com"), (other, "yahoo.com")]
    ):
        event = delivery_event(str(uuid.uuid4()), f"f{n}@{dom}", "Delivered", 5)
        if sender:
            event = delivery_event(str(uuid.uuid4()), f"f{n}@{dom}", "Delivered", 5, sender=sender)
        record_event(event)
    assert report(senderDomain="mail.fabrikam.com")["totals"]["recipients"] == 2
    assert report(recipientDomain="gmail.com")["totals"]["recipients"] == 3
    both = report(senderDomain="mail.fabrikam.com", recipientDomain="gmail.com")
    assert both["totals"]["recipients"] == 1
    by_sender = by_key(report(recipientDomain="gmail.com", groupBy="senderDomain"))
    assert {k: g["recipients"] for k, g in by_sender.items()} == {
        "mail.contoso.com": 2,
        "mail.fabrikam.com": 1,
    }
    series = report(recipientDomain="yahoo.com", groupBy="hour")["groups"]
    assert sum(g["recipients"] for g in series) == 1
    assert len(series) == 5  # every hour of the window, empty ones included


def test_unique_opens_and_clicks_count_once(env: dict[str, str]) -> None:
    mid = str(uuid.uuid4())
    record_event(delivery_event(mid, "o@gmail.com", "Delivered", 5))
    opens = [engagement_event(mid, "o@gmail.com", "view", 60 + n) for n in range(3)]
    click = engagement_event(mid, "o@gmail.com", "click", 90, url="https://shop.example/a")
    for event in [*opens, *opens, click, click]:
        record_event(event)
    total = report()["totals"]
    assert (total["opens"], total["clicks"], total["recipients"]) == (1, 1, 1)


def test_csv_equals_json_and_is_injection_safe(env: dict[str, str]) -> None:
    record_event(delivery_event(str(uuid.uuid4()), "x@gmail.com", "Delivered", 5,
                                sender="=cmd|calc@evil.test"))  # fmt: skip
    record_event(delivery_event(str(uuid.uuid4()), "y@gmail.com", "Bounced", 6))
    answer = report(groupBy="sender")
    for resp in (
        get("deliverability", {**WINDOW, "groupBy": "sender"}, accept="text/csv"),
        get("deliverability", {**WINDOW, "groupBy": "sender", "format": "csv"}),
    ):
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(resp.get_body().decode())))
        assert len(rows) == len(answer["groups"])
        for row, group in zip(rows, answer["groups"], strict=True):
            key = row["key"][1:] if row["key"].startswith("'") else row["key"]
            assert key == group["key"]
            assert int(row["recipients"]) == group["recipients"]
            assert int(row["delivered"]) == group["delivered"]
            assert int(row["hardBounced"]) == group["hardBounced"]
            rate = group["deliveryRate"]
            assert (float(row["deliveryRate"]) if row["deliveryRate"] else None) == rate
            assert (int(row["latencyP50Ms"]) if row["latencyP50Ms"] else None) == group[
                "latencyMs"
            ]["p50"]
        assert any(r["key"] == "'=cmd|calc@evil.test" for r in rows)


def test_bad_parameters_are_named_each(env: dict[str, str]) -> None:
    resp = get(
        "deliverability",
        {"groupBy": "colour", "from": "yesterday", "limit": "0", "senderDomain": "a b",
         "format": "xml"},
    )  # fmt: skip
    assert resp.status_code == 400
    assert resp.mimetype == "application/problem+json"
    fields = {e["field"] for e in json.loads(resp.get_body())["errors"]}
    assert fields == {"groupBy", "from", "limit", "senderDomain", "format"}
    now = datetime.now(UTC)
    too_long = {"from": (now - timedelta(days=91)).isoformat(), "to": now.isoformat()}
    resp = get("deliverability", too_long)
    assert resp.status_code == 400
    assert "90 days" in json.loads(resp.get_body())["detail"]
    backwards = {"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()}
    assert get("failures", backwards).status_code == 400


def test_failure_report_lists_reasons_with_codes_and_domains(env: dict[str, str]) -> None:
    for n in range(5):
        record_event(delivery_event(str(uuid.uuid4()), f"u{n}@gmail.com", "Bounced", 5))
    for n in range(2):
        record_event(delivery_event(str(uuid.uuid4()), f"u{n}@contoso.com", "Bounced", 5))
    for n in range(3):
        record_event(delivery_event(str(uuid.uuid4()), f"m{n}@yahoo.com", "Failed", 5))
    record_event(delivery_event(str(uuid.uuid4()), "ok@gmail.com", "Delivered", 5))
    resp = get("failures", WINDOW)
    assert resp.status_code == 200
    answer = json.loads(resp.get_body())
    assert answer["failures"] == 10
    first, second = answer["reasons"][:2]
    assert (first["reason"], first["count"], first["bounceType"]) == ("userunknown", 7, "hard")
    assert first["explanation"]
    assert first["action"]
    assert first["enhancedCodes"] == [{"code": "5.1.1", "count": 7}]
    assert first["recipientDomains"] == [
        {"domain": "gmail.com", "count": 5},
        {"domain": "contoso.com", "count": 2},
    ]
    assert (second["reason"], second["count"]) == ("mailboxfull", 3)


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "domain", "expected"),
    [
        ("gmail-smtp-in.l.google.com", "gmail.com", Provider.GOOGLE),
        ("aspmx.l.google.com.", "startup.example", Provider.GOOGLE),
        ("contoso-com.mail.protection.outlook.com", "contoso.com", Provider.MICROSOFT),
        ("mta7.am0.yahoodns.net", "aol.com", Provider.YAHOO),
        ("mx01.mail.icloud.com", "icloud.com", Provider.APPLE),
        ("mx-ha03.web.de", "web.de", Provider.GMX),
        ("smtp-in.orange.fr", "orange.fr", Provider.ORANGE),
        ("mx1a1.comcast.net", "comcast.net", Provider.COMCAST),
        ("eu-smtp-inbound-1.mimecast.com", "firm.example", Provider.MIMECAST),
        ("mx0b-00123401.pphosted.com", "bank.example", Provider.PROOFPOINT),
        (None, "hotmail.co.uk", Provider.MICROSOFT),
        (None, "ymail.com", Provider.YAHOO),
        ("mail.notgoogle.com", "x.example", Provider.OTHER),  # a suffix on whole labels only
        (None, "unknown.example", Provider.OTHER),
    ],
)
def test_mailbox_provider(host: str | None, domain: str, expected: Provider) -> None:
    assert provider_of(host, domain) is expected


def test_histogram_buckets_are_within_alpha_and_merge() -> None:
    for ms in (1, 2, 57, 999, 1_000, 12_345, 299_999, 86_400_000):
        assert abs(bucket_value(bucket_of(ms)) - ms) <= ALPHA * ms + 1e-9
    a, b = Cell(), Cell()
    a.latency = {bucket_of(100): 2}
    b.latency = {bucket_of(100): 1, bucket_of(5_000): 1}
    a.add(b)
    assert percentile(a.latency, 0.5) == pytest.approx(bucket_value(bucket_of(100)))
    assert percentile(a.latency, 1.0) == pytest.approx(bucket_value(bucket_of(5_000)))


def test_a_full_row_sends_new_groups_to_other_and_keeps_them_there() -> None:
    from shared.core import rollups

    content = {f"recipientDomain=d{n}": Cell() for n in range(rollups.MAX_GROUPS_PER_ROW)}
    plus, minus = Cell(), Cell()
    plus.counts[0], minus.counts[0] = 1, -1
    merge_into(content, {"recipientDomain=new.example": plus}, 0)
    merge_into(content, {"recipientDomain=new.example": minus}, 0)
    assert "recipientDomain=new.example" not in content
    assert content["recipientDomain=(other)"].counts[0] == 0
