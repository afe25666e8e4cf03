"""The bounce classifier: the recorded corpus, code extraction, explanations, limits and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.classification import (
    MAX_CHARS,
    REASONS,
    RULES,
    BounceType,
    Reason,
    classify,
    explain_enhanced_code,
    explain_smtp_code,
    extract_codes,
)
from shared.core.classification.codes import ENHANCED_DETAILS, SMTP_REPLIES
from shared.core.classification.phrasebook import first_match, prose_of

ROOT = Path(__file__).resolve().parent.parent
CORPUS_PATH = Path(__file__).parent / "data" / "bounces.jsonl"
CORPUS = [json.loads(line) for line in CORPUS_PATH.read_text(encoding="utf-8").splitlines()]
REAL_PATH = Path(__file__).parent / "data" / "bounces_real.jsonl"
REAL = [json.loads(line) for line in REAL_PATH.read_text(encoding="utf-8").splitlines()]


def _case_id(number: int, source: str) -> str:
    return f"L{number}-" + re.sub(r"[^A-Za-z0-9]+", "_", source).strip("_")


# --- The corpus --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", CORPUS, ids=[_case_id(n, c["source"]) for n, c in enumerate(CORPUS, 1)]
)
def test_corpus_line(case: dict[str, str | None]) -> None:
    result = classify(case["status"], case["statusMessage"])
    got_reason = None if result.reason is None else str(result.reason)
    got_bounce = None if result.bounce_type is None else str(result.bounce_type)
    assert (got_reason, got_bounce) == (case["reason"], case["bounceType"]), result.rule


def test_corpus_accuracy_per_reason(capsys: pytest.CaptureFixture[str]) -> None:
    totals: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for case in CORPUS:
        result = classify(case["status"], case["statusMessage"])
        key = case["reason"] or "(success)"
        totals[key] += 1
        right[key] += (None if result.reason is None else str(result.reason)) == case["reason"]
    with capsys.disabled():
        print(f"\ncorpus: {len(CORPUS)} messages")
        for key in sorted(totals):
            print(f"  {key:16} {right[key]:3}/{totals[key]:<3} {right[key] / totals[key]:.0%}")
    assert right == totals


def test_corpus_covers_every_reason_twice_and_every_receiver() -> None:
    assert len(CORPUS) >= 300
    counts = Counter(c["reason"] for c in CORPUS)
    classified = [r for r in Reason if r is not Reason.senderror]  # ours: never in a report
    assert {r: counts[str(r)] for r in classified if counts[str(r)] < 2} == {}
    sources = " ".join(c["source"] for c in CORPUS)
    for receiver in (
        "Gmail", "Microsoft 365", "Yahoo", "iCloud", "GMX", "Orange", "Mimecast", "Proofpoint",
        "Barracuda", "IronPort", "Postfix", "Exim", "Sendmail", "qmail", "Exchange Server",
        "Domino", "Blocklists", "Azure Communication Services", "(de)", "(es)", "(pt)", "(it)",
        "(nl)", "(ja)",
    ):  # fmt: skip
        assert receiver in sources
    assert any("\n" in (c["statusMessage"] or "") for c in CORPUS)  # multi-line replies
    assert any(not (c["statusMessage"] or "").strip() for c in CORPUS)  # empty messages


def test_every_phrase_rule_has_an_example() -> None:
    """Each row is exercised by the recorded corpus, the real corpus or the language table."""
    from tests.test_classification_languages import LANGUAGE_CASES

    used = {classify(c["status"], c["statusMessage"]).rule for c in CORPUS}
    used |= {classify(None, r["status_message"]).rule for r in REAL}
    used |= {classify("Bounced", text).rule for text, _ in LANGUAGE_CASES}
    assert [rule.id for rule in RULES if rule.id not in used] == []


def test_rule_ids_are_unique_and_needles_normalised() -> None:
    assert len({rule.id for rule in RULES}) == len(RULES)
    for rule in RULES:
        assert rule.needles, rule.id
        for needle in rule.needles:
            # Written the way prose is: lower-case words, single spaces, no digits or punctuation.
            assert needle == needle.lower(), rule.id
            assert not re.search(r"[\d\W_]", needle.replace(" ", "")), (rule.id, needle)
            assert "  " not in needle, (rule.id, needle)
        assert rule.source, rule.id


# --- The prefilter index is exact ---------------------------------------------------------------

_NEEDLE_TEXT = st.lists(st.sampled_from([n.strip() for r in RULES for n in r.needles]), max_size=6)


def _naive(text: str, codes: tuple[str | None, str | None]) -> str | None:
    raw = text.lower()
    prose = prose_of(raw)
    rule = next((r for r in RULES if r.matches(prose, raw, codes)), None)
    return None if rule is None else rule.id


def _fast(text: str, codes: tuple[str | None, str | None]) -> str | None:
    raw = text.lower()
    rule = first_match(prose_of(raw), raw, codes)
    return None if rule is None else rule.id


@given(
    parts=_NEEDLE_TEXT,
    glue=st.sampled_from([" ", "", ": ", " x ", "s ", "ing "]),
    tail=st.sampled_from(["", "s", "ed", " ok"]),
)
@settings(max_examples=400, deadline=None)
def test_indexed_first_match_equals_trying_rules_in_order(
    parts: list[str], glue: str, tail: str
) -> None:
    text = glue.join(parts) + tail
    for codes in ((None, None), ("5.4.1", "550"), ("5.7.511", "550")):
        assert _fast(text, codes) == _naive(text, codes)


def test_indexed_first_match_equals_trying_rules_in_order_on_the_corpora() -> None:
    texts = [c["statusMessage"] or "" for c in CORPUS] + [r["status_message"] for r in REAL]
    for text in texts:
        assert _fast(text, (None, None)) == _naive(text, (None, None))


# --- Code extraction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "smtp", "enhanced"),
    [
        ("550 5.1.1 <bob@example.com>: Recipient address rejected", "550", "5.1.1"),
        ("550-5.7.26 This mail is unauthenticated\n550 5.7.26 more", "550", "5.7.26"),
        ("452-4.2.2 The email account\n452-4.2.2 that you tried\n452 4.2.2 ...", "452", "4.2.2"),
        ("Sorry, no mailbox here by that name. (#5.1.1)", None, "5.1.1"),
        ("550 #5.1.0 Address rejected.", "550", "5.1.0"),
        ("#< #5.1.1 smtp;550 5.1.1 User unknown>", "550", "5.1.1"),
        ("550 5.4.310 DNS domain example.invalid does not exist", "550", "5.4.310"),
        ("550 5.7.606 Access denied, banned sending IP [203.0.113.5]", "550", "5.7.606"),
        ("smtp; 554 5.7.1 Service unavailable", "554", "5.7.1"),
        ("host mx[203.0.113.9] said: 550 5.1.1 User unknown", "550", "5.1.1"),
        ("Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound'", "550", "5.1.1"),
        ("SMTP error after RCPT TO:<bob@example.com>:\n550 No Such User Here", "550", None),
        ("552 1 Requested mail action aborted, mailbox not found", "552", None),
        ("[Message=451 5.7.3 STARTTLS is required to send mail]", "451", "5.7.3"),
        ("5.1.1 only an enhanced code", None, "5.1.1"),
        ("450 4.7.1 Client host rejected", "450", "4.7.1"),
        ("421", "421", None),
        ("550\t5.1.1 tab separated", "550", "5.1.1"),
    ],
)
def test_extract_codes(text: str, smtp: str | None, enhanced: str | None) -> None:
    codes = extract_codes(text)
    assert (codes.smtp, codes.enhanced) == (smtp, enhanced)


@pytest.mark.parametrize(
    "text",
    [
        "connect to mx.example.com[203.0.113.9]:25: Connection timed out",  # IPs and ports
        "Client host [192.168.5.1] refused",
        "from 10.5.1.1 via 4.2.2.2",  # IPs that look like enhanced codes
        "Exim 4.94.2 on host mx",  # versions
        "Delivery failed on 21.05.2024 at 10.22",  # dates
        "postponed until 2024-05-21 10:22:31",
        "deferred - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "retry after 450 seconds and 550 more",  # numbers in prose
        "Server busy (S3150) AS(201806281) [554.30]",  # vendor ids
        "see https://example.com/docs/DOC-1369/550/5.1.1x",
    ],
)
def test_extract_codes_ignores_lookalikes(text: str) -> None:
    assert extract_codes(text) == extract_codes("no codes here")


# --- Meanings and advice -----------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_meaning_and_action(reason: Reason) -> None:
    info = REASONS[reason]
    assert info.meaning.endswith(".")
    assert info.action.endswith(".")
    hard = {Reason.userunknown, Reason.hostunknown, Reason.hasmoved, Reason.notaccept}
    assert (info.bounce_type is BounceType.hard) == (reason in hard)
    assert info.anymail_event_type in {"bounced", "rejected", "failed", "unknown"}
    assert info.anymail_reject_reason in {
        "invalid", "bounced", "timed_out", "blocked", "spam", "unsubscribed", "other",
    }  # fmt: skip
    assert info.ses_bounce_subtype in {
        "General", "NoEmail", "Suppressed", "OnAccountSuppressionList", "MailboxFull",
        "MessageTooLarge", "ContentRejected", "AttachmentRejected", "Undetermined",
    }  # fmt: skip


IANA_DETAILS = {"0": 0, "1": 10, "2": 4, "3": 6, "4": 7, "5": 6, "6": 10, "7": 30}
IANA_CODES = [
    f"{cls}.{subject}.{detail}"
    for cls in "245"
    for subject, last in IANA_DETAILS.items()
    for detail in range(last + 1)
    if subject != "0" or detail == 0
]


@pytest.mark.parametrize("code", IANA_CODES)
def test_every_iana_enhanced_code_is_explained(code: str) -> None:
    text = explain_enhanced_code(code)
    assert text is not None
    assert text.startswith(code)
    assert "not in the IANA registry" not in text


def test_iana_table_is_exactly_the_registry() -> None:
    assert sorted(ENHANCED_DETAILS) == sorted({c.partition(".")[2] for c in IANA_CODES})


RFC5321_CODES = [
    "211", "214", "220", "221", "250", "251", "252", "354", "421", "450", "451", "452", "455",
    "500", "501", "502", "503", "504", "521", "550", "551", "552", "553", "554", "555", "556",
]  # fmt: skip


@pytest.mark.parametrize("code", RFC5321_CODES)
def test_every_rfc5321_code_is_explained(code: str) -> None:
    assert code in SMTP_REPLIES
    text = explain_smtp_code(code)
    assert text is not None
    assert text.startswith(code)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("5.1.99", "a problem with an address"),  # unknown detail: the subject's meaning
        ("4.7.999", "a security or policy refusal"),
        ("5.7.606", "Microsoft 365"),  # vendor detail with a note
        ("2.0.0", "success"),
    ],
)
def test_enhanced_code_fallbacks(code: str, expected: str) -> None:
    assert expected in (explain_enhanced_code(code) or "")


@pytest.mark.parametrize("code", ["5.9.1", "3.1.1", "5.1", "abc", "", "1.2.3.4"])
def test_not_enhanced_codes(code: str) -> None:
    assert explain_enhanced_code(code) is None


@pytest.mark.parametrize("code", ["599", "5", "abc", ""])
def test_not_smtp_codes(code: str) -> None:
    assert explain_smtp_code(code) is None


# --- Decisions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason", "code_says"),
    [
        ("550 5.1.1 Mailbox full", Reason.mailboxfull, "userunknown"),
        ("552 5.2.2 User unknown", Reason.userunknown, "mailboxfull"),
        ("550 5.7.1 Host or domain name not found", Reason.hostunknown, "policyviolation"),
        ("421 4.3.2 Mailbox full", Reason.mailboxfull, "notaccept"),
        # Generic codes (detail 0) never override a clear text.
        ("553 5.3.0 Addressee unknown", Reason.userunknown, "systemerror"),
        ("550 5.5.0 Requested action not taken: mailbox unavailable", Reason.userunknown, "synt"),
    ],
)
def test_text_beats_code(message: str, reason: Reason, code_says: str) -> None:
    result = classify("Bounced", message)
    assert result.reason is reason
    assert "would suggest" in result.explanation
    assert code_says in result.explanation


def test_status_shortcuts() -> None:
    delivered = classify("DELIVERED", "550 5.1.1 User unknown")
    assert (delivered.reason, delivered.bounce_type, delivered.ses_bounce_type) == (None,) * 3
    assert delivered.anymail_event_type == "delivered"
    assert not delivered.suppress
    assert classify("Suppressed", "").reason is Reason.suppressed
    assert classify("Suppressed", "").ses_bounce_type == "Permanent"
    assert classify("Suppressed", "").anymail_event_type == "rejected"
    assert classify("Quarantined", "550 5.1.1 User unknown").reason is Reason.quarantined
    assert classify("FilteredSpam", "").reason is Reason.spamfiltered
    assert classify("FilteredSpam", "550 5.7.1 likely unsolicited mail").reason is (
        Reason.spamfiltered
    )
    assert classify("FilteredSpam", "Relay access denied").reason is Reason.norelaying


def test_nothing_to_go_on() -> None:
    assert classify("Failed", None).reason is Reason.onhold
    assert classify("Bounced", "").anymail_event_type == "bounced"
    assert classify(None, None).reason is Reason.undefined
    assert classify("NewStatus", "").reason is Reason.undefined
    unknown = classify("Failed", "Something odd happened")
    assert (unknown.reason, unknown.rule, unknown.suppress) == (Reason.undefined, None, False)
    assert unknown.ses_bounce_type == "Undetermined"
    assert unknown.anymail_event_type == "failed"


def test_notaccept_is_hard_only_when_unconditional() -> None:
    permanent = classify("Bounced", "556 5.1.10 Domain example.com does not accept mail")
    temporary = classify("Bounced", "421 4.3.2 System not accepting network messages")
    assert (permanent.reason, temporary.reason) == (Reason.notaccept, Reason.notaccept)
    assert (permanent.bounce_type, permanent.suppress) == (BounceType.hard, True)
    assert (temporary.bounce_type, temporary.suppress, temporary.retryable) == (
        BounceType.soft,
        False,
        True,
    )


def test_explanations_are_plain_english() -> None:
    for case in CORPUS:
        text = classify(case["status"], case["statusMessage"]).explanation
        assert text
        assert not re.search(r"\(\?:|\\[bsdw]|\[\^", text), text


def test_to_json_shape() -> None:
    data = classify("Bounced", "550 5.1.1 User unknown").to_json()
    assert list(data) == [
        "bounceType", "retryable", "suppress", "reason", "smtpCode", "enhancedCode",
        "explanation", "action", "anymail", "ses", "rule", "confidence",
    ]  # fmt: skip
    assert data["anymail"] == {"eventType": "bounced", "rejectReason": "bounced"}
    assert data["ses"] == {"bounceType": "Permanent", "bounceSubType": "NoEmail"}
    assert (data["bounceType"], data["reason"], data["smtpCode"]) == ("hard", "userunknown", "550")
    assert data["confidence"] == "high"
    json.dumps(data)


# --- Limits and hostile input --------------------------------------------------------------


def test_one_megabyte_message_is_truncated_and_classified() -> None:
    padding = "x" * 1_000_000
    head = classify("Bounced", "552 5.2.2 Mailbox full\n" + padding)
    assert head.reason is Reason.mailboxfull
    tail = classify("Bounced", padding + "\n550 5.1.1 User unknown")  # beyond the first 8 KB
    assert tail.reason is Reason.undefined
    words = classify("Bounced", ("lorem ipsum dolor 4.2 " * 50_000) + "user unknown")
    assert words.reason is Reason.undefined
    assert MAX_CHARS == 8192


@pytest.mark.parametrize(
    "message",
    [
        "550\x005.1.1\x07 User\x1b unknown",
        "550 5.1.1 User\x00 unknown\x7f",
        "\x1b[31m550 5.1.1 User unknown\x1b[0m",
        "550 5.1.1 User unknown\r\n",
        "550 5.1.1 User\u0085 unknown",
    ],
)
def test_control_characters_are_ignored(message: str) -> None:
    result = classify("Bounced", message)
    assert result.reason is Reason.userunknown
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", result.explanation)


# --- The explain CLI ---------------------------------------------------------------------------


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.explain", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_cli_reads_json_lines() -> None:
    lines = [
        json.dumps({"status": "Bounced", "statusMessage": "550 5.1.1 User unknown"}),
        json.dumps({"statusMessage": "DestinationMailboxFull"}),
        json.dumps({"data": {"status": "Delivered", "deliveryStatusDetails": {}}}),
    ]
    done = _cli(stdin="\n".join(lines) + "\n")
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["reason"] for o in out] == ["userunknown", "mailboxfull", None]


def test_cli_reports_bad_lines_and_goes_on() -> None:
    stdin = '{"statusMessage": "552 5.2.2 over quota"}\nnot json\n[1]\n{"status": 5}\n'
    done = _cli(stdin=stdin)
    assert done.returncode == 1
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert out[0]["reason"] == "mailboxfull"
    assert [o["line"] for o in out[1:]] == [2, 3, 4]
    assert all("error" in o for o in out[1:])


def test_cli_explains_an_argument() -> None:
    done = _cli("--status", "Bounced", "550", "5.7.26", "Unauthenticated", "email")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["reason"], result["enhancedCode"]) == ("authfailure", "5.7.26")


@pytest.mark.parametrize("status", ["Delivered", "delivered", "Expanded"])
@pytest.mark.parametrize(
    "message",
    [
        "250 2.0.0 OK  1732000001 d2e1a72fcca58-6c1a2b.1 - gsmtp",
        "250 2.6.0 <x@bench.example> [InternalId=88] Queued mail for delivery",
        "No error.",
        "",
        "250-first line\r\n250 2.0.0 Ok: queued as 4Xb",
    ],
)
def test_success_fast_path_equals_the_full_analysis(status: str, message: str) -> None:
    """Successes skip the phrasebook (only codes matter to them): same result as in full."""
    from shared.core.classification.classifier import _decide, analyse_text

    shown = status.strip()
    assert classify(status, message) == _decide(shown, analyse_text(message))
