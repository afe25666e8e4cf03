"""A stand-in for `func start`: serve a v2 `FunctionApp` through the azure.functions types.

Core Tools cannot be installed here, so this module reads the app the way the host does (one
`app.get_functions()`, the trigger bindings as function.json spells them) and feeds each function
the objects the Python worker would build, using the library's own converters:

- HTTP triggers at `/<routePrefix>/<route>` (`api` by default), methods and auth levels (function
  and admin levels both take the one local key, from the `x-functions-key` header or the `code`
  query parameter); routes of plain segments and `{name}` parameters, the part of ASP.NET's
  template syntax that function_app uses (a function with any other route is not served);
- Event Grid triggers at `POST /runtime/webhooks/eventgrid?functionName=<name>&code=<key>`, in
  the Event Grid schema (`aeg-event-type` header) and CloudEvents 1.0 (handshake, both content
  types);
- queue triggers polling Storage/Azurite the way the WebJobs queue listener does, honouring
  host.json `extensions.queues` (and `AzureFunctionsJobHost__...` app-setting overrides);
- timer triggers on NCRONTAB (6 fields, seconds first) or TimeSpan (`hh:mm:ss`) schedules;
- `GET /admin/host/status` with the key: the host's id (`AzureFunctionsWebHost__hostid`) and state.

Binding expressions `%SETTING%` in queue names, schedules and routes resolve from the settings;
a function whose `AzureWebJobs.<name>.Disabled` setting is true (or 1) is not served.
Not served: other trigger types, and input/output bindings besides the HTTP `$return`.

    python -m local.host --module function_app --port 7071
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import copy
import hmac
import importlib
import importlib.util
import inspect
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import uuid
from collections import ChainMap
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote, unquote_plus, unquote_to_bytes, urlencode

import azure.functions as func
import uvicorn
import uvicorn.config
from azure.functions import _abc as func_abc  # TraceContext/RetryContext have no public alias
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.http import HttpRequestConverter, HttpResponseConverter
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter
from croniter import CroniterBadDateError, croniter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, compile_path

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage

DEFAULT_FUNCTION_KEY = "local-dev-key"
# The app's own problem types live here too (shared/web.py): one vocabulary for clients.
PROBLEM_BASE = (
    "https://github.com/acs-email-insights/acs-email-insights/blob/main/docs/problems.md#"
)
DEFAULT_PORT = 7071
KEY_ENV = "LOCAL_FUNCTION_KEY"
HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"
# App settings of this shape override host.json values, as in Azure (`__` or `:` separated).
HOST_OVERRIDE_PREFIXES = ("azurefunctionsjobhost__", "azurefunctionsjobhost:")
DEFAULT_STORAGE_SETTING = "AzureWebJobsStorage"
# The WebJobs queue listener hides a received message for 10 minutes while the function runs;
# `visibilityTimeout` from host.json is only the delay before a *failed* message comes back.
RECEIVE_VISIBILITY_SECONDS = 600
MIN_POLLING_INTERVAL = 0.1  # host.json documents 100 ms as the floor for maxPollingInterval
# Our timers wake within milliseconds of the occurrence; a second late means the loop was
# blocked or the machine slept, which is what the worker's `past_due` is there to tell.
PAST_DUE_TOLERANCE = timedelta(seconds=1)
SHUTDOWN_GRACE_SECONDS = 30.0
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

_DESCRIPTION = "Run a v2 FunctionApp the way `func start` would (HTTP, Event Grid, queue, timer)."

log = logging.getLogger("local.host")
# The host's own queue plumbing (polls, deletes, poison moves) runs in .NET on Azure, outside
# the Python worker and its log. Here azure-core would log each of those requests at INFO (two
# records with every header), costing ~1 ms of the app's GIL per poll: only warnings, please.
storage_log = logging.getLogger("local.host.storage")
storage_log.setLevel(logging.WARNING)


# --- host.json -----------------------------------------------------------------------------

_TIMESPAN = re.compile(
    r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})(?::(?P<s>\d{1,2})(?:\.(?P<f>\d{1,7}))?)?$"
)


def parse_timespan(text: str) -> timedelta:
    """.NET TimeSpan text as host.json and timer schedules write it: `[d.]hh:mm[:ss[.fffffff]]`."""
    m = _TIMESPAN.match(text.strip())
    if m is None or int(m["h"]) > 23 or int(m["m"]) > 59 or int(m["s"] or 0) > 59:
        raise ValueError(f"not a TimeSpan ([d.]hh:mm:ss): {text!r}")
    return timedelta(
        days=int(m["days"] or 0),
        hours=int(m["h"]),
        minutes=int(m["m"]),
        seconds=int(m["s"] or 0),
        microseconds=int(((m["f"] or "") + "000000")[:6]),
    )


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the extension's defaults."""

    batch_size: int = 16
    visibility_timeout: timedelta = timedelta(0)
    max_dequeue_count: int = 5
    max_polling_interval: timedelta = timedelta(minutes=1)
    message_encoding: str = "base64"  # or "none" (extension 5.x)


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)


def _ci_get(mapping: Any, key: str) -> Any:
    """host.json keys are case-insensitive."""
    if not isinstance(mapping, dict):
        return None
    for k, v in mapping.items():
        if k.lower() == key.lower():
            return v
    return None


