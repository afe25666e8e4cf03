"""Per-recipient status vocabulary and the precedence that makes event order irrelevant.

Precedence (documented in README "Status model"): a recipient's status is the maximum, over
everything recorded for it, of the key

    (rank, at, outcome order, event id)

- rank: `accepted` (0) < `sent` (1) < any outcome (2). An ACS outcome always beats
  accepted/sent, whatever the timestamps say (clocks of ACS and our app differ).
- at: between outcomes the later `deliveryAttemptTimestamp` wins (a retry that finally
  delivered beats the earlier soft failure; a later bounce beats an earlier Expanded).
- outcome order, then event id: deterministic tie-breaks for equal timestamps, so every
  permutation of the same events converges on the same row.
Because the key is a total order over events and the stored row is the argmax, applying events
in any order, any number of times, yields the same final status.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    ACCEPTED = "accepted"  # stored by us, not yet handed to ACS
    SENT = "sent"  # ACS accepted the send request; no delivery report yet
    DELIVERED = "delivered"  # the recipient's server accepted the message
    EXPANDED = "expanded"  # a distribution list was expanded; members get their own reports
    BOUNCED = "bounced"  # permanently rejected by the recipient's server
    FAILED = "failed"  # not delivered (soft failure, expiry, or our own send failed for good)
    SUPPRESSED = "suppressed"  # ACS (or our list) suppressed it; nothing was sent
    QUARANTINED = "quarantined"  # ACS quarantined the message
    SPAM_FILTERED = "spam_filtered"  # rejected or filtered as spam
    UNKNOWN = "unknown"  # an ACS status we do not know; the raw value is kept beside it


OUTCOMES = frozenset(Status) - {Status.ACCEPTED, Status.SENT}

# ACS `status` values (compared case-insensitively) → our status.
ACS_STATUS: dict[str, Status] = {
    "delivered": Status.DELIVERED,
    "expanded": Status.EXPANDED,
    "bounced": Status.BOUNCED,
    "failed": Status.FAILED,
    "suppressed": Status.SUPPRESSED,
    "quarantined": Status.QUARANTINED,
    "filteredspam": Status.SPAM_FILTERED,
}

# Tie-break among outcomes with the same timestamp: the more final/severe fact wins.
_OUTCOME_ORDER: dict[Status, int] = {
    Status.UNKNOWN: 0,
    Status.EXPANDED: 1,
    Status.DELIVERED: 2,
    Status.FAILED: 3,
    Status.QUARANTINED: 4,
    Status.SPAM_FILTERED: 5,
    Status.SUPPRESSED: 6,
    Status.BOUNCED: 7,
}


def from_acs(acs_status: str) -> Status:
    return ACS_STATUS.get(acs_status.strip().lower(), Status.UNKNOWN)


def is_failure(status: Status) -> bool:
    return status in {
        Status.BOUNCED,
        Status.FAILED,
        Status.SUPPRESSED,
        Status.QUARANTINED,
        Status.SPAM_FILTERED,
    }


PrecedenceKey = tuple[int, str, int, str]


def precedence(status: Status, at: datetime, event_id: str) -> PrecedenceKey:
    """The sort key described in the module docstring; `at` must be timezone-aware UTC."""
    rank = 2 if status in OUTCOMES else (1 if status is Status.SENT else 0)
    return (rank, at.isoformat(timespec="microseconds"), _OUTCOME_ORDER.get(status, 0), event_id)


class SendState(StrEnum):
    """Where a message accepted by `POST /api/emails` stands in our send pipeline."""

    QUEUED = "queued"  # accepted and waiting in the queue
    HELD = "held"  # waiting: its sender domain is paused (POST /api/senders/{domain}/resume)
    SENDING = "sending"  # claimed by a worker that is calling ACS
    SENT = "sent"  # ACS accepted it (202); delivery reports follow
    FAILED = "failed"  # ACS refused it for good, or every attempt failed


CLAIM_TTL = timedelta(minutes=2)  # a claim older than this is a crashed worker's: take it over


def claimed_by_another(row: Mapping[str, Any], now: datetime) -> bool:
    """A worker holds this message (claimed under its ETag less than CLAIM_TTL ago)."""
    if row.get("sendState") != SendState.SENDING:
        return False
    claimed = row.get("claimedAt")
    try:
        at = datetime.fromisoformat(str(claimed)) if claimed else None
    except ValueError:
        return False
    return at is not None and now - at < CLAIM_TTL
