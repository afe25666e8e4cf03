"""Classify one ACS delivery report (status + statusMessage) into a reason, bounce type and advice.

The evaluation order, first match wins:

1. ACS status shortcuts. Delivered and Expanded are successes (reason None, bounce type None).
   Suppressed is `suppressed` and Quarantined is `quarantined`, whatever the text. FilteredSpam
   is `spamfiltered` unless a phrase in the text says something more specific.
2. The phrasebook (receiver wordings, `phrasebook.RULES`).
3. The enhanced status code table (`codes.ENHANCED_RULES`).
4. The basic reply code table (`codes.SMTP_RULES`).
5. `undefined`, kept as a named result with the raw text's codes explained; `onhold` when a
   failure status comes with no text at all.

Text beats code when they disagree: receivers reuse codes loosely (a `550 5.1.1` that says
"mailbox full" is `mailboxfull`; Outlook.com answers a missing mailbox with `5.5.0`), while their
wording is specific. An unknown ACS status is classified from the text alone.

Only the first 8 KB of a status message is read (the reply that matters is at the start; a 1 MB
message must cost the same as a short one), control characters are dropped, and the text
analysis is cached on the message, since reports repeat the same few texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .codes import (
    CodeRule,
    Codes,
    explain_enhanced_code,
    explain_smtp_code,
    extract_codes,
    rule_for_enhanced,
    rule_for_smtp,
)
from .phrasebook import PhraseRule, first_match
from .taxonomy import REASONS, BounceType, Reason

MAX_CHARS = 8192  # the first 8 KB is read; the rest of a status message is ignored

# C0 and C1 control characters other than tab, line feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# The reply code (and enhanced code) that starts each line of a (multi-line) reply.
_LINE_CODES = re.compile(
    r"^[ \t]*[245]\d\d(?:[ \t\-]+[245]\.\d{1,3}\.\d{1,3})?[ \t\-]?", re.MULTILINE
)
_SPACES = re.compile(r"\s+")
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
        }


@dataclass(frozen=True, slots=True)
class TextAnalysis:
    """What the status message alone says, before the ACS status is considered."""

    empty: bool  # nothing but whitespace and control characters
    codes: Codes
    phrase: PhraseRule | None  # the first phrasebook row that matched
    code_rule: CodeRule | None  # the enhanced code's row, else the basic code's


def analyse_text(message: str) -> TextAnalysis:
    """Codes and the first matching phrase rule of a status message (uncached)."""
    text = _CONTROL.sub("", message[:MAX_CHARS]).replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return TextAnalysis(True, Codes(None, None), None, None)
    codes = extract_codes(text)
    prose = _SPACES.sub(" ", _LINE_CODES.sub("", text.lower()))
    key = (codes.enhanced, codes.smtp)
    phrase = first_match(prose, key)
    code_rule = None
    if codes.enhanced is not None:
        code_rule = rule_for_enhanced(codes.enhanced)
    if code_rule is None and codes.smtp is not None:
        code_rule = rule_for_smtp(codes.smtp)
    return TextAnalysis(False, codes, phrase, code_rule)


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


def classify(acs_status: str | None, status_message: str | None) -> Classification:
    message = "" if status_message is None else status_message[:MAX_CHARS]
    shown = "" if acs_status is None else _CONTROL.sub("", acs_status).strip()[:40]
    if _NOT_LETTERS.sub("", shown.lower()) in _SUCCESS:
        # A success needs only the reply's codes, not the phrasebook; and delivered replies
        # carry queue ids, so they are unique and would miss the cache anyway.
        return _decide(shown, _codes_only(message))
    return _decide(shown, _analyse_cached(message))


def _codes_only(message: str) -> TextAnalysis:
    text = _CONTROL.sub("", message).replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return TextAnalysis(True, Codes(None, None), None, None)
    return TextAnalysis(False, extract_codes(text), None, None)


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
            "delivered", None, None, None, f"acs:{status}",
        )  # fmt: skip

    reason: Reason
    rule: str | None
    phrase, code_rule = analysis.phrase, analysis.code_rule
    if status == "suppressed":
        reason, rule = Reason.suppressed, "acs:suppressed"
        notes.append("ACS reported the status Suppressed.")
    elif status == "quarantined":
        reason, rule = Reason.quarantined, "acs:quarantined"
        notes.append("ACS reported the status Quarantined.")
    elif status == "filteredspam" and (phrase is None or phrase.reason is Reason.spamdetected):
        reason, rule = Reason.spamfiltered, "acs:filteredspam"
        notes.append("ACS reported the status FilteredSpam.")
    elif phrase is not None:
        reason, rule = phrase.reason, phrase.id
        if status == "filteredspam":
            notes.append("ACS reported FilteredSpam, but the text is more specific.")
        notes.append(f"Matched wording seen from {phrase.source}.")
        if code_rule is not None and code_rule.reason is not phrase.reason:
            notes.append(
                f"The status code alone would suggest '{code_rule.reason}', but the text is "
                "more specific."
            )
    elif code_rule is not None:
        reason, rule = code_rule.reason, code_rule.id
        notes.append(f"Classified from the status code ({code_rule.note}).")
    elif analysis.empty and status in _FAILURE_STATUSES:
        reason, rule = Reason.onhold, None
    else:
        reason, rule = Reason.undefined, None
    if status and status not in _FAILURE_STATUSES:
        notes.append(f"ACS reported an unrecognised status '{shown_status}'.")

    info = REASONS[reason]
    bounce_type, retryable, suppress = info.bounce_type, info.retryable, info.suppress
    temporary = "4" in ((codes.smtp or " ")[0], (codes.enhanced or " ")[0])
    if reason is Reason.notaccept and temporary:
        # notaccept is hard only when unconditional; "not accepting mail right now" is soft.
        bounce_type, retryable, suppress = BounceType.soft, True, False
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
        action=info.action,
        anymail_event_type=event_type,
        anymail_reject_reason=info.anymail_reject_reason,
        ses_bounce_type=_ses_bounce_type(reason, bounce_type),
        ses_bounce_subtype=info.ses_bounce_subtype,
        rule=rule,
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
