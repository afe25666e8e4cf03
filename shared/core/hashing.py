"""Keyed hashes of addresses (alerts, events, logs, erasure tombstones): HMAC-SHA256 under the
secret ADDRESS_HASH_KEY, so a dictionary of likely addresses cannot reverse them the way it
reverses a plain SHA-256. The same address always gives the same hash under one key."""

from __future__ import annotations

import hashlib
import hmac


def address_hash(address: str, key: bytes) -> str:
    """32 hex characters (128 bits) of HMAC-SHA256 over the address as compared (trimmed,
    lower-cased)."""
    message = address.strip().lower().encode("utf-8", "replace")
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]