def _apply_overrides(raw: dict[str, Any], settings: Mapping[str, str]) -> None:
    for name, value in settings.items():
        lowered = name.lower()
        prefix = next((p for p in HOST_OVERRIDE_PREFIXES if lowered.startswith(p)), None)
        if prefix is None:
            continue
        path = re.split(r"__|:", name[len(prefix) :])
        node = raw
        for part in path[:-1]:
            existing = next((k for k in node if k.lower() == part.lower()), part)
            if not isinstance(node.get(existing), dict):
                node[existing] = {}
            node = node[existing]
        leaf = next((k for k in node if k.lower() == path[-1].lower()), path[-1])
        node[leaf] = value


def load_host_config(app_dir: Path | None, settings: Mapping[str, str]) -> HostConfig:
    """host.json from the app directory, then `AzureFunctionsJobHost__a__b` setting overrides."""
    raw: dict[str, Any] = {}
    if app_dir is not None and (app_dir / "host.json").is_file():
        raw = json.loads((app_dir / "host.json").read_text(encoding="utf-8-sig"))
    _apply_overrides(raw, settings)
    extensions = _ci_get(raw, "extensions")
    http = _ci_get(extensions, "http")
    queues = _ci_get(extensions, "queues") or {}
    defaults = QueueOptions()

    def span(key: str, default: timedelta) -> timedelta:
        value = _ci_get(queues, key)
        return default if value is None else parse_timespan(str(value))

    def number(key: str, default: int) -> int:
        value = _ci_get(queues, key)
        return default if value is None else int(value)

    prefix = _ci_get(http, "routePrefix")
    return HostConfig(
        route_prefix=("api" if prefix is None else str(prefix)).strip("/"),
        queues=QueueOptions(
            batch_size=max(1, min(32, number("batchSize", defaults.batch_size))),
            visibility_timeout=span("visibilityTimeout", defaults.visibility_timeout),
            max_dequeue_count=max(1, number("maxDequeueCount", defaults.max_dequeue_count)),
            max_polling_interval=span("maxPollingInterval", defaults.max_polling_interval),
            message_encoding=str(_ci_get(queues, "messageEncoding") or "base64").lower(),
        ),
    )


# --- schedules -------------------------------------------------------------------------------


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...


