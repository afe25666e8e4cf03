"""Send use cases: accept a request (HTTP) and send one queued message (queue worker).

The worker schedules its own retries by re-enqueueing with a visibility delay instead of
raising, so throttling (429, our own rate limit) never uses up the queue's dequeue count; only
unexpected errors (storage down, bugs) raise, and after maxDequeueCount those land in the poison
queue, whose handler fails the message for good. Either way nothing accepted is silently lost.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, InvalidInput, Problem
from ..settings import Settings, get_settings
from ..state import Fact
from ..status import Status
from . import policy, ratelimit
from .outbox import SendState
from .validation import SenderPolicy, parse_send_request

if TYPE_CHECKING:
    from ..suppressions import Suppression
    from .outbox import IdempotencyClaim, Outbox
    from .validation import SendRequest

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True, slots=True)
class Accepted:
    status: int
    body: dict[str, Any]
    replayed: bool


def sender_policy(settings: Settings) -> SenderPolicy:
    return SenderPolicy(
        sender_domain=settings.sender_domain,
        allowlist=settings.sender_allowlist,
        default_sender=settings.default_sender,
    )


def _claim_and_check(
    outbox: Outbox,
    request: SendRequest,
    key: str | None,
    message_id: str,
    window: timedelta,
) -> tuple[IdempotencyClaim | None, dict[str, Suppression]]:
    """The Idempotency-Key claim and the suppression reads, at once: neither needs the other.

    The claim runs on the fan-out pool and the reads on this thread (which fans them out in
    turn), so no pool task waits on another. The claim's answer comes first: a replay or a 422
    stands even when a read failed (the reads were then not needed).
    """
    from ..services import suppression_list
    from ..store import FANOUT

    claiming = None
    if key is not None:
        claiming = FANOUT.submit(
            outbox.begin_idempotent, key, request.fingerprint(), message_id, window
        )
    addresses = [r.address for r in request.recipients]
    try:
        suppressed = suppression_list().active_for(addresses, FANOUT)
    except Exception:
        if claiming is None or claiming.result().replay is None:
            raise
        return claiming.result(), {}
    return (claiming.result() if claiming is not None else None), suppressed


def accept_send(
    outbox: Outbox,
    body: bytes,
    content_type: str | None,
    idempotency_key: str | None,
    base_url: str,
) -> Accepted:
    settings = get_settings()
    request = parse_send_request(body, content_type, sender_policy(settings))
    message_id = str(uuid.uuid4())
    key = None
    if idempotency_key is not None:
        key = idempotency_key.strip()
        if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
            raise InvalidInput(
                "Invalid Idempotency-Key",
                [Problem("Idempotency-Key", "1 to 255 printable characters")],
            )
    window = timedelta(hours=settings.idempotency_window_hours)
    claim, suppressed = _claim_and_check(outbox, request, key, message_id, window)
    if claim is not None:
        if claim.replay is not None:
            return Accepted(int(claim.replay["status"]), claim.replay["body"], replayed=True)
        message_id = claim.message_id
    if len(suppressed) == len({r.key for r in request.recipients}):
        problems = [
            Problem(f"recipients[{n}]", f"suppressed since {s.since}: {s.reason}")
            for n, s in enumerate(suppressed.values())
        ]
        raise Conflict("Every recipient is on the suppression list; nothing was sent", problems)
    now = datetime.now(UTC)
    outbox.accept(message_id, request, suppressed, now)
    recipients = []
    for r in request.recipients:
        sup = suppressed.get(r.key)
        entry: dict[str, Any] = {"address": r.address, "status": "accepted"}
        if sup:
            entry = {
                "address": r.address,
                "status": "suppressed",
                "reason": sup.reason,
                "suppressedSince": sup.since,
            }
        recipients.append(entry)
    response = {
        "messageId": message_id,
        "status": "accepted",
        "acceptedAt": now.isoformat(timespec="microseconds"),
        "recipients": recipients,
        "lookupUrl": f"{base_url.rstrip('/')}/api/emails/{message_id}",
    }
    if key is not None:
        outbox.finish_idempotent(key, {"status": 202, "body": response})
    log.info(
        "send accepted: message=%s recipients=%d suppressed=%d",
        message_id,
        len(recipients),
        len(suppressed),
    )
    return Accepted(202, response, replayed=False)


EARLY_WAKE_S = 1.0  # a reserved slot this close is taken as due (clocks of two instances)
STALE_SLOT_S = 60  # a slot missed by more (the host was down) is reserved afresh: no burst


def send_queued(outbox: Outbox, work_item: str, now: datetime | None = None) -> str:
    """Process one work item; returns what happened (for logs and tests). `now` is the
    moment it runs (tests play a later wake-up with it)."""
    from .. import acs

    try:
        item = json.loads(work_item)
        message_id = str(item["messageId"])
        attempt = int(item.get("attempt", 0))
        slot = None if item.get("slot") is None else int(item["slot"])
    except (ValueError, KeyError, TypeError):
        log.error("send queue: unreadable work item dropped (%d bytes)", len(work_item))
        return "unreadable"
    settings = get_settings()
    now = now or datetime.now(UTC)
    row = outbox.message(message_id)
    if row is None:
        log.error("send queue: no message row for %s; dropped", message_id)
        return "missing"
    if row.get("sendState") in (SendState.SENT, SendState.FAILED):
        return "already-done"
    if _held(outbox, message_id, row, attempt, now):
        return "held"
    if slot is not None and now.timestamp() - slot > STALE_SLOT_S:
        slot = None  # its minute is long gone: sending now could exceed the window
    if slot is None:  # no slot yet: reserve one; a later one means sleeping until then
        reservation = outbox.reserve_send_slot(
            now, settings.send_rate_per_minute, settings.send_rate_per_hour
        )
        if not reservation.reserved:  # past the horizon: ask again within it, spread out
            spread = random.uniform(0, ratelimit.HORIZON_S / 2)  # noqa: S311 - jitter only
            delay = reservation.at - now.timestamp() - ratelimit.HORIZON_S + spread
            outbox.enqueue(message_id, attempt, delay_s=max(1.0, delay))
            return "rate-limited"
        slot = reservation.at
    if slot - now.timestamp() > EARLY_WAKE_S:
        outbox.enqueue(message_id, attempt, delay_s=slot - now.timestamp(), slot=slot)
        return "scheduled"
    claimed = outbox.claim(message_id, now)
    if claimed is None:
        if outbox.message(message_id) is not None:
            outbox.enqueue(message_id, attempt, delay_s=30)  # look again after the other worker
        return "claimed-elsewhere"
    message = outbox.payload(message_id, claimed)
    if message is None:
        _fail(outbox, message_id, "PayloadMissing", "The stored message content is gone.", now)
        return "failed"
    answer = acs.send(message, operation_id=message_id)
    if answer.accepted:
        sent = Fact(Status.SENT, now, "sent", sent_at=now)
        outbox.finish(message_id, SendState.SENT, sent, now, {"sentAt": now.isoformat()})
        log.info("send: message=%s handed to ACS (attempt %d)", message_id, attempt + 1)
        _watch(message_id, str(row.get("sender") or ""), message, now)
        return "sent"
    decision = policy.decide(answer.status, answer.error_code, answer.retry_after, attempt)
    if decision.verdict is policy.Verdict.PERMANENT:
        explanation = decision.explanation or ""
        if answer.error_message:
            explanation = f"{explanation} ACS said: {answer.error_message}"
        _fail(outbox, message_id, decision.code or "AcsRejected", explanation, now)
        return "failed"
    outbox.release(message_id)
    next_attempt = attempt + (1 if decision.verdict is policy.Verdict.BACKOFF else 0)
    outbox.enqueue(message_id, next_attempt, delay_s=decision.delay_s)
    log.warning(
        "send: message=%s ACS %s (%s); retry in %.0fs",
        message_id,
        answer.status,
        decision.verdict.value,
        decision.delay_s,
    )
    return decision.verdict.value


HOLD_RECHECK_S = 60  # how often a held message looks again whether its sender was resumed


def _held(outbox: Outbox, message_id: str, row: Any, attempt: int, now: datetime) -> bool:
    """Hold (never drop) a send whose sender domain is paused: re-enqueue it for later."""
    from ..senders import domain_of
    from ..services import sender_health

    domain = domain_of(row.get("sender"))
    if not domain or not sender_health().is_paused(domain):
        return False
    if row.get("sendState") != SendState.HELD:
        outbox.store.write_message(
            message_id, {"sendState": SendState.HELD, "heldSince": now.isoformat()}
        )
        log.warning("send: message=%s held, sender domain paused", message_id)
    outbox.enqueue(message_id, attempt, delay_s=HOLD_RECHECK_S)
    return True


def _watch(message_id: str, sender: str, message: dict[str, Any], now: datetime) -> None:
    """After a send: count it for the sender's rates, and watch for its final reports.

    Monitoring only: ACS has the message and `finish` recorded it, so a storage error here
    must not fail (and so re-run) the send; it is logged and the send stands.
    """
    from ..errors import Transient
    from ..rates import Counts
    from ..senders import domain_of
    from ..services import in_flight, sender_health

    recipients = message.get("recipients") or {}
    count = sum(len(recipients.get(kind) or []) for kind in ("to", "cc", "bcc"))
    try:
        sender_health().add(domain_of(sender), Counts(sent=count), now)
        in_flight().track(message_id, sender or None, now, get_settings().stuck_after_minutes)
    except Transient as exc:
        log.warning("send: message=%s sent, but not counted/watched (%s)", message_id, exc)


def fail_poisoned(outbox: Outbox, work_item: str) -> str:
    """A work item that kept raising: the message fails for good, visibly, payload deleted."""
    try:
        message_id = str(json.loads(work_item)["messageId"])
    except (ValueError, KeyError, TypeError):
        log.error("send poison queue: unreadable work item (%d bytes)", len(work_item))
        return "unreadable"
    row = outbox.message(message_id)
    if row is None or row.get("sendState") in (SendState.SENT, SendState.FAILED):
        return "already-done"
    _fail(
        outbox,
        message_id,
        "SendPoisoned",
        "Sending kept failing with an unexpected error until the retry budget was spent.",
        datetime.now(UTC),
    )
    return "failed"


def _fail(outbox: Outbox, message_id: str, code: str, explanation: str, now: datetime) -> None:
    classification = {
        "bounceType": None,
        "retryable": False,
        "suppress": False,
        "reason": "senderror",
        "smtpCode": None,
        "enhancedCode": None,
        "explanation": f"Not sent: {explanation}",
        "action": "Fix the cause named here and send again; no email went out.",
        "anymail": {"eventType": "failed", "rejectReason": "other"},
        "ses": None,
        "acsErrorCode": code,
    }
    fact = Fact(
        Status.FAILED,
        now,
        f"send-failed:{code}",
        acs_status=None,
        status_message=code,
        classification=classification,
    )
    outbox.finish(message_id, SendState.FAILED, fact, now, {"failureCode": code})
    from ..alerts import for_send_failure
    from ..services import alert_log

    alert_log().raise_alert(
        for_send_failure(message_id=message_id, code=code, explanation=explanation, at=now)
    )
    log.warning("send: message=%s failed for good (%s)", message_id, code)
