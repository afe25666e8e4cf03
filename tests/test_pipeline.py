"""Event Grid functions and lookups, called as the worker calls them, against real Azurite."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

import function_app
from shared.app import wiring as services
from shared.app.reports import EventOutcome

from .conftest import TEST_HASH_KEY, load_event
from .factories import delivery_event, engagement_event, record_event


@pytest.fixture
def env(app_env: dict[str, str]) -> Iterator[dict[str, str]]:
    services.reset()
    yield app_env
    services.reset()


def as_trigger_event(raw: dict[str, Any]) -> Any:
    """What the Python worker hands the function: the library's own converter."""
    return EventGridEventInConverter.decode(
        meta.Datum(json.dumps(raw), "json"), trigger_metadata={}
    )


def get(route: str, params: dict[str, str] | None = None, **route_params: str) -> func.HttpResponse:
    req = func.HttpRequest(
        "GET",
        f"http://127.0.0.1:7071/api/{route}",
        params=params or {},
        route_params=route_params,
        body=b"",
    )
    handler = {
        "emails": function_app.get_message_status,
        "recipients": function_app.list_recipient_emails,
        "explain": function_app.explain_status,
        "health": function_app.check_health,
    }[route.split("/", 1)[0]]
    return handler(req)


def body(resp: func.HttpResponse) -> Any:
    return json.loads(resp.get_body())


def test_delivery_report_through_the_function(env: dict[str, str]) -> None:
    mid = str(uuid.uuid4())
    function_app.record_delivery_report(
        as_trigger_event(delivery_event(mid, "A@Example.com", "Bounced", 2))
    )
    resp = get(f"emails/{mid}", messageId=mid)
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    (recipient,) = body(resp)["recipients"]
    assert recipient["status"] == "bounced"
    assert recipient["bounceType"] == "hard"
    assert recipient["reason"] == "userunknown"
    assert recipient["enhancedCode"] == "5.1.1"
    assert recipient["explanation"]
    assert recipient["action"]
    assert recipient["anymail"]["eventType"] == "bounced"
    assert recipient["ses"]["bounceType"] == "Permanent"
    # A message id pasted in upper case (as some tools show GUIDs) finds the same message.
    upper = get(f"emails/{mid.upper()}", messageId=mid.upper())
    assert upper.status_code == 200
    assert body(upper)["recipients"][0]["status"] == "bounced"


def test_cloudevents_through_the_function(env: dict[str, str]) -> None:
    mid = str(uuid.uuid4())
    event = as_trigger_event(delivery_event(mid, "c@example.com", "Delivered", 1, cloud=True))
    assert isinstance(event, func.CloudEvent)
    function_app.record_delivery_report(event)
    (recipient,) = body(get(f"emails/{mid}", messageId=mid))["recipients"]
    assert recipient["status"] == "delivered"
    assert recipient["bounceType"] is None


@pytest.mark.parametrize(
    "name",
    [
        "delivery_delivered_eventgrid.json",
        "delivery_failed_mailboxfull_token.json",
        "delivery_suppressed_no_optional_fields.json",
        "delivery_filteredspam.json",
        "delivery_multiline_gmail_dmarc.json",
        "engagement_click.json",
    ],
)
def test_recorded_fixtures_are_recorded(env: dict[str, str], name: str) -> None:
    assert record_event(load_event(name)) is EventOutcome.RECORDED
    assert record_event(load_event(name)) is EventOutcome.DUPLICATE


def test_mailbox_full_is_soft_and_dmarc_is_not_hard(env: dict[str, str]) -> None:
    record_event(load_event("delivery_failed_mailboxfull_token.json"))
    record_event(load_event("delivery_multiline_gmail_dmarc.json"))
    mid = "8c2f1a7e-5b3d-4e8f-9a10-3c4d5e6f7a8b"
    recipients = {r["address"]: r for r in body(get(f"emails/{mid}", messageId=mid))["recipients"]}
    assert recipients["full@example.org"]["bounceType"] == "soft"
    assert recipients["full@example.org"]["reason"] == "mailboxfull"
    assert recipients["someone@gmail.com"]["bounceType"] == "soft"
    assert recipients["someone@gmail.com"]["enhancedCode"] == "5.7.26"


@pytest.mark.parametrize(
    "name",
    [
        "malformed_missing_recipient.json",
        "malformed_data_unparseable.json",
        "malformed_control_characters_in_recipient.json",
        "malformed_missing_event_id.json",
    ],
)
def test_malformed_events_are_quarantined_and_acknowledged(env: dict[str, str], name: str) -> None:
    function_app.record_delivery_report(as_trigger_event(load_event(name)))  # must not raise
    rows = list(services.message_store().quarantine_table.list_entities())
    assert len(rows) == 1
    assert rows[0]["reason"]
    assert json.loads(rows[0]["raw"])["eventType"].endswith("EmailDeliveryReportReceived")


def test_megabyte_status_message_is_kept_and_still_suppresses(env: dict[str, str]) -> None:
    event = copy.deepcopy(load_event("delivery_bounced_userunknown.json"))
    event["data"]["deliveryStatusDetails"]["statusMessage"] = "550 5.1.1 " + "x" * 1_048_576
    assert record_event(event) is EventOutcome.RECORDED
    view = services.lookups().message(event["data"]["messageId"])
    (recipient,) = view["recipients"]
    assert recipient["status"] == "bounced"
    (entry,) = recipient["timeline"]
    assert "cut to 16384 of 1048586 characters" in entry["notes"][0]
    assert services.suppression_list().get(event["data"]["recipient"]) is not None


