"""The app's table of contents: every trigger, each a thin body over one call into `shared`.

Import-safe by design: nothing here reads required settings, opens a client or imports an Azure
SDK other than azure.functions; `shared.app.wiring` builds everything on first use.
"""

from __future__ import annotations

import azure.functions as func

from shared import web
from shared.app import wiring
from shared.core.settings import SEND_QUEUE

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


# --- Event Grid: ACS delivery and engagement reports ----------------------------------------
# An exception means "retry me" to Event Grid: only transient storage trouble propagates. Two
# functions with one body, because each Event Grid subscription names the function it calls.


@app.event_grid_trigger(arg_name="event")
def record_delivery_report(event: func.EventGridEvent) -> None:
    wiring.reports().record(web.event_payload(event))


@app.event_grid_trigger(arg_name="event")
def record_engagement_report(event: func.EventGridEvent) -> None:
    wiring.reports().record(web.event_payload(event))


# --- Sending: accept durably over HTTP, send from the queue -------------------------------


@app.route(route="emails", methods=["POST"])
def send_email(req: func.HttpRequest) -> func.HttpResponse:
    return web.reply(
        req,
        lambda: wiring.sending().accept(
            req.get_body(),
            req.headers.get("content-type"),
            req.headers.get("idempotency-key"),
            web.base_url(req),
        ),
    )


@app.queue_trigger(arg_name="item", queue_name=SEND_QUEUE, connection="AzureWebJobsStorage")
def send_queued_email(item: func.QueueMessage) -> None:
    wiring.sending().send_queued(item.get_body().decode("utf-8", "replace"))


@app.queue_trigger(
    arg_name="item", queue_name=f"{SEND_QUEUE}-poison", connection="AzureWebJobsStorage"
)
def fail_poisoned_email(item: func.QueueMessage) -> None:
    wiring.sending().fail_poisoned(item.get_body().decode("utf-8", "replace"))


# --- Lookup API -----------------------------------------------------------------------------


@app.route(route="emails", methods=["GET"])
def search_emails(req: func.HttpRequest) -> func.HttpResponse:
    accept, base = req.headers.get("accept"), web.base_url(req)
    return web.reply(req, lambda: wiring.activity().emails(req.params, accept, base))


@app.route(route="emails/{messageId}", methods=["GET"])
def get_message_status(req: func.HttpRequest) -> func.HttpResponse:
    return web.reply(req, lambda: wiring.lookups().message(req.route_params["messageId"]))


@app.route(route="recipients/{address}/emails", methods=["GET"])
def list_recipient_emails(req: func.HttpRequest) -> func.HttpResponse:
    address = req.route_params["address"]
    return web.reply(req, lambda: wiring.lookups().recipient_history(address, req.params))


@app.route(route="explain", methods=["GET"])
def explain_status(req: func.HttpRequest) -> func.HttpResponse:
    from shared.app.lookups import explain  # the classifier alone: no storage client

    return web.reply(req, lambda: explain(req.params))


# --- Suppression list (operators) -----------------------------------------------------------


@app.route(route="suppressions/{address}", methods=["GET"])
def get_suppression(req: func.HttpRequest) -> func.HttpResponse:
    return web.reply(req, lambda: wiring.operators().suppression(req.route_params["address"]))


@app.route(route="suppressions/{address}", methods=["PUT"])
def suppress_address(req: func.HttpRequest) -> func.HttpResponse:
    address, body, kind = (
        req.route_params["address"],
        req.get_body(),
        req.headers.get("content-type"),
    )
    who = req.headers.get("x-ms-client-principal-name")  # App Service Authentication's user
    return web.reply(req, lambda: wiring.operators().suppress(address, body, kind, who))


@app.route(route="suppressions/{address}", methods=["DELETE"])
def reactivate_address(req: func.HttpRequest) -> func.HttpResponse:
    address, body, kind = (
        req.route_params["address"],
        req.get_body(),
        req.headers.get("content-type"),
    )
    who = req.headers.get("x-ms-client-principal-name")  # App Service Authentication's user
    return web.reply(req, lambda: wiring.operators().reactivate(address, body, kind, who))


