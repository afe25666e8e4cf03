"""The erasure audit in Table Storage: who erased an address, when, why and what went, by keyed
hash only (the address itself is what was erased).

Table `<p>Erasures`, PartitionKey = the address's keyed hash (`core.privacy.erasure_hash`):
- RowKey `summary`: the counts erased so far per table (every request adds what it found),
  the first and last erasure time and the number of requests.
- RowKey `a|<newest-first time>|<id>`: one row per request: operator, reason (the address
  redacted from both), time, the counts that request erased.
Kept past RETENTION_DAYS: it is the record that the erasure was done.

PartitionKey `~running` (a keyed hash is hex: no collision), RowKey `<start ms>|<hash>|<id>`:
one row per erasure request, written before it looks for the address's messages and given its
end time when it is done (`startedAt`, `endedAt`). An accept files a message in its recipients'
histories just after its 202: one filed after an erasure's look at the history would be missed
by it, so filing ends with one range query of this partition over the last minutes
(`running_since`) and erases such a recipient from the message itself (`app.privacy`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from contextlib import suppress
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode

from shared.core import keys
from shared.core.errors import Transient
from shared.core.state import iso
from shared.edge.tables import (
    MAX_CONFLICT_RETRIES,
    backoff,
    etag_of,
    read_entity,
    storage_errors,
    write_op,
)

SUMMARY = "summary"
RUNNING = "~running"


class ErasureLog:
    def __init__(self, service: TableServiceClient, prefix: str) -> None:
        self.table = service.get_table_client(f"{prefix}Erasures")

    def create_table(self) -> None:
        with storage_errors(), suppress(ResourceExistsError):
            self.table.create_table()

    def summary(self, hashed: str) -> dict[str, Any] | None:
        row = read_entity(self.table, hashed, SUMMARY)
        return None if row is None else dict(row)

    def record(
        self,
        hashed: str,
        operator: str,
        reason: str,
        at: datetime,
        counts: Mapping[str, int],
    ) -> dict[str, Any]:
        """Add one request's audit row and its counts to the summary (one transaction);
        returns the new summary row."""
        audit = {
            "PartitionKey": hashed,
            "RowKey": f"a|{keys.newest_first(int(at.timestamp() * 1000), uuid.uuid4().hex)}",
            "operator": operator,
            "reason": reason,
            "at": iso(at),
            "counts": json.dumps(dict(counts), sort_keys=True),
        }
        for attempt in range(MAX_CONFLICT_RETRIES):
            current = read_entity(self.table, hashed, SUMMARY)
            total = json.loads((current or {}).get("counts") or "{}")
            for table, n in counts.items():
                total[table] = int(total.get(table, 0)) + n
            summary = {
                "PartitionKey": hashed,
                "RowKey": SUMMARY,
                "counts": json.dumps(total, sort_keys=True),
                "firstErasedAt": (current or {}).get("firstErasedAt") or iso(at),
                "lastErasedAt": iso(at),
                "requests": int((current or {}).get("requests", 0)) + 1,
            }
            try:
                with storage_errors():
                    self.table.submit_transaction(
                        [("create", audit), write_op(summary, etag_of(current))]
                    )
                return summary
            except TableTransactionError as exc:
                if exc.status_code not in (409, 412):
                    raise
                backoff(attempt)
        raise Transient("erasure summary kept changing under us")

    def begin(self, hashed: str, at: datetime) -> str:
        """Note an erasure request as running, before it looks for anything; returns the
        RowKey `end` takes."""
        rk = f"{_ms(at):013d}|{hashed}|{uuid.uuid4().hex}"
        row = {"PartitionKey": RUNNING, "RowKey": rk, "hash": hashed, "startedAt": iso(at)}
        with storage_errors():
            self.table.create_entity(row)
        return rk

    def end(self, running_key: str, at: datetime) -> None:
        row = {"PartitionKey": RUNNING, "RowKey": running_key, "endedAt": iso(at)}
        with storage_errors():
            self.table.upsert_entity(row, mode=UpdateMode.MERGE)

    def running_since(self, since: datetime) -> list[dict[str, Any]]:
        """The erasure requests started at or after `since` (one range query, empty nearly
        always): hash, startedAt, and endedAt once done."""
        with storage_errors():
            rows = self.table.query_entities(
                f"PartitionKey eq '{RUNNING}' and RowKey ge '{_ms(since):013d}'"
            )
            return [dict(r) for r in rows]

    def audit(self, hashed: str) -> list[dict[str, Any]]:
        pk = hashed.replace("'", "''")
        with storage_errors():
            return [
                dict(r)
                for r in self.table.query_entities(
                    f"PartitionKey eq '{pk}' and RowKey ge 'a|' and RowKey lt 'a}}'"
                )
            ]


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)
