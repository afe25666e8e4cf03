"""The two outcomes we decide ourselves, not from an ACS report: a recipient we did not send to
because it is on the suppression list, and a message that was never sent. One place builds them,
in the same shape as a classified report."""

from __future__ import annotations

from shared.core.classification import Classification, Reason


def suppressed_by_list(since: str, reason: str) -> Classification:
    return Classification(
        bounce_type=None,
        retryable=False,
        suppress=True,
        reason=Reason.suppressed,
        smtp_code=None,
        enhanced_code=None,
        explanation=(
            f"Not sent: the address is on this service's suppression list since {since} "
            f"(reason: {reason})."
        ),
        action=(
            "Correct the address, or reactivate it (DELETE /api/suppressions/{address}) "
            "if the recipient confirms it works again."
        ),
        anymail_event_type="rejected",
        anymail_reject_reason="bounced",
        ses_bounce_type="Permanent",
        ses_bounce_subtype="OnAccountSuppressionList",
        rule="list.suppressed",
    )


def not_sent(code: str, explanation: str) -> Classification:
    return Classification(
        bounce_type=None,
        retryable=False,
        suppress=False,
        reason=Reason.senderror,
        smtp_code=None,
        enhanced_code=None,
        explanation=f"Not sent: {explanation}",
        action="Fix the cause named here and send again; no email went out.",
        anymail_event_type="failed",
        anymail_reject_reason="other",
        ses_bounce_type=None,
        ses_bounce_subtype=None,
        rule=f"send.{code}",
    )
