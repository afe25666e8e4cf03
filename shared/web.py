"""The HTTP and trigger edge: azure.functions types in, JSON and RFC 9457 problems out.

One function (`reply`) maps the error tree to HTTP: InvalidInput → its 4xx (the caller must
change the request; retrying the same one cannot help), Transient → 503 with Retry-After
(retrying later can), anything else → 500 without details (a bug; logged with its trace).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import azure.functions as func

from shared.core.errors import InvalidInput, Problem, ProblemType, Transient
from shared.core.replies import Document, Reply

log = logging.getLogger(__name__)

PROBLEM_BASE = (
    "https://github.com/acs-email-insights/acs-email-insights/blob/main/docs/problems.md#"
)
# What each part of a URI may hold unescaped besides letters, digits and `-._~` (RFC 3986 §3.2,
# §3.3): userinfo allows sub-delims and ":", a host name sub-delims, a path sub-delims, ":", "@"
# and "/". "%" is kept only where it starts a valid escape.
_USERINFO_SAFE = "!$&'()*+,;=:%"
_HOST_SAFE = "!$&'()*+,;=%"
_PATH_SAFE = "!$&'()*+,;=:@/%"
_SCHEME_AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:)(?://([^/]*))?")
_IP_LITERAL = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str never text; escaped, valid JSON
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def json_text(body: Any, separators: tuple[str, str] = (",", ":")) -> str:
    """JSON that always encodes as UTF-8: a lone surrogate (valid in a JSON string as an escape,
    and stored that way by Table Storage, but not text) is written back as its `\\uXXXX`
    escape instead of failing the whole answer when the host encodes it."""
    text = json.dumps(body, ensure_ascii=False, separators=separators)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json_text(body),
        status_code=status,
        headers=dict(headers or {}),
        mimetype="application/json",
        charset="utf-8",
    )


def problem_response(
    status: int,
    title: str,
    slug: ProblemType,
    instance: str | None = None,
    problems: list[Problem] | None = None,
    headers: Mapping[str, str] | None = None,
) -> func.HttpResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if problems:
        body["detail"] = "; ".join(f"{p.field}: {p.message}" for p in problems)
        body["errors"] = [{"field": p.field, "message": p.message} for p in problems]
    if instance:
        body["instance"] = instance
    return func.HttpResponse(
        json_text(body, (", ", ": ")),
        status_code=status,
        headers=dict(headers or {}),
        mimetype="application/problem+json",
        charset="utf-8",
    )


def problem_instance(url: str) -> str | None:
    """The request URL as a problem's `instance`: never its query string (it can hold the
    function key), and percent-encoded into a valid URI (RFC 3986) whatever the path holds.

    Hosts hand the URL over decoded (our stand-in, from the ASGI path) or encoded (Azure), so an
    existing `%XX` escape is kept and only a stray `%`, spaces, controls, non-ASCII, `#` and
    other characters a URI cannot hold there are escaped. The query is cut at the first `?`: a
    decoded `?` from the path can shorten the path, never let the query in. Lone surrogates are
    escaped as their (ill-formed) UTF-8 bytes rather than raising.
    """
    text = url.split("?", 1)[0]
    if not text:
        return None
    head = _SCHEME_AUTHORITY.match(text)
    if head is None:  # a bare path; its first segment cannot hold ":" (RFC 3986 §4.2)
        first, slash, rest = text.partition("/")
        return _escape(first, _HOST_SAFE) + slash + _escape(rest, _PATH_SAFE)
    path = _escape(text[head.end() :], _PATH_SAFE)
    if head[2] is None:
        return head[1] + path
    userinfo, at, hostport = head[2].rpartition("@")
    host, colon, port = hostport.rpartition(":")
    if not colon or not port.isdecimal() or (host.startswith("[") and not host.endswith("]")):
        host, colon, port = hostport, "", ""  # no port, or a colon that is not a port's
    host = host if _IP_LITERAL.match(host) else _escape(host, _HOST_SAFE)
    userinfo = _escape(userinfo, _USERINFO_SAFE) + at
    return f"{head[1]}//{userinfo}{host}{colon}{port}{path}"


def _escape(text: str, safe: str) -> str:
    return quote(_STRAY_PERCENT.sub("%25", text), safe=safe, errors="surrogatepass")


def reply(req: func.HttpRequest, call: Callable[[], Any], status: int = 200) -> func.HttpResponse:
    """Run one use-case call and answer with its JSON (a `Reply` sets its own status and
    headers; a `Document` is sent as it is), or with the problem its error maps to."""
    instance = problem_instance(req.url or "")
    try:
        result = call()
    except InvalidInput as exc:
        return problem_response(exc.status, exc.title, exc.type_slug, instance, exc.problems)
    except Transient as exc:
        log.warning("transient failure serving %s: %s", instance, exc)
        return problem_response(
            503, "Storage or ACS is unavailable; retry shortly", ProblemType.UNAVAILABLE, instance,
            headers={"Retry-After": "5"},
        )  # fmt: skip
    except Exception:
        log.exception("unhandled error serving %s", instance)
        return problem_response(500, "Internal error", ProblemType.INTERNAL, instance)
    if isinstance(result, Reply) and isinstance(result.body, str):  # text (CSV) as it is
        return func.HttpResponse(
            result.body, status_code=result.status, headers=dict(result.headers)
        )
    if isinstance(result, Reply):
        return json_response(result.body, result.status, result.headers)
    if isinstance(result, Document):
        return func.HttpResponse(
            result.body,
            status_code=result.status,
            headers={"Content-Type": result.media_type, **result.headers},
        )
    return json_response(result, status)


def base_url(req: func.HttpRequest) -> str:
    """The app's base URL as the caller reached it (for links in answers)."""
    return str(req.url).split("/api/", 1)[0]


def event_payload(event: func.EventGridEvent | func.CloudEvent) -> dict[str, Any]:
    """The trigger's event object back into its wire JSON, so one parser serves both schemas."""
    if isinstance(event, func.CloudEvent):
        out: dict[str, Any] = {
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "time": _iso(event.time),
            "subject": event.subject,
            "data": event.get_json(),
        }
        return {k: v for k, v in out.items() if v is not None}
    out = {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": _iso(event.event_time),
        "dataVersion": event.data_version,
        "data": event.get_json(),
    }
    return {k: v for k, v in out.items() if v is not None}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
