"""The app's table of contents: every trigger, each a thin body over one call into `shared`.

Import-safe by design: nothing here reads required settings, opens a client or imports an Azure
SDK other than azure.functions; `shared.services` builds clients on first use.
"""

from __future__ import annotations

import azure.functions as func

from shared import web
from shared.errors import Problem
from shared.settings import SEND_QUEUE

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


# --- Event Grid: ACS delivery and engagement reports ----------------------------------------
# An exception means "retry me" to Event Grid: only transient storage trouble propagates.


@app.event_grid_trigger(arg_name="event")
def record_delivery_report(event: func.EventGridEvent) -> None:
    from shared.pipeline import record_event  # the classifier loads on first use, not at start

    record_event(web.event_payload(event))


@app.event_grid_trigger(arg_name="event")
def record_engagement_report(event: func.EventGridEvent) -> None:
    from shared.pipeline import record_event

    record_event(web.event_payload(event))


# --- Sending: accept durably over HTTP, send from the queue -------------------------------


@app.route(route="emails", methods=["POST"])
def send_email(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from shared import services
        from shared.sending.service import accept_send

        base = req.url.split("/api/", 1)[0]
        result = accept_send(
            services.outbox(),
            req.get_body(),
            req.headers.get("content-type"),
            req.headers.get("idempotency-key"),
            base,
        )
        headers = {"Location": result.body["lookupUrl"]} if result.status == 202 else {}
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
        return web.json_response(result.body, result.status, headers)

    return web.respond(req, handle)


@app.queue_trigger(arg_name="item", queue_name=SEND_QUEUE, connection="AzureWebJobsStorage")
def send_queued_email(item: func.QueueMessage) -> None:
    from shared import services
    from shared.sending.service import send_queued

    send_queued(services.outbox(), item.get_body().decode("utf-8", "replace"))


@app.queue_trigger(
    arg_name="item", queue_name=f"{SEND_QUEUE}-poison", connection="AzureWebJobsStorage"
)
def fail_poisoned_email(item: func.QueueMessage) -> None:
    from shared import services
    from shared.sending.service import fail_poisoned

    fail_poisoned(services.outbox(), item.get_body().decode("utf-8", "replace"))


# --- Lookup API -----------------------------------------------------------------------------


@app.route(route="emails/{messageId}", methods=["GET"])
def get_message_status(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from shared import lookup, services

        return web.json_response(
            lookup.get_message(services.message_store(), req.route_params.get("messageId", ""))
        )

    return web.respond(req, handle)


@app.route(route="recipients/{address}/emails", methods=["GET"])
def list_recipient_emails(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from shared import lookup, services
        from shared.errors import InvalidInput

        problems: list[Problem] = []
        limit = web.int_param(req.params, "limit", 20, 1, lookup.MAX_PAGE, problems)
        if problems:
            raise InvalidInput("Invalid query parameters", problems)
        return web.json_response(
            lookup.recipient_history(
                services.message_store(),
                req.route_params.get("address", ""),
                limit,
                req.params.get("continuation") or None,
            )
        )

    return web.respond(req, handle)


# --- Suppression list (operators) -----------------------------------------------------------


@app.route(route="suppressions/{address}", methods=["GET"])
def get_suppression(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from shared import services, suppression_admin

        address = req.route_params.get("address", "")
        return web.json_response(suppression_admin.get(services.suppression_list(), address))

    return web.respond(req, handle)


@app.route(route="suppressions/{address}", methods=["PUT"])
def suppress_address(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from shared import services, suppression_admin

        return web.json_response(
            suppression_admin.add(
                services.suppression_list(),
                req.route_params.get("address", ""),
                req.get_body(),
                req.headers.get("content-type"),
            )
        )

    return web.respond(req, handle)


@app.route(route="suppressions/{address}", methods=["DELETE"])
def reactivate_address(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from shared import services, suppression_admin

        return web.json_response(
            suppression_admin.reactivate(
                services.suppression_list(),
                req.route_params.get("address", ""),
                req.get_body(),
                req.headers.get("content-type"),
            )
        )

    return web.respond(req, handle)


@app.route(route="suppressions", methods=["GET"])
def list_suppressions(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from shared import lookup, services, suppression_admin
        from shared.errors import InvalidInput

        problems: list[Problem] = []
        limit = web.int_param(req.params, "limit", 50, 1, lookup.MAX_PAGE, problems)
        if problems:
            raise InvalidInput("Invalid query parameters", problems)
        return web.json_response(
            suppression_admin.list_domain(
                services.suppression_list(),
                req.params.get("domain"),
                limit,
                req.params.get("continuation") or None,
            )
        )

    return web.respond(req, handle)


# --- Alerts ---------------------------------------------------------------------------------


@app.route(route="alerts", methods=["GET"])
def list_alerts(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from datetime import UTC, datetime, timedelta

        from shared import lookup, services
        from shared.errors import InvalidInput

        problems: list[Problem] = []
        limit = web.int_param(req.params, "limit", 50, 1, lookup.MAX_PAGE, problems)
        since = datetime.now(UTC) - timedelta(days=7)
        if req.params.get("since"):
            try:
                since = datetime.fromisoformat(req.params["since"])
                if since.tzinfo is None:
                    raise ValueError
            except ValueError:
                problems.append(Problem("since", "an ISO 8601 time with an offset"))
        if since < datetime.now(UTC) - timedelta(days=31):
            problems.append(Problem("since", "at most 31 days ago"))
        if problems:
            raise InvalidInput("Invalid query parameters", problems)
        return web.json_response(
            services.alert_log().history(
                since, req.params.get("type") or None, limit, req.params.get("continuation")
            )
        )

    return web.respond(req, handle)


@app.timer_trigger(arg_name="timer", schedule="0 */1 * * * *", run_on_startup=False)
def publish_pending_alerts(timer: func.TimerRequest) -> None:
    from shared import services

    services.alert_log().publish_pending()


@app.timer_trigger(arg_name="timer", schedule="30 */1 * * * *", run_on_startup=False)
def evaluate_sender_rates(timer: func.TimerRequest) -> None:
    from shared import services

    services.sender_health().evaluate_all()


@app.timer_trigger(arg_name="timer", schedule="45 */1 * * * *", run_on_startup=False)
def detect_stuck_deliveries(timer: func.TimerRequest) -> None:
    from shared import services
    from shared.alerts import AddressMode
    from shared.settings import get_settings

    services.in_flight().detect(AddressMode(get_settings().alert_addresses))


# --- Sender domains (operators) -------------------------------------------------------------


@app.route(route="senders/{domain}", methods=["GET"])
def get_sender_health(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from shared import sender_admin, services

        domain = req.route_params.get("domain", "")
        return web.json_response(sender_admin.get(services.sender_health(), domain))

    return web.respond(req, handle)


@app.route(route="senders/{domain}/resume", methods=["POST"])
def resume_sender(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from shared import sender_admin, services

        return web.json_response(
            sender_admin.resume(
                services.sender_health(),
                req.route_params.get("domain", ""),
                req.get_body(),
                req.headers.get("content-type"),
            )
        )

    return web.respond(req, handle)


@app.route(route="explain", methods=["GET"])
def explain_status(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from shared.core.classification import classify
        from shared.errors import InvalidInput

        status, message = req.params.get("status"), req.params.get("message")
        problems = []
        if not status and not message:
            problems.append(Problem("message", "give a status message and/or an ACS status"))
        if message and len(message) > 16_384:
            problems.append(Problem("message", "at most 16384 characters"))
        if status and len(status) > 64:
            problems.append(Problem("status", "at most 64 characters"))
        if problems:
            raise InvalidInput("Invalid query parameters", problems)
        return web.json_response(classify(status, message).to_json())

    return web.respond(req, handle)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def check_health(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        from shared import services

        services.message_store().ping()
        return web.json_response({"status": "ok", "storage": "ok"})

    return web.respond(req, handle)
