"""function_app is the table of contents: every trigger, its name and binding, import-safe."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

EXPECTED = {
    "record_delivery_report": ("eventGridTrigger", None, None),
    "record_engagement_report": ("eventGridTrigger", None, None),
    "send_email": ("httpTrigger", "emails", ["POST"]),
    "send_queued_email": ("queueTrigger", "email-send", None),
    "fail_poisoned_email": ("queueTrigger", "email-send-poison", None),
    "get_message_status": ("httpTrigger", "emails/{messageId}", ["GET"]),
    "list_recipient_emails": ("httpTrigger", "recipients/{address}/emails", ["GET"]),
    "explain_status": ("httpTrigger", "explain", ["GET"]),
    "get_suppression": ("httpTrigger", "suppressions/{address}", ["GET"]),
    "suppress_address": ("httpTrigger", "suppressions/{address}", ["PUT"]),
    "reactivate_address": ("httpTrigger", "suppressions/{address}", ["DELETE"]),
    "list_suppressions": ("httpTrigger", "suppressions", ["GET"]),
    "list_alerts": ("httpTrigger", "alerts", ["GET"]),
    "publish_pending_alerts": ("timerTrigger", None, None),
    "evaluate_sender_rates": ("timerTrigger", None, None),
    "detect_stuck_deliveries": ("timerTrigger", None, None),
    "get_sender_health": ("httpTrigger", "senders/{domain}", ["GET"]),
    "resume_sender": ("httpTrigger", "senders/{domain}/resume", ["POST"]),
    "check_health": ("httpTrigger", "health", ["GET"]),
    "search_emails": ("httpTrigger", "emails", ["GET"]),
    "show_console": ("httpTrigger", "console", ["GET"]),
    "get_console_file": ("httpTrigger", "console/{file}", ["GET"]),
}
# No key: the health probe, and the console's static page and files (no data in them; every
# datum the page shows is a keyed API call; why: shared/app/console.py).
ANONYMOUS = frozenset({"check_health", "show_console", "get_console_file"})


def _trigger(fn: Any) -> Any:
    return next(b for b in fn.get_bindings() if b.type.endswith("Trigger"))


def test_functions_and_bindings(app_functions: list[Any]) -> None:
    found = {fn.get_function_name(): _trigger(fn) for fn in app_functions}
    assert set(EXPECTED) <= set(found)
    for name, (kind, where, methods) in EXPECTED.items():
        trigger = found[name]
        assert trigger.type == kind, name
        if kind == "httpTrigger":
            assert trigger.route == where
            assert [str(getattr(m, "value", m)) for m in trigger.methods] == methods
        if kind == "queueTrigger":
            assert trigger.queue_name == where
            assert trigger.connection == "AzureWebJobsStorage"


def test_auth_levels(app_functions: list[Any]) -> None:
    for fn in app_functions:
        trigger = _trigger(fn)
        if trigger.type != "httpTrigger":
            continue
        level = str(getattr(trigger.auth_level, "value", trigger.auth_level)).lower()
        expected = "anonymous" if fn.get_function_name() in ANONYMOUS else "function"
        assert level == expected, fn.get_function_name()


@pytest.mark.parametrize(
    "module",
    [
        "azure.data.tables",
        "azure.communication.email",
        "azure.eventgrid",
        "azure.identity",
        "azure.storage.queue",
        "azure.storage.blob",
        "pydantic",
        "azure.monitor.opentelemetry",
        "email_validator",
    ],
)
def test_import_does_not_load_heavy_sdks(module: str) -> None:
    code = f"import sys, function_app; sys.exit(1 if {module!r} in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert result.returncode == 0, f"importing function_app imported {module}"


def test_import_needs_no_settings() -> None:
    code = "import function_app"
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=False)
    assert result.returncode == 0, result.stderr.decode()
