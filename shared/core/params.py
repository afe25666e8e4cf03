"""Query-string parameters read into typed values, every problem collected for one 400."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.core.errors import InvalidInput, Problem
from shared.core.paging import NOT_OURS, decode_token, is_table_token

MAX_PAGE = 100  # items per page on every paged route


class Params:
    """One request's query parameters; each getter records what is wrong instead of raising,
    and `check()` raises one InvalidInput naming every problem."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self.raw = raw
        self.problems: list[Problem] = []

    def text(self, name: str, max_length: int = 256) -> str | None:
        value = (self.raw.get(name) or "").strip()
        if len(value) > max_length:
            self.problems.append(Problem(name, f"at most {max_length} characters"))
            return None
        return value or None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.raw.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            self.problems.append(Problem(name, f"must be an integer from {low} to {high}"))
            return default
        return value

    def limit(self, default: int) -> int:
        return self.integer("limit", default, 1, MAX_PAGE)

    def time(self, name: str) -> datetime | None:
        raw = self.raw.get(name)
        if not raw:
            return None
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            value = None
        if value is None or value.tzinfo is None:
            self.problems.append(Problem(name, "an ISO 8601 time with an offset"))
            return None
        return value

    def token(self, name: str = "continuation") -> Any | None:
        """A continuation token this API returned (decoded), or None."""
        raw = self.raw.get(name)
        if not raw:
            return None
        count = len(self.problems)
        value = decode_token(raw, self.problems)
        return value if len(self.problems) == count else None

    def table_token(self, name: str = "continuation") -> Any | None:
        value = self.token(name)
        if value is not None and not is_table_token(value):
            self.problems.append(NOT_OURS)
            return None
        return value

    def check(self, title: str = "Invalid query parameters") -> None:
        if self.problems:
            raise InvalidInput(title, list(self.problems))
