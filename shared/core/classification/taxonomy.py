"""The bounce vocabulary: every reason a delivery can fail, and what each one means and asks of us.

Reason names are Sisimai's (so reports line up with the most widely used open-source bounce
parser), plus the two outcomes ACS reports itself: `quarantined` and `spamfiltered`.

Every result also carries a `Confidence` (see classifier): a hard bounce suppresses the address
only when its confidence is high or medium.

The hard/soft rule is deliberately small (the Sisimai way): hard only when the address itself is
dead — `userunknown`, `hostunknown`, `hasmoved`, and `notaccept` when the refusal is unconditional
(a 4xx reply makes it soft; see classifier). Everything else that failed is soft, including 5xx
refusals for policy, spam, reputation, authentication and a full mailbox: those are about the
message or the sender, not about the address, and suppressing the address would hide the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class BounceType(StrEnum):
    hard = "hard"  # the address is dead: stop sending to it
    soft = "soft"  # the address may be fine: the message, the sender or the moment was the problem


class Confidence(StrEnum):
    high = "high"  # a specific phrase (or ACS's own status) decided
    medium = "medium"  # a code table decided, or a vague phrase backed by nothing more specific
    low = "low"  # a generic code (X.N.0, loosely used 55x) decided, or nothing did


class AcsStatus(StrEnum):
    """The delivery report statuses ACS sends, spelled as ACS spells them."""

    Delivered = "Delivered"  # the recipient's server accepted the message
    Expanded = "Expanded"  # a distribution list was expanded to its members
    Bounced = "Bounced"  # ACS's hard bounce: the recipient's server refused the address
    Failed = "Failed"  # ACS gave up after its own retries (or could not send at all)
    FilteredSpam = "FilteredSpam"  # ACS or the receiver filtered the message as spam
    Quarantined = "Quarantined"  # the message was held in quarantine
    Suppressed = "Suppressed"  # ACS did not send: the address is on its suppression list


KNOWN_ACS_STATUSES: tuple[str, ...] = tuple(str(s) for s in AcsStatus)


class Reason(StrEnum):
    userunknown = "userunknown"  # the mailbox does not exist at the recipient's domain
    hostunknown = "hostunknown"  # the recipient's domain does not exist or has no mail route
    hasmoved = "hasmoved"  # the mailbox moved (551 / X.1.6 / X.7.17) and left no forwarding
    mailboxfull = "mailboxfull"  # the recipient's mailbox is over quota
    suspend = "suspend"  # the mailbox exists but is disabled, suspended or inactive
    exceedlimit = "exceedlimit"  # the message exceeds this recipient's own size limit
    mesgtoobig = "mesgtoobig"  # the message exceeds the receiving server's size limit
    emailtoolarge = "emailtoolarge"  # the message exceeds the sending side's limit (ACS, relay)
    blocked = "blocked"  # the sending IP/host is refused (blocklist, banned range)
    rejected = "rejected"  # the envelope sender address/domain is refused
    policyviolation = "policyviolation"  # the receiver's local policy refused the message
    spamdetected = "spamdetected"  # the receiver's content filter judged the message spam
    virusdetected = "virusdetected"  # malware or a dangerous attachment was detected
    contenterror = "contenterror"  # the content or encoding could not be accepted/converted
    authfailure = "authfailure"  # SPF, DKIM, DMARC or ARC checks failed
    requireptr = "requireptr"  # the sending IP has no (matching) reverse DNS
    badreputation = "badreputation"  # the sending IP or domain's reputation is too low
    securityerror = "securityerror"  # a security requirement (TLS, authentication) was not met
    failedstarttls = "failedstarttls"  # the TLS negotiation itself failed
    notcompliantrfc = "notcompliantrfc"  # the message is not RFC 5322 compliant
    norelaying = "norelaying"  # the server refused to relay for this domain
    notaccept = "notaccept"  # the host does not accept mail at all (null MX, 521, 556)
    ratelimited = "ratelimited"  # deferred by a per-recipient rate limit or greylisting
    speeding = "speeding"  # deferred because the sender sent too much too fast
    toomanyconn = "toomanyconn"  # refused because of too many simultaneous connections
    expired = "expired"  # delivery was retried until the time limit ran out
    networkerror = "networkerror"  # DNS, connection or routing failure on the way
    systemerror = "systemerror"  # the receiving system had an internal error
    systemfull = "systemfull"  # the receiving system is out of disk or resources
    mailererror = "mailererror"  # the recipient's local delivery program failed
    syntaxerror = "syntaxerror"  # an SMTP command or argument was refused as malformed
    filtered = "filtered"  # the recipient (or their group/filter rules) refuses this sender
    suppressed = "suppressed"  # ACS did not send: the address is on the suppression list
    onhold = "onhold"  # a failure with nothing at all to classify it by
    undefined = "undefined"  # a failure whose text and codes we could not recognise
    quarantined = "quarantined"  # ACS: the message was held in quarantine
    spamfiltered = "spamfiltered"  # ACS: the message was filtered as spam (FilteredSpam)
    senderror = "senderror"  # ours: the message was never handed to ACS (refused, retries spent)


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    meaning: str  # plain English: what happened
    action: str  # what the sender should do about it
    suppress: bool  # should the address go on (or stay on) the suppression list
    retryable: bool  # can sending the same message again later help
    bounce_type: BounceType
    anymail_event_type: str  # django-anymail event_type for this outcome
    anymail_reject_reason: str  # django-anymail reject_reason
    ses_bounce_subtype: str  # Amazon SES bounceSubType


_H, _S = BounceType.hard, BounceType.soft

# One row per reason. The anymail and SES columns are the interoperability mapping: anymail's
# `bounced` means the receiving side refused, `rejected` that the sending service refused to send,
# `failed` that it could not send; SES subtypes are its published bounceSubType values.
# Columns: meaning, action, suppress, retryable, bounce_type, anymail event, anymail reason, SES.
# fmt: off
REASONS: MappingProxyType[Reason, ReasonInfo] = MappingProxyType(
    {
        Reason.userunknown: ReasonInfo(
            "The recipient's mailbox does not exist at that domain.",
            "Remove or correct the address; do not send to it again.",
            True, False, _H, "bounced", "bounced", "NoEmail",
        ),
        Reason.hostunknown: ReasonInfo(
            "The recipient's domain does not exist or publishes no mail server.",
            "Check the domain part of the address for typos; remove the address if it is right.",
            True, False, _H, "bounced", "bounced", "NoEmail",
        ),
        Reason.hasmoved: ReasonInfo(
            "The recipient's mailbox has moved or changed owner and mail is no longer forwarded.",
            "Ask the recipient for their new address; stop sending to this one.",
            True, False, _H, "bounced", "bounced", "NoEmail",
        ),
        Reason.mailboxfull: ReasonInfo(
            "The recipient's mailbox is full (over its storage quota).",
            "Try again later; if it stays full for weeks, treat the address as abandoned.",
            False, True, _S, "bounced", "bounced", "MailboxFull",
        ),
        Reason.suspend: ReasonInfo(
            "The recipient's mailbox exists but is disabled, suspended or inactive.",
            "Stop sending for now; suppress the address if it keeps failing this way.",
            False, False, _S, "bounced", "bounced", "General",
        ),
        Reason.exceedlimit: ReasonInfo(
            "The message is larger than this recipient accepts.",
            "Send a smaller message: link to large files instead of attaching them.",
            False, False, _S, "bounced", "bounced", "MessageTooLarge",
        ),
        Reason.mesgtoobig: ReasonInfo(
            "The message is larger than the receiving mail server accepts.",
            "Send a smaller message: link to large files instead of attaching them.",
            False, False, _S, "bounced", "bounced", "MessageTooLarge",
        ),
        Reason.emailtoolarge: ReasonInfo(
            "The message is larger than the sending service allows, so it was never handed to "
            "the recipient's server.",
            "Keep the message (attachments included) under the sending limit (10 MB for ACS).",
            False, False, _S, "failed", "other", "MessageTooLarge",
        ),
        Reason.blocked: ReasonInfo(
            "The receiving server refused the sending IP address or host (a blocklist or a "
            "banned IP range).",
            "Follow the link or reference in the reply, or ask the receiver's postmaster why "
            "the sending IP is refused; for ACS-managed sending IPs, open a support case with "
            "Microsoft.",
            False, False, _S, "bounced", "blocked", "General",
        ),
        Reason.rejected: ReasonInfo(
            "The receiving server refused the envelope sender address or its domain.",
            "Check that the sender (MailFrom) domain exists, resolves and is verified in ACS.",
            False, False, _S, "bounced", "blocked", "General",
        ),
        Reason.policyviolation: ReasonInfo(
            "The receiving organisation's policy refused the message.",
            "Contact the recipient by other means and ask their administrator why; do not "
            "resend unchanged.",
            False, False, _S, "bounced", "blocked", "General",
        ),
        Reason.spamdetected: ReasonInfo(
            "The receiving server's content filter judged the message to be spam.",
            "Review the content, links and list hygiene; send only to people who asked for it.",
            False, False, _S, "bounced", "spam", "ContentRejected",
        ),
        Reason.virusdetected: ReasonInfo(
            "The receiving server found malware or a dangerous attachment in the message.",
            "Remove or scan the attachment; send links instead of executable or archive files.",
            False, False, _S, "bounced", "blocked", "AttachmentRejected",
        ),
        Reason.contenterror: ReasonInfo(
            "The receiving server could not accept or convert the message content (encoding, "
            "MIME structure or attachment type).",
            "Check the message's encoding, MIME structure and attachment types.",
            False, False, _S, "bounced", "bounced", "ContentRejected",
        ),
        Reason.authfailure: ReasonInfo(
            "The message failed the receiver's sender authentication (SPF, DKIM, DMARC or ARC).",
            "Fix the sending domain's SPF/DKIM/DMARC records (in ACS: verify the domain's SPF "
            "and DKIM records) before sending again.",
            False, False, _S, "bounced", "blocked", "General",
        ),
        Reason.requireptr: ReasonInfo(
            "The sending IP address has no reverse DNS (PTR) record, or it does not match.",
            "Send from an IP with matching forward and reverse DNS; on ACS-managed IPs, open a "
            "support case.",
            False, False, _S, "bounced", "blocked", "General",
        ),
        Reason.badreputation: ReasonInfo(
            "The receiver refused or throttled the mail because the sending IP or domain has a "
            "poor reputation (spam complaints, volume spikes).",
            "Reduce volume, send only to engaged recipients, handle complaints; retry slowly.",
            False, True, _S, "bounced", "blocked", "General",
        ),
        Reason.securityerror: ReasonInfo(
            "A security requirement of the receiving server was not met (TLS or "
            "authentication required, credentials refused).",
            "Check the TLS and authentication requirements of the receiving server.",
            False, False, _S, "bounced", "blocked", "General",
        ),
        Reason.failedstarttls: ReasonInfo(
            "The TLS (STARTTLS) negotiation with the receiving server failed.",
            "Usually transient; retry later. If it persists, the receiver's TLS setup is broken.",
            False, True, _S, "bounced", "other", "General",
        ),
        Reason.notcompliantrfc: ReasonInfo(
            "The message does not comply with the Internet Message Format (RFC 5322): missing "
            "or duplicate headers, bare line feeds.",
            "Fix the message headers (Message-ID, Date, From) and line endings.",
            False, False, _S, "bounced", "bounced", "ContentRejected",
        ),
        Reason.norelaying: ReasonInfo(
            "The receiving server refused to relay: it does not handle mail for that domain.",
            "Check the recipient's domain and its MX records; usually a misconfiguration on "
            "the recipient side.",
            False, False, _S, "bounced", "blocked", "General",
        ),
        Reason.notaccept: ReasonInfo(
            "The recipient's domain or host does not accept email (for example a null MX).",
            "Remove the address; the domain has declared that it receives no mail.",
            True, False, _H, "bounced", "bounced", "General",
        ),
        Reason.ratelimited: ReasonInfo(
            "The receiver deferred the message: a per-recipient rate limit or greylisting.",
            "Retry later; it usually passes on a later attempt.",
            False, True, _S, "bounced", "other", "General",
        ),
        Reason.speeding: ReasonInfo(
            "The receiver deferred the message because too much mail arrived from the sender "
            "in a short time.",
            "Slow down: spread the sending over time and retry.",
            False, True, _S, "bounced", "blocked", "General",
        ),
        Reason.toomanyconn: ReasonInfo(
            "The receiver refused the connection: too many simultaneous connections from the "
            "sender.",
            "Retry later with fewer parallel connections.",
            False, True, _S, "bounced", "other", "General",
        ),
        Reason.expired: ReasonInfo(
            "Delivery kept failing temporarily until the retry period ran out.",
            "Resend later; if it keeps expiring, check the recipient domain's mail servers.",
            False, True, _S, "bounced", "timed_out", "General",
        ),
        Reason.networkerror: ReasonInfo(
            "A DNS, connection or routing failure prevented delivery.",
            "Retry later; if it persists, check the recipient domain's MX records.",
            False, True, _S, "bounced", "other", "General",
        ),
        Reason.systemerror: ReasonInfo(
            "The receiving mail system had an internal error.",
            "Retry later.",
            False, True, _S, "bounced", "other", "General",
        ),
        Reason.systemfull: ReasonInfo(
            "The receiving mail system is out of disk space or resources.",
            "Retry later.",
            False, True, _S, "bounced", "other", "General",
        ),
        Reason.mailererror: ReasonInfo(
            "The recipient's local delivery program (a filter or pipe) failed.",
            "Retry later; the recipient's administrator has to fix their delivery program.",
            False, True, _S, "bounced", "other", "General",
        ),
        Reason.syntaxerror: ReasonInfo(
            "The receiving server refused an SMTP command or argument as malformed or "
            "unsupported.",
            "Check the addresses for invalid characters (e.g. non-ASCII without SMTPUTF8).",
            False, False, _S, "bounced", "other", "General",
        ),
        Reason.filtered: ReasonInfo(
            "The recipient (or their group or filter rules) refuses mail from this sender.",
            "Only the recipient can change this; contact them by other means.",
            False, False, _S, "bounced", "blocked", "General",
        ),
        Reason.suppressed: ReasonInfo(
            "ACS did not send: the address is on the sender's suppression list.",
            "Nothing to send; remove the address from the suppression list only if the "
            "recipient asked for mail again.",
            True, False, _S, "rejected", "other", "OnAccountSuppressionList",
        ),
        Reason.onhold: ReasonInfo(
            "The delivery failed, but the report carries no status message to tell why.",
            "Look the message up later or in ACS logs; do not suppress on this alone.",
            False, False, _S, "unknown", "other", "Undetermined",
        ),
        Reason.undefined: ReasonInfo(
            "The delivery failed for a reason the status message does not make recognisable; "
            "the raw text is kept with the report.",
            "Read the raw status message; do not suppress on this alone.",
            False, False, _S, "unknown", "other", "Undetermined",
        ),
        Reason.quarantined: ReasonInfo(
            "The message was held in quarantine (a spam, bulk or phishing policy) instead of "
            "being delivered to the inbox.",
            "Review the content and authentication; the recipient may release it.",
            False, False, _S, "bounced", "spam", "ContentRejected",
        ),
        Reason.spamfiltered: ReasonInfo(
            "The message was identified as spam and filtered out (ACS FilteredSpam).",
            "Review the content, links and authentication before sending again.",
            False, False, _S, "bounced", "spam", "ContentRejected",
        ),
        Reason.senderror: ReasonInfo(
            "The message was never sent: ACS refused the request for good, or every attempt "
            "to hand it over failed.",
            "Fix the cause named here and send again; no email went out.",
            False, False, _S, "failed", "other", "Undetermined",
        ),
    }
)
# fmt: on
