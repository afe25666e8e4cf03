"""Send use cases: accept a request (HTTP) durably, send one queued message (queue worker), and
fail a poisoned one.

The worker schedules its own retries by re-enqueueing with a visibility delay instead of
raising, so throttling (429, our own rate limit) never uses up the queue's dequeue count; only
unexpected errors (storage down, bugs) raise, and after maxDequeueCount those land in the poison
queue, whose handler fails the message for good. Either way nothing accepted is silently lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import wait
from dataclasses import dataclass
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
from shared.edge.tables import AFTER_REPLY, FANOUT, MAX_CONFLICT_RETRIES, run_together

if TYPE_CHECKING:
    from shared.core.sending.validation import SendRequest
    from shared.core.settings import Settings
    from shared.core.suppression import Suppression
    from shared.edge.acs import AcsEmail
    from shared.edge.alert_log import AlertLog
    from shared.edge.inflight import InFlight
    from shared.edge.messages import MessageStore, SendRows
    from shared.edge.outbox import Outbox
    from shared.edge.senders import SenderHealth
    from shared.edge.suppressions import SuppressionList

log = logging.getLogger(__name__)


class OwnOutcomes(Protocol):
    """Told when we decide outcomes ourselves (see `shared.app.activity.ActivityFeed`)."""

    def own_outcomes(self, message_id: str) -> None: ...


class LateErasure(Protocol):
    """Told when an accepted message is filed (see `shared.app.privacy.Privacy.erase_late`)."""

    def erase_late(
        self, message_id: str, rows: Sequence[Mapping[str, Any]], accepted_at: datetime
    ) -> int: ...


MAX_IDEMPOTENCY_KEY = 255
REPLAY_WAIT_S = 3.0  # how long a retry waits for the accept it repeats to reach its queue put
REPLAY_POLL_S = 0.05
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
        erasures: LateErasure | None = None,
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
        self.erasures = erasures
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
        """202 with the message id, or the answer of an earlier request with the same
        Idempotency-Key (header `Idempotent-Replayed: true`).

        Two rounds of storage requests before the reply: the Messages transaction (message row,
        payload, a status row per recipient) beside the suppression reads, then the queue put.
        The recipient-index entries, a look at the erasures running and the expiry entry follow
        the reply (`_enqueue_and_file`, `_file`).
        The transaction takes nobody as suppressed (as nearly always holds); when someone is, a
        second transaction corrects the rows before anything is queued, or the message is
        withdrawn and the request refused. With an Idempotency-Key the message id is derived
        from it (`message_ids.for_key`, under the window's epoch), so that transaction is the
        key's claim: a retry fails its create (409) and is answered from the message row
        (`_replay`).
        """
        request = parse_send_request(body, content_type, self.sender_policy)
        key = _checked_key(idempotency_key)
        for _ in range(MAX_CONFLICT_RETRIES):
            now = datetime.now(UTC)
            claimed = self._claim_and_check(request, key, now)
            if claimed.created:
                if claimed.suppressed is None:  # nothing is queued unchecked: take it back
                    self._withdraw(claimed.message_id, request, claimed.inline)
                    raise claimed.error or Transient("suppression list unreadable")
                return self._complete(
                    claimed.message_id, request, claimed.suppressed, now, {}, claimed.inline,
                    base_url, replayed=False, written=claimed.rows,
                )  # fmt: skip
            reply = self._replay(claimed, request, base_url)
            if reply is not None:
                return reply
            # Its message was withdrawn meanwhile (that request was refused): claim the key anew.
        raise Transient("the message of this Idempotency-Key kept changing under us")

    def _claim_and_check(self, request: SendRequest, key: str | None, now: datetime) -> _Claimed:
        """Round one: the transaction and the suppression reads at once (neither needs the
        other); with a key also a point read of the message the key named in the previous
        window epoch, which a retry within the window may belong to.

        The transaction and that read run on the fan-out pool and the suppression reads on this
        thread (which fans them out in turn), so no pool task waits on another. A failed read
        is kept, not raised: a replay does not need the reads.
        """
        secret = self.settings.address_hash_key.encode()
        window = timedelta(hours=self.settings.idempotency_window_hours)
        before = None
        if key is None:
            message_id = message_ids.new_id(secret)
        else:
            epoch = int(now.timestamp() // window.total_seconds())
            message_id = message_ids.for_key(secret, key, epoch)
            before = message_ids.for_key(secret, key, epoch - 1)
        payload = _payload_text(request, {})
        inline = self.store.fits_inline(payload)
        summary = {
            "sender": request.sender,
            "acceptedAt": iso(now),
            "tags": json.dumps(dict(request.tags)) if request.tags else None,
            "metadata": json.dumps(dict(request.metadata)) if request.metadata else None,
            "recipientCount": len(request.recipients),
            "sendState": SendState.QUEUED.value,
            "payload": "table" if inline else "blob",  # a blob is written once checked
            "sizeBytes": request.size,
            # The Idempotency-Key's record: a retry must be this request again. (Its answer
            # is rebuilt from the retry itself and this row: no address is stored twice.)
            "fingerprint": request.fingerprint() if key is not None else None,
        }
        rows = self._recipient_rows(message_id, request, {}, now)
        storing = FANOUT.submit(
            self.store.accept, message_id, summary, payload if inline else None, rows
        )
        looking = FANOUT.submit(self.store.message, before) if before is not None else None
        suppressed: dict[str, Suppression] | None = None
        error: Exception | None = None
        try:
            suppressed = self.suppressions.active_for([r.address for r in request.recipients])
        except Exception as exc:
            error = exc
        wait([f for f in (storing, looking) if f is not None])
        existing = storing.result()  # a failed transaction stored nothing: raise
        try:
            earlier = looking.result() if looking is not None else None
        except Exception:
            if existing is None:
                self._withdraw(message_id, request, inline)
            raise
        accepted = parse_iso((earlier or {}).get("acceptedAt"))
        if earlier is not None and accepted is not None and now - accepted < window:
            # A retry of a request of the previous epoch, within the window: that is the key's
            # message (the one this transaction created, if it did, is taken back).
            if existing is None:
                self._withdraw(message_id, request, inline)
            assert before is not None
            return _Claimed(False, before, earlier, suppressed, error, inline, None)
        if existing is None:
            return _Claimed(True, message_id, None, suppressed, error, inline, rows)
        return _Claimed(False, message_id, existing, suppressed, error, inline, None)

    def _replay(self, claimed: _Claimed, request: SendRequest, base_url: str) -> Reply | None:
        """Answer a request whose Idempotency-Key an earlier one holds, writing nothing: 422
        when it was a different request, else the earlier one's answer, rebuilt from this
        request and the message row. None when that message was withdrawn meanwhile.

        An earlier accept still queued may not have reached its queue put. Its expiry entry,
        written after the queue put and the index entries (`_file`), says it did; one that
        failed there marked its row (`queueFailedAt`). Until REPLAY_WAIT_S after its accept a
        retry waits for that entry (a concurrent retry: the first request is finishing); past
        that, or when marked, the retry finishes the accept itself under its times, with its
        own suppression reads. An accept writes that entry only after its queue put succeeded,
        so a retry never answers for a message that was not queued; a second work item at
        worst (the first request died between its queue put and the entry, or is slower than
        REPLAY_WAIT_S), which the worker's claim makes harmless.
        """
        message_id, row = claimed.message_id, claimed.row
        fingerprint = request.fingerprint()
        while row is not None:
            if row.get("fingerprint") != fingerprint:
                raise Conflict(
                    "Idempotency-Key was already used with a different request",
                    [Problem("Idempotency-Key", "reuse it only to retry the identical request")],
                )
            accepted_at = parse_iso(row.get("acceptedAt")) or datetime.now(UTC)
            if row.get("sendState") != SendState.QUEUED:  # the worker has had it
                return self._answer(message_id, request, row, base_url)
            if not row.get("queueFailedAt"):
                if self.store.expiry_noted(message_id, accepted_at):
                    row = self.store.message(message_id)  # as corrected before its queue put
                    return None if row is None else self._answer(message_id, request, row, base_url)
                if (datetime.now(UTC) - accepted_at).total_seconds() < REPLAY_WAIT_S:
                    time.sleep(REPLAY_POLL_S)
                    row = self.store.message(message_id)
                    continue
            if claimed.suppressed is None:
                raise claimed.error or Transient("suppression list unreadable")
            log.warning("send: message=%s finished by a retry of its request", message_id)
            return self._complete(
                message_id, request, claimed.suppressed, accepted_at,
                _recorded_suppressions(row, request), row.get("payload") != "blob",
                base_url, replayed=True,
            )  # fmt: skip
        return None

    def _answer(
        self, message_id: str, request: SendRequest, row: Mapping[str, Any], base_url: str
    ) -> Reply:
        held = _recorded_suppressions(row, request)
        body = self._accepted_body(message_id, request, held, str(row["acceptedAt"]), base_url)
        return Reply(202, body, _headers(body, replayed=True))

    def _complete(
        self,
        message_id: str,
        request: SendRequest,
        suppressed: Mapping[str, Suppression],
        accepted_at: datetime,
        recorded: Mapping[str, Suppression | _Held],
        inline: bool,
        base_url: str,
        *,
        replayed: bool,
        written: list[dict[str, Any]] | None = None,
    ) -> Reply:
        """After the transaction: refuse (and withdraw) when nobody sendable is left, correct
        the rows when the suppression reads differ from what they `recorded`, then the queue
        put (and, after the reply, the index rows and the expiry entry). `written`: the
        recipient rows as this request's transaction wrote them (nobody suppressed)."""
        if len(suppressed) == len({r.key for r in request.recipients}):
            problems = [
                Problem(f"recipients[{n}]", f"suppressed since {s.since}: {s.reason}")
                for n, s in enumerate(suppressed.values())
            ]
            self._withdraw(message_id, request, inline)
            raise Conflict("Every recipient is on the suppression list; nothing was sent", problems)
        if problems := check_after_suppression(request, suppressed.keys()):
            self._withdraw(message_id, request, inline)
            raise Conflict(
                "ACS needs a 'to' recipient that is not suppressed; nothing was sent", problems
            )
        payload = _payload_text(request, suppressed) if suppressed or not inline else None
        if not inline:  # large payloads only: one more round, before anything can send it
            assert payload is not None
            self.outbox.put_payload_blob(message_id, payload)
        if written is None or suppressed:
            rows = self._recipient_rows(message_id, request, suppressed, accepted_at)
        else:
            rows = written  # as committed: nobody turned out to be suppressed
        if set(suppressed) != set(recorded):
            changed = set(suppressed) ^ set(recorded)
            self.store.correct_accept(
                message_id,
                {"suppressed": _suppressed_field(request, suppressed)},
                payload if inline else None,
                [row for r, row in zip(request.recipients, rows, strict=True) if r.key in changed],
            )
        self._enqueue_and_file(message_id, suppressed, rows, accepted_at)
        body = self._accepted_body(message_id, request, suppressed, iso(accepted_at), base_url)
        log.info(
            "send accepted: message=%s recipients=%d suppressed=%d",
            message_id,
            len(request.recipients),
            len(suppressed),
        )
        return Reply(202, body, _headers(body, replayed=replayed))

    def _withdraw(self, message_id: str, request: SendRequest, inline: bool) -> None:
        """Take back an accept's transaction: nothing was queued for it."""
        self.store.withdraw_accept(message_id, [r.address for r in request.recipients], inline)
        if not inline:
            self.outbox.delete_payload_blob(message_id)

    def _accepted_body(
        self,
        message_id: str,
        request: SendRequest,
        suppressed: Mapping[str, Suppression | _Held],
        accepted_at: str,
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
            "acceptedAt": accepted_at,
            "recipients": recipients,
            "lookupUrl": f"{base_url.rstrip('/')}/api/emails/{message_id}",
        }

    def _recipient_rows(
        self,
        message_id: str,
        request: SendRequest,
        suppressed: Mapping[str, Suppression | _Held],
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

    def _enqueue_and_file(
        self,
        message_id: str,
        suppressed: Mapping[str, Suppression],
        rows: list[dict[str, Any]],
        accepted_at: datetime,
    ) -> None:
        # Only now, with the rows committed (and corrected): the worker drops a work item whose
        # message row it cannot find, and the history must never point at a message that was
        # not accepted. The queue put is the last request before the 202 (someone is sendable:
        # `_complete` refused the request otherwise); a failure marks the row, so a retry of
        # the request finishes it. The recipient-index entries, then the expiry entry, go out
        # after the reply (`_file`, milliseconds later): the expiry entry last, so that it
        # says "queued and filed". A retry under the same Idempotency-Key waits for it
        # (`_replay`), and the worker reads it before it handles the accept's own work item
        # and files the message itself when it is missing (`_read_and_file`): a host that died
        # right after its 202 leaves nothing unfiled.
        try:
            self.outbox.enqueue(message_id, 0, accepted_at=iso(accepted_at))
        except Exception:
            with contextlib.suppress(Exception):  # best effort: the request fails either way
                failed = {"queueFailedAt": iso(datetime.now(UTC))}
                self.store.write_message(message_id, failed)
            raise
        AFTER_REPLY.submit("filing an accepted message", self._file, message_id, rows, accepted_at)
        if suppressed and self.activity is not None:  # after: it reads the rows back
            self.activity.own_outcomes(message_id)

    def _file(self, message_id: str, rows: list[dict[str, Any]], accepted_at: datetime) -> int:
        """Put an accepted message in its recipients' histories (index entries, at once), erase
        from it any recipient an erasure ran for meanwhile (it may have looked at the history
        before these entries were there: `Privacy.erase_late`), then file it in the retention
        index (the expiry entry: the sign that all of it landed). Returns how many recipients
        were erased."""
        run_together(
            [
                (self.store.write_index, (keys.address_key(row["address"]), message_id, row))
                for row in rows
                if row.get("address")
            ]
        )
        erased = (
            0 if self.erasures is None else self.erasures.erase_late(message_id, rows, accepted_at)
        )
        self.store.note_expiry(message_id, accepted_at)
        return erased

    def _read_and_file(self, message_id: str, accepted_at: datetime) -> SendRows:
        """The rows of the accept's own work item, read beside the message's expiry entry;
        when that is missing (the accept's host died before its after-reply writes, or they
        are still on the wire) the message is filed here, before anything is sent. A failure
        raises: the work item comes back and this runs again."""
        noted = FANOUT.submit(self.store.expiry_noted, message_id, accepted_at)
        try:
            rows = self.store.send_rows(message_id)
        finally:
            wait([noted])
        if rows.message is not None and not noted.result():
            log.info("send: message=%s filed by the worker", message_id)
            if self._file(message_id, rows.status, accepted_at):
                rows = self.store.send_rows(message_id)  # someone was erased: what is left
        return rows

    # --- send (queue worker) ------------------------------------------------------------

    def send_queued(self, work_item: str, now: datetime | None = None) -> str:
        """Process one work item; returns what happened (for logs and tests). `now` is the
        moment it runs (tests play a later wake-up with it)."""
        try:
            item = json.loads(work_item)
            message_id = str(item["messageId"])
            attempt = int(item.get("attempt", 0))
            slot = None if item.get("slot") is None else int(item["slot"])
            accepted_at = parse_iso(item.get("acceptedAt"))
        except (ValueError, KeyError, TypeError):
            log.error("send queue: unreadable work item dropped (%d bytes)", len(work_item))
            return "unreadable"
        settings = self.settings
        now = now or datetime.now(UTC)
        # The message row, its payload and its status rows: one request (`send_rows`).
        if accepted_at is not None:
            rows = self._read_and_file(message_id, accepted_at)
        else:
            rows = self.store.send_rows(message_id)
        row = rows.message
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
        claimed = self.store.claim(message_id, now, row)  # under the ETag read above
        if claimed is None:
            if self.store.message(message_id) is not None:
                self.outbox.enqueue(message_id, attempt, delay_s=30)  # after the other worker
            return "claimed-elsewhere"
        inline = rows.payload
        if claimed.get("payloadChangedAt") != row.get("payloadChangedAt"):
            inline = self.store.payload(message_id)  # an erasure changed it since it was read
        message = self._payload(message_id, claimed, inline)
        if message is None:
            self._fail(message_id, "PayloadMissing", "The stored message content is gone.", now)
            return "failed"
        answer = self.acs.send(message, operation_id=message_id)
        if answer.accepted:
            sent = Fact(Status.SENT, now, "sent", sent_at=now)
            done = {"sentAt": now.isoformat()}
            self._finish(message_id, SendState.SENT, sent, now, done, claimed, rows.status)
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

    def _payload(
        self, message_id: str, row: Mapping[str, Any], inline: str | None
    ) -> dict[str, Any] | None:
        """The message to hand to ACS: from its blob, or the inline text read with its row."""
        text = self.outbox.payload_blob(message_id) if row.get("payload") == "blob" else inline
        return None if text is None else dict(json.loads(text))

    def _finish(
        self,
        message_id: str,
        state: SendState,
        fact: Fact,
        now: datetime,
        extra: Mapping[str, Any],
        message_row: Mapping[str, Any] | None = None,
        status_rows: list[Any] | None = None,
    ) -> None:
        before = self.store.finish(message_id, state, fact, now, extra, message_row, status_rows)
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
        must not fail (and so re-run) the send; it is logged and the send stands. The count is
        batched per instance (`add_soon`: one counter write per domain and minute, within 5 s;
        a crash loses at most those seconds of counts), so a send costs no counter requests.
        """
        recipients = message.get("recipients") or {}
        count = sum(len(recipients.get(kind) or []) for kind in ("to", "cc", "bcc"))
        try:
            self.senders.add_soon(domain_of(sender), Counts(sent=count), now)
            self.in_flight.track(message_id, sender or None, now, self.settings.stuck_after_minutes)
        except Transient as exc:
            log.warning("send: message=%s sent, but not counted/watched (%s)", message_id, exc)

    # --- poison queue -------------------------------------------------------------------

    def fail_poisoned(self, work_item: str) -> str:
        """A work item that kept raising: the message fails for good, visibly, payload gone."""
        try:
            item = json.loads(work_item)
            message_id = str(item["messageId"])
            accepted_at = parse_iso(item.get("acceptedAt"))
        except (ValueError, KeyError, TypeError):
            log.error("send poison queue: unreadable work item (%d bytes)", len(work_item))
            return "unreadable"
        if accepted_at is not None:  # the accept's own item: filed, if it can be, before failing
            try:
                row = self._read_and_file(message_id, accepted_at).message
            except Transient as exc:
                log.warning("send poison queue: message=%s not filed (%s)", message_id, exc)
                row = self.store.message(message_id)
        else:
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


@dataclass(frozen=True, slots=True)
class _Claimed:
    """Round one of an accept: whose the message is, and what the suppression reads found."""

    created: bool  # this request's transaction stored the message
    message_id: str  # the message of this request (created) or of its Idempotency-Key
    row: Mapping[str, Any] | None  # that message's row, when an earlier request stored it
    suppressed: dict[str, Suppression] | None  # None: the reads failed with `error`
    error: Exception | None
    inline: bool  # the payload fits the table (else a blob)
    rows: list[dict[str, Any]] | None  # the recipient rows this request's transaction wrote


@dataclass(frozen=True, slots=True)
class _Held:
    """A suppression as the message row recorded it at accept (answers are rebuilt from it)."""

    since: str
    reason: str


def _checked_key(idempotency_key: str | None) -> str | None:
    if idempotency_key is None:
        return None
    key = idempotency_key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidInput(
            "Invalid Idempotency-Key",
            [Problem("Idempotency-Key", "1 to 255 printable characters")],
        )
    return key


def _payload_text(request: SendRequest, suppressed: Mapping[str, Any]) -> str:
    """The ACS message to store, without the suppressed recipients."""
    message = request.to_acs_message()
    for kind in ("to", "cc", "bcc"):
        listed = message.get("recipients", {}).get(kind)
        if listed:
            message["recipients"][kind] = [
                r for r in listed if canonical(r["address"]) not in suppressed
            ]
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def _suppressed_field(request: SendRequest, suppressed: Mapping[str, Suppression]) -> str:
    """The message row's record of who was suppressed at accept: by position in the request,
    so the row names no address (a retry's answer takes the addresses from the retry)."""
    found: dict[str, list[str]] = {}
    for n, r in enumerate(request.recipients):
        sup = suppressed.get(r.key)
        if sup is not None and not any(m.key == r.key for m in request.recipients[:n]):
            found[str(n)] = [sup.since, sup.reason]
    return json.dumps(found, separators=(",", ":"))


def _recorded_suppressions(row: Mapping[str, Any], request: SendRequest) -> dict[str, _Held]:
    recorded = json.loads(str(row.get("suppressed") or "{}"))
    return {
        request.recipients[int(n)].key: _Held(str(since), str(reason))
        for n, (since, reason) in recorded.items()
        if int(n) < len(request.recipients)
    }


def _headers(body: Mapping[str, Any], replayed: bool) -> dict[str, str]:
    headers = {"Location": str(body["lookupUrl"])} if body.get("lookupUrl") else {}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return headers
