"""Retention and erasure: the hourly purge of data past RETENTION_DAYS, and erasing one address
from every table (right to be forgotten), audited by keyed hash. Rules in `core.privacy`.

Purge order per message: recipient-index rows, payload blob, the message's rows (its message row
is also its Idempotency-Key's record), and its expiry entry last, so a run that stops half-way
leaves the entry to the next run.
Erasure order: the suppression tombstone before the state row goes (never a moment in which an
erased address could be mailed), rows re-keyed by hash before the index rows that lead to them
go, the audit last (a request that failed half-way is simply made again: every step is
idempotent, and the repeat finds what the first left).

An erasure finds messages through the recipient index, which an accept writes just after its
202 (`app.sending`): a message accepted before an erasure's look at the index but filed after it
would be missed. So an erasure notes itself as running before it looks (`ErasureLog.begin`),
and filing ends with a look at the erasures running or ended since shortly before the accept
(`erase_late`): each side writes, then reads what the other wrote, so one of them always sees
the other, and the recipient is erased from that message by whichever does.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.core import keys, privacy
from shared.core.activity import bucket_of, partition, shard_of
from shared.core.addresses import canonical_domain
from shared.core.operator import operator_body
from shared.core.privacy import (
    PURGE_MESSAGES_PER_RUN,
    PURGE_ROWS_PER_RUN,
    address_forms,
    checked_address,
    erased_row,
    erased_row_key,
    erasure_hash,
    mentions,
    redact,
    redacted_row,
    without_recipient,
)
from shared.core.state import day_of, embedded_events, engagement_index_partition, parse_iso
from shared.edge.tables import FANOUT

if TYPE_CHECKING:
    from shared.core.settings import Settings
    from shared.edge.activity import ActivityIndex
    from shared.edge.alert_log import AlertLog
    from shared.edge.erasures import ErasureLog
    from shared.edge.messages import MessageStore
    from shared.edge.outbox import Outbox
    from shared.edge.outcome_events import OutcomeLog
    from shared.edge.suppressions import SuppressionList

log = logging.getLogger(__name__)

# An accept filed while an erasure ran: erasures started up to this long before the accept are
# looked at (longer than any erasure request runs: the host's functionTimeout is 5 minutes).
LATE_LOOKBACK = timedelta(minutes=10)
# Clocks of two instances disagree by less: an erasure that ended this shortly before an accept
# counts as running during it (the recipient is erased from that message too).
CLOCK_SLACK = timedelta(seconds=5)


class Privacy:
    def __init__(
        self,
        settings: Settings,
        store: MessageStore,
        suppressions: SuppressionList,
        outbox: Outbox,
        alerts: AlertLog,
        erasures: ErasureLog,
        outcomes: OutcomeLog | None,
        activity: ActivityIndex | None = None,
    ) -> None:
        self.activity = activity
        self.settings = settings
        self.store = store
        self.suppressions = suppressions
        self.outbox = outbox
        self.alerts = alerts
        self.erasures = erasures
        self.outcomes = outcomes

    # --- retention (timer) --------------------------------------------------------------

    def purge(self, now: datetime | None = None) -> dict[str, int]:
        """One bounded run: up to PURGE_MESSAGES_PER_RUN expired messages and PURGE_ROWS_PER_RUN
        rows of each day-partitioned table; what is left waits for the next run."""
        now = now or datetime.now(UTC)
        days = self.settings.retention_days
        keep_from = privacy.first_kept_day(now, days)
        limit = privacy.cutoff(now, days)
        counts: Counter[str] = Counter()
        entries = self.store.expiring(keep_from, PURGE_MESSAGES_PER_RUN)
        # Each message is independent; its steps run in sequence on one FANOUT thread.
        for done in FANOUT.map(lambda entry: self._purge_message(entry, limit), entries):
            counts.update(done)
        counts["alerts"] += self.alerts.purge_before(keep_from, PURGE_ROWS_PER_RUN)
        counts["quarantine"] += self.store.purge_quarantine(keep_from, PURGE_ROWS_PER_RUN)
        if self.outcomes is not None:
            counts["outcomeEvents"] += self.outcomes.purge_before(keep_from, PURGE_ROWS_PER_RUN)
        if self.activity is not None:  # hourly partitions: the hour holding the cutoff is kept
            counts.update(self._purge_activity(bucket_of(limit), limit))
        log.info("retention purge before %s: %s", keep_from, dict(sorted(counts.items())))
        return dict(counts)

    def _purge_activity(self, hour: str, limit: datetime) -> Counter[str]:
        """The activity rows of hours past retention, and first the messages they name: a
        message known from its reports alone (not sent through us) has no expiry entry, since
        every report writes an activity row anyway (so its first sight is two requests, not
        three). Bounded like the rest: PURGE_MESSAGES_PER_RUN messages, PURGE_ROWS_PER_RUN
        rows; the rows of messages left for the next run stay until then."""
        assert self.activity is not None
        done: Counter[str] = Counter()
        rows = self.activity.expired(hour, PURGE_ROWS_PER_RUN)
        named = [str(r["messageId"]) for r in rows if r.get("messageId")]
        found = list(dict.fromkeys(named))[:PURGE_MESSAGES_PER_RUN]
        for purged in FANOUT.map(lambda mid: self._purge_message({"messageId": mid}, limit), found):
            done.update(purged)
        handled = set(found)
        gone = [r for r in rows if not r.get("messageId") or str(r["messageId"]) in handled]
        every_one = len(gone) == len(rows) < PURGE_ROWS_PER_RUN
        done["activity"] += self.activity.drop_expired(gone, hour, every_one)
        return done

    def _purge_message(self, entry: Mapping[str, Any], limit: datetime) -> Counter[str]:
        """Purge one message found by its expiry `entry`, or (an entry of `messageId` alone)
        by an activity row past retention."""
        done: Counter[str] = Counter()
        message_id = str(entry["messageId"])
        filed = "PartitionKey" in entry
        rows = self.store.partition(message_id)
        if not rows:  # gone already (purged through another of its entries, or erased)
            if filed:
                self.store.drop_expiry(entry)
            return done
        changed = privacy.last_changed(r.metadata.get("timestamp") for r in rows)
        if changed is not None and changed >= limit:  # a late report or engagement: keep it
            if filed:
                self.store.refile_expiry(entry, day_of(changed))
            else:  # from now on the expiry index knows it
                self.store.note_expiry(message_id, changed)
            done["messagesKept"] += 1
            return done
        summary = next((dict(r) for r in rows if r["RowKey"] == keys.MESSAGE_ROW), {})
        index = _index_entries(rows, keys.STATUS_PREFIX)
        for addr, own in _index_entries(rows, keys.ENGAGEMENT_PREFIX):  # and strays naming it
            index += [(engagement_index_partition(addr), own)]
            index += self.store.engagement_entries(addr, message_id)
        done["recipientIndex"] += self.store.delete_index_rows(index)
        if summary.get("payload") == "blob":
            self.outbox.delete_payload_blob(message_id)
        if self.activity is not None:  # its Message-ID link goes with it
            linked = {str(r["internetMessageId"]) for r in rows if r.get("internetMessageId")}
            for internet_id in linked:
                self.activity.unlink(internet_id, message_id)
        pk = keys.message_key(message_id)
        done["messageRows"] += self.store.delete_rows(pk, [str(r["RowKey"]) for r in rows])
        if filed:
            self.store.drop_expiry(entry)
        done["messages"] += 1
        return done

    # --- erasure (HTTP) -----------------------------------------------------------------

    def erase(self, address: str, body: bytes, content_type: str | None) -> dict[str, Any]:
        address = checked_address(address)
        data = operator_body(body, content_type, need_reason=True, allow_expiry=False)
        now = datetime.now(UTC)
        hashed = erasure_hash(address, self.settings.address_hash_key.encode())
        forms = address_forms(address)
        addr = keys.address_key(address)
        counts: Counter[str] = Counter()
        running = self.erasures.begin(hashed, now)  # before the look at the index: `erase_late`

        deleted, suppressed = self.suppressions.erase(address, forms, now)
        counts["suppressions"] += deleted
        # Its history, and the engagement index (recipients known only from opens and clicks).
        index = self.store.index_rows(addr) + self.store.index_rows(
            engagement_index_partition(addr)
        )
        for message_id in sorted({str(r["messageId"]) for r in index if r.get("messageId")}):
            counts.update(self._erase_in_message(message_id, address, addr, hashed, forms, now))
        counts["recipientIndex"] += self.store.delete_index_rows(
            [(str(r["PartitionKey"]), str(r["RowKey"])) for r in index]
        )
        quarantined = [
            (str(r["PartitionKey"]), str(r["RowKey"]))
            for r in self.store.quarantined()
            if any(mentions(v, forms) for v in r.values())
        ]
        counts["quarantine"] += self.store.delete_quarantined(quarantined)
        counts["alerts"] += self._erase_in_alerts(address, forms)
        counts["outcomeEvents"] += self._erase_in_pending_outcomes(forms)

        summary = self.erasures.record(
            hashed,
            str(redact(data["operator"], forms)),
            str(redact(data["reason"], forms)),
            now,
            {k: v for k, v in counts.items() if v},
        )
        self.erasures.end(running, datetime.now(UTC))
        log.info("erasure: hash=%s counts=%s", hashed, dict(sorted(counts.items())))
        return {
            "addressHash": hashed,
            "erased": privacy_counts(summary),
            "thisRequest": {k: v for k, v in sorted(counts.items()) if v},
            "stillSuppressed": suppressed,
            "firstErasedAt": summary["firstErasedAt"],
            "lastErasedAt": summary["lastErasedAt"],
            "requests": summary["requests"],
        }

    def erase_late(
        self, message_id: str, rows: Sequence[Mapping[str, Any]], accepted_at: datetime
    ) -> int:
        """Called when an accepted message has been filed in its recipients' histories (`rows`:
        its status rows): erase from it each recipient an erasure ran for since shortly before
        the accept (still running, or ended less than CLOCK_SLACK before it), which may have
        looked at the history before this message was in it. One range query, nearly always
        empty; returns how many recipients were erased."""
        running = self.erasures.running_since(accepted_at - LATE_LOOKBACK)
        hashes = set()
        for erasure in running:
            ended = parse_iso(erasure.get("endedAt"))
            if ended is None or ended + CLOCK_SLACK >= accepted_at:
                hashes.add(str(erasure.get("hash")))
        if not hashes:
            return 0
        key = self.settings.address_hash_key.encode()
        now = datetime.now(UTC)
        erased = 0
        for row in rows:
            address = str(row.get("address") or "")
            hashed = erasure_hash(address, key) if address else ""
            if hashed not in hashes:
                continue
            addr = keys.address_key(address)
            counts = self._erase_in_message(
                message_id, address, addr, hashed, address_forms(address), now
            )
            if row.get("indexRk"):
                counts["recipientIndex"] += self.store.delete_index_rows(
                    [(addr, str(row["indexRk"]))]
                )
            log.info(
                "erasure: hash=%s message=%s filed while it ran, erased from it: %s",
                hashed,
                message_id,
                dict(sorted(counts.items())),
            )
            erased += 1
        return erased

    def _erase_in_message(
        self,
        message_id: str,
        address: str,
        addr: str,
        hashed: str,
        forms: list[str],
        now: datetime,
    ) -> Counter[str]:
        """The recipient's rows of one message re-keyed by hash (outcome kept, address gone);
        a payload not yet sent loses the recipient. (An Idempotency-Key's record is the message
        row, which names no recipient: a replayed answer is rebuilt from the retried request.)"""
        done: Counter[str] = Counter()
        pk = keys.message_key(message_id)
        rows = self.store.partition(message_id)
        done["activity"] += self._erase_in_activity(message_id, address, addr, rows)
        moves = []
        for row in rows:
            new_rk = erased_row_key(str(row["RowKey"]), addr, hashed)
            if new_rk is not None:
                moved = {**erased_row(row, hashed, forms, now), "RowKey": new_rk}
                moves.append((str(row["RowKey"]), moved))
        done["messageRows"] += self.store.move_rows(pk, moves)
        summary = next((r for r in rows if r["RowKey"] == keys.MESSAGE_ROW), None)
        if summary is None:
            return done
        fields = {k: v for k, v in summary.items() if k not in ("PartitionKey", "RowKey")}
        if any(mentions(v, forms) for v in fields.values()):
            self.store.write_message(message_id, redacted_row(fields, forms))
            done["messageRows"] += 1
        payload = None
        if summary.get("payload") == "table":
            payload = self.store.payload(message_id)
        elif summary.get("payload") == "blob":
            payload = self.outbox.payload_blob(message_id)
        stripped = None if payload is None else without_recipient(payload, address)
        if stripped is not None:
            if summary.get("payload") == "blob":
                self.outbox.put_payload_blob(message_id, stripped)
            else:
                self.store.replace_payload(message_id, stripped)
            # Marked on the message row, after the payload: a worker that read the payload
            # before this fails its claim on the row's ETag and takes the new one (`sending`).
            self.store.write_message(message_id, {"payloadChangedAt": now.isoformat()})
            done["payloads"] += 1
        return done

    def _erase_in_activity(self, message_id: str, address: str, addr: str, rows: list[Any]) -> int:
        """The support console's outcome rows of this recipient: found in the hour of every
        time its rows name (status, timeline, accept, send), in its one shard; deleted."""
        if self.activity is None:
            return 0
        times: set[str] = set()
        for row in rows:
            if erased_row_key(str(row["RowKey"]), addr, "-") is None:
                continue  # not this recipient's
            times |= {str(row[f]) for f in ("at", "acceptedAt", "sentAt") if row.get(f)}
            for event in embedded_events(row):
                if event.get("at"):
                    times.add(str(event["at"]))
        hours = {bucket_of(t) for t in filter(None, map(parse_iso, times))}
        shard = shard_of(message_id, address)
        found: list[tuple[str, str]] = []
        for hour in sorted(hours):
            for row in self.activity.rows_of_message(partition(hour, shard), message_id):
                if keys.address_key(str(row.get("recipient") or "")) == addr:
                    found.append((str(row["PartitionKey"]), str(row["RowKey"])))
        return self.activity.delete_rows(found) if found else 0

    def _erase_in_alerts(self, address: str, forms: list[str]) -> int:
        """Alerts carry the address only with ALERT_ADDRESSES=plain: those are redacted (the
        alert itself, its type, time and message, stays)."""
        domain = address.rpartition("@")[2].strip()
        found = 0
        for spelling in sorted({domain.lower(), canonical_domain(domain)}):
            for row in self.alerts.of_recipient_domain(spelling):
                if any(mentions(v, forms) for v in row.values()):
                    self.alerts.replace(redacted_row(row, forms))
                    found += 1
        return found

    def _erase_in_pending_outcomes(self, forms: list[str]) -> int:
        """Outcome events not yet published carry the address with OUTCOME_EVENT_ADDRESSES=
        plain: redacted before they go out (published ones are the subscribers' now)."""
        if self.outcomes is None:
            return 0
        found = 0
        for row in self.outcomes.pending():
            if mentions(row.get("event"), forms):
                self.outcomes.replace(redacted_row(row, forms))
                found += 1
        return found


def _index_entries(rows: list[Any], kind: str) -> list[tuple[str, str]]:
    """(address key, the recipient-index RowKey it points to) of a message's rows of one kind
    (`keys.STATUS_PREFIX` or `keys.ENGAGEMENT_PREFIX`) that have an entry; not the
    message-level row, not erased ones (erasure removed their entries already)."""
    prefix = f"{kind}{keys.SEPARATOR}"
    return [
        (addr, str(r["indexRk"]))
        for r in rows
        if (rk := str(r["RowKey"])).startswith(prefix)
        and r.get("indexRk")
        and not (addr := rk[len(prefix) :]).startswith(privacy.ERASED_MARK)
    ]


def privacy_counts(summary: Mapping[str, Any]) -> dict[str, int]:
    counts = json.loads(str(summary.get("counts") or "{}"))
    return {str(k): int(v) for k, v in sorted(counts.items())}
