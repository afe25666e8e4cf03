"""The ACS status as context, confidence and the suppress rule, and the advice's consistency."""

from __future__ import annotations

import pytest

from shared.core.classification import (
    KNOWN_ACS_STATUSES,
    REASONS,
    AcsStatus,
    BounceType,
    Confidence,
    Reason,
    classify,
)

# --- The ACS status informs the reason where the text is ambiguous ---------------------------


@pytest.mark.parametrize(
    "message",
    [
        "connect to mx.example.com[203.0.113.9]:25: Connection timed out",
        "451 4.4.1 reply: read error from mx.example.com.",
        "421 Temporary failure, please try again later.",
        "451 4.7.1 Try again later",
        "DNS lookup failure for example.com: temporary failure",
        "4.4.7 (delivery time expired)",
    ],
)
def test_failed_with_transient_wording_is_expired(message: str) -> None:
    failed = classify("Failed", message)
    assert failed.reason is Reason.expired, failed.rule
    assert (failed.bounce_type, failed.retryable, failed.suppress) == (BounceType.soft, True, False)
    bounced = classify("Bounced", message)
    assert bounced.reason in (Reason.networkerror, Reason.undefined, Reason.expired)


def test_failed_with_a_specific_reason_keeps_it() -> None:
    assert classify("Failed", "452 4.2.2 Mailbox full").reason is Reason.mailboxfull
    assert classify("Failed", "550 5.1.1 User unknown").reason is Reason.userunknown
    loop = classify("Failed", "554 5.4.14 Hop count exceeded - possible mail loop")
    assert loop.reason is Reason.networkerror  # a loop is a fault, not a moment
    assert classify("Failed", "Something odd happened").reason is Reason.undefined


def test_bounced_without_text_is_a_low_confidence_hard_bounce() -> None:
    for message in ("", None, "\x00 \t"):
        result = classify("Bounced", message)
        assert (result.reason, result.bounce_type) == (Reason.onhold, BounceType.hard)
        assert (result.confidence, result.suppress) == (Confidence.low, False)
        assert result.ses_bounce_type == "Undetermined"
    failed = classify("Failed", "")
    assert (failed.reason, failed.bounce_type) == (Reason.onhold, BounceType.soft)


def test_suppressed_and_quarantined_are_taken_from_acs() -> None:
    suppressed = classify("Suppressed", "550 5.2.2 Mailbox full")
    assert (suppressed.reason, suppressed.suppress) == (Reason.suppressed, True)
    assert suppressed.confidence is Confidence.high
    assert classify("Quarantined", "").reason is Reason.quarantined


def test_known_acs_statuses() -> None:
    assert KNOWN_ACS_STATUSES == (
        "Delivered", "Expanded", "Bounced", "Failed", "FilteredSpam", "Quarantined", "Suppressed",
    )  # fmt: skip
    assert tuple(str(s) for s in AcsStatus) == KNOWN_ACS_STATUSES
    for status in KNOWN_ACS_STATUSES:  # none of them is "unrecognised"
        assert "unrecognised status" not in classify(status, "550 5.1.1 User unknown").explanation
    assert "unrecognised status 'Bogus'" in classify("Bogus", "x").explanation


# --- Confidence and suppression ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "confidence", "suppress"),
    [
        ("550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown", "high", True),
        ("550 5.1.1", "medium", True),  # a specific code alone
        ("Remote host said: 550 5.1.10 RESOLVER.ADR.RecipientNotFound", "high", True),
        ("550 Requested action not taken: mailbox unavailable", "medium", True),  # vague phrase
        ("553 sorry, that is not possible", "low", False),  # 553 alone: generic, hard but low
        ("550 5.5.0", "low", False),  # detail 0: a server's default
        ("554 5.0.0 Service unavailable", "low", False),  # nothing recognisable
        ("552 5.2.2 Mailbox full", "high", False),  # soft: never suppressed
    ],
)
def test_confidence_and_suppress(message: str, confidence: str, suppress: bool) -> None:
    result = classify("Bounced", message)
    assert (str(result.confidence), result.suppress) == (confidence, suppress), result.rule
    assert result.to_json()["confidence"] == confidence


def test_suppress_only_for_hard_bounces_of_high_or_medium_confidence() -> None:
    texts = [
        "550 5.1.1 User unknown", "553 no", "550 5.3.0 x", "550 Blocked", "452 4.2.2 full",
        "554 5.7.1 spam", "550 5.1.2 Host unknown", "", "421 try again later", "551 5.7.1 x",
    ]  # fmt: skip
    for status in ("Bounced", "Failed", None):
        for text in texts:
            r = classify(status, text)
            expected = r.bounce_type is BounceType.hard and r.confidence is not Confidence.low
            assert r.suppress == expected, (status, text)


# --- Contradictions a user saw ------------------------------------------------------------------


def test_retryable_explanations_do_not_promise_failure() -> None:
    result = classify("Bounced", "552 5.2.2 Mailbox full")
    assert (result.reason, result.retryable) == (Reason.mailboxfull, True)
    assert "will fail" not in result.explanation
    assert "a later attempt may succeed" in result.explanation
    for reason, info in REASONS.items():
        if info.retryable:
            text = classify("Bounced", f"550 5.0.0 {reason}").explanation
            assert "will fail" not in text


def test_blocklist_advice_only_when_the_reply_names_one() -> None:
    plain = classify("Bounced", "550 5.7.606 Access denied, banned sending IP [203.0.113.5]")
    assert plain.reason is Reason.blocked
    assert "blocklist" not in plain.action.lower()
    listed = classify(
        "Bounced", "554 5.7.1 Client host [203.0.113.9] blocked using zen.spamhaus.org"
    )
    assert listed.reason is Reason.blocked
    assert "blocklist the reply names" in listed.action
    assert "blocklist" not in REASONS[Reason.blocked].action.lower()
