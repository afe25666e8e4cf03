"""Operator actions: read, suppress and reactivate an address on the suppression list, list
the suppressions (all, or one domain's; JSON or CSV), read a sender domain's health and resume
a paused one. Every change is audited with the operator's name and reason: the signed-in
principal's when App Service Authentication is on, else the name the body declares."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from shared.core import views
from shared.core.alerts import for_suppression
from shared.core.errors import InvalidInput, NotFound, Problem
from shared.core.events import MAX_ADDRESS_LENGTH
from shared.core.exports import to_csv, wants_csv
from shared.core.operator import operator_body, signed_in_operator
from shared.core.paging import encode_token
from shared.core.params import Params
from shared.core.replies import Document
from shared.core.state import parse_iso
from shared.core.suppression import Change

if TYPE_CHECKING:
    from shared.core.alerts import AddressPolicy
    from shared.edge.alert_log import AlertLog
    from shared.edge.senders import SenderHealth
    from shared.edge.suppressions import SuppressionList

SUPPRESSION_CSV_COLUMNS = ("address", "reason", "since", "expiresAt")
MAX_CSV_ROWS = 1_000
# A scan of the whole list filters on `active`: the service may answer short or empty pages
# with a continuation. One request follows at most this many before answering what it has.
MAX_LIST_PAGES = 10

# A DNS name (IDN in its A-label or Unicode form), as sender domains appear in reports.
_DOMAIN = re.compile(r"^(?=.{1,253}$)[^\s@/\\#?.]+(\.[^\s@/\\#?.]+)+$")


def _address(address: str) -> str:
    address = address.strip()
    if "@" not in address or len(address) > MAX_ADDRESS_LENGTH or any(c.isspace() for c in address):
        raise InvalidInput("Invalid address", [Problem("address", "must be an email address")])
    return address


def _domain(domain: str) -> str:
    domain = domain.strip().lower()
    if not _DOMAIN.match(domain):
        raise InvalidInput("Invalid domain", [Problem("domain", "must be a sender domain name")])
    return domain


def _declared(signed_in: str | None, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the audit row adds about who acted: that the name is the signed-in principal's,
    and the name the body declared when it differs."""
    if signed_in is None:
        return None
    detail: dict[str, Any] = {"operatorSource": "X-MS-CLIENT-PRINCIPAL-NAME"}
    if data.get("operator") and data["operator"] != signed_in:
        detail["declaredOperator"] = data["operator"]
    return detail


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

    def suppress(
        self, address: str, body: bytes, content_type: str | None, principal: str | None = None
    ) -> dict[str, Any]:
        address = _address(address)
        signed_in = signed_in_operator(principal)
        data = operator_body(body, content_type, need_reason=True, need_operator=not signed_in)
        at = datetime.now(UTC)
        change = Change(
            active=True,
            reason=f"manual: {data['reason']}",
            origin=f"operator:{signed_in or data['operator']}",
            at=at,
            expires_at=data.get("expiresAt"),
            operator=True,
            detail=_declared(signed_in, data),
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

    def reactivate(
        self, address: str, body: bytes, content_type: str | None, principal: str | None = None
    ) -> dict[str, Any]:
        address = _address(address)
        signed_in = signed_in_operator(principal)
        if self.suppressions.get(address) is None:
            raise NotFound(f"{address!r} has never been on the suppression list")
        data = operator_body(body, content_type, need_reason=False, need_operator=not signed_in)
        self.suppressions.apply(
            address,
            Change(
                active=False,
                reason=f"reactivated: {data.get('reason') or 'no reason given'}",
                origin=f"operator:{signed_in or data['operator']}",
                at=datetime.now(UTC),
                operator=True,
                detail=_declared(signed_in, data),
            ),
        )
        return self.suppression(address)

    def list_suppressions(
        self, query: Mapping[str, str], accept: str | None = None
    ) -> dict[str, Any] | Document:
        """Active suppressions, one page: one domain's (`domain`), else the whole list; CSV
        when the caller asks for `text/csv` (with a `Link: rel="next"` to the next page)."""
        csv = wants_csv(accept)
        params = Params(query)
        limit = params.integer(
            "limit", MAX_CSV_ROWS if csv else 50, 1, MAX_CSV_ROWS if csv else 100
        )
        domain = params.text("domain", 255)
        if domain is not None and ("@" in domain or not domain.isprintable()):
            params.problems.append(Problem("domain", "a recipient domain such as example.com"))
        token = params.table_token()
        params.check()
        if domain:
            rows, next_token = self.suppressions.list_domain(domain, limit, token)
        else:
            rows, next_token = [], token
            for _ in range(MAX_LIST_PAGES):
                page, next_token = self.suppressions.list_all(limit - len(rows), next_token)
                rows += page
                if not next_token or len(rows) >= limit:
                    break
        listed = [
            {
                "address": r.get("address"),
                "reason": r.get("reason"),
                "since": r.get("since"),
                "expiresAt": r.get("expiresAt"),
            }
            for r in rows
            if not _expired(r.get("expiresAt"))
        ]
        continuation = encode_token(next_token) if next_token else None
        if not csv:
            return {
                "domain": domain.lower() if domain else None,
                "suppressions": listed,
                "continuation": continuation,
            }
        headers = {"Content-Disposition": 'attachment; filename="suppressions.csv"'}
        if continuation:
            rest = {k: v for k, v in query.items() if k != "continuation"}
            headers["Link"] = f'<?{urlencode({**rest, "continuation": continuation})}>; rel="next"'
        return Document(to_csv(SUPPRESSION_CSV_COLUMNS, listed), "text/csv; charset=utf-8", headers)

    # --- sender domains -----------------------------------------------------------------

    def sender(self, domain: str) -> dict[str, Any]:
        domain = _domain(domain)
        view = self.senders.view(domain)
        if view is None:
            raise NotFound(f"No sends or reports seen from {domain!r}")
        return view

    def resume_sender(
        self, domain: str, body: bytes, content_type: str | None, principal: str | None = None
    ) -> dict[str, Any]:
        domain = _domain(domain)
        signed_in = signed_in_operator(principal)
        data = operator_body(
            body, content_type, need_reason=False, allow_expiry=False, need_operator=not signed_in
        )
        resumed = self.senders.resume(
            domain, signed_in or data["operator"], data.get("reason"), datetime.now(UTC)
        )
        if resumed is None:
            raise NotFound(f"No sends or reports seen from {domain!r}")
        return {**self.sender(domain), "resumed": resumed}
