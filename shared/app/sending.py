"""Send use cases: accept a request (HTTP) durably, send one queued message (queue worker), and
fail a poisoned one.

The worker schedules its own retries by re-enqueueing with a visibility delay instead of
raising, so throttling (429, our own rate limit) never uses up the queue's dequeue count; only
unexpected errors (storage down, bugs) raise, and after maxDequeueCount those land in the poison
queue, whose handler fails the message for good. Either way nothing accepted is silently lost.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared.core import keys, message_ids, outcomes
from shared.core.addresses import canonical
from shared.core.alerts import for_send_failure
from shared.core.errors import Conflict, InvalidInput, Problem, Transient
from shared.core.rates import Counts, domain_of
from shared.core.replies import Reply
from shared.core.sending import policy, ratelimit
from shared.core.sending.validation import (
    SenderPolicy,
    check_after_suppression,
    parse_send_request,
)
from shared.core.state import Fact, apply_fact, iso, parse_iso
from shared.core.status import SendState, Status, claimed_by_another
from shared.edge.tables import FANOUT, run_together

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.core.sending.validation import SendRequest
    from shared.core.settings import Settings
    from shared.core.suppression import Suppression
    from shared.edge.acs import AcsEmail
    from shared.edge.alert_log import AlertLog
    from shared.edge.inflight import InFlight
    from shared.edge.messages import MessageStore
    from shared.edge.outbox import IdempotencyClaim, Outbox
    from shared.edge.senders import SenderHealth
    from shared.edge.suppressions import SuppressionList

log = logging.getLogger(__name__)


class OwnOutcomes(Protocol):
    """Told when we decide outcomes ourselves (see `shared.app.activity.ActivityFeed`)."""

    def own_outcomes(self, message_id: str) -> None: ...


MAX_IDEMPOTENCY_KEY = 255
REPLAY_WAIT_S = 3.0  # how long a concurrent retry waits for the first request's answer
EARLY_WAKE_S = 1.0  # a reserved slot this close is taken as due (clocks of two instances)
STALE_SLOT_S = 60  # a slot missed by more (the host was down) is reserved afresh: no burst
HOLD_RECHECK_S = 60  # how often a held message looks again whether its sender was resumed


class Sending:
    def __init__(
        self,
        settings: Settings,
        store: MessageStore,
        outbox: Outbox,
        suppressions: SuppressionList,
        senders: SenderHealth,
        in_flight: InFlight,
        alerts: AlertLog,
        acs: AcsEmail,
        activity: OwnOutcomes | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.outbox = outbox
        self.suppressions = suppressions
        self.senders = senders
        self.in_flight = in_flight
        self.alerts = alerts
        self.acs = acs
        self.activity = activity
        self.sender_policy = SenderPolicy(
            sender_domain=settings.sender_domain,
            allowlist=settings.sender_allowlist,
            default_sender=settings.default_sender,
        )

    # --- accept (HTTP) ------------------------------------------------------------------

    def accept(
        self,
        body: bytes,
        content_type: str | None,
        idempotency_key: str | None,
        base_url: str,
    ) -> Reply:
        """202 with the message id, or the stored answer of an earlier request with the same
        Idempotency-Key (header `Idempotent-Replayed: true`)."""
        request = parse_send_request(body, content_type, self.sender_policy)
        # A tagged id: its reports are known as ours on any instance (core/message_ids.py).
        message_id = message_ids.new_id(self.settings.address_hash_key.encode())
        key = None
        if idempotency_key is not None:
            key = idempotency_key.strip()
            if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
                raise InvalidInput(
                    "Invalid Idempotency-Key",
                    [Problem("Idempotency-Key", "1 to 255 printable characters")],
                )
        claim, suppressed = self._claim_and_check(request, key, message_id)
        if claim is not None:
            if claim.mismatch:
                raise Conflict(
                    "Idempotency-Key was already used with a different request",
                    [Problem("Idempotency-Key", "reuse it only to retry the identical request")],
                )
            if claim.replay is not None:
                stored = claim.replay["body"]
                return Reply(int(claim.replay["status"]), stored, _headers(stored, replayed=True))
            message_id = claim.message_id
        if len(suppressed) == len({r.key for r in request.recipients}):
            problems = [
                Problem(f"recipients[{n}]", f"suppressed since {s.since}: {s.reason}")
                for n, s in enumerate(suppressed.values())
            ]
            raise Conflict("Every recipient is on the suppression list; nothing was sent", problems)
        if problems := check_after_suppression(request, suppressed.keys()):
            raise Conflict(
                "ACS needs a 'to' recipient that is not suppressed; nothing was sent", problems
            )
        now = datetime.now(UTC)
        earlier = self._store_accepted(message_id, request, suppressed, now, key)
        if earlier is not None and key is not None:
            # The same Idempotency-Key is being (or was) accepted by another request: answer
            # with its response and write nothing (a second index entry, a second work item).
            replay = self._await_response(key)
            if replay is not None:
                return Reply(int(replay["status"]), replay["body"], _headers(replay["body"], True))
            # It crashed (or stalls) after its transaction: finish its steps, under its times.
            now = parse_iso(earlier.get("acceptedAt")) or now
            self._finish_accept(message_id, request, suppressed, now, earlier)
        response = self._accepted_body(message_id, request, suppressed, now, base_url)
        if key is not None:
            self.outbox.finish_idempotent(key, {"status": 202, "body": response})
        log.info(
            "send accepted: message=%s recipients=%d suppressed=%d",
            message_id,
            len(request.recipients),
            len(suppressed),
        )
        return Reply(202, response, _headers(response, replayed=False))

    def _accepted_body(
        self,
        message_id: str,
        request: SendRequest,
        suppressed: Mapping[str, Suppression],
        now: datetime,
        base_url: str,
    ) -> dict[str, Any]:
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
        return {
            "messageId": message_id,
            "status": "accepted",
            "acceptedAt": now.isoformat(timespec="microseconds"),
            "recipients": recipients,
            "lookupUrl": f"{base_url.rstrip('/')}/api/emails/{message_id}",
        }

    def _await_response(self, key: str) -> Mapping[str, Any] | None:
        """The response another request under `key` stored, waiting up to REPLAY_WAIT_S for
        it to finish (its remaining steps take milliseconds); None when it does not."""
        deadline = time.monotonic() + REPLAY_WAIT_S
        while True:
            stored = self.outbox.stored_response(key)
            if stored is not None or time.monotonic() >= deadline:
                return stored
            time.sleep(0.05)

    def _claim_and_check(
        self, request: SendRequest, key: str | None, message_id: str
    ) -> tuple[IdempotencyClaim | None, dict[str, Suppression]]:
        """The Idempotency-Key claim and the suppression reads, at once: neither needs the other.

        The claim runs on the fan-out pool and the reads on this thread (which fans them out in
        turn), so no pool task waits on another. The claim's answer comes first: a replay or a
        422 stands even when a read failed (the reads were then not needed).
        """
        claiming = None
        if key is not None:
            window = timedelta(hours=self.settings.idempotency_window_hours)
            claiming = FANOUT.submit(
                self.outbox.begin_idempotent, key, request.fingerprint(), message_id, window
            )
        addresses = [r.address for r in request.recipients]
        try:
            suppressed = self.suppressions.active_for(addresses, FANOUT)
        except Exception:
            if claiming is None:
                raise
            claim = claiming.result()
            if claim.replay is None and not claim.mismatch:
                raise
            return claim, {}
        return (claiming.result() if claiming is not None else None), suppressed

    def _store_accepted(
        self,
        message_id: str,
        request: SendRequest,
        suppressed: Mapping[str, Suppression],
        now: datetime,
        key: str | None = None,
    ) -> Any:
        """One transaction (message row, payload, a status row per recipient), then, together,
        the recipient index rows, the expiry entry and the work item. Returns None when done, or
        the message row of an earlier accept of this id (same Idempotency-Key), leaving the rest
        to the caller."""
        message = request.to_acs_message()
        for kind in ("to", "cc", "bcc"):
            listed = message.get("recipients", {}).get(kind)
            if listed:
                message["recipients"][kind] = [
                    r for r in listed if canonical(r["address"]) not in suppressed
                ]
        payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        inline = self.store.fits_inline(payload)
        if not inline:
            self.outbox.put_payload_blob(message_id, payload)
        summary = {
            "sender": request.sender,
            "acceptedAt": iso(now),
            "tags": json.dumps(dict(request.tags)) if request.tags else None,
            "metadata": json.dumps(dict(request.metadata)) if request.metadata else None,
            "recipientCount": len(request.recipients),
            "sendState": SendState.QUEUED.value,
            "payload": "table" if inline else "blob",
            "sizeBytes": request.size,
            # where its Idempotency row is, for retention and erasure (its answer names the
            # recipients)
            "idempotencyKey": self.outbox.key_hash(key) if key is not None else None,
        }
        rows = self._recipient_rows(message_id, request, suppressed, now)
        earlier = self.store.accept(message_id, summary, payload if inline else None, rows)
        if earlier is not None:
            return earlier
        self._index_and_enqueue(message_id, request, suppressed, rows, now)
        return None

    def _recipient_rows(
        self,
        message_id: str,
        request: SendRequest,
        suppressed: Mapping[str, Suppression],
        now: datetime,
    ) -> list[dict[str, Any]]:
        facts = {
            "sizeBytes": request.size,
            # "" for none (kept by the table, unlike None: the row says it has no labels)
            "tags": json.dumps(dict(request.tags)) if request.tags else "",
            "metadata": json.dumps(dict(request.metadata)) if request.metadata else "",
        }
        rows = []
        for recipient in request.recipients:
            sup = suppressed.get(recipient.key)
            fact = Fact(
                Status.SUPPRESSED if sup else Status.ACCEPTED,
                now,
                "accept",
                classification=outcomes.suppressed_by_list(sup.since, sup.reason) if sup else None,
                sender=request.sender,
                accepted_at=now,
            )
            row = apply_fact(None, fact, recipient.address, message_id)
            assert row is not None
            # Size, tags and metadata ride along in the row (later facts keep them): the
            # projections of a report (rollups, outcome events, activity) need no read of the
            # message row (`deliverability.FACTS`).
            rows.append({**row, "updatedAt": iso(now), **facts})
        return rows

    def _finish_accept(
        self,
        message_id: str,
        request: SendRequest,
        suppressed: Mapping[str, Suppression],
        accepted_at: datetime,
        earlier: Mapping[str, Any],
    ) -> None:
        """Complete an earlier accept that stopped after its transaction: the same index rows
        (keyed on its accept time, so rewriting them adds nothing) and, while it is still
        queued, the work item (a second item at worst, which the worker's claim makes harmless)."""
        if earlier.get("sendState") != SendState.QUEUED:
            return
        rows = self._recipient_rows(message_id, request, suppressed, accepted_at)
        self._index_and_enqueue(message_id, request, suppressed, rows, accepted_at)

    def _index_and_enqueue(
        self,
        message_id: str,
        request: SendRequest,
        suppressed: Mapping[str, Suppression],
        rows: list[dict[str, Any]],
        accepted_at: datetime,
    ) -> None:
        # Only now, with the rows committed: the worker drops a work item whose message row it
        # cannot find, and the history must never point at a message that was not accepted.
        # The index writes and the queue put depend on nothing but the transaction, so they go
        # out together; the caller replies 202 only once every one of them succeeded.
        writes: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
            (self.store.write_index, (keys.address_key(row["address"]), message_id, row))
            for row in rows
        ]
        writes.append((self.store.note_expiry, (message_id, accepted_at)))  # retention's list
        if len(suppressed) < len({r.key for r in request.recipients}):
            writes.append((self.outbox.enqueue, (message_id, 0)))
        run_together(writes)
        if suppressed and self.activity is not None:  # after: it reads the rows back
            self.activity.own_outcomes(message_id)

    # --- send (queue worker) ------------------------------------------------------------

    def send_queued(self, work_item: str, now: datetime | None = None) -> str:
        """Process one work item; returns what happened (for logs and tests). `now` is the
        moment it runs (tests play a later wake-up with it)."""
        try:
            item = json.loads(work_item)
            message_id = str(item["messageId"])
            attempt = int(item.get("attempt", 0))
            slot = None if item.get("slot") is None else int(item["slot"])
        except (ValueError, KeyError, TypeError):
            log.error("send queue: unreadable work item dropped (%d bytes)", len(work_item))
            return "unreadable"
        settings = self.settings
        now = now or datetime.now(UTC)
        row = self.store.message(message_id)
        if row is None:
            log.error("send queue: no message row for %s; dropped", message_id)
            return "missing"
        if row.get("sendState") in (SendState.SENT, SendState.FAILED):
            return "already-done"
        if self._held(message_id, row, attempt, now):
            return "held"
        if claimed_by_another(row, now):  # a duplicate work item: no send slot spent on it
            self.outbox.enqueue(message_id, attempt, delay_s=30)
            return "claimed-elsewhere"
        if slot is not None and now.timestamp() - slot > STALE_SLOT_S:
            slot = None  # its minute is long gone: sending now could exceed the window
        if slot is None:  # no slot yet: reserve one; a later one means sleeping until then
            reservation = self.outbox.reserve_send_slot(
                now, settings.send_rate_per_minute, settings.send_rate_per_hour
            )
            if not reservation.reserved:  # past the horizon: ask again within it, spread out
                spread = random.uniform(0, ratelimit.HORIZON_S / 2)  # noqa: S311 - jitter only
                delay = reservation.at - now.timestamp() - ratelimit.HORIZON_S + spread
                self.outbox.enqueue(message_id, attempt, delay_s=max(1.0, delay))
                return "rate-limited"
            slot = reservation.at
        if slot - now.timestamp() > EARLY_WAKE_S:
            self.outbox.enqueue(message_id, attempt, delay_s=slot - now.timestamp(), slot=slot)
            return "scheduled"
        claimed = self.store.claim(message_id, now)
        if claimed is None:
            if self.store.message(message_id) is not None:
                self.outbox.enqueue(message_id, attempt, delay_s=30)  # after the other worker
            return "claimed-elsewhere"
        message = self._payload(message_id, claimed)
        if message is None:
            self._fail(message_id, "PayloadMissing", "The stored message content is gone.", now)
            return "failed"
        answer = self.acs.send(message, operation_id=message_id)
        if answer.accepted:
            sent = Fact(Status.SENT, now, "sent", sent_at=now)
            self._finish(message_id, SendState.SENT, sent, now, {"sentAt": now.isoformat()})
            log.info("send: message=%s handed to ACS (attempt %d)", message_id, attempt + 1)
            self._watch(message_id, str(row.get("sender") or ""), message, now)
            return "sent"
        decision = policy.decide(answer.status, answer.error_code, answer.retry_after, attempt)
        if decision.verdict is policy.Verdict.PERMANENT:
            explanation = decision.explanation or ""
            if answer.error_message:
                explanation = f"{explanation} ACS said: {answer.error_message}"
            self._fail(message_id, decision.code or "AcsRejected", explanation, now)
            return "failed"
        self.store.release(message_id)
        next_attempt = attempt + (1 if decision.verdict is policy.Verdict.BACKOFF else 0)
        self.outbox.enqueue(message_id, next_attempt, delay_s=decision.delay_s)
        log.warning(
            "send: message=%s ACS %s (%s); retry in %.0fs",
            message_id,
            answer.status,
            decision.verdict.value,
            decision.delay_s,
        )
        return decision.verdict.value

    def _payload(self, message_id: str, row: Mapping[str, Any]) -> dict[str, Any] | None:
        if row.get("payload") == "blob":
            text = self.outbox.payload_blob(message_id)
        else:
            text = self.store.payload(message_id)
        return None if text is None else dict(json.loads(text))

    def _finish(
        self,
        message_id: str,
        state: SendState,
        fact: Fact,
        now: datetime,
        extra: Mapping[str, Any],
    ) -> None:
        before = self.store.finish(message_id, state, fact, now, extra)
        if before is not None and before.get("payload") == "blob":
            self.outbox.delete_payload_blob(message_id)

    def _held(self, message_id: str, row: Any, attempt: int, now: datetime) -> bool:
        """Hold (never drop) a send whose sender domain is paused: re-enqueue it for later."""
        domain = domain_of(row.get("sender"))
        if not domain or not self.senders.is_paused(domain):
            return False
        if row.get("sendState") != SendState.HELD:
            self.store.write_message(
                message_id, {"sendState": SendState.HELD.value, "heldSince": now.isoformat()}
            )
            log.warning("send: message=%s held, sender domain paused", message_id)
        self.outbox.enqueue(message_id, attempt, delay_s=HOLD_RECHECK_S)
        return True

    def _watch(self, message_id: str, sender: str, message: dict[str, Any], now: datetime) -> None:
        """After a send: count it for the sender's rates, and watch for its final reports.

        Monitoring only: ACS has the message and `finish` recorded it, so a storage error here
        must not fail (and so re-run) the send; it is logged and the send stands.
        """
        recipients = message.get("recipients") or {}
        count = sum(len(recipients.get(kind) or []) for kind in ("to", "cc", "bcc"))
        try:
            self.senders.add(domain_of(sender), Counts(sent=count), now)
            self.in_flight.track(message_id, sender or None, now, self.settings.stuck_after_minutes)
        except Transient as exc:
            log.warning("send: message=%s sent, but not counted/watched (%s)", message_id, exc)

    # --- poison queue -------------------------------------------------------------------

    def fail_poisoned(self, work_item: str) -> str:
        """A work item that kept raising: the message fails for good, visibly, payload gone."""
        try:
            message_id = str(json.loads(work_item)["messageId"])
        except (ValueError, KeyError, TypeError):
            log.error("send poison queue: unreadable work item (%d bytes)", len(work_item))
            return "unreadable"
        row = self.store.message(message_id)
        if row is None or row.get("sendState") in (SendState.SENT, SendState.FAILED):
            return "already-done"
        self._fail(
            message_id,
            "SendPoisoned",
            "Sending kept failing with an unexpected error until the retry budget was spent.",
            datetime.now(UTC),
        )
        return "failed"

    def _fail(self, message_id: str, code: str, explanation: str, now: datetime) -> None:
        fact = Fact(
            Status.FAILED,
            now,
            f"send-failed:{code}",
            acs_status=None,
            status_message=code,
            classification=outcomes.not_sent(code, explanation),
        )
        self._finish(message_id, SendState.FAILED, fact, now, {"failureCode": code})
        if self.activity is not None:
            try:
                self.activity.own_outcomes(message_id)
            except Transient as exc:  # the failure is recorded; a retry would find it done
                log.warning(
                    "send: message=%s failed, not in the activity feed (%s)", message_id, exc
                )
        self.alerts.raise_alert(
            for_send_failure(
                message_id=message_id,
                code=code,
                explanation=explanation,
                at=now,
                shown=self.settings.address_policy(),
            )
        )
        log.warning("send: message=%s failed for good (%s)", message_id, code)


def _headers(body: Mapping[str, Any], replayed: bool) -> dict[str, str]:
    headers = {"Location": str(body["lookupUrl"])} if body.get("lookupUrl") else {}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return headers
