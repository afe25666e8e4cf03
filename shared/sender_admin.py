"""The operator's sender-domain API: current rates and levels, and resuming a paused domain."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput, NotFound, Problem
from .suppression_admin import operator_body

if TYPE_CHECKING:
    from .senders import SenderHealth

# A DNS name (IDN in its A-label or Unicode form), as sender domains appear in reports.
_DOMAIN = re.compile(r"^(?=.{1,253}$)[^\s@/\\#?.]+(\.[^\s@/\\#?.]+)+$")


def _domain(domain: str) -> str:
    domain = domain.strip().lower()
    if not _DOMAIN.match(domain):
        raise InvalidInput("Invalid domain", [Problem("domain", "must be a sender domain name")])
    return domain


def get(health: SenderHealth, domain: str) -> dict[str, Any]:
    domain = _domain(domain)
    view = health.view(domain)
    if view is None:
        raise NotFound(f"No sends or reports seen from {domain!r}")
    return view


def resume(
    health: SenderHealth, domain: str, body: bytes, content_type: str | None
) -> dict[str, Any]:
    domain = _domain(domain)
    data = operator_body(body, content_type, need_reason=False, allow_expiry=False)
    resumed = health.resume(domain, data["operator"], data.get("reason"), datetime.now(UTC))
    if resumed is None:
        raise NotFound(f"No sends or reports seen from {domain!r}")
    view = health.view(domain)
    assert view is not None
    return {**view, "resumed": resumed}
