"""SMTP reply codes (RFC 5321) and enhanced status codes (RFC 3463): extraction, meanings, reasons.

Extraction finds the codes wherever receivers put them: leading (`550 5.1.1 ...`), after the dash
of a multi-line reply (`550-5.7.26 ...`), repeated on continuation lines, inside a DSN-style
diagnostic (`smtp;550 5.1.1`), in parentheses or after `#` (qmail `(#5.1.1)`, IronPort `#5.1.0`),
with multi-digit parts (Microsoft `5.4.310`, `5.7.606`). It must not take an IP address
(`203.0.113.5`), a version (`4.94.2`), a date (`21.05.2024`) or a number in prose for a code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from types import MappingProxyType
from typing import NamedTuple

from .taxonomy import Reason

# --- Meanings ------------------------------------------------------------------------------------

# RFC 3463 section 3.1: the class digit.
CLASSES: MappingProxyType[str, str] = MappingProxyType(
    {
        "2": "success",
        "4": "temporary failure: the server expects a later attempt may succeed",
        "5": "permanent failure: the server will not take this message as things stand",
    }
)

# RFC 3463 sections 3.2-3.9: the subject digit, used when a detail code is unknown.
SUBJECTS: MappingProxyType[str, str] = MappingProxyType(
    {
        "0": "other or undefined status",
        "1": "a problem with an address (the recipient's or the sender's)",
        "2": "a problem with the recipient's mailbox",
        "3": "a problem with the receiving mail system",
        "4": "a network or routing problem",
        "5": "an SMTP protocol problem",
        "6": "a problem with the message content or media",
        "7": "a security or policy refusal",
    }
)

# Every code in the IANA "Simple Mail Transfer Protocol (SMTP) Enhanced Status Codes" registry,
# subject.detail -> meaning (the class, 2/4/5, is added by explain_enhanced_code). Source: the
# registry and the RFCs it cites (3463, 3886, 4468, 4954, 5248, 6531, 6710, 7293, 7372, 7505,
# 8098, 8617, 8689).
ENHANCED_DETAILS: MappingProxyType[str, str] = MappingProxyType(
    {
        "0.0": "other or undefined status: no further detail was given",
        "1.0": "other address status: something about an address was wrong",
        "1.1": "bad destination mailbox address: the mailbox does not exist at that domain",
        "1.2": "bad destination system address: the recipient's domain does not exist or "
        "cannot receive mail",
        "1.3": "bad destination mailbox address syntax: the recipient address is malformed",
        "1.4": "destination mailbox address ambiguous: it matches more than one mailbox",
        "1.5": "destination address valid: the recipient address was accepted",
        "1.6": "destination mailbox has moved, and no forwarding address is known",
        "1.7": "bad sender's mailbox address syntax: the sender address is malformed",
        "1.8": "bad sender's system address: the sender's domain does not exist or cannot "
        "receive replies",
        "1.9": "message relayed to a non-compliant mailer that does not return delivery status",
        "1.10": "recipient address has a null MX: the domain declares it accepts no mail",
        "2.0": "other or undefined mailbox status",
        "2.1": "mailbox disabled, not accepting messages",
        "2.2": "mailbox full: the recipient is over their storage quota",
        "2.3": "message length exceeds an administrative limit for this recipient",
        "2.4": "mailing list expansion problem",
        "3.0": "other or undefined mail system status",
        "3.1": "mail system full: the receiving system is out of storage",
        "3.2": "system not accepting network messages",
        "3.3": "system not capable of the selected features",
        "3.4": "message too big for the receiving system",
        "3.5": "the receiving system is incorrectly configured",
        "3.6": "the requested message priority was changed",
        "4.0": "other or undefined network or routing status",
        "4.1": "no answer from the receiving host",
        "4.2": "bad connection: the connection was dropped or broken",
        "4.3": "directory server failure: a lookup (such as DNS) failed",
        "4.4": "unable to route: no mail server could be found for the destination",
        "4.5": "mail system congestion",
        "4.6": "routing loop detected: the message was passed around in a loop",
        "4.7": "delivery time expired: retries ran out before the message could be delivered",
        "5.0": "other or undefined protocol status",
        "5.1": "invalid command",
        "5.2": "syntax error in a command",
        "5.3": "too many recipients for one message",
        "5.4": "invalid command arguments",
        "5.5": "wrong protocol version",
        "5.6": "authentication exchange line is too long",
        "6.0": "other or undefined media error",
        "6.1": "media type not supported",
        "6.2": "conversion required but prohibited",
        "6.3": "conversion required but not supported",
        "6.4": "conversion performed with loss of content",
        "6.5": "conversion failed",
        "6.6": "message content not available (a referenced message could not be fetched)",
        "6.7": "non-ASCII addresses are not permitted for this sender or recipient",
        "6.8": "a UTF-8 string reply is required, but the client does not permit it",
        "6.9": "a UTF-8 header message cannot be transferred to one or more recipients",
        "6.10": "a UTF-8 string reply is required, but the client does not permit it "
        "(registered to replace X.6.8)",
        "7.0": "other or undefined security status",
        "7.1": "delivery not authorized, message refused (typically by the receiver's policy)",
        "7.2": "mailing list expansion prohibited for this sender",
        "7.3": "security conversion required but not possible",
        "7.4": "security features not supported",
        "7.5": "cryptographic failure",
        "7.6": "cryptographic algorithm not supported",
        "7.7": "message integrity failure",
        "7.8": "authentication credentials invalid",
        "7.9": "authentication mechanism is too weak",
        "7.10": "encryption needed",
        "7.11": "encryption required for the requested authentication mechanism",
        "7.12": "a password transition is needed",
        "7.13": "user account disabled",
        "7.14": "trust relationship required",
        "7.15": "priority level is too low",
        "7.16": "message is too big for the specified priority",
        "7.17": "mailbox owner has changed since the address was verified",
        "7.18": "domain owner has changed since the address was verified",
        "7.19": "the require-recipient-valid-since test cannot be completed",
        "7.20": "no passing DKIM signature found",
        "7.21": "no acceptable DKIM signature found",
        "7.22": "no valid author-matched DKIM signature found",
        "7.23": "SPF validation failed",
        "7.24": "SPF validation error",
        "7.25": "reverse DNS validation failed: the sending IP has no matching PTR record",
        "7.26": "multiple authentication checks failed (SPF, DKIM and/or DMARC)",
        "7.27": "the sender address has a null MX, so replies could not be delivered",
        "7.28": "mail flood detected: the message looks like part of a flood of similar mail",
        "7.29": "ARC validation failure",
        "7.30": "REQUIRETLS support required, but the next hop does not offer it",
    }
)

# Every RFC 5321 reply code (section 4.2.3), 521 and 556 from RFC 7504, and the RFC 4954 (AUTH)
# and RFC 3207 (STARTTLS) codes receivers also use.
SMTP_REPLIES: MappingProxyType[str, str] = MappingProxyType(
    {
        "211": "system status or help reply",
        "214": "help message",
        "220": "service ready",
        "221": "service closing the connection",
        "235": "authentication succeeded",
        "250": "requested action completed (OK)",
        "251": "user not local; the server will forward the message",
        "252": "cannot verify the user, but the message will be accepted and delivery attempted",
        "334": "authentication challenge",
        "354": "start mail input",
        "421": "service not available, closing the connection (a temporary refusal)",
        "432": "a password transition is needed",
        "450": "mailbox unavailable, temporarily (busy, or blocked for policy reasons)",
        "451": "requested action aborted: local error in processing",
        "452": "insufficient system storage",
        "454": "temporary authentication or TLS failure",
        "455": "server unable to accommodate the parameters",
        "500": "syntax error, command unrecognized",
        "501": "syntax error in parameters or arguments",
        "502": "command not implemented",
        "503": "bad sequence of commands",
        "504": "command parameter not implemented",
        "521": "the host does not accept mail",
        "530": "authentication or TLS required",
        "534": "authentication mechanism is too weak",
        "535": "authentication credentials invalid",
        "538": "encryption required for the requested authentication mechanism",
        "550": "requested action not taken: mailbox unavailable (not found, no access, or "
        "refused for policy reasons)",
        "551": "user not local; the sender should try another address",
        "552": "requested mail action aborted: exceeded storage allocation",
        "553": "requested action not taken: mailbox name not allowed (e.g. bad syntax)",
        "554": "transaction failed (or, at connection time, no SMTP service here)",
        "555": "MAIL FROM/RCPT TO parameters not recognized or not implemented",
        "556": "the domain does not accept mail",
    }
)


# --- Code -> reason tables --------------------------------------------------------------------
# Ordered rows, first match wins. A class of "X" means any class; a detail may be a range
# ("606-649") for the vendor blocks Microsoft documents. Each row says where the mapping comes
# from. These are consulted only when no phrase in the text matched: text beats code.


@dataclass(frozen=True, slots=True, eq=False)  # compared and hashed by identity: rows are unique
class CodeRule:
    id: str
    reason: Reason
    note: str  # provenance, and for vendor codes the meaning shown by explain_enhanced_code
    # A code servers send for anything (551-553 from qmail and others): low confidence. An
    # enhanced code with detail 0 (RFC 3463's "other or undefined" status of its subject: 5.0.0,
    # 5.3.0, 5.5.0, 4.0.0) is generic too; the classifier checks that on the code itself.
    generic: bool = False


_R = Reason
# fmt: off
_ENHANCED_ROWS: tuple[tuple[str, Reason, str], ...] = (
    # Microsoft 365 / Exchange Online details (learn.microsoft.com, "NDRs in Exchange Online").
    # Listed first: they reuse IANA subjects with their own meanings.
    ("4.7.500-599", _R.ratelimited, "Microsoft 365: access denied or server busy, please try "
                                    "again later (a new or suspicious sending IP throttled)"),
    ("X.1.10", _R.userunknown, "Microsoft 365: recipient not found (RFC 7505 null MX is rarer;"
                               " both are hard)"),
    ("X.2.121-122", _R.speeding, "Microsoft 365: the hourly message limit for this recipient "
                                 "(from this sender, or in all) exceeded"),
    ("X.4.300", _R.expired, "Microsoft 365: message expired"),
    ("X.4.310", _R.hostunknown, "Microsoft 365: the recipient's DNS domain does not exist"),
    ("X.4.312-318", _R.networkerror, "Microsoft 365: connecting to the recipient's server failed"),
    ("X.7.57", _R.securityerror, "Microsoft 365: client not authenticated to send"),
    ("X.7.64", _R.norelaying, "Microsoft 365: TenantAttribution, relay access denied"),
    ("X.7.124-136", _R.filtered, "Microsoft 365: sender not allowed to send to this group/user"),
    ("X.7.501-503", _R.rejected, "Microsoft 365: access denied, the sending account is banned "
                                 "(spam abuse, banned sender)"),
    ("X.7.500-509", _R.blocked, "Microsoft 365: access denied, banned sender or spam abuse"),
    ("X.7.510-599", _R.blocked, "Microsoft 365: access denied for the sending IP or tenant"),
    ("X.7.600-649", _R.blocked, "Microsoft 365: the sending IP is in a banned range"),
    ("X.7.650-699", _R.badreputation, "Microsoft 365: the sending IP is throttled for reputation"),
    ("X.7.700-799", _R.rejected, "Microsoft 365: the sending tenant is blocked from sending"),
    # The IANA registry (RFC 3463 and successors), mapped the way Sisimai does.
    ("X.1.1", _R.userunknown, "RFC 3463: bad destination mailbox address"),
    ("X.1.2", _R.hostunknown, "RFC 3463: bad destination system address"),
    ("X.1.3", _R.userunknown, "RFC 3463: bad destination mailbox address syntax"),
    ("X.1.4", _R.userunknown, "RFC 3463: destination mailbox address ambiguous"),
    ("X.1.6", _R.hasmoved, "RFC 3463: mailbox has moved"),
    ("X.1.7", _R.rejected, "RFC 3463: bad sender's mailbox address syntax"),
    ("X.1.8", _R.rejected, "RFC 3463: bad sender's system address"),
    ("X.2.1", _R.suspend, "RFC 3463: mailbox disabled"),
    ("X.2.2", _R.mailboxfull, "RFC 3463: mailbox full"),
    ("X.2.3", _R.exceedlimit, "RFC 3463: message length exceeds administrative limit"),
    ("X.2.4", _R.systemerror, "RFC 3463: mailing list expansion problem"),
    ("X.3.0", _R.systemerror, "RFC 3463: other mail system status"),
    ("X.3.1", _R.systemfull, "RFC 3463: mail system full"),
    ("X.3.2", _R.notaccept, "RFC 3463: system not accepting network messages"),
    ("X.3.3", _R.systemerror, "RFC 3463: system not capable of selected features"),
    ("X.3.4", _R.mesgtoobig, "RFC 3463: message too big for system"),
    ("X.3.5", _R.systemerror, "RFC 3463: system incorrectly configured"),
    ("X.4.0-3", _R.networkerror, "RFC 3463: no answer, bad connection, directory failure"),
    ("5.4.4", _R.hostunknown, "RFC 3463: unable to route (permanently: no route exists)"),
    ("4.4.4", _R.networkerror, "RFC 3463: unable to route (for now)"),
    ("X.4.5", _R.systemfull, "RFC 3463: mail system congestion"),
    ("X.4.6", _R.networkerror, "RFC 3463: routing loop detected"),
    ("X.4.7", _R.expired, "RFC 3463: delivery time expired"),
    ("X.5.0-2", _R.syntaxerror, "RFC 3463: invalid command or syntax error"),
    ("X.5.3", _R.ratelimited, "RFC 3463: too many recipients"),
    ("X.5.4-6", _R.syntaxerror, "RFC 3463/4954: invalid arguments, protocol version, AUTH line"),
    ("X.6.0-10", _R.contenterror, "RFC 3463/4468/6531: media and conversion errors"),
    ("X.7.0", _R.securityerror, "RFC 3463: other security status"),
    ("X.7.1", _R.policyviolation, "RFC 3463: delivery not authorized, message refused"),
    ("X.7.2", _R.policyviolation, "RFC 3463: mailing list expansion prohibited"),
    ("X.7.3-12", _R.securityerror, "RFC 3463/4954/5248: encryption and authentication needs"),
    ("X.7.13", _R.suspend, "RFC 5248: user account disabled"),
    ("X.7.14", _R.securityerror, "RFC 5248: trust relationship required"),
    ("X.7.15", _R.policyviolation, "RFC 6710: priority level too low"),
    ("X.7.16", _R.mesgtoobig, "RFC 6710: message too big for the priority"),
    ("X.7.17-18", _R.hasmoved, "RFC 7293: mailbox or domain owner has changed"),
    ("X.7.19", _R.securityerror, "RFC 7293: RRVS test cannot be completed"),
    ("X.7.20-24", _R.authfailure, "RFC 7372: DKIM or SPF failure"),
    ("X.7.25", _R.requireptr, "RFC 7372: reverse DNS validation failed"),
    ("X.7.26", _R.authfailure, "RFC 7372: multiple authentication checks failed"),
    ("X.7.27", _R.rejected, "RFC 7505: sender address has null MX"),
    ("X.7.28", _R.spamdetected, "IANA: mail flood detected"),
    ("X.7.29", _R.authfailure, "RFC 8617: ARC validation failure"),
    ("X.7.30", _R.securityerror, "RFC 8689: REQUIRETLS support required"),
)
# fmt: on
ENHANCED_RULES: tuple[tuple[str, CodeRule], ...] = tuple(
    (pattern, CodeRule(f"enhanced:{pattern}", reason, note))
    for pattern, reason, note in _ENHANCED_ROWS
)

# Basic reply codes carry little; only the ones with one clear meaning get a reason. 550 and 554
# are deliberately absent: receivers use them for everything from "no such user" to "spam"; 551,
# 552 and 553 are generic (qmail and others answer most refusals with them), so low confidence.
_SMTP_ROWS: tuple[tuple[str, Reason, str] | tuple[str, Reason, str, bool], ...] = (
    ("421", Reason.systemerror, "RFC 5321: service not available"),
    ("451", Reason.systemerror, "RFC 5321: local error in processing"),
    ("452", Reason.systemfull, "RFC 5321: insufficient system storage"),
    ("454", Reason.securityerror, "RFC 4954/3207: temporary auth or TLS failure"),
    ("455", Reason.syntaxerror, "RFC 5321: parameters not accommodated"),
    ("500", Reason.syntaxerror, "RFC 5321: command unrecognized"),
    ("501", Reason.syntaxerror, "RFC 5321: syntax error in parameters"),
    ("502", Reason.syntaxerror, "RFC 5321: command not implemented"),
    ("503", Reason.syntaxerror, "RFC 5321: bad sequence of commands"),
    ("504", Reason.syntaxerror, "RFC 5321: parameter not implemented"),
    ("521", Reason.notaccept, "RFC 7504: host does not accept mail"),
    ("530", Reason.securityerror, "RFC 4954/3207: authentication or TLS required"),
    ("534", Reason.securityerror, "RFC 4954: mechanism too weak"),
    ("535", Reason.securityerror, "RFC 4954: credentials invalid"),
    ("538", Reason.securityerror, "RFC 4954: encryption required"),
    ("551", Reason.hasmoved, "RFC 5321: user not local", True),
    ("552", Reason.mailboxfull, "RFC 5321: exceeded storage allocation", True),
    ("553", Reason.userunknown, "RFC 5321: mailbox name not allowed", True),
    ("555", Reason.syntaxerror, "RFC 5321: parameters not recognized"),
    ("556", Reason.notaccept, "RFC 7504: domain does not accept mail"),
)
SMTP_RULES: MappingProxyType[str, CodeRule] = MappingProxyType(
    {row[0]: CodeRule(f"smtp:{row[0]}", *row[1:]) for row in _SMTP_ROWS}
)


def _expand(pattern: str) -> list[tuple[str, str, int]]:
    cls, subject, detail = pattern.split(".")
    lo, _, hi = detail.partition("-")
    classes = "245" if cls == "X" else cls
    return [(c, subject, d) for c in classes for d in range(int(lo), int(hi or lo) + 1)]


def _index(rules: tuple[tuple[str, CodeRule], ...]) -> dict[str, CodeRule]:
    index: dict[str, CodeRule] = {}
    for pattern, rule in rules:
        for cls, subject, detail in _expand(pattern):
            index.setdefault(f"{cls}.{subject}.{detail}", rule)  # first row wins
    return index


@cache
def _enhanced_index() -> dict[str, CodeRule]:
    return _index(ENHANCED_RULES)  # built on first use, not at import


@lru_cache(maxsize=4096)
def rule_for_enhanced(code: str) -> CodeRule | None:
    """The first ENHANCED_RULES row covering this code (e.g. "5.7.606"), if any."""
    cls, _, rest = code.partition(".")
    subject, _, detail = rest.partition(".")
    key = f"{cls}.{subject}.{detail.lstrip('0') or '0'}"
    return _enhanced_index().get(key)


def rule_for_smtp(code: str) -> CodeRule | None:
    return SMTP_RULES.get(code)


# --- Explanations -------------------------------------------------------------------------------


def explain_smtp_code(code: str) -> str | None:
    """Plain English for a basic reply code ("550"), or None if it is not a known code."""
    meaning = SMTP_REPLIES.get(code.strip())
    return None if meaning is None else f"{code.strip()}: {meaning}"


_ENHANCED_SHAPE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})")


@lru_cache(maxsize=1024)
def explain_enhanced_code(code: str) -> str | None:
    """Plain English for an enhanced status code ("5.1.1").

    A detail the IANA registry does not list falls back to a vendor note from ENHANCED_RULES
    if there is one, else to the subject's meaning. None for anything that is not a code.
    """
    m = _ENHANCED_SHAPE.fullmatch(code.strip())
    if m is None:
        return None
    cls, subject, detail = m.group(1), str(int(m.group(2))), str(int(m.group(3)))
    if subject not in SUBJECTS:
        return None
    head = f"{cls}.{subject}.{detail} ({CLASSES[cls]})"
    known = ENHANCED_DETAILS.get(f"{subject}.{detail}")
    if known is not None:
        return f"{head}: {known}"
    rule = rule_for_enhanced(f"{cls}.{subject}.{detail}")
    if rule is not None and not rule.note.startswith(("RFC", "IANA")):
        return f"{head}: {rule.note} (a vendor-specific detail code)"
    return f"{head}: {SUBJECTS[subject]} (detail {detail} is not in the IANA registry)"


# --- Extraction ---------------------------------------------------------------------------------


class Codes(NamedTuple):  # a tuple, not a dataclass: it is hashed on every classification
    smtp: str | None  # basic reply code, e.g. "550"
    enhanced: str | None  # enhanced status code, e.g. "5.1.1"


_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (the hot path)


# An enhanced code: class 2/4/5, subject 0-7, detail up to three digits. Not preceded by a word
# character, a dot or a slash (so not the tail of an IP, a version or a URL path), not followed
# by a word character or ".digit" (so not the head of one): 203.0.113.5, 4.94.2, 4.16.55.1,
# 5.1.2024 and /5.1.1x are not codes.
_ENHANCED = re.compile(r"(?<![\w./])([245])\.([0-7])\.(\d{1,3})(?!\w|\.\d)")
# A basic code: three digits with a valid class, followed by a blank, dash or end of line, and
# not glued to a word, a dot, a colon or a slash (S3150, 554.30, :25 and URLs are not codes).
_BASIC = re.compile(r"(?<![\w.:/\-])([245][0-5]\d)(?=[ \t\-]|$)", re.MULTILINE)
# Where a basic code may stand on its own: line start (after quotes, '#', '<', '>' or spaces),
# or after ';', ':', '=', '(', '[' or a quote ("smtp;550", "said: 550", "'550 ...").
_BASIC_CONTEXT = re.compile(r"(?:^|[;:=(\['\"#<>])[ \t'\"#<>]*$")
_AFTER_BASIC = re.compile(r"[ \t\-]+([245])\.([0-7])\.(\d{1,3})(?!\w|\.\d)")


# The usual shape, "550 5.1.1 ..." at the very start: the same answer as the scan below, sooner.
_LEADING = re.compile(r"[ \t]*([245][0-5]\d)[ \t\-]+([245])\.([0-7])\.(\d{1,3})(?!\w|\.\d)")


def extract_codes(text: str) -> Codes:
    """The first basic reply code and the enhanced code that goes with it, wherever they are."""
    lead = _LEADING.match(text)
    if lead is not None:
        smtp_code, cls, subject, detail = lead.groups()
        return _new(Codes, (smtp_code, f"{cls}.{subject}.{int(detail)}"))
    smtp: str | None = None
    enhanced: str | None = None
    for m in _BASIC.finditer(text):
        after = _AFTER_BASIC.match(text, m.end())
        line_start = text.rfind("\n", 0, m.start()) + 1
        if after is None and not _BASIC_CONTEXT.search(text[line_start : m.start()]):
            continue  # a number in prose ("after 450 seconds"), not a reply code
        smtp = m.group(1)
        if after is not None:
            enhanced = f"{after.group(1)}.{after.group(2)}.{int(after.group(3))}"
        break
    if enhanced is None:
        e = _ENHANCED.search(text)
        if e is not None:
            enhanced = f"{e.group(1)}.{e.group(2)}.{int(e.group(3))}"
    return Codes(smtp, enhanced)
