"""The app's error tree, and what each branch means to the platform.

    AppError
    ├── InvalidInput        a caller sent something we will not accept: HTTP 4xx, never retried
    │   ├── NotFound        the thing asked for does not exist: 404
    │   ├── Conflict        the request clashes with stored state (idempotency key reuse): 422
    │   ├── PayloadTooLarge 413
    │   └── UnsupportedMediaType 415
    ├── MalformedEvent      an Event Grid event we cannot use: quarantined and acknowledged, so
    │                       Event Grid does not redeliver it for 24 h (a retry cannot fix it)
    └── Transient           storage/ACS unavailable, throttled, timed out, or an optimistic
                            concurrency retry budget spent: raised so the platform retries
                            (Event Grid redelivers, the queue makes the message visible again)

Anything else is a bug: it propagates (and is retried) rather than being swallowed.
Over HTTP each answer names its `ProblemType`; docs/problems.md has one section per member.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ProblemType(StrEnum):
    """The `type` of a problem+json answer: the anchor of its section in docs/problems.md."""

    INVALID_REQUEST = "invalid-request"  # 400: fix the fields named in `errors`; never retry as is
    UNAUTHORIZED = "unauthorized"  # 401: sent by the Functions host (empty body), not by the app
    NOT_FOUND = "not-found"  # 404: from the app (problem body) or the host (unknown route, empty)
    PAYLOAD_TOO_LARGE = "payload-too-large"  # 413: body or email over the size limit
    UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type"  # 415: not application/json in UTF-8
    CONFLICT = "conflict"  # 422: clashes with stored state (suppressed, Idempotency-Key reuse)
    INTERNAL = "internal"  # 500: a bug or a misconfigured app; details only in the log
    UNAVAILABLE = "unavailable"  # 503: storage or ACS trouble; retry after Retry-After


class AppError(Exception):
    """Root of the app's own errors."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: where (a JSON-pointer-ish path) and what."""

    field: str
    message: str


@dataclass(eq=False)
class InvalidInput(AppError):
    """The input is wrong; every problem found is listed, not just the first."""

    title: str
    problems: list[Problem] = field(default_factory=list)
    status: int = 400
    type_slug: ProblemType = ProblemType.INVALID_REQUEST

    def __post_init__(self) -> None:
        super().__init__(self.title)


class NotFound(InvalidInput):
    def __init__(self, title: str) -> None:
        super().__init__(title=title, status=404, type_slug=ProblemType.NOT_FOUND)


class Conflict(InvalidInput):
    def __init__(self, title: str, problems: list[Problem] | None = None) -> None:
        super().__init__(
            title=title, problems=problems or [], status=422, type_slug=ProblemType.CONFLICT
        )


class PayloadTooLarge(InvalidInput):
    def __init__(self, title: str, problems: list[Problem] | None = None) -> None:
        super().__init__(
            title=title,
            problems=problems or [],
            status=413,
            type_slug=ProblemType.PAYLOAD_TOO_LARGE,
        )


class UnsupportedMediaType(InvalidInput):
    def __init__(self, title: str) -> None:
        super().__init__(title=title, status=415, type_slug=ProblemType.UNSUPPORTED_MEDIA_TYPE)


class MalformedEvent(AppError):
    """An event that can never be processed; the reason is short, stable and stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Transient(AppError):
    """Infrastructure trouble worth retrying; the platform's retry is the retry."""
