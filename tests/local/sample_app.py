"""A small FunctionApp for the host stand-in tests: one function per trigger shape we serve."""

from __future__ import annotations

import json
import threading

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# What the non-HTTP functions saw, for the tests to read (appends are thread-safe).
events: list[func.EventGridEvent | func.CloudEvent] = []
queue_messages: list[tuple[str, int]] = []  # (body, dequeue_count)
ticks: list[bool] = []  # past_due per timer invocation
# Set it and the next Event Grid invocation raises, once.
fail_next_event = threading.Event()
_fail_lock = threading.Lock()

POISON_MARKER = "fail"


def _json(payload: object, status_code: int = 200) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(payload), status_code=status_code, mimetype="application/json"
    )


@app.route(route="hello/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def say_hello(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"name": req.route_params["name"], "greeting": req.params.get("greeting")})


@app.route(route="messages/{messageId}/recipients/{address}", methods=["GET"])
async def get_recipient(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _json(
        {
            "route": dict(req.route_params),
            "query": dict(req.params),
            "function": context.function_name,
            "url": req.url,
        }
    )


# An optional, constrained parameter: ASP.NET syntax the stand-in does not serve (see host.py).
@app.route(route="items/{id:int?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"id": req.route_params.get("id")})


@app.route(route="echo", methods=["POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        req.get_body(),
        status_code=201,
        headers={"x-echo-method": req.method},
        mimetype=req.headers.get("content-type", "application/octet-stream"),
    )


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def explode(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret detail that must not reach the client")


@app.event_grid_trigger(arg_name="event")
def record_event(event: func.EventGridEvent) -> None:
    with _fail_lock:
        fail = fail_next_event.is_set()
        fail_next_event.clear()
    if fail:
        raise RuntimeError(f"told to fail on {event.id}")
    events.append(event)


@app.queue_trigger(
    arg_name="msg", queue_name="%SAMPLE_QUEUE_NAME%", connection="AzureWebJobsStorage"
)
def work_queue_item(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode()
    queue_messages.append((body, msg.dequeue_count))
    if body == POISON_MARKER:
        raise ValueError("marker message fails every time")


@app.timer_trigger(schedule="* * * * * *", arg_name="timer")
def tick(timer: func.TimerRequest) -> None:
    ticks.append(timer.past_due)
