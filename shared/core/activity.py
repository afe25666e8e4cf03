"""The activity index's rules: where an outcome row lives (time bucket, shard, newest-first key),
what it holds, how a search is read from the query string, and the JSON a row becomes.

Layout (table `<p>Activity`, written by `edge.activity`):
- PartitionKey `<UTC hour YYYYMMDDHH>|<shard 00..>`: one hour of outcomes, spread over
  ACTIVITY_SHARDS partitions by a stable hash of (message id, recipient), so a busy minute is
  several partitions' load, not one (a partition serves ~2,000 entities/s).
- RowKey `<13 digits of (MAX - epoch ms)>|<20 hex of sha1(message|recipient|event)>`: newest
  first inside a partition, and the same key for a redelivered event (an upsert is idempotent).
- PartitionKey `dir`, RowKey = hour: the hours that hold rows, with their shard count, so a
  search reads only the buckets of its window that have anything in them (one small query for
  the window, then the non-empty hours) and a later change of ACTIVITY_SHARDS still reads the
  old hours right.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.core.errors import Problem
from shared.core.keys import address_key, message_key
from shared.core.paging import NOT_OURS
from shared.core.params import Params
from shared.core.status import Status

ACTIVITY_SHARDS = 4
DIRECTORY = "dir"
MAX_WINDOW = timedelta(days=31)  # a search reads at most 744 hourly buckets' directory rows
DEFAULT_WINDOW = timedelta(hours=24)
MAX_DETAIL = 1_024  # characters of the bounce text kept in a row (the message view has it all)
MAX_CSV_ROWS = 1_000  # rows per CSV page (one Table page per shard at most)
_MAX_MS = 9_999_999_999_999
_ROW_KEY = re.compile(r"^\d{13}(\|[0-9a-f]{20})?$")  # a row key, or a bare time prefix
_BUCKET = re.compile(r"^\d{10}$")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Our statuses that mean "did not reach the inbox": the console's "failures" shortcut.
FAILURES = (
    Status.BOUNCED,
    Status.FAILED,
    Status.SUPPRESSED,
    Status.QUARANTINED,
    Status.SPAM_FILTERED,
)


def bucket_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d%H")


def shard_of(message_id: str, recipient: str, shards: int = ACTIVITY_SHARDS) -> int:
    # crc32, not hash(): the same on every instance and after every restart.
    return zlib.crc32(f"{message_key(message_id)}|{address_key(recipient)}".encode()) % shards


def partition(bucket: str, shard: int) -> str:
    return f"{bucket}|{shard:02d}"


def time_key(at: datetime) -> str:
    """The newest-first prefix of a row key: rows at or after `at` sort at or before it."""
    return f"{_MAX_MS - int(at.timestamp() * 1000):013d}"


def row_key(at: datetime, message_id: str, recipient: str, event_id: str) -> str:
    digest = hashlib.sha1(  # noqa: S324 - a key spreader, not a security hash
        f"{message_id}\x00{address_key(recipient)}\x00{event_id}".encode("utf-8", "surrogatepass")
    ).hexdigest()[:20]
    return f"{time_key(at)}|{digest}"


def storable(text: Any, limit: int = 4_096) -> str | None:
    """Text as a Table property can hold it: lone surrogates (from JSON `\\ud800` escapes)
    become U+FFFD, since the service refuses strings that are not valid UTF-16; cut to `limit`."""
    if text is None:
        return None
    value = _LONE_SURROGATE.sub("\ufffd", str(text))
    return value if len(value) <= limit else value[: limit - 1] + "…"


def domain(address_or_domain: str | None) -> str | None:
    """The lower-cased domain in its A-label (punycode) form, so `bücher.example` and
    `xn--bcher-kva.example` are one filter; the Unicode form when IDNA refuses it."""
    if not address_or_domain:
        return None
    name = address_or_domain.rpartition("@")[2].strip().strip(".").lower()
    if not name:
        return None
    if not name.isascii():
        with suppress(UnicodeError):  # stays in Unicode form: still one filter value
            name = name.encode("idna").decode("ascii")
    return storable(name, 255)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One recipient outcome as the index stores it."""

    message_id: str
    recipient: str
    status: str
    at: datetime
    event_id: str
    source: str  # "report" (an ACS delivery report), "accept" or "send" (our own outcomes)
    sender: str | None = None
    acs_status: str | None = None
    reason: str | None = None
    bounce_type: str | None = None
    detail: str | None = None
    tags: Mapping[str, str] | None = None

    def entity(self, shards: int = ACTIVITY_SHARDS) -> dict[str, Any]:
        bucket = bucket_of(self.at)
        row = {
            "PartitionKey": partition(bucket, shard_of(self.message_id, self.recipient, shards)),
            "RowKey": row_key(self.at, self.message_id, self.recipient, self.event_id),
            "messageId": storable(self.message_id, 256),
            "recipient": storable(self.recipient, 320),
            "status": self.status,
            "at": self.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "eventId": storable(self.event_id, 256),
            "source": self.source,
            "sender": storable(self.sender, 320),
            "senderDomain": domain(self.sender),
            "recipientDomain": domain(self.recipient),
            "acsStatus": storable(self.acs_status, 64),
            "reason": storable(self.reason, 64),
            "bounceType": storable(self.bounce_type, 16),
            "detail": storable(self.detail, MAX_DETAIL),
            "tags": storable(json.dumps(dict(self.tags), ensure_ascii=False), 8_192)
            if self.tags
            else None,
        }
        return {k: v for k, v in row.items() if v is not None}


