"""End to end: the `make run` stack on free ports (Azurite, topic, sandbox, host), over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.credentials import AzureKeyCredential
from azure.eventgrid import EventGridEvent, EventGridPublisherClient

from local.ports import free_port
from local.stack import EVENTS_KEY, Stack, StackInfo, wait_healthy

from .factories import delivery_event

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    os.environ["SANDBOX_REPORT_DELAY"] = "0.2"
    running = Stack(tmp_path_factory.mktemp("stack"), free_port(), quiet=True)
    try:
        info = running.start()
        wait_healthy(info.base_url)
        yield info
    finally:
        running.stop()
        os.environ.pop("SANDBOX_REPORT_DELAY", None)
    for pid in running.info.pids if running.info else []:
        assert not _alive(pid), f"process {pid} left behind"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited; reap it if it is ours
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"


def client(info: StackInfo) -> httpx.Client:
    return httpx.Client(
        base_url=info.base_url, headers={"x-functions-key": info.function_key}, timeout=30
    )


def topic_base(info: StackInfo) -> str:
    return info.events_url.rsplit("/api/", 1)[0]


def wait_settled(info: StackInfo, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{topic_base(info)}/status").json()
        if status["pending"] == 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic still has pending deliveries: {status}")


def message(info: StackInfo, message_id: str) -> dict[str, Any]:
    with client(info) as c:
        reply = c.get(f"/api/emails/{message_id}")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())


def wait_final(info: StackInfo, message_id: str, n: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        with client(info) as c:
            reply = c.get(f"/api/emails/{message_id}")
        if reply.status_code == 200:
            view = reply.json()
            recipients = view["recipients"]
            if len(recipients) == n and all(
                r["status"] not in {"accepted", "sent"} for r in recipients
            ):
                return dict(view)
        if time.monotonic() > deadline:
            raise TimeoutError(reply.text)
        time.sleep(0.2)


ROUTES = [
    ("POST", "/api/emails"),
    ("GET", "/api/emails/some-id"),
    ("GET", "/api/recipients/a@example.com/emails"),
    ("GET", "/api/explain?message=550"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_api_routes_need_the_function_key(stack: StackInfo, method: str, path: str) -> None:
    url = stack.base_url + path
    assert httpx.request(method, url).status_code == 401
    assert httpx.request(method, url, headers={"x-functions-key": "wrong"}).status_code == 401
    sep = "&" if "?" in path else "?"
    ok = httpx.request(method, f"{url}{sep}code={stack.function_key}", json={})
    assert ok.status_code != 401


def test_health_is_anonymous(stack: StackInfo) -> None:
    assert httpx.get(f"{stack.base_url}/api/health").status_code == 200


def test_webhook_needs_key_and_event_type(stack: StackInfo) -> None:
    hook = f"{stack.base_url}/runtime/webhooks/eventgrid?functionName=record_delivery_report"
    assert httpx.post(hook, json=[]).status_code == 401
    keyed = f"{hook}&code={stack.function_key}"
    assert httpx.post(keyed, json=[]).status_code == 400  # no aeg-event-type
    validation = [
        {
            "id": "1",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "subject": "",
            "eventTime": "2026-11-20T10:00:00Z",
            "dataVersion": "1",
            "data": {"validationCode": "abc-123"},
        }
    ]
    reply = httpx.post(keyed, json=validation, headers={"aeg-event-type": "SubscriptionValidation"})
    assert reply.json() == {"validationResponse": "abc-123"}


def test_report_published_to_topic_lands_in_lookup(stack: StackInfo) -> None:
    mid = str(uuid.uuid4())
    raw = delivery_event(mid, "Topic@Example.com", "Bounced", 1)
    publisher = EventGridPublisherClient(stack.events_url, AzureKeyCredential(EVENTS_KEY))
    publisher.send(
        [
            EventGridEvent(
                subject=raw["subject"],
                event_type=raw["eventType"],
                data=raw["data"],
                data_version="1.0",
                id=raw["id"],
            )
        ]
    )
    view = wait_final(stack, mid, 1)
    (recipient,) = view["recipients"]
    assert recipient["status"] == "bounced"
    assert recipient["bounceType"] == "hard"


def test_cloudevents_to_the_webhook(stack: StackInfo) -> None:
    mid = str(uuid.uuid4())
    hook = (
        f"{stack.base_url}/runtime/webhooks/eventgrid"
        f"?functionName=record_delivery_report&code={stack.function_key}"
    )
    options = httpx.options(hook, headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    batch = [
        delivery_event(mid, f"ce{i}@example.com", "Delivered", i, cloud=True) for i in range(3)
    ]
    reply = httpx.post(
        hook,
        content=json.dumps(batch),
        headers={"content-type": "application/cloudevents-batch+json; charset=utf-8"},
    )
    assert reply.status_code == 200
    view = message(stack, mid)
    assert [r["status"] for r in view["recipients"]] == ["delivered"] * 3


def _knobs(stack: StackInfo, **values: Any) -> None:
    reply = httpx.post(f"{topic_base(stack)}/knobs", json=values)
    assert reply.status_code == 200, reply.text


def _publish(stack: StackInfo, events: list[dict[str, Any]]) -> None:
    reply = httpx.post(stack.events_url, json=events, headers={"aeg-sas-key": EVENTS_KEY})
    assert reply.status_code == 200, reply.text


def test_failed_delivery_is_redelivered_and_ends_correct(stack: StackInfo) -> None:
    mid = str(uuid.uuid4())
    _knobs(stack, fail_first=1)
    try:
        _publish(stack, [delivery_event(mid, "retry@example.com", "Delivered", 1)])
        view = wait_final(stack, mid, 1)
    finally:
        _knobs(stack, fail_first=0)
    assert view["recipients"][0]["status"] == "delivered"
    assert len(view["recipients"][0]["timeline"]) == 1


def _story(mid: str) -> list[dict[str, Any]]:
    """A message's reports: a soft failure then delivery, an Expanded then a bounce, spam."""
    return [
        delivery_event(mid, "a@example.com", "Failed", 1, event_id=f"{mid}-1"),
        delivery_event(mid, "a@example.com", "Delivered", 5, event_id=f"{mid}-2"),
        delivery_event(mid, "b@example.com", "Expanded", 1, event_id=f"{mid}-3"),
        delivery_event(mid, "b@example.com", "Bounced", 3, event_id=f"{mid}-4"),
        delivery_event(mid, "c@example.com", "FilteredSpam", 2, event_id=f"{mid}-5"),
    ]


