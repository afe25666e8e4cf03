"""What to do when ACS answers a send: decisions only (the worker carries them out)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MAX_ATTEMPTS = 8  # transient ACS failures (5xx, timeouts) before the message fails for good
BASE_BACKOFF_S = 5.0
MAX_BACKOFF_S = 600.0
DEFAULT_RETRY_AFTER_S = 60.0


class Verdict(StrEnum):
    RETRY_AFTER = "retry_after"  # throttled (429): wait as told; does not use up an attempt
    BACKOFF = "backoff"  # transient (408, 5xx, network): exponential backoff, one attempt used
    PERMANENT = "permanent"  # the request itself is wrong for ACS: fail now, never resend


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    delay_s: float
    code: str | None = None
    explanation: str | None = None


# ACS error codes → plain English (codes seen in ACS Email REST error responses).
ACS_ERRORS: dict[str, str] = {
    "DomainNotLinked": (
        "The sender's domain is not connected to this Communication Services resource; "
        "link the verified Email domain to the resource, or send from a linked domain."
    ),
    "InvalidSenderUserName": (
        "The sender's user name is not configured for the domain; add it as a MailFrom "
        "sender in the Email domain's settings, or use an existing one."
    ),
    "UnauthorizedSender": "The sender address is not allowed for this resource.",
    "Unauthorized": "ACS rejected our credentials: check the access key or managed identity.",
    "Forbidden": "ACS refused the request for this resource (permissions or resource state).",
    "InvalidRequest": "ACS found the request invalid (see the ACS message for the field).",
    "BadRequest": "ACS found the request invalid (see the ACS message for the field).",
    "InvalidAttachmentType": "An attachment type is not one ACS accepts.",
    "RequestTooLarge": "The message is larger than ACS accepts (10 MB including attachments).",
    "TooManyRecipients": "More recipients than ACS accepts in one message (50).",
    "EmailDroppedAllRecipientsSuppressed": (
        "Every recipient is on ACS's managed suppression list; nothing was sent."
    ),
}


def decide(
    status: int | None, error_code: str | None, retry_after: str | None, attempt: int
) -> Decision:
    """`status` None means no answer (connection error or timeout)."""
    if status == 429:
        return Decision(Verdict.RETRY_AFTER, _retry_after(retry_after), error_code)
    if status is None or status == 408 or status >= 500:
        if attempt + 1 >= MAX_ATTEMPTS:
            return Decision(
                Verdict.PERMANENT,
                0.0,
                error_code or "TransientFailuresExhausted",
                f"ACS kept failing ({status or 'no answer'}) after {MAX_ATTEMPTS} attempts.",
            )
        return Decision(
            Verdict.BACKOFF, min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2**attempt), error_code
        )
    code = error_code or f"Http{status}"
    explanation = ACS_ERRORS.get(code, f"ACS rejected the send request (HTTP {status}, {code}).")
    return Decision(Verdict.PERMANENT, 0.0, code, explanation)


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value else DEFAULT_RETRY_AFTER_S
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER_S
    return min(max(seconds, 1.0), 3600.0)