def test_unencodable_status_message_is_stored_and_served(env: dict[str, str]) -> None:
    event = copy.deepcopy(load_event("delivery_bounced_userunknown.json"))
    event["data"]["deliveryStatusDetails"]["statusMessage"] = (
        "550 5.1.1 gone \ud800 " + "😀" * 20_000
    )
    assert record_event(event) is EventOutcome.RECORDED
    view = services.lookups().message(event["data"]["messageId"])
    json.dumps(view).encode("utf-8")  # every later read serves it


def test_huge_malformed_event_is_quarantined_within_the_property_limit(
    env: dict[str, str],
) -> None:
    event = copy.deepcopy(load_event("delivery_bounced_userunknown.json"))
    del event["data"]["recipient"]
    event["data"]["deliveryStatusDetails"]["statusMessage"] = "😀" * 20_000 + "\ud800"
    assert record_event(event) is EventOutcome.QUARANTINED
    (row,) = services.message_store().quarantine_table.list_entities()
    assert row["rawLength"] > 20_000
    assert len(row["raw"]) <= 30_000
    assert row["raw"].isascii()


def test_unknown_event_types_are_counted(env: dict[str, str]) -> None:
    for _ in range(3):
        event = {**load_event("unknown_event_type_sms.json"), "id": str(uuid.uuid4())}
        assert record_event(event) is EventOutcome.IGNORED
    (row,) = services.message_store().counters.list_entities()
    assert row["count"] == 3
    assert row["name"] == "Microsoft.Communication.SMSDeliveryReportReceived"


def test_transient_storage_errors_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Storage down → the function raises, so Event Grid redelivers later."""
    from shared.core.errors import Transient

    monkeypatch.setenv(
        "AzureWebJobsStorage",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;",
    )
    monkeypatch.setenv("ADDRESS_HASH_KEY", TEST_HASH_KEY)
    services.reset()
    try:
        with pytest.raises(Transient):
            function_app.record_delivery_report(
                as_trigger_event(delivery_event(str(uuid.uuid4()), "x@example.com"))
            )
        resp = get("health")
        assert resp.status_code == 503
        assert resp.mimetype == "application/problem+json"
    finally:
        services.reset()


def test_engagement_through_the_function(env: dict[str, str]) -> None:
    mid = str(uuid.uuid4())
    function_app.record_delivery_report(as_trigger_event(delivery_event(mid, "e@example.com")))
    for n, kind in enumerate(["view", "click", "view"]):
        ev = engagement_event(mid, "e@example.com", kind, 60 + n, "https://shop.example/o/1")
        function_app.record_engagement_report(as_trigger_event(ev))
    (recipient,) = body(get(f"emails/{mid}", messageId=mid))["recipients"]
    assert recipient["status"] == "delivered"
    assert recipient["engagement"]["opens"] == 2
    assert recipient["engagement"]["clicks"] == 1
    assert recipient["engagement"]["clickedUrls"] == [
        {"url": "https://shop.example/o/1", "clicks": 1}
    ]
    assert [e["kind"] for e in recipient["timeline"]] == [
        "delivery",
        "engagement",
        "engagement",
        "engagement",
    ]


def test_lookup_errors_are_problem_json(env: dict[str, str]) -> None:
    resp = get("emails/nope", messageId="nope")
    assert resp.status_code == 404
    assert resp.mimetype == "application/problem+json"
    assert body(resp)["status"] == 404
    resp = get("recipients/x@example.com/emails", {"limit": "0"}, address="x@example.com")
    assert resp.status_code == 400
    assert body(resp)["errors"][0]["field"] == "limit"
    resp = get(
        "recipients/x@example.com/emails", {"continuation": "garbage!"}, address="x@example.com"
    )
    assert resp.status_code == 400
    resp = get("recipients/not-an-address/emails", address="not-an-address")
    assert resp.status_code == 400


def test_history_paging_through_the_function(env: dict[str, str]) -> None:
    addr = "Paged@Example.com"
    mids = [str(uuid.uuid4()) for _ in range(3)]
    for n, mid in enumerate(mids):
        record_event(delivery_event(mid, addr, "Delivered", n))
    first = body(get(f"recipients/{addr}/emails", {"limit": "2"}, address=addr))
    assert [e["messageId"] for e in first["emails"]] == [mids[2], mids[1]]
    second = body(
        get(
            f"recipients/{addr}/emails",
            {"limit": "2", "continuation": first["continuation"]},
            address=addr.lower(),
        )
    )
    assert [e["messageId"] for e in second["emails"]] == [mids[0]]
    assert second["continuation"] is None
    assert second["emails"][0]["status"] == "delivered"


def test_explain_endpoint(env: dict[str, str]) -> None:
    resp = get("explain", {"status": "Failed", "message": "552 5.2.2 Mailbox full"})
    assert resp.status_code == 200
    data = body(resp)
    assert data["reason"] == "mailboxfull"
    assert data["bounceType"] == "soft"
    assert get("explain").status_code == 400
    bogus = get("explain", {"status": "Bogus", "message": "550 5.1.1 no such user"})
    assert bogus.status_code == 400
    (problem,) = body(bogus)["errors"]
    assert problem["field"] == "status"
    assert "Delivered" in problem["message"]
    assert "FilteredSpam" in problem["message"]
    assert get("explain", {"status": "filtered_spam"}).status_code == 200


def test_health(env: dict[str, str]) -> None:
    resp = get("health")
    assert resp.status_code == 200
    assert body(resp)["storage"] == "ok"