@app.route(route="suppressions", methods=["GET"])
def list_suppressions(req: func.HttpRequest) -> func.HttpResponse:
    accept = req.headers.get("accept")
    return web.reply(req, lambda: wiring.operators().list_suppressions(req.params, accept))


# --- Sender domains (operators) -------------------------------------------------------------


@app.route(route="senders/{domain}", methods=["GET"])
def get_sender_health(req: func.HttpRequest) -> func.HttpResponse:
    return web.reply(req, lambda: wiring.operators().sender(req.route_params["domain"]))


@app.route(route="senders/{domain}/resume", methods=["POST"])
def resume_sender(req: func.HttpRequest) -> func.HttpResponse:
    domain, body, kind = req.route_params["domain"], req.get_body(), req.headers.get("content-type")
    who = req.headers.get("x-ms-client-principal-name")  # App Service Authentication's user
    return web.reply(req, lambda: wiring.operators().resume_sender(domain, body, kind, who))


# --- Alerts and timers ----------------------------------------------------------------------


@app.route(route="alerts", methods=["GET"])
def list_alerts(req: func.HttpRequest) -> func.HttpResponse:
    return web.reply(req, lambda: wiring.lookups().alerts_raised(req.params))


@app.timer_trigger(arg_name="timer", schedule="0 */1 * * * *", run_on_startup=False)
def publish_pending_alerts(timer: func.TimerRequest) -> None:
    wiring.monitoring().publish_pending_alerts()


@app.timer_trigger(arg_name="timer", schedule="30 */1 * * * *", run_on_startup=False)
def evaluate_sender_rates(timer: func.TimerRequest) -> None:
    wiring.monitoring().evaluate_sender_rates()


@app.timer_trigger(arg_name="timer", schedule="45 */1 * * * *", run_on_startup=False)
def detect_stuck_deliveries(timer: func.TimerRequest) -> None:
    wiring.monitoring().detect_stuck()


# --- Deliverability reports and outcome events -----------------------------------------------


@app.route(route="reports/deliverability", methods=["GET"])
def get_deliverability_report(req: func.HttpRequest) -> func.HttpResponse:
    accept = req.headers.get("accept")
    return web.reply(req, lambda: wiring.deliverability().report(req.params, accept))


@app.route(route="reports/failures", methods=["GET"])
def get_failure_report(req: func.HttpRequest) -> func.HttpResponse:
    return web.reply(req, lambda: wiring.deliverability().failures(req.params))


@app.timer_trigger(arg_name="timer", schedule="15 */1 * * * *", run_on_startup=False)
def publish_pending_outcome_events(timer: func.TimerRequest) -> None:
    wiring.outcome_feed().publish_pending()


# --- Support console (anonymous: static code only; every datum it shows is a keyed API call) --
# Why no key here: see shared/app/console.py.


@app.route(route="console", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def show_console(req: func.HttpRequest) -> func.HttpResponse:
    return web.reply(req, lambda: wiring.console().page(req.url))


@app.route(route="console/{file}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_console_file(req: func.HttpRequest) -> func.HttpResponse:
    return web.reply(req, lambda: wiring.console().file(req.route_params["file"]))


# --- Privacy: retention and erasure ------------------------------------------------------


@app.route(route="recipients/{address}", methods=["DELETE"])
def erase_recipient(req: func.HttpRequest) -> func.HttpResponse:
    address, body, kind = (
        req.route_params["address"],
        req.get_body(),
        req.headers.get("content-type"),
    )
    return web.reply(req, lambda: wiring.privacy().erase(address, body, kind))


@app.timer_trigger(arg_name="timer", schedule="0 5 * * * *", run_on_startup=False)
def purge_expired_data(timer: func.TimerRequest) -> None:
    wiring.privacy().purge()


# --- Health (anonymous) ---------------------------------------------------------------------


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def check_health(req: func.HttpRequest) -> func.HttpResponse:
    return web.reply(req, wiring.health)
