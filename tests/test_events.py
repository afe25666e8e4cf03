"""The parser over recorded payloads: ours (tests/events/) and real ACS ones (tests/reference/)."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.core.errors import MalformedEvent
from shared.core.events import (
    DeliveryReport,
    EngagementReport,
    EngagementType,
    Schema,
    UnknownEvent,
    parse_event,
)
from shared.core.status import Status, from_acs

from .conftest import EVENTS_DIR, REFERENCE_EVENTS_DIR, load_event


def _reference_events() -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for path in sorted(REFERENCE_EVENTS_DIR.glob("*.json*")):
        text = path.read_text()
        if path.suffix == ".jsonc":  # the docs sample has a trailing comma (JSONC)
            text = re.sub(r",(\s*[}\]])", r"\1", text)
        payload = json.loads(text)
        for event in payload if isinstance(payload, list) else [payload]:
            out.append((path.name, event))
    return out


REFERENCE = _reference_events()


def test_reference_corpus_is_present() -> None:
    # copied into tests/reference: present in every clone
    assert len(REFERENCE) >= 10


@pytest.mark.parametrize(("name", "event"), REFERENCE, ids=[n for n, _ in REFERENCE])
def test_every_reference_payload_parses(name: str, event: Any) -> None:
    parsed = parse_event(event)
    assert isinstance(parsed, DeliveryReport | EngagementReport), name
    assert parsed.message_id
    if isinstance(parsed, DeliveryReport):
        assert parsed.recipient
        assert from_acs(parsed.acs_status) is Status.DELIVERED
        assert parsed.attempt_at.tzinfo is UTC
    else:
        assert parsed.engagement_type in {EngagementType.VIEW, EngagementType.CLICK}


OWN = sorted(p.name for p in EVENTS_DIR.glob("*.json"))


@pytest.mark.parametrize("name", [n for n in OWN if n.startswith("delivery_")])
def test_own_delivery_fixtures(name: str) -> None:
    parsed = parse_event(load_event(name))
    assert isinstance(parsed, DeliveryReport)
    assert parsed.message_id == "8c2f1a7e-5b3d-4e8f-9a10-3c4d5e6f7a8b"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("delivery_delivered_eventgrid.json", Status.DELIVERED),
        ("delivery_delivered_lowercase_timestamp_capital_s.json", Status.DELIVERED),
        ("delivery_bounced_userunknown.json", Status.BOUNCED),
        ("delivery_failed_mailboxfull_token.json", Status.FAILED),
        ("delivery_suppressed_no_optional_fields.json", Status.SUPPRESSED),
        ("delivery_quarantined.json", Status.QUARANTINED),
        ("delivery_filteredspam.json", Status.SPAM_FILTERED),
        ("delivery_expanded.json", Status.EXPANDED),
        ("delivery_unknown_status.json", Status.UNKNOWN),
        ("delivery_delivered_cloudevent.json", Status.DELIVERED),
    ],
)
def test_status_mapping(name: str, status: Status) -> None:
    parsed = parse_event(load_event(name))
    assert isinstance(parsed, DeliveryReport)
    assert from_acs(parsed.acs_status) is status


def test_timestamp_spellings_and_precision() -> None:
    a = parse_event(load_event("delivery_delivered_lowercase_timestamp_capital_s.json"))
    assert isinstance(a, DeliveryReport)
    assert a.attempt_at == datetime(2026, 11, 20, 10, 15, 2, 123456, tzinfo=UTC)
    b = parse_event(load_event("engagement_click.json"))
    assert isinstance(b, EngagementReport)
    assert b.action_at == datetime(2026, 11, 20, 11, 2, tzinfo=UTC)


def test_suppressed_lacks_optional_fields() -> None:
    parsed = parse_event(load_event("delivery_suppressed_no_optional_fields.json"))
    assert isinstance(parsed, DeliveryReport)
    assert parsed.internet_message_id is None
    assert parsed.mail_server is None


def test_message_id_falls_back_to_subject() -> None:
    parsed = parse_event(load_event("delivery_no_message_id_uses_subject.json"))
    assert isinstance(parsed, DeliveryReport)
    assert parsed.message_id == "8c2f1a7e-5b3d-4e8f-9a10-3c4d5e6f7a8b"


def test_cloudevents_schema_detected() -> None:
    parsed = parse_event(load_event("delivery_delivered_cloudevent.json"))
    assert isinstance(parsed, DeliveryReport)
    assert parsed.envelope.schema is Schema.CLOUD_EVENTS


def test_multiline_status_message_kept() -> None:
    parsed = parse_event(load_event("delivery_multiline_gmail_dmarc.json"))
    assert isinstance(parsed, DeliveryReport)
    assert parsed.status_message is not None
    assert parsed.status_message.count("5.7.26") == 3


def test_engagement_without_recipient_is_message_level() -> None:
    parsed = parse_event(load_event("engagement_view_no_recipient.json"))
    assert isinstance(parsed, EngagementReport)
    assert parsed.recipient is None
    assert parsed.user_agent is None


def test_unknown_event_type_is_named_not_raised() -> None:
    parsed = parse_event(load_event("unknown_event_type_sms.json"))
    assert isinstance(parsed, UnknownEvent)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("malformed_missing_recipient.json", "missing recipient"),
        ("malformed_missing_message_id.json", "missing messageId"),
        ("malformed_recipient_wrong_type.json", "recipient is not a string"),
        ("malformed_data_unparseable.json", "data is not valid JSON"),
        ("malformed_control_characters_in_recipient.json", "recipient is not an email address"),
        ("malformed_bad_timestamp.json", "deliveryAttemptTimestamp is not an ISO 8601 timestamp"),
        ("malformed_missing_status.json", "missing status"),
        ("malformed_missing_event_id.json", "missing id"),
        ("malformed_data_is_array.json", "data is not a JSON object"),
    ],
)
def test_malformed_fixtures(name: str, reason: str) -> None:
    with pytest.raises(MalformedEvent) as info:
        parse_event(load_event(name))
    assert info.value.reason.startswith(reason)


def test_megabyte_status_message_is_kept_cut_with_its_length_and_hash() -> None:
    event = copy.deepcopy(load_event("delivery_bounced_userunknown.json"))
    event["data"]["deliveryStatusDetails"]["statusMessage"] = "550 5.1.1 " + "x" * 1_048_576
    report = parse_event(event)
    assert isinstance(report, DeliveryReport)
    assert report.status_message is not None
    assert report.status_message.startswith("550 5.1.1 xxx")
    assert len(report.status_message) <= 16_384
    (note,) = report.notes
    assert "1048586 characters" in note
    assert "sha256 " in note


@pytest.mark.parametrize(
    "text", ["550 5.1.1 user\x1b[31m unknown\x00", "550 5.1.1 user \ud800unknown"]
)
def test_control_characters_and_lone_surrogates_are_removed_and_noted(text: str) -> None:
    event = copy.deepcopy(load_event("delivery_bounced_userunknown.json"))
    event["data"]["deliveryStatusDetails"]["statusMessage"] = text
    report = parse_event(event)
    assert isinstance(report, DeliveryReport)
    assert report.status_message is not None
    report.status_message.encode("utf-8")  # storable
    assert "\x1b" not in report.status_message
    assert "\x00" not in report.status_message
    assert report.notes == ("statusMessage: control characters or invalid Unicode removed",)


@pytest.mark.parametrize(
    ("field", "value"),
    [("recipient", "a\ud800@example.com"), ("messageId", "id-\udfff")],
)
def test_lone_surrogates_in_ids_are_malformed(field: str, value: str) -> None:
    event = copy.deepcopy(load_event("delivery_bounced_userunknown.json"))
    event["data"][field] = value
    with pytest.raises(MalformedEvent, match=r"invalid Unicode|not an email address"):
        parse_event(event)


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "1970-01-01T00:00:00Z"]
)
def test_timestamps_out_of_range_are_malformed(stamp: str) -> None:
    event = copy.deepcopy(load_event("delivery_bounced_userunknown.json"))
    event["data"]["deliveryAttemptTimeStamp"] = stamp
    event["data"].pop("deliveryAttemptTimestamp", None)
    with pytest.raises(MalformedEvent, match="out of range"):
        parse_event(event)


def test_a_report_time_far_in_the_future_becomes_the_receipt_time() -> None:
    event = copy.deepcopy(load_event("delivery_bounced_userunknown.json"))
    event["data"].pop("deliveryAttemptTimeStamp", None)
    event["data"]["deliveryAttemptTimestamp"] = "2999-01-01T00:00:00Z"
    received = datetime(2026, 12, 1, 12, tzinfo=UTC)
    report = parse_event(event, received_at=received)
    assert isinstance(report, DeliveryReport)
    assert report.attempt_at == received
    assert "lies in the future" in report.notes[0]


def test_a_recipient_too_long_for_a_key_once_escaped_is_malformed() -> None:
    event = copy.deepcopy(load_event("delivery_bounced_userunknown.json"))
    event["data"]["recipient"] = "%" * 200 + "@example.com"  # each % escapes to 3 characters
    with pytest.raises(MalformedEvent, match="too long for a storage key"):
        parse_event(event)


@pytest.mark.parametrize("bad", [None, [], "text", 42])
def test_non_object_event(bad: Any) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(bad)


def test_double_encoded_data_is_accepted() -> None:
    event = copy.deepcopy(load_event("delivery_delivered_eventgrid.json"))
    event["data"] = json.dumps(event["data"])
    assert isinstance(parse_event(event), DeliveryReport)


def test_fixture_directory_has_every_scenario() -> None:
    assert len(OWN) >= 20
    assert all(Path(EVENTS_DIR / n).stat().st_size < 64_000 for n in OWN)
