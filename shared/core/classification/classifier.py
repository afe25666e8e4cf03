"""Classify one ACS delivery report (status + statusMessage) into a reason, bounce type and advice.

Precedence, first match wins:

1. ACS's status alone. Delivered and Expanded are successes (reason None). Suppressed is
   `suppressed` and Quarantined is `quarantined`, whatever the text. FilteredSpam is
   `spamfiltered` unless a phrase in the text says something more specific.
2. The phrasebook (receiver wordings, `phrasebook.RULES`). A vague ("weak") phrase yields to an
   enhanced code that names an address or mailbox status (X.1.n, X.2.n, n > 0).
3. The enhanced status code table (`codes.ENHANCED_RULES`), then the basic reply code table
   (`codes.SMTP_RULES`).
4. `undefined`, kept as a named result with the raw text's codes explained; `onhold` when a
   failure status comes with no text at all.

Then the ACS status refines what the text left open:

- Failed + a transient reading (a connection or DNS failure, a bare "try again later", a
  delay) is `expired`: ACS reports a final Failed only after it has stopped retrying.
- Bounced + no text is `onhold` but hard (ACS's Bounced is its hard bounce) with low confidence,
  so the address is not suppressed on that alone.
- An unknown ACS status is classified from the text alone (see `KNOWN_ACS_STATUSES`).

Text beats code when they disagree: receivers reuse codes loosely (a `550 5.1.1` that says
"mailbox full" is `mailboxfull`; Outlook.com answers a missing mailbox with `5.5.0`), while their
wording is specific. Generic codes (detail 0: `5.0.0`, `5.3.0`, `5.5.0`, `4.0.0`; and the basic
551-553) never override a clear text, and decide alone only with low confidence.

Confidence: `high` when a specific phrase (or ACS's own status) decided, `medium` when a code
table or a vague phrase did, `low` for generic codes, `undefined` and `onhold`. `suppress` is
true only for hard bounces of high or medium confidence, and for ACS's own Suppressed status
(the address is already on ACS's list).

Only the first 8 KB of a status message is read (the reply that matters is at the start; a 1 MB
message must cost the same as a short one), control characters are dropped, and the text
analysis is cached on the message, since reports repeat the same few texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from .codes import (
    CodeRule,
    Codes,
    explain_enhanced_code,
    explain_smtp_code,
    extract_codes,
    rule_for_enhanced,
    rule_for_smtp,
)
from .phrasebook import PhraseRule, first_match, prose_of
from .taxonomy import REASONS, BounceType, Confidence, Reason

_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (the hot path)

MAX_CHARS = 8192  # the first 8 KB is read; the rest of a status message is ignored

# C0 and C1 control characters other than tab, line feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NOT_LETTERS = re.compile(r"[^a-z]")  # "Filtered Spam", "FILTERED_SPAM" -> "filteredspam"


@dataclass(frozen=True, slots=True)
class Classification:
    bounce_type: BounceType | None  # None for success
    retryable: bool  # can sending the same message again later help
    suppress: bool  # should the address go on (or stay on) the suppression list
    reason: Reason | None  # None only for success
    smtp_code: str | None  # basic reply code, e.g. "550"
    enhanced_code: str | None  # enhanced status code, e.g. "5.1.1"
    explanation: str  # plain English: what happened, with the codes' meanings
    action: str  # what the sender should do
    anymail_event_type: str  # django-anymail event_type
    anymail_reject_reason: str | None  # django-anymail reject_reason; None for success
    ses_bounce_type: str | None  # SES bounceType: Permanent/Transient/Undetermined
    ses_bounce_subtype: str | None  # SES bounceSubType
    rule: str | None  # id of the table row that decided; None when nothing matched
    confidence: Confidence = Confidence.high  # how specific the evidence that decided was

    def to_json(self) -> dict[str, object]:
        return {
            "bounceType": None if self.bounce_type is None else str(self.bounce_type),
            "retryable": self.retryable,
            "suppress": self.suppress,
            "reason": None if self.reason is None else str(self.reason),
            "smtpCode": self.smtp_code,
            "enhancedCode": self.enhanced_code,
            "explanation": self.explanation,
            "action": self.action,
            "anymail": {
                "eventType": self.anymail_event_type,
                "rejectReason": self.anymail_reject_reason,
            },
            "ses": {"bounceType": self.ses_bounce_type, "bounceSubType": self.ses_bounce_subtype},
            "rule": self.rule,
            "confidence": str(self.confidence),
        }


class TextAnalysis(NamedTuple):  # a tuple, not a dataclass: hashed on every classification
    """What the status message alone says, before the ACS status is considered."""

    empty: bool  # nothing but whitespace and control characters
    codes: Codes
    phrase: PhraseRule | None  # the first phrasebook row that matched
    code_rule: CodeRule | None  # the enhanced code's row, else the basic code's


def analyse_text(message: str) -> TextAnalysis:
    """Codes and the first matching phrase rule of a status message (uncached)."""
    text = _CONTROL.sub("", message[:MAX_CHARS])
    if not text or text.isspace():
        return TextAnalysis(True, Codes(None, None), None, None)
    codes = extract_codes(text)
    lower = text.lower()
    phrase = first_match(prose_of(lower), lower, (codes[1], codes[0]))
    smtp, enhanced = codes
    code_rule = None if enhanced is None else rule_for_enhanced(enhanced)
    if code_rule is None and smtp is not None:
        code_rule = rule_for_smtp(smtp)
    return _new(TextAnalysis, (False, codes, phrase, code_rule))  # NamedTuple, minus its __new__


# At most 1024 x 8 KB held; real status messages are a few hundred bytes and repeat a lot.
_analyse_cached = lru_cache(maxsize=1024)(analyse_text)


def clear_cache(*, decisions: bool = False) -> None:
    """Forget cached text analyses (and, if asked, the decisions built from them).

    Benchmarks clear the text cache before every call to measure the real work of reading
    the text; `decisions=True` also drops the small cache of finished results.
    """
    _analyse_cached.cache_clear()
    if decisions:
        _decide.cache_clear()


_SUCCESS = {
    "delivered": "ACS reports the message delivered: the recipient's mail server accepted it.",
    "expanded": "ACS reports the message delivered to a distribution list, which expanded it "
    "to its members.",
}
_FAILURE_STATUSES = frozenset({"bounced", "failed", "filteredspam", "quarantined", "suppressed"})
# Readings that only say "not now": after ACS's own retries (Failed) they mean it gave up.
# A mail loop is a fault, not a moment; an unrecognised text is not a transient one.
_TRANSIENT = frozenset({Reason.networkerror, Reason.expired})
_NOT_TRANSIENT_RULES = frozenset({"mta.networkerror.loop"})
_TRANSIENT_RULES = frozenset({"mta.transient"})
# Rules naming a blocklist: only then does the advice talk about delisting.
_BLOCKLIST_RULES = frozenset({"dnsbl.blocked", "proofpoint.blocked", "mta.blocked.list"})
_BLOCKLIST_ACTION = (
    "Look the sending IP up on the blocklist the reply names and request delisting; for "
    "ACS-managed sending IPs, open a support case with Microsoft."
)


@lru_cache(maxsize=256)
def _status(acs_status: str | None) -> tuple[str, str]:
    """The status as shown in notes, and as compared ("Filtered Spam" -> "filteredspam")."""
    shown = "" if acs_status is None else _CONTROL.sub("", acs_status).strip()[:40]
    return shown, _NOT_LETTERS.sub("", shown.lower())


def classify(acs_status: str | None, status_message: str | None) -> Classification:
    message = "" if status_message is None else status_message[:MAX_CHARS]
    shown, status = _status(acs_status)
    if status in _SUCCESS:
        # A success needs only the reply's codes, not the phrasebook; and delivered replies
        # carry queue ids, so they are unique and would miss the cache anyway.
        return _decide(shown, _codes_only(message))
    return _decide(shown, _analyse_cached(message))


def _codes_only(message: str) -> TextAnalysis:
    text = _CONTROL.sub("", message)
    if not text or text.isspace():
        return TextAnalysis(True, Codes(None, None), None, None)
    return TextAnalysis(False, extract_codes(text), None, None)


def _specific_address_code(enhanced: str | None) -> bool:
    """X.1.n or X.2.n with n > 0: an address or mailbox status, more specific than a vague text."""
    return enhanced is not None and enhanced[2] in "12" and not enhanced.endswith(".0")


def _generic(rule: CodeRule, codes: Codes) -> bool:
    if rule.id.startswith("enhanced:"):
        return codes.enhanced is not None and codes.enhanced.endswith(".0")
    return rule.generic


# Keyed on what the text analysis found (rule, codes), not on the text: a few hundred distinct
# outcomes, so the explanation strings are built once each.
@lru_cache(maxsize=2048)
def _decide(shown_status: str, analysis: TextAnalysis) -> Classification:
    status = _NOT_LETTERS.sub("", shown_status.lower())
    codes = analysis.codes
    notes: list[str] = []

    if status in _SUCCESS:
        return Classification(
            None, False, False, None, codes.smtp, codes.enhanced,
            _join(_SUCCESS[status], *_code_notes(codes)), "Nothing to do.",
            "delivered", None, None, None, f"acs:{status}", Confidence.high,
        )  # fmt: skip

    reason: Reason
    rule: str | None
    confidence = Confidence.low
    phrase, code_rule = analysis.phrase, analysis.code_rule
    if (
        phrase is not None
        and phrase.weak
        and code_rule is not None
        and _specific_address_code(codes.enhanced)
    ):
        phrase = None  # the code names the address or mailbox status: it is the better witness
    if status == "suppressed":
        reason, rule, confidence = Reason.suppressed, "acs:suppressed", Confidence.high
        notes.append("ACS reported the status Suppressed.")
    elif status == "quarantined":
        reason, rule, confidence = Reason.quarantined, "acs:quarantined", Confidence.high
        notes.append("ACS reported the status Quarantined.")
    elif status == "filteredspam" and (phrase is None or phrase.reason is Reason.spamdetected):
        reason, rule, confidence = Reason.spamfiltered, "acs:filteredspam", Confidence.high
        notes.append("ACS reported the status FilteredSpam.")
    elif phrase is not None:
        reason, rule = phrase.reason, phrase.id
        if reason is not Reason.undefined:
            confidence = Confidence.medium if phrase.weak else Confidence.high
        if status == "filteredspam":
            notes.append("ACS reported FilteredSpam, but the text is more specific.")
        notes.append(f"Matched wording seen from {phrase.source}.")
        if code_rule is not None and code_rule.reason not in (phrase.reason, Reason.undefined):
            notes.append(
                f"The status code alone would suggest '{code_rule.reason}', but the text is "
                "more specific."
            )
    elif code_rule is not None:
        reason, rule = code_rule.reason, code_rule.id
        generic = _generic(code_rule, codes)
        confidence = Confidence.low if generic else Confidence.medium
        notes.append(f"Classified from the status code ({code_rule.note}).")
        if generic:
            notes.append("Servers send this code for many causes, so this is only a guess.")
    elif analysis.empty and status in _FAILURE_STATUSES:
        reason, rule = Reason.onhold, None
    else:
        reason, rule = Reason.undefined, None
    transient = (reason in _TRANSIENT and rule not in _NOT_TRANSIENT_RULES) or (
        rule in _TRANSIENT_RULES
    )
    if status == "failed" and transient:
        # ACS reports a final Failed only once it has stopped retrying: a "not now" is now final.
        if reason is not Reason.expired:
            notes.append(
                f"The text alone reads '{reason}', but ACS reported Failed, which it does only "
                "after it has stopped retrying."
            )
            confidence = Confidence.high if reason is Reason.networkerror else Confidence.medium
        reason = Reason.expired
    if status and status not in _FAILURE_STATUSES:
        notes.append(f"ACS reported an unrecognised status '{shown_status}'.")

    info = REASONS[reason]
    bounce_type, retryable = info.bounce_type, info.retryable
    action = _BLOCKLIST_ACTION if rule in _BLOCKLIST_RULES else info.action
    temporary = "4" in ((codes.smtp or " ")[0], (codes.enhanced or " ")[0])
    if reason is Reason.notaccept and temporary:
        # notaccept is hard only when unconditional; "not accepting mail right now" is soft.
        bounce_type, retryable = BounceType.soft, True
    if reason is Reason.onhold and status == "bounced":
        # ACS's Bounced is its hard bounce; with no text to say why, too little to suppress on.
        bounce_type = BounceType.hard
        notes.append(
            "ACS reported Bounced (its hard bounce) without a status message; the address is "
            "not suppressed on that alone."
        )
    if retryable and "5" in ((codes.smtp or " ")[0], (codes.enhanced or " ")[0]):
        notes.append(
            "The server calls this permanent, but the cause can pass: a later attempt may succeed."
        )
    suppress = reason is Reason.suppressed or (
        bounce_type is BounceType.hard and info.suppress and confidence is not Confidence.low
    )
    if (
        bounce_type is BounceType.hard
        and confidence is Confidence.low
        and reason is not (Reason.onhold)
    ):
        notes.append("The evidence is too vague to suppress the address on this alone.")
    event_type = info.anymail_event_type
    if event_type == "unknown" and status in ("bounced", "failed"):
        event_type = status  # unclassified, but ACS still says whether it bounced or failed
    return Classification(
        bounce_type=bounce_type,
        retryable=retryable,
        suppress=suppress,
        reason=reason,
        smtp_code=codes.smtp,
        enhanced_code=codes.enhanced,
        explanation=_join(info.meaning, *notes, *_code_notes(codes)),
        action=action,
        anymail_event_type=event_type,
        anymail_reject_reason=info.anymail_reject_reason,
        ses_bounce_type=_ses_bounce_type(reason, bounce_type),
        ses_bounce_subtype=info.ses_bounce_subtype,
        rule=rule,
        confidence=confidence,
    )


def _ses_bounce_type(reason: Reason, bounce_type: BounceType) -> str:
    # SES reports its own suppression as a Permanent bounce, and "Undetermined" when it cannot
    # tell; everything else follows our hard/soft split.
    if reason in (Reason.undefined, Reason.onhold):
        return "Undetermined"
    if bounce_type is BounceType.hard or reason is Reason.suppressed:
        return "Permanent"
    return "Transient"


def _code_notes(codes: Codes) -> list[str]:
    notes = []
    if codes.smtp is not None:
        meaning = explain_smtp_code(codes.smtp)
        notes.append(f"Reply code {meaning or codes.smtp}.")
    if codes.enhanced is not None:
        meaning = explain_enhanced_code(codes.enhanced)
        notes.append(f"Enhanced status code {meaning or codes.enhanced}.")
    return notes


def _join(*parts: str) -> str:
    return " ".join(parts)
