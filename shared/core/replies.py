"""An answer that is not a plain 200 JSON body (kept tiny: the HTTP edge imports it at start)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Reply:
    """A use case's answer with its own status and extra headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Document:
    """An answer that is not JSON: the console's page and files, a CSV export."""

    body: bytes
    media_type: str  # with its charset where it has one, e.g. "text/csv; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 200