def _summary(view: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (r["address"], r["status"], r["bounceType"], r["reason"], len(r["timeline"]))
        for r in view["recipients"]
    ]


def test_duplicate_and_shuffle_yield_the_same_final_state(stack: StackInfo) -> None:
    calm, chaotic = str(uuid.uuid4()), str(uuid.uuid4())
    _publish(stack, _story(calm))
    wait_settled(stack)
    _knobs(stack, duplicate=3, shuffle=True, seed=7)
    try:
        _publish(stack, _story(chaotic))
        wait_settled(stack)
    finally:
        _knobs(stack, duplicate=1, shuffle=False)
    expected = _summary(message(stack, calm))
    assert _summary(message(stack, chaotic)) == expected
    assert [s[1] for s in expected] == ["delivered", "bounced", "spam_filtered"]


def test_send_through_the_stack_to_the_simulator(stack: StackInfo) -> None:
    addresses = [
        "delivered@simulator.test",
        "bounce@simulator.test",
        "mailboxfull@simulator.test",
        "spam@simulator.test",
    ]
    with client(stack) as c:
        reply = c.post(
            "/api/emails",
            json={"to": [{"address": a} for a in addresses], "subject": "Hi", "plainText": "Yo"},
        )
    assert reply.status_code == 202, reply.text
    assert reply.headers["Location"].endswith(reply.json()["messageId"])
    view = wait_final(stack, reply.json()["messageId"], 4, timeout=60)
    got = {r["address"]: (r["status"], r["bounceType"], r["reason"]) for r in view["recipients"]}
    assert got["delivered@simulator.test"] == ("delivered", None, None)
    assert got["bounce@simulator.test"] == ("bounced", "hard", "userunknown")
    assert got["mailboxfull@simulator.test"][:3] == ("failed", "soft", "mailboxfull")
    assert got["spam@simulator.test"][0] == "spam_filtered"


def test_make_run_entry_point_stops_every_child_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LOCAL_DATA_DIR": str(tmp_path), "PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.stack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / "stack.json").exists():
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        info = json.loads((tmp_path / "stack.json").read_text())
        wait_healthy(info["base_url"])
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.decode()
    assert "Function key" in text
    assert "curl" in text
    assert proc.returncode == 0
    time.sleep(0.5)
    for pid in info["pids"]:
        assert not Path(f"/proc/{pid}").exists() or _proc_state(pid) == "Z", pid