def activity_view(row: Mapping[str, Any]) -> dict[str, Any]:
    tags = _tags(row)
    return {
        "messageId": row.get("messageId"),
        "recipient": row.get("recipient"),
        "status": row.get("status"),
        "reason": row.get("reason"),
        "bounceType": row.get("bounceType"),
        "at": row.get("at"),
        "sender": row.get("sender"),
        "tags": tags,
        "acsStatus": row.get("acsStatus"),
        "detail": row.get("detail"),
        "source": row.get("source"),
    }


def _tags(row: Mapping[str, Any]) -> dict[str, str]:
    try:
        value = json.loads(row.get("tags") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


# --- searching ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Search:
    """One activity search, read and checked from the query string."""

    since: datetime
    until: datetime
    statuses: tuple[str, ...]
    sender_domain: str | None
    recipient_domain: str | None
    tag: tuple[str, str | None] | None  # (name, value or None for "has the tag")
    limit: int
    cursor: tuple[str, str] | None  # (bucket, last row key returned)

    def first_bucket(self) -> str:
        return bucket_of(self.until)

    def last_bucket(self) -> str:
        return bucket_of(self.since)

    def server_filter(self) -> str:
        """The OData part every shard query carries (the tag filter runs here: tags are a
        JSON map, which Table Storage cannot look into)."""
        clauses = []
        if self.statuses:
            clauses.append(" or ".join(f"status eq '{s}'" for s in self.statuses))
        if self.sender_domain:
            clauses.append(f"senderDomain eq '{_odata(self.sender_domain)}'")
        if self.recipient_domain:
            clauses.append(f"recipientDomain eq '{_odata(self.recipient_domain)}'")
        return " and ".join(f"({c})" for c in clauses)

    def matches(self, row: Mapping[str, Any]) -> bool:
        if self.tag is None:
            return True
        name, value = self.tag
        tags = _tags(row)
        return name in tags and (value is None or tags[name] == value)


def _odata(value: str) -> str:
    return value.replace("'", "''")


def parse_search(query: Mapping[str, str], now: datetime, csv: bool = False) -> Search:
    """The search in `query`; raises InvalidInput naming every problem."""
    params = Params(query)
    limit = params.integer("limit", MAX_CSV_ROWS if csv else 50, 1, MAX_CSV_ROWS if csv else 100)
    until = params.time("until") or now
    since = params.time("since") or until - DEFAULT_WINDOW
    if since > until:
        params.problems.append(Problem("since", "must not be after until"))
    elif until - since > MAX_WINDOW:
        params.problems.append(Problem("since", f"at most {MAX_WINDOW.days} days before until"))
    statuses: list[str] = []
    for given in (params.text("status", 200) or "").split(","):
        word = given.strip().lower()
        if not word:
            continue
        if word == "failures":
            statuses += [s.value for s in FAILURES]
        elif word in {s.value for s in Status}:
            statuses.append(word)
        else:
            known = ", ".join([*(s.value for s in Status), "failures"])
            params.problems.append(Problem("status", f"unknown status {word[:32]!r}: {known}"))
    sender_domain = _domain_param(params, "senderDomain")
    recipient_domain = _domain_param(params, "recipientDomain")
    tag = None
    raw_tag = params.text("tag", 64 + 1 + 256)
    if raw_tag:
        name, eq, value = raw_tag.partition("=")
        tag = (name.strip(), value.strip() if eq else None)
        if not tag[0]:
            params.problems.append(Problem("tag", "name or name=value"))
    cursor = _cursor(params, bucket_of(since), bucket_of(until))
    params.check()
    return Search(
        since=since.astimezone(UTC),
        until=until.astimezone(UTC),
        statuses=tuple(dict.fromkeys(statuses)),
        sender_domain=sender_domain,
        recipient_domain=recipient_domain,
        tag=tag,
        limit=limit,
        cursor=cursor,
    )


def _domain_param(params: Params, name: str) -> str | None:
    raw = params.text(name, 255)
    if raw is None:
        return None
    if any(c.isspace() or not c.isprintable() for c in raw) or "@" in raw.strip("@"):
        params.problems.append(Problem(name, "a domain name such as example.com"))
        return None
    return domain(raw)


def _cursor(params: Params, oldest: str, newest: str) -> tuple[str, str] | None:
    value = params.token()
    if value is None:
        return None
    if (
        isinstance(value, dict)
        and isinstance(value.get("b"), str)
        and isinstance(value.get("k"), str)
        and _BUCKET.match(value["b"])
        and _ROW_KEY.match(value["k"])
        and oldest <= value["b"] <= newest
    ):
        return value["b"], value["k"]
    params.problems.append(NOT_OURS)
    return None


# --- resolving an RFC 5322 Message-ID ------------------------------------------------------


def internet_id(value: str) -> str:
    """A Message-ID as compared: no surrounding space or angle brackets, lower-cased (RFC 5322
    makes the domain part case-insensitive; support pastes it in any case)."""
    return value.strip().removeprefix("<").removesuffix(">").strip().lower()


def internet_id_key(value: str) -> str:
    """The PartitionKey for a Message-ID: a digest, so any length and any character is a key."""
    return hashlib.sha256(internet_id(value).encode("utf-8", "surrogatepass")).hexdigest()
