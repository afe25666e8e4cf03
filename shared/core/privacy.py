"""Retention and erasure rules: what outlives RETENTION_DAYS, and what an erased address leaves
behind (its keyed hash and its outcomes, never its text). Pure: `app.privacy` drives the edge."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from shared.core.addresses import canonical
from shared.core.errors import InvalidInput, Problem
from shared.core.hashing import address_hash
from shared.core.state import day_of, iso

ERASED = "[erased]"
# An erased recipient's key in row keys: "~" + its keyed hash. It has no "@", so it can never be
# the key of an address (every address key holds one), and it sorts after every address key.
ERASED_MARK = "~"
# Properties that name the recipient outright: dropped from an erased row.
ADDRESS_FIELDS = ("address", "recipient")
# Expiry-index partitions per day (`day|<hex digit>`): one day's writes spread over 16.
EXPIRY_SHARDS = "0123456789abcdef"
# Work per purge run (README: security and data): the rest waits for the next hourly run.
PURGE_MESSAGES_PER_RUN = 5_000
PURGE_ROWS_PER_RUN = 10_000  # of each day-partitioned table (alerts, quarantine, events)
MAX_ADDRESS_CHARS = 320  # a path segment longer than any address is refused before any work


def erasure_hash(address: str, key: bytes) -> str:
    """The keyed hash an erased address is known by: of its canonical form, so every spelling
    of one mailbox (IDN U-labels or A-labels, any case) erases and matches the same tombstone."""
    return address_hash(canonical(address), key)


def erased_key(hashed: str) -> str:
    return ERASED_MARK + hashed


def checked_address(address: str) -> str:
    """The path's address, or a 400 naming what is wrong (lone surrogates, controls, size)."""
    problems = []
    if len(address) > MAX_ADDRESS_CHARS:
        problems.append(Problem("address", f"at most {MAX_ADDRESS_CHARS} characters"))
    elif any(0xD800 <= ord(c) <= 0xDFFF for c in address):
        problems.append(Problem("address", "holds a lone surrogate (not valid Unicode)"))
    elif any(not c.isprintable() or c.isspace() for c in address.strip()):
        problems.append(Problem("address", "holds control or space characters"))
    else:
        local, at, domain = address.strip().rpartition("@")
        if not at or not local or not domain or "." not in domain.strip("."):
            problems.append(Problem("address", "must be an email address (local@domain)"))
    if problems:
        raise InvalidInput("Invalid address", problems)
    return address.strip()


def address_forms(address: str) -> list[str]:
    """Every spelling of the address that stored text may hold: as given and canonical, as
    JSON escapes it and as a URL encodes it; longest first (so a longer form wins a match)."""
    forms: set[str] = set()
    for base in {address.strip(), canonical(address)}:
        forms |= {base, json.dumps(base)[1:-1], quote(base, safe="@"), quote(base, safe="")}
    return sorted((f for f in forms if f), key=len, reverse=True)


def _pattern(forms: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(f) for f in forms), re.IGNORECASE)


def mentions(text: Any, forms: Iterable[str]) -> bool:
    return isinstance(text, str) and _pattern(forms).search(text) is not None


def redact(value: Any, forms: Iterable[str]) -> Any:
    """`value` with every spelling of the address replaced by ERASED (non-text as it is)."""
    if not isinstance(value, str):
        return value
    return _pattern(forms).sub(ERASED, value)


def redacted_row(row: Mapping[str, Any], forms: list[str]) -> dict[str, Any]:
    return {k: redact(v, forms) for k, v in row.items()}


def erased_row(
    row: Mapping[str, Any], hashed: str, forms: list[str], now: datetime
) -> dict[str, Any]:
    """A recipient's row as erasure leaves it: the outcome kept, the address gone (its fields
    dropped, every mention in text redacted), the keyed hash and the time of erasure added."""
    kept = {k: v for k, v in row.items() if k not in ADDRESS_FIELDS}
    return {**redacted_row(kept, forms), "addressHash": hashed, "erasedAt": iso(now)}


def erased_row_key(row_key: str, addr_key: str, hashed: str) -> str | None:
    """The row key a recipient's row moves to (`r|`, `g|`, `t|…|event`), or None when the row
    is not that recipient's."""
    for prefix in ("r|", "g|"):
        if row_key == f"{prefix}{addr_key}":
            return f"{prefix}{erased_key(hashed)}"
    if row_key.startswith(f"t|{addr_key}|"):
        return f"t|{erased_key(hashed)}|{row_key[len(addr_key) + 3 :]}"
    return None


def without_recipient(payload: str, address: str) -> str | None:
    """A stored ACS send payload with the address taken out of to/cc/bcc; None when it holds
    no such recipient (the payload of a message not yet sent)."""
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    recipients = message.get("recipients") if isinstance(message, dict) else None
    if not isinstance(recipients, dict):
        return None
    target, changed = canonical(address), False
    for kind in ("to", "cc", "bcc"):
        listed = recipients.get(kind)
        if not isinstance(listed, list):
            continue
        kept = [r for r in listed if canonical(str((r or {}).get("address", ""))) != target]
        changed |= len(kept) != len(listed)
        recipients[kind] = kept
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False) if changed else None


# --- retention --------------------------------------------------------------------------------


def cutoff(now: datetime, days: int) -> datetime:
    """Rows last changed before this are past retention."""
    return now.astimezone(UTC) - timedelta(days=days)


def first_kept_day(now: datetime, days: int) -> str:
    """Day partitions (`YYYY-MM-DD…`) sorting before this hold only rows past retention: the
    day that holds the cutoff is kept whole until it has passed entirely."""
    return day_of(cutoff(now, days))


def expiry_partition(day: str, message_id: str) -> str:
    shard = hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()[0]
    return f"{day}|{shard}"


def last_changed(timestamps: Iterable[datetime | None]) -> datetime | None:
    """When a message's rows last changed (the service's own Timestamp of each row)."""
    known = [t.astimezone(UTC) for t in timestamps if t is not None]
    return max(known, default=None)
