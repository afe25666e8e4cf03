"""Message ids we mint: UUIDs that carry a keyed tag, so a report's id says "sent through us".

An id is 16 bytes: 12 chosen (random, or derived from an Idempotency-Key) with the RFC 9562
version 8 ("custom") and variant bits set, then 4 bytes of HMAC-SHA256 over those 12 under a key
derived from ADDRESS_HASH_KEY. ACS adopts the id as its message id (`Operation-Id`, FACTS.md),
so every report of a message we sent carries it back. The tag is a *hint*: a report whose id is
tagged goes straight to the status row our accept wrote, one that is not takes the first-sight
path (create the row). A foreign id that matches by chance (2⁻³² per id) or one of ours whose
rows were erased only makes that report take the slower general path: never a wrong result.

An id derived from an Idempotency-Key (`for_key`) is the same on every retry, so claiming the
key is creating the message row: the accept is one transaction. `epoch` is the number of whole
idempotency windows since 1970: a key used again after its window names a new message, and a
retry is looked for under its epoch and the one before (README: Idempotency).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid

_TAG_BYTES = 4
_DOMAIN = b"acs-email/message-id/v1"


def _tag_key(secret: bytes) -> bytes:
    # A key of its own: the address hashes and the id tags never share an HMAC key.
    return hmac.new(secret, _DOMAIN, hashlib.sha256).digest()


def _seal(body: bytes, secret: bytes) -> str:
    head = bytearray(body[:12])
    head[6] = (head[6] & 0x0F) | 0x80  # version 8
    head[8] = (head[8] & 0x3F) | 0x80  # RFC 9562 variant
    tag = hmac.new(_tag_key(secret), bytes(head), hashlib.sha256).digest()[:_TAG_BYTES]
    return str(uuid.UUID(bytes=bytes(head) + tag))


def new_id(secret: bytes) -> str:
    """A fresh id for a send without an Idempotency-Key."""
    return _seal(os.urandom(12), secret)


def for_key(secret: bytes, key: str, epoch: int = 0) -> str:
    """The id of the send made under `key` in window `epoch` (name-based: the same key and
    epoch give the same id)."""
    name = f"{epoch}|{key}".encode()
    return _seal(hmac.new(_tag_key(secret), b"key|" + name, hashlib.sha256).digest(), secret)


def is_ours(secret: bytes, message_id: str) -> bool:
    """Whether `message_id` carries our tag (any spelling of the UUID)."""
    try:
        raw = uuid.UUID(message_id.strip()).bytes
    except ValueError:
        return False
    expected = hmac.new(_tag_key(secret), raw[:12], hashlib.sha256).digest()[:_TAG_BYTES]
    return hmac.compare_digest(raw[12:], expected)
