"""Table Storage keys: addresses and ids made safe for PartitionKey/RowKey, and row-key layout.

PartitionKey/RowKey may not contain `/ \\ # ?` or control characters, and are limited to 1 KiB.
We percent-encode those (and `%` itself, and our separator `|`), so any string ACS or a caller
sends maps to exactly one valid key and back. Addresses are compared case-insensitively
(RFC 5321 allows case-sensitive local parts, but no mailbox provider we know of uses them, and
support searches by what the user typed): the key is the lower-cased address; the display form
is stored in the row.
"""

from __future__ import annotations

import re

from shared.core.addresses import canonical

SEPARATOR = "|"
_UNSAFE = re.compile(r"[%|/\\#?\x00-\x1f\x7f-\x9f]")

# Row keys inside a message partition (PartitionKey = message key):
MESSAGE_ROW = "m"  # the message summary
STATUS_PREFIX = "r"  # r|<address>            status row per recipient, delivery events embedded
TIMELINE_PREFIX = "t"  # t|<address>|<event>  marker row: timeline + idempotency for events the
#                        status row does not hold (engagement, overflow, older rows)
ENGAGEMENT_PREFIX = "g"  # g|<address>        engagement counters per recipient
MESSAGE_LEVEL = "*"  # stands for "no recipient named" (older engagement payloads); has no @

# Row keys sort newest first in the recipient index: 13 digits of (MAX - epoch ms).
_MAX_MS = 9_999_999_999_999


def encode(value: str) -> str:
    return _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", value)


def decode(value: str) -> str:
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def address_key(address: str) -> str:
    """The key of an address: its canonical form (IDN domains as A-labels, lower-cased), so
    `bücher.example` and `xn--bcher-kva.example` are one mailbox everywhere."""
    return encode(canonical(address))


def message_key(message_id: str) -> str:
    """Message ids are GUIDs that support pastes in any case: one key for all spellings."""
    return encode(message_id.strip().lower())


def status_row(addr_key: str) -> str:
    return f"{STATUS_PREFIX}{SEPARATOR}{addr_key}"


def engagement_row(addr_key: str) -> str:
    return f"{ENGAGEMENT_PREFIX}{SEPARATOR}{addr_key}"


def timeline_row(addr_key: str, event_id: str) -> str:
    return f"{TIMELINE_PREFIX}{SEPARATOR}{addr_key}{SEPARATOR}{encode(event_id)}"


def newest_first(epoch_ms: int, message_id: str) -> str:
    return f"{_MAX_MS - epoch_ms:013d}{SEPARATOR}{message_key(message_id)}"
