"""Operator actions: read, suppress and reactivate an address on the suppression list, list a
domain's suppressions, read a sender domain's health and resume a paused one. Every change is
audited with the operator's name and reason."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.core import keys, views
from shared.core.alerts import for_suppression
from shared.core.errors import InvalidInput, NotFound, Problem
from shared.core.events import MAX_ADDRESS_LENGTH
from shared.core.operator import operator_body
from shared.core.paging import encode_token
from shared.core.params import Params
from shared.core.state import parse_iso
from shared.core.suppression import Change

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.core.alerts import AddressPolicy
    from shared.edge.alert_log import AlertLog
    from shared.edge.senders import SenderHealth
    from shared.edge.suppressions import SuppressionList

KEY_TOO_LONG = (
    f"too long to store: at most {keys.MAX_KEY_BYTES // 2} characters, where an emoji counts "
    "two and each of % / \\ # ? | and control characters three"
)
# A DNS name (IDN in its A-label or Unicode form), as sender domains appear in reports.
_DOMAIN = re.compile(r"^(?=.{1,253}$)[^\s@/\\#?.]+(\.[^\s@/\\#?.]+)+$")


def _address(address: str) -> str:
    address = address.strip()
    if "@" not in address or len(address) > MAX_ADDRESS_LENGTH or any(c.isspace() for c in address):
        raise InvalidInput("Invalid address", [Problem("address", "must be an email address")])
    if not keys.fits(keys.address_key(address)):  # found by tests/test_fuzz.py: was a 500
        raise InvalidInput("Invalid address", [Problem("address", KEY_TOO_LONG)])
    return address


def _domain(domain: str) -> str:
    domain = domain.strip().lower()
    if not _DOMAIN.match(domain):
        raise InvalidInput("Invalid domain", [Problem("domain", "must be a sender domain name")])
    return domain


def _expired(expires_at: Any) -> bool:
    expires = parse_iso(expires_at)
    return expires is not None and expires <= datetime.now(UTC)


class Operators:
    def __init__(
        self,
        suppressions: SuppressionList,
        senders: SenderHealth,
        alerts: AlertLog,
        shown: AddressPolicy,
    ) -> None:
        self.suppressions = suppressions
        self.senders = senders
        self.alerts = alerts
        self.shown = shown

    # --- the suppression list -----------------------------------------------------------

    def suppression(self, address: str) -> dict[str, Any]:
        address = _address(address)
        row = self.suppressions.get(address)
        if row is None:
            raise NotFound(f"{address!r} has never been on the suppression list")
        return views.state_view(address, row, self.suppressions.audit(address))

    def suppress(self, address: str, body: bytes, content_type: str | None) -> dict[str, Any]:
        address = _address(address)
        data = operator_body(body, content_type, need_reason=True)
        at = datetime.now(UTC)
        change = Change(
            active=True,
            reason=f"manual: {data['reason']}",
            origin=f"operator:{data['operator']}",
            at=at,
            expires_at=data.get("expiresAt"),
            operator=True,
        )
        changed, _ = self.suppressions.apply(address, change)
        if changed:  # subscribers hear of every address that went on the list, not only bounces
            self.alerts.raise_alert(
                for_suppression(
                    address=address,
                    reason=change.reason,
                    origin=f"{change.origin}@{at.isoformat()}",  # each operator action is new
                    at=at,
                    shown=self.shown,
                    expires_at=change.expires_at,
                )
            )
        return self.suppression(address)

    def reactivate(self, address: str, body: bytes, content_type: str | None) -> dict[str, Any]:
        address = _address(address)
        if self.suppressions.get(address) is None:
            raise NotFound(f"{address!r} has never been on the suppression list")
        data = operator_body(body, content_type, need_reason=False)
        self.suppressions.apply(
            address,
            Change(
                active=False,
                reason=f"reactivated: {data.get('reason') or 'no reason given'}",
                origin=f"operator:{data['operator']}",
                at=datetime.now(UTC),
                operator=True,
            ),
        )
        return self.suppression(address)

    def suppressions_of_domain(self, query: Mapping[str, str]) -> dict[str, Any]:
        params = Params(query)
        limit = params.limit(50)
        domain = (query.get("domain") or "").strip()
        if not domain or "@" in domain or len(domain) > 255:
            params.problems.append(Problem("domain", "required: the recipient domain to list"))
        token = params.table_token()
        params.check()
        rows, next_token = self.suppressions.list_domain(domain, limit, token)
        return {
            "domain": domain.lower(),
            "suppressions": [
                {
                    "address": r.get("address"),
                    "reason": r.get("reason"),
                    "since": r.get("since"),
                    "expiresAt": r.get("expiresAt"),
                }
                for r in rows
                if not _expired(r.get("expiresAt"))
            ],
            "continuation": encode_token(next_token) if next_token else None,
        }

    # --- sender domains -----------------------------------------------------------------

    def sender(self, domain: str) -> dict[str, Any]:
        domain = _domain(domain)
        view = self.senders.view(domain)
        if view is None:
            raise NotFound(f"No sends or reports seen from {domain!r}")
        return view

    def resume_sender(self, domain: str, body: bytes, content_type: str | None) -> dict[str, Any]:
        domain = _domain(domain)
        data = operator_body(body, content_type, need_reason=False, allow_expiry=False)
        resumed = self.senders.resume(
            domain, data["operator"], data.get("reason"), datetime.now(UTC)
        )
        if resumed is None:
            raise NotFound(f"No sends or reports seen from {domain!r}")
        return {**self.sender(domain), "resumed": resumed}
