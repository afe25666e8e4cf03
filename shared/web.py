"""The HTTP and trigger edge: azure.functions types in, JSON and RFC 9457 problems out.

One function (`reply`) maps the error tree to HTTP: InvalidInput → its 4xx (the caller must
change the request; retrying the same one cannot help), Transient → 503 with Retry-After
(retrying later can), anything else → 500 without details (a bug; logged with its trace).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import azure.functions as func

from shared.core.errors import InvalidInput, Problem, Transient
from shared.core.replies import Document, Reply

log = logging.getLogger(__name__)

PROBLEM_BASE = (
    "https://github.com/acs-email-insights/acs-email-insights/blob/main/docs/problems.md#"
)


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        headers=dict(headers or {}),
        mimetype="application/json",
        charset="utf-8",
    )


def problem_response(
    status: int,
    title: str,
    slug: str,
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
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        headers=dict(headers or {}),
        mimetype="application/problem+json",
        charset="utf-8",
    )


def reply(req: func.HttpRequest, call: Callable[[], Any], status: int = 200) -> func.HttpResponse:
    """Run one use-case call and answer with its JSON (a `Reply` sets its own status and
    headers; a `Document` is sent as it is), or with the problem its error maps to."""
    instance = req.url.split("?", 1)[0] if req.url else None
    try:
        result = call()
    except InvalidInput as exc:
        return problem_response(exc.status, exc.title, exc.type_slug, instance, exc.problems)
    except Transient as exc:
        log.warning("transient failure serving %s: %s", instance, exc)
        return problem_response(
            503, "Storage or ACS is unavailable; retry shortly", "unavailable", instance,
            headers={"Retry-After": "5"},
        )  # fmt: skip
    except Exception:
        log.exception("unhandled error serving %s", instance)
        return problem_response(500, "Internal error", "internal", instance)
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
