"""Opaque continuation tokens for the paged APIs: a JSON value as unpadded base64url."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from shared.core.errors import Problem

MAX_TOKEN_LENGTH = 2048
NOT_OURS = Problem("continuation", "not a token this API returned")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encode_token(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, problems: list[Problem]) -> Any:
    """The value inside `token`; None, with the problem added, when it is not one of ours."""
    try:
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, RecursionError):  # nested too deeply: found, a 500
        problems.append(NOT_OURS)
        return None


def is_table_token(value: Any) -> bool:
    """The shape of an azure-data-tables continuation token: a dict of strings. Each must be
    text: the SDK sends them in the URL as UTF-8, and a lone surrogate (which JSON's `\\ud800`
    escape lets a forged token carry) failed that encoding with a 500 (tests/test_fuzz.py)."""
    return isinstance(value, dict) and all(
        isinstance(v, str) and not _LONE_SURROGATE.search(v) for v in value.values()
    )
