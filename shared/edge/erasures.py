"""The erasure audit in Table Storage: who erased an address, when, why and what went, by keyed
hash only (the address itself is what was erased).

Table `<p>Erasures`, PartitionKey = the address's keyed hash (`core.privacy.erasure_hash`):
- RowKey `summary`: the counts erased so far per table (every request adds what it found),
  the first and last erasure time and the number of requests.
- RowKey `a|<newest-first time>|<id>`: one row per request: operator, reason (the address
  redacted from both), time, the counts that request erased.
Kept past RETENTION_DAYS: it is the record that the erasure was done.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from contextlib import suppress
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient, TableTransactionError

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

    def audit(self, hashed: str) -> list[dict[str, Any]]:
        pk = hashed.replace("'", "''")
        with storage_errors():
            return [
                dict(r)
                for r in self.table.query_entities(
                    f"PartitionKey eq '{pk}' and RowKey ge 'a|' and RowKey lt 'a}}'"
                )
            ]