# Names NCrontab knows; croniter knows the same ones, and these let us check range order.
_CRON_NAMES = {
    name: number
    for names, first in (
        (("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1),
        (("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 0),
    )
    for number, name in enumerate(names, start=first)
}
_CRON_TOKEN = re.compile(r"\*|\d+|[A-Za-z]{3}")


def _cron_number(token: str) -> int | None:
    """A number or a month/day name as its number; None for `*`."""
    return int(token) if token.isdigit() else _CRON_NAMES.get(token.upper())


def _ncrontab_fields(expression: str) -> list[str]:
    """The six fields, checked against what NCrontab (the Functions timer's parser) accepts.

    croniter reads more than NCrontab: `L`, `W`, `#`, `?`, `H`, `@daily`, a seventh (year)
    field and wrapping ranges such as `5-1`. A schedule the real host would refuse must fail
    here too, so those are turned away before croniter sees the expression.
    """
    fields = expression.split()
    if len(fields) == 5:  # the WebJobs CronSchedule reads five fields as classic cron: second 0
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(
            f"NCRONTAB needs 6 fields ({{second}} {{minute}} {{hour}} {{day}} {{month}} "
            f"{{day-of-week}}), got {expression!r}"
        )
    for text in fields:
        for part in text.split(","):
            ends = part.partition("/")[0].split("-")
            if len(ends) > 2 or not all(_CRON_TOKEN.fullmatch(end) for end in ends):
                raise ValueError(f"{text!r} in {expression!r}: not NCRONTAB")
            low, high = (_cron_number(end) for end in (ends[0], ends[-1]))
            if low is not None and high is not None and low > high:
                raise ValueError(f"{text!r} in {expression!r}: reversed range")
    return fields


@dataclass(frozen=True)
class CronSchedule:
    """NCRONTAB, seconds first (`0 */5 * * * *`), as Azure Functions timer triggers take it."""

    expression: str
    fields: str  # the six fields croniter reads

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        schedule = cls(expression, " ".join(_ncrontab_fields(expression)))
        schedule._iterator(datetime.now(UTC))  # croniter's own checks: ranges, names, steps
        return schedule

    def _iterator(self, start: datetime) -> croniter:
        # day_or=False: NCrontab wants day-of-month AND day-of-week to match when both are
        # restricted (Vixie cron, croniter's default, ORs them).
        return croniter(self.fields, start, day_or=False, second_at_beginning=True)

    def next_after(self, moment: datetime) -> datetime:
        """The first whole second strictly after `moment` that matches every field."""
        try:
            return self._iterator(moment).get_next(datetime)
        except CroniterBadDateError:  # croniter looks 50 years ahead, then gives up
            raise ValueError(f"schedule {self.expression!r} never fires") from None


@dataclass(frozen=True)
class IntervalSchedule:
    """A TimeSpan schedule: like the host's ConstantSchedule, the next run is `now + interval`."""

    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval


def parse_schedule(text: str) -> CronSchedule | IntervalSchedule:
    text = text.strip()
    if " " not in text and ":" in text:
        interval = parse_timespan(text)
        if interval <= timedelta(0):
            raise ValueError(f"timer interval must be positive: {text!r}")
        return IntervalSchedule(interval)
    return CronSchedule.parse(text)


# --- route templates -------------------------------------------------------------------------

# A whole-segment route parameter, `{messageId}`. ASP.NET also has optional, default, catch-all,
# constrained and in-segment parameters (`{id:int?}`, `{*rest}`, `{name}.{ext}`); function_app
# uses none of them, so the stand-in does not serve them rather than half-imitate them.
_ROUTE_PARAMETER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
# Kestrel decodes a request path except `%2F`: an encoded slash stays as sent, so it can never
# split a segment, and the route value keeps it encoded.
_ENCODED_SLASH = re.compile(rb"(%2F)", re.IGNORECASE)


class UnsupportedRouteError(ValueError):
    """A route template beyond plain segments and `{name}`; its function is not served."""


@dataclass(frozen=True)
class RouteTemplate:
    """A Functions route of plain segments and `{name}` segments, compiled by starlette's
    `compile_path`. Literals match case-insensitively and a trailing slash is ignored, as in
    ASP.NET Core routing."""

    template: str
    pattern: re.Pattern[str]
    # Lower sorts first: per segment, a literal (0) outranks a parameter (1), as ASP.NET
    # orders `emails/pending` before `emails/{messageId}`.
    rank: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        m = self.pattern.match(path[:-1] if path.endswith("/") and path != "/" else path)
        return None if m is None else m.groupdict()


def compile_route(template: str) -> RouteTemplate:
    segments = [s for s in template.strip("/").split("/") if s]
    for segment in segments:
        if ("{" in segment or "}" in segment) and not _ROUTE_PARAMETER.fullmatch(segment):
            raise UnsupportedRouteError(
                f"route {template!r} uses {segment!r}; the stand-in serves plain segments "
                "and whole-segment {name} parameters only"
            )
    try:
        regex, _, _ = compile_path("/" + "/".join(segments))
    except ValueError as exc:  # a parameter named twice
        raise UnsupportedRouteError(f"route {template!r}: {exc}") from None
    return RouteTemplate(
        template,
        re.compile(regex.pattern, re.IGNORECASE),
        tuple(int(_ROUTE_PARAMETER.fullmatch(s) is not None) for s in segments),
    )


def request_path(scope: Mapping[str, Any]) -> str:
    """The request path as Kestrel hands it to routing: percent-decoded as UTF-8, except `%2F`.

    uvicorn's `scope["path"]` decodes `%2F` too, which would turn `a%2Fb` into two segments.
    """
    raw = scope.get("raw_path")
    if not raw:
        return str(scope["path"])
    return "".join(
        part.decode("ascii") if i % 2 else unquote_to_bytes(part).decode("utf-8", "replace")
        for i, part in enumerate(_ENCODED_SLASH.split(raw))
    )


_SETTING_REFERENCE = re.compile(r"%([^%]+)%")


class MissingSettingError(LookupError):
    """An app setting a binding refers to is not set; the function is not served."""


def resolve_setting_references(value: str, settings: Mapping[str, str]) -> str:
    """`%NAME%` binding expressions, replaced by app settings as the host does."""

    def lookup(m: re.Match[str]) -> str:
        if m[1] not in settings:
            raise MissingSettingError(m[1])
        return settings[m[1]]

    return _SETTING_REFERENCE.sub(lookup, value)


# --- the functions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    trigger: str  # binding type as function.json spells it: httpTrigger, queueTrigger, ...
    binding: Mapping[str, Any]  # the trigger binding as function.json spells it
    arg_name: str
    call: Callable[..., Any]
    wants_context: bool
    is_async: bool
    unserved_bindings: tuple[str, ...]  # "name (type)" of bindings we cannot feed


def read_functions(app: func.FunctionApp) -> list[FunctionSpec]:
    """The one `app.get_functions()` call (a second one raises), as function.json bindings."""
    specs = []
    for function in app.get_functions():
        bindings = [json.loads(raw) for raw in function.get_raw_bindings()]
        trigger = function.get_trigger()
        assert trigger is not None  # get_functions() rejects functions without one
        trigger_binding = next(
            b for b in bindings if b["name"] == trigger.name and b["type"] == trigger.type
        )
        user = function.get_user_function()
        unserved = tuple(
            f"{b['name']} ({b['type']})"
            for b in bindings
            if b is not trigger_binding and not (b["type"] == "http" and b["name"] == "$return")
        )
        specs.append(
            FunctionSpec(
                name=str(function.get_function_name()),
                trigger=str(trigger_binding["type"]),
                binding=trigger_binding,
                arg_name=str(trigger_binding["name"]),
                call=user,
                wants_context="context" in inspect.signature(user).parameters,
                is_async=inspect.iscoroutinefunction(user),
                unserved_bindings=unserved,
            )
        )
    return specs


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    template: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    anonymous: bool


@dataclass(frozen=True)
class QueueJob:
    spec: FunctionSpec
    queue_name: str
    connection_string: str


@dataclass(frozen=True)
class TimerJob:
    spec: FunctionSpec
    schedule: Schedule
    expression: str
    run_on_startup: bool


_thread_local = threading.local()


class _TraceContext(func_abc.TraceContext):
    def __init__(self, trace_parent: str, trace_state: str) -> None:
        self._parent, self._state = trace_parent, trace_state

    @property
    def trace_state(self) -> str:
        return self._state

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(func_abc.RetryContext):
    """No retry policies here: every invocation is the first try."""

    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class _Context(func.Context):
    def __init__(self, invocation_id: str, name: str, directory: str, trace: _TraceContext):
        self._id, self._name, self._directory, self._trace = invocation_id, name, directory, trace

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def thread_local_storage(self) -> Any:
        return _thread_local

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def trace_context(self) -> _TraceContext:
        return self._trace

    @property
    def retry_context(self) -> _RetryContext:
        return _RetryContext()


def _run_in_thread(call: Callable[..., Any], kwargs: dict[str, Any], invocation_id: str) -> Any:
    _thread_local.invocation_id = invocation_id  # what the worker sets for logging from threads
    return call(**kwargs)


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    value: Any = None


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _queue_body(text: str, encoding: str) -> meta.Datum:
    """The host base64-decodes queue messages by default; plain text is passed through as is.

    Text that happens to be valid base64 (e.g. `abcd`) is decoded: the ambiguity is inherent,
    and JSON (what this app queues) never is valid base64.
    """
    if encoding == "base64" and text:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = None
        if raw is not None:
            try:
                return meta.Datum(raw.decode("utf-8"), "string")
            except UnicodeDecodeError:
                return meta.Datum(raw, "bytes")
    return meta.Datum(text, "string")


def _queue_metadata(message: QueueMessage) -> dict[str, meta.Datum]:
    """The trigger metadata the host sends the worker for a queue message."""
    values = {
        "Id": meta.Datum(message.id, "string"),
        "DequeueCount": meta.Datum(message.dequeue_count, "int"),
        "InsertionTime": meta.Datum(_iso(message.inserted_on), "string"),
        "ExpirationTime": meta.Datum(_iso(message.expires_on), "string"),
        "NextVisibleTime": meta.Datum(_iso(message.next_visible_on), "string"),
        "PopReceipt": meta.Datum(message.pop_receipt, "string"),
    }
    return {k: v for k, v in values.items() if v.value is not None}


def _create_queue(client: QueueClient) -> None:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        client.create_queue()


def _receive(client: QueueClient, count: int) -> list[QueueMessage]:
    return list(
        client.receive_messages(
            messages_per_page=count,
            max_messages=count,
            visibility_timeout=RECEIVE_VISIBILITY_SECONDS,
        )
    )


class _Host:
    def __init__(
        self,
        specs: list[FunctionSpec],
        *,
        function_key: str,
        settings: Mapping[str, str],
        config: HostConfig,
        app_dir: Path | None,
    ) -> None:
        self.specs = specs
        self.key = function_key
        # The real host's id setting; `make run` sets it so `make demo` can tell its own stack
        # from a stale or foreign one on the same port.
        self.host_id = settings.get(HOST_ID_SETTING) or uuid.uuid4().hex
        self.settings = settings
        self.config = config
        self.app_dir = app_dir
        self.routes: list[HttpRoute] = []
        self.event_grid: dict[str, FunctionSpec] = {}
        self.queues: list[QueueJob] = []
        self.timers: list[TimerJob] = []
        self.disabled: dict[str, str] = {}  # function name -> why it is not served
        self.tasks: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Event | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._io: ThreadPoolExecutor | None = None
        for spec in specs:
            if self._disabled_by_setting(spec.name):
                self.disabled[spec.name] = f"app setting AzureWebJobs.{spec.name}.Disabled"
                log.info("Function '%s' disabled by app setting", spec.name)
                continue
            try:
                self._register(spec)
            except MissingSettingError as exc:
                self.disabled[spec.name] = f"missing app setting {exc.args[0]}"
                log.error("Function '%s' disabled: missing app setting %s", spec.name, exc.args[0])
            except UnsupportedRouteError as exc:
                self.disabled[spec.name] = str(exc)
                log.error("Function '%s' not served: %s", spec.name, exc)
            if spec.unserved_bindings:
                log.warning(
                    "Function '%s': bindings not served by the stand-in: %s",
                    spec.name,
                    ", ".join(spec.unserved_bindings),
                )
        self.routes.sort(key=lambda r: r.template.rank)

    def _setting(self, value: Any) -> str:
        return resolve_setting_references(str(value), self.settings)

    def _disabled_by_setting(self, name: str) -> bool:
        """`AzureWebJobs.<name>.Disabled` = true or 1, as the host reads it (name in any case)."""
        wanted = f"azurewebjobs.{name}.disabled".lower()
        value = next((v for k, v in self.settings.items() if k.lower() == wanted), "")
        return str(value).strip().lower() in ("true", "1")

    def _register(self, spec: FunctionSpec) -> None:
        b = spec.binding
        if spec.trigger == "httpTrigger":
            methods = b.get("methods")
            self.routes.append(
                HttpRoute(
                    spec,
                    compile_route(self._setting(b.get("route") or spec.name)),
                    frozenset(str(m).upper() for m in methods) if methods else None,
                    # No level in the binding means the host's default, function.
                    str(b.get("authLevel") or "function").lower() == "anonymous",
                )
            )
        elif spec.trigger == "eventGridTrigger":
            self.event_grid[spec.name.lower()] = spec  # function names are case-insensitive
        elif spec.trigger == "queueTrigger":
            setting = str(b.get("connection") or DEFAULT_STORAGE_SETTING)
            # The host also accepts the name with an `AzureWebJobs` prefix.
            connection = self.settings.get(setting) or self.settings.get(f"AzureWebJobs{setting}")
            if not connection:
                raise MissingSettingError(setting)
            self.queues.append(QueueJob(spec, self._setting(b["queueName"]), connection))
        elif spec.trigger == "timerTrigger":
            expression = self._setting(b["schedule"])
            schedule = parse_schedule(expression)
            schedule.next_after(datetime.now(UTC))  # "never fires" fails here, not in the loop
            self.timers.append(TimerJob(spec, schedule, expression, bool(b.get("runOnStartup"))))
        else:
            self.disabled[spec.name] = f"{spec.trigger} is not supported by the stand-in"
            log.warning("Function '%s' not served: %s", spec.name, self.disabled[spec.name])

    # -- lifecycle --

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        self._function_pool()
        if self.queues:
            self._io = ThreadPoolExecutor(
                max_workers=4 + len(self.queues) * 2, thread_name_prefix="host-storage"
            )
        for job in self.queues:
            self._spawn(self._poll_queue(job), f"queue:{job.spec.name}")
        for timer in self.timers:
            self._spawn(self._run_timer(timer), f"timer:{timer.spec.name}")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._report_crash)
        self.tasks.append(task)

    @staticmethod
    def _report_crash(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped", task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        clean = True
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=SHUTDOWN_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            clean = not pending
            self.tasks.clear()
        if not clean:
            log.warning(
                "Functions still running after %ss; not waiting for them", SHUTDOWN_GRACE_SECONDS
            )
        for pool in (self._pool, self._io):
            if pool is not None:
                pool.shutdown(wait=clean, cancel_futures=not clean)
        self._pool = self._io = None

    def _function_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            # The worker's own knob for its sync-function thread pool.
            threads = self.settings.get("PYTHON_THREADPOOL_THREAD_COUNT")
            self._pool = ThreadPoolExecutor(
                max_workers=int(threads) if threads else None, thread_name_prefix="host-function"
            )
        return self._pool

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the host is stopping."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))
        return self._stopping.is_set()

    async def _storage(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        assert self._io is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, lambda: call(*args, **kwargs))

    # -- invoking --

    async def invoke(self, spec: FunctionSpec, value: Any, trace_parent: str = "") -> _Outcome:
        invocation_id = str(uuid.uuid4())
        kwargs = {spec.arg_name: value}
        if spec.wants_context:
            parent = trace_parent or f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
            directory = str(self.app_dir or "")
            kwargs["context"] = _Context(
                invocation_id, spec.name, directory, _TraceContext(parent, "")
            )
        started = time.perf_counter()
        try:
            if spec.is_async:
                result = await spec.call(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    self._function_pool(), _run_in_thread, spec.call, kwargs, invocation_id
                )
        except Exception:
            log.exception(
                "Executed '%s' (%s, Failed, Id=%s, Duration=%dms)",
                spec.name,
                spec.trigger,
                invocation_id,
                (time.perf_counter() - started) * 1000,
            )
            return _Outcome(ok=False)
        log.info(
            "Executed '%s' (%s, Succeeded, Id=%s, Duration=%dms)",
            spec.name,
            spec.trigger,
            invocation_id,
            (time.perf_counter() - started) * 1000,
        )
        return _Outcome(ok=True, value=result)

    def _key_ok(self, request: Request) -> bool:
        # As the host does: the header wins, the `code` query parameter is the fallback.
        given = request.headers.get("x-functions-key") or request.query_params.get("code")
        return given is not None and hmac.compare_digest(given.encode(), self.key.encode())

    # -- admin API --

    async def host_status(self, request: Request) -> Response:
        """`GET /admin/host/status`, as the real host answers it (admin level: here, the key)."""
        if not self._key_ok(request):
            return host_problem(request, HostProblem.UNAUTHORIZED)
        return JSONResponse({"id": self.host_id, "state": "Running"})

    # -- HTTP triggers --

    def _route_path(self, path: str) -> str | None:
        prefix = self.config.route_prefix
        if not prefix:
            return path
        head = "/" + prefix.lower()
        if path.lower() == head:
            return "/"
        if path.lower().startswith(head + "/"):
            return path[len(head) :]
        return None

    async def http_endpoint(self, request: Request) -> Response:
        path = self._route_path(request_path(request.scope))
        matches = []
        if path is not None:
            for route in self.routes:
                params = route.template.match(path)
                if params is not None:
                    matches.append((route, params))
        if not matches:
            return host_problem(request, HostProblem.NOT_FOUND)
        method = request.method.upper()
        allowed = [(r, p) for r, p in matches if r.methods is None or method in r.methods]
        if not allowed:
            methods = sorted({m for r, _ in matches for m in r.methods or ()})
            return Response(status_code=405, headers={"Allow": ", ".join(methods)})
        route, params = allowed[0]
        if not route.anonymous and not self._key_ok(request):
            return host_problem(request, HostProblem.UNAUTHORIZED)
        body = await request.body()
        http_request = _to_http_request(request, params, body)
        outcome = await self.invoke(
            route.spec, http_request, request.headers.get("traceparent", "")
        )
        if not outcome.ok:
            return Response(status_code=500)  # details are in the log, never in the reply
        try:
            return _to_response(outcome.value)
        except Exception:
            log.exception("Function '%s' returned something that is not a reply", route.spec.name)
            return Response(status_code=500)

    # -- Event Grid triggers --

    async def event_grid_endpoint(self, request: Request) -> Response:
        if not self._key_ok(request):
            return host_problem(request, HostProblem.UNAUTHORIZED)
        spec = self.event_grid.get(request.query_params.get("functionName", "").lower())
        if spec is None:
            return host_problem(request, HostProblem.NOT_FOUND)
        if request.method == "OPTIONS":
            # CloudEvents 1.0 webhook abuse protection: echo the origin, allow any rate.
            origin = request.headers.get("webhook-request-origin")
            if not origin:
                return Response(status_code=400)
            headers = {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"}
            return Response(status_code=200, headers=headers)

        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return Response(status_code=400)
        # A 400 tells Event Grid not to retry (the request is malformed); a 500 makes it
        # redeliver the whole batch later.
        if content_type == "application/cloudevents+json":
            events = [payload]
        elif content_type == "application/cloudevents-batch+json":
            events = payload
        else:
            kind = request.headers.get("aeg-event-type", "").lower()
            if kind == "subscriptionvalidation":
                code = _validation_code(payload)
                if code is None:
                    return Response(status_code=400)
                return JSONResponse({"validationResponse": code})
            if kind == "unsubscribe":
                return Response(status_code=202)
            if kind != "notification":
                return Response(status_code=400)
            events = payload
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            return Response(status_code=400)
        try:
            decoded = [
                EventGridEventInConverter.decode(
                    meta.Datum(json.dumps(event), "json"), trigger_metadata={}
                )
                for event in events
            ]
        except ValueError:
            return Response(status_code=400)
        parent = request.headers.get("traceparent", "")
        outcomes = await asyncio.gather(*(self.invoke(spec, e, parent) for e in decoded))
        return Response(status_code=200 if all(o.ok for o in outcomes) else 500)

    # -- queue triggers --

    async def _poll_queue(self, job: QueueJob) -> None:
        from azure.core.exceptions import AzureError
        from azure.storage.queue import QueueClient

        options = self.config.queues
        longest = max(MIN_POLLING_INTERVAL, options.max_polling_interval.total_seconds())

        # No SDK retries: the poll loop is the retry, and shutdown never waits on a backoff.
        def connect(name: str) -> QueueClient:
            return QueueClient.from_connection_string(
                job.connection_string,
                name,
                retry_total=0,
                connection_timeout=5,
                read_timeout=30,
                logger=storage_log,
            )

        client, poison = connect(job.queue_name), connect(f"{job.queue_name}-poison")
        ready = failing = False
        delay = MIN_POLLING_INTERVAL
        try:
            while not self._stopping_now():
                try:
                    if not ready:
                        await self._storage(_create_queue, client)
                        ready = True
                    messages = await self._storage(_receive, client, options.batch_size)
                    failing = False
                except AzureError as exc:
                    if not failing:  # one line per outage, not one per poll
                        log.warning("Queue '%s' unreachable: %s", job.queue_name, exc)
                    failing, messages, delay = True, [], longest
                if messages:
                    delay = MIN_POLLING_INTERVAL
                    handled = await asyncio.gather(
                        *(self._handle(job, client, poison, m) for m in messages),
                        return_exceptions=True,
                    )
                    for error in handled:
                        if isinstance(error, Exception):  # a bug of ours: keep polling anyway
                            log.error("Queue '%s' handler failed", job.queue_name, exc_info=error)
                    continue
                if await self._sleep(delay):
                    break
                delay = min(delay * 2, longest)
        finally:
            client.close()
            poison.close()

    def _stopping_now(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    async def _handle(
        self, job: QueueJob, client: QueueClient, poison: QueueClient, message: QueueMessage
    ) -> None:
        from azure.core.exceptions import AzureError

        options = self.config.queues
        try:
            value = QueueMessageInConverter.decode(
                _queue_body(message.content or "", options.message_encoding),
                trigger_metadata=_queue_metadata(message),
            )
        except ValueError:
            log.exception("Queue message %s could not be decoded", message.id)
            outcome = _Outcome(ok=False)
        else:
            outcome = await self.invoke(job.spec, value)
        try:
            if outcome.ok:
                await self._storage(client.delete_message, message)
            elif (message.dequeue_count or 0) >= options.max_dequeue_count:
                # Like the host: the original text goes to `<queue>-poison`, then the message goes.
                await self._storage(_create_queue, poison)
                await self._storage(poison.send_message, message.content)
                await self._storage(client.delete_message, message)
                log.warning(
                    "Message %s moved to '%s' after %s dequeues",
                    message.id,
                    poison.queue_name,
                    message.dequeue_count,
                )
            else:
                seconds = int(options.visibility_timeout.total_seconds())
                await self._storage(client.update_message, message, visibility_timeout=seconds)
        except AzureError as exc:  # the message reappears by itself when its lease ends
            log.warning("Queue '%s', message %s: %s", job.queue_name, message.id, exc)

    # -- timer triggers --

    async def _run_timer(self, job: TimerJob) -> None:
        last: datetime | None = None
        if job.run_on_startup:
            now = datetime.now(UTC)
            await self._fire(job, past_due=False, last=None, upcoming=job.schedule.next_after(now))
        while not self._stopping_now():
            scheduled = job.schedule.next_after(datetime.now(UTC))
            # Loop timers can wake a hair early against the wall clock: sleep the rest.
            while (remaining := (scheduled - datetime.now(UTC)).total_seconds()) > 0:
                if await self._sleep(remaining):
                    return
            fired = datetime.now(UTC)
            past_due = fired - scheduled > PAST_DUE_TOLERANCE
            await self._fire(job, past_due, last, job.schedule.next_after(max(fired, scheduled)))
            last = scheduled

    async def _fire(
        self, job: TimerJob, past_due: bool, last: datetime | None, upcoming: datetime
    ) -> None:
        info = {  # the TimerInfo JSON the host hands the worker
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {
                "Last": _iso(last) or "0001-01-01T00:00:00",
                "Next": _iso(upcoming),
                "LastUpdated": _iso(datetime.now(UTC)),
            },
            "IsPastDue": past_due,
        }
        timer = TimerRequestConverter.decode(
            meta.Datum(json.dumps(info), "json"), trigger_metadata={}
        )
        await self.invoke(job.spec, timer)


class HostProblem(StrEnum):
    """The errors the host answers itself, as RFC 9457 problems: the `type` fragment."""

    UNAUTHORIZED = "unauthorized"  # 401: no function key, or not the host's key
    NOT_FOUND = "not-found"  # 404: no function at this route (or no such Event Grid function)


_PROBLEM_TITLES = {
    HostProblem.UNAUTHORIZED: "A valid function key is required",
    HostProblem.NOT_FOUND: "No function serves this route",
}
_PROBLEM_STATUS = {HostProblem.UNAUTHORIZED: 401, HostProblem.NOT_FOUND: 404}
# RFC 3986 pchar besides letters, digits and escapes, less `@`: an address stays `a%40b`.
_SEGMENT_SAFE = "-._~!$&'()*+,;=:"


def problem_instance(scope: Mapping[str, Any]) -> str:
    """The request path as a valid URI reference, re-encoded segment by segment (an encoded
    slash stays one); the query is left out so a `code` key never lands in a body."""
    raw = scope.get("raw_path")
    segments = raw.split(b"/") if raw else [s.encode() for s in str(scope["path"]).split("/")]
    return "/".join(quote(unquote_to_bytes(s) if raw else s, safe=_SEGMENT_SAFE) for s in segments)


def host_problem(request: Request, problem: HostProblem) -> Response:
    """Host-level refusals in the app's problem+json shape (the real host answers with no body)."""
    status = _PROBLEM_STATUS[problem]
    body = {
        "type": PROBLEM_BASE + problem,
        "title": _PROBLEM_TITLES[problem],
        "status": status,
        "instance": problem_instance(request.scope),
    }
    return JSONResponse(body, status, media_type="application/problem+json")


def _validation_code(payload: Any) -> str | None:
    events = payload if isinstance(payload, list) else [payload]
    for event in events:
        data = event.get("data") if isinstance(event, dict) else None
        if isinstance(data, dict) and isinstance(data.get("validationCode"), str):
            return str(data["validationCode"])
    return None


def _joined(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Repeated headers and query parameters arrive comma-joined, as the host passes them."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def _to_http_request(request: Request, route_params: dict[str, str], body: bytes) -> Any:
    """Through the worker's own converter, fed the shape the host sends it."""

    def strings(values: Mapping[str, str]) -> dict[str, meta.Datum]:
        return {k: meta.Datum(v, "string") for k, v in values.items()}

    headers = _joined([(k, v) for k, v in request.headers.items()])
    query = _joined(list(request.query_params.multi_items()))
    datum = meta.Datum(
        {
            "method": meta.Datum(request.method, "string"),
            "url": meta.Datum(str(request.url), "string"),
            "headers": strings(headers),
            "query": strings(query),
            "params": strings(route_params),
            "body": meta.Datum(body, "bytes"),
        },
        "http",
    )
    return HttpRequestConverter.decode(datum, trigger_metadata={})


def _to_response(value: Any) -> Response:
    """The function's return value through the worker's HttpResponse converter."""
    if value is None:
        return Response(status_code=204)
    datum = HttpResponseConverter.encode(value, expected_type=None)
    if datum.type == "string":  # a bare `str` return
        return Response(datum.value, media_type="text/plain; charset=utf-8")
    reply = datum.value
    response = Response(
        content=reply["body"].value,
        status_code=int(reply["status_code"].value),
        headers={name: d.value for name, d in reply["headers"].items()},
    )
    for cookie in reply["cookies"] or []:
        for morsel in cookie.values():
            response.headers.append("set-cookie", morsel.OutputString())
    return response


# --- access log ------------------------------------------------------------------------------

MASK = "***"


def mask_target(target: str) -> str:
    """A request target fit for a log: the `code` query value (the function key) and every path
    segment, query name or value that holds an address (an `@` once decoded) become `***`."""
    path, question, query = target.partition("?")
    segments = [MASK if "@" in unquote(segment) else segment for segment in path.split("/")]
    pairs = []
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        if "@" in unquote_plus(name):
            pairs.append(MASK)
        elif unquote_plus(name).lower() == "code" or "@" in unquote_plus(value):
            pairs.append(f"{name}={MASK}")
        else:
            pairs.append(pair)
    return "/".join(segments) + question + "&".join(pairs)


class AccessLogMask(logging.Filter):
    """Runs uvicorn's access-log target through `mask_target`: the log never shows the key or
    an address, which the project logs only where a setting allows it."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs (client, method, path?query, http version, status) with a fixed format.
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (*args[:2], mask_target(args[2]), *args[3:])
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging, with AccessLogMask on its access logger."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["filters"] = {"mask": {"()": AccessLogMask}}
    config["loggers"]["uvicorn.access"]["filters"] = ["mask"]
    return config


# --- assembly --------------------------------------------------------------------------------


def _guess_app_dir(specs: list[FunctionSpec]) -> Path | None:
    for spec in specs:
        module = sys.modules.get(getattr(spec.call, "__module__", ""))
        if module is not None and getattr(module, "__file__", None):
            return Path(str(module.__file__)).resolve().parent
    return None


def create_host_app(
    app: func.FunctionApp,
    *,
    function_key: str,
    settings: Mapping[str, str] | None = None,
    app_dir: Path | None = None,
) -> Starlette:
    """Serve `app`; settings are looked up in `settings`, then os.environ.

    `app_dir` holds host.json and is the functions' directory (default: the app module's).
    """
    if not function_key:
        raise ValueError("function_key must not be empty")
    specs = read_functions(app)
    merged: Mapping[str, str] = ChainMap(dict(settings or {}), os.environ)
    app_dir = app_dir if app_dir is not None else _guess_app_dir(specs)
    host = _Host(
        specs,
        function_key=function_key,
        settings=merged,
        config=load_host_config(app_dir, merged),
        app_dir=app_dir,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await host.start()
        try:
            yield
        finally:
            await host.stop()

    starlette = Starlette(
        routes=[
            Route(
                "/runtime/webhooks/eventgrid",
                host.event_grid_endpoint,
                methods=["POST", "OPTIONS"],
            ),
            Route("/admin/host/status", host.host_status, methods=["GET"]),
            Route("/{path:path}", host.http_endpoint, methods=list(HTTP_METHODS)),
        ],
        lifespan=lifespan,
    )
    starlette.state.host = host
    return starlette


def list_functions(host_app: Starlette, base_url: str) -> list[str]:
    """One line per function, like the listing `func start` prints."""
    host: _Host = host_app.state.host
    prefix = f"/{host.config.route_prefix}" if host.config.route_prefix else ""
    lines = []
    for spec in host.specs:
        if spec.name in host.disabled:
            lines.append(f"{spec.name}: {spec.trigger} (not served: {host.disabled[spec.name]})")
            continue
        route = next((r for r in host.routes if r.spec is spec), None)
        queue = next((q for q in host.queues if q.spec is spec), None)
        timer = next((t for t in host.timers if t.spec is spec), None)
        if route is not None:
            methods = ",".join(sorted(route.methods)) if route.methods else "ALL"
            path = route.template.template.strip("/")
            lines.append(f"{spec.name}: [{methods}] {base_url}{prefix}/{path}")
        elif spec.trigger == "eventGridTrigger":
            # Never echo a key that came from the environment.
            code = host.key if host.key == DEFAULT_FUNCTION_KEY else "<key>"
            query = urlencode({"functionName": spec.name, "code": code}, safe="<>")
            lines.append(
                f"{spec.name}: eventGridTrigger {base_url}/runtime/webhooks/eventgrid?{query}"
            )
        elif queue is not None:
            lines.append(f"{spec.name}: queueTrigger (queue {queue.queue_name})")
        elif timer is not None:
            startup = ", run on startup" if timer.run_on_startup else ""
            lines.append(f"{spec.name}: timerTrigger (schedule {timer.expression}{startup})")
    return lines


def _load_local_settings(app_dir: Path) -> None:
    """local.settings.json `Values` become environment variables, as `func start` does;
    variables already set win."""
    path = app_dir / "local.settings.json"
    if path.is_file():
        values = json.loads(path.read_text(encoding="utf-8-sig")).get("Values") or {}
        for name, value in values.items():
            os.environ.setdefault(name, str(value))


def _find_app(module: Any) -> func.FunctionApp:
    if isinstance(getattr(module, "app", None), func.FunctionApp):
        return module.app  # type: ignore[no-any-return]
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionApp)]
    if len(apps) != 1:
        raise SystemExit(f"{module.__name__} must define exactly one FunctionApp (as `app`)")
    return apps[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.host", description=_DESCRIPTION)
    parser.add_argument("--module", default="function_app", help="module exposing `app`")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    sys.path.insert(0, os.getcwd())  # `func start` runs from the app root
    found = importlib.util.find_spec(args.module)
    if found is None or found.origin is None:
        raise SystemExit(f"module {args.module!r} not found from {os.getcwd()}")
    app_dir = Path(found.origin).resolve().parent
    _load_local_settings(app_dir)  # before the import, as the worker sees the settings
    module = importlib.import_module(args.module)

    key = os.environ.get(KEY_ENV) or DEFAULT_FUNCTION_KEY
    host_app = create_host_app(_find_app(module), function_key=key, app_dir=app_dir)
    base_url = f"http://127.0.0.1:{args.port}"
    if key == DEFAULT_FUNCTION_KEY:
        print(f"Function key: {DEFAULT_FUNCTION_KEY} (default; set {KEY_ENV} to change it)")
    else:
        print(f"Function key: from {KEY_ENV}")
    print("\nFunctions:\n")
    for line in list_functions(host_app, base_url):
        print(f"        {line}\n")
    uvicorn.run(
        host_app,
        host="127.0.0.1",
        port=args.port,
        log_level="info",
        log_config=uvicorn_log_config(),
    )


if __name__ == "__main__":
    main()
