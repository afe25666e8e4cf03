"""The local stack with a story in it, for the console's browser tests and `make screenshots`:
simulator sends (delivered, bounced, mailbox full, spam, opened), tags, and one hostile report
published through the Event Grid topic as ACS would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from local.ports import free_port
from local.stack import EVENTS_KEY, Stack, StackInfo, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
XSS_TEXT = "<img src=x onerror=alert(1)> 550 5.1.1 user unknown"
XSS_RECIPIENT = "<svg/onload=alert(2)>@example.com"


STORY_OUTCOMES = 5 + 3 + 1  # seed(): the mixed message, three singles, the hostile report


@dataclass
class Story:
    info: StackInfo
    mixed: str = ""  # delivered, bounce, mailboxfull, spam, opened at simulator.test
    single: list[str] = field(default_factory=list)  # one delivered recipient each
    hostile: str = ""  # a report whose texts are HTML
    internet_message_id: str = ""

    @property
    def base(self) -> str:
        return self.info.base_url

    def console(self, hash_: str = "", with_key: bool = True) -> str:
        code = f"?code={self.info.function_key}" if with_key else ""
        return f"{self.base}/api/console{code}#{hash_}"

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"x-functions-key": self.info.function_key}, timeout=30
        )


@contextmanager
def running_stack(data_dir: Path) -> Iterator[StackInfo]:
    import os

    os.environ["SANDBOX_REPORT_DELAY"] = "0.2"
    stack = Stack(data_dir, free_port(), quiet=True)
    try:
        info = stack.start()
        wait_healthy(info.base_url)
        yield info
    finally:
        stack.stop()
        os.environ.pop("SANDBOX_REPORT_DELAY", None)


def _wait(check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("gave up waiting")


def _send(story: Story, to: list[str], tags: dict[str, str], subject: str) -> str:
    with story.client() as c:
        reply = c.post(
            "/api/emails",
            json={
                "to": [{"address": a} for a in to],
                "subject": subject,
                "plainText": "Hello from the support console tests.",
                "html": "<p>Hello from the support console tests.</p>",  # tracked: opens
                "tags": tags,
            },
        )
    assert reply.status_code == 202, reply.text
    return str(reply.json()["messageId"])


def _final(story: Story, message_id: str, n: int) -> bool:
    with story.client() as c:
        reply = c.get(f"/api/emails/{message_id}")
    if reply.status_code != 200:
        return False
    recipients = reply.json()["recipients"]
    return len(recipients) == n and all(r["status"] not in {"accepted", "sent"} for r in recipients)


def seed(info: StackInfo, hostile: bool = True) -> Story:
    story = Story(info)
    story.mixed = _send(
        story,
        [
            f"{kind}@simulator.test"
            for kind in ("delivered", "bounce", "mailboxfull", "spam", "opened")
        ],
        {"campaign": "spring-sale", "team": "billing"},
        "Your March invoice",
    )
    story.single = [
        _send(story, [f"delivered+{n}@simulator.test"], {"campaign": "welcome"}, "Welcome")
        for n in range(3)
    ]
    if hostile:
        _publish_hostile(story)
    _wait(lambda: _final(story, story.mixed, 5))
    for message_id in story.single:
        _wait(lambda m=message_id: _final(story, m, 1))
    if hostile:
        _wait(lambda: _final(story, story.hostile, 1))
    # the engagement report of opened@ follows its delivery
    _wait(lambda: _opened(story))
    return story


def _publish_hostile(story: Story) -> None:
    story.hostile = str(uuid.uuid4())
    story.internet_message_id = f"<{story.hostile[:8]}.Console@EUR01.Prod.Example.COM>"
    event = {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Communication/"
        "communicationServices/acs",
        "subject": f"sender/DoNotReply@sandbox.test/message/{story.hostile}",
        "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
        "eventTime": datetime.now(UTC).isoformat(),
        "dataVersion": "1.0",
        "data": {
            "sender": "DoNotReply@sandbox.test",
            "recipient": XSS_RECIPIENT,
            "messageId": story.hostile,
            "status": "Bounced",
            "deliveryStatusDetails": {"statusMessage": XSS_TEXT},
            "deliveryAttemptTimestamp": datetime.now(UTC).isoformat(),
            "internetMessageId": story.internet_message_id,
        },
    }
    reply = httpx.post(story.info.events_url, json=[event], headers={"aeg-sas-key": EVENTS_KEY})
    assert reply.status_code == 200, reply.text


def _opened(story: Story) -> bool:
    with story.client() as c:
        view = c.get(f"/api/emails/{story.mixed}").json()
    opened = next(r for r in view["recipients"] if r["address"] == "opened@simulator.test")
    return bool(opened["engagement"]["opens"])


# A mix across mailbox providers for the reports view: the sandbox delivers anything outside
# simulator.test (its MX host is mx.<domain>, so the provider comes from the consumer domain);
# failures there arrive as reports ACS would publish for mail sent around this app.
PROVIDER_SENDS = {"gmail.com": 14, "outlook.com": 9, "yahoo.com": 5}
SIMULATED_FAILURES = ("bounce+1", "blocked", "expired", "quarantine", "mailboxfull+1")
PUBLISHED_FAILURES = [
    (
        "Bounced",
        "gone@gmail.com",
        "gmail-smtp-in.l.google.com",
        "550 5.1.1 The email account that you tried to reach does not exist.",
    ),
    (
        "Bounced",
        "left.company@outlook.com",
        "outlook-com.olc.protection.outlook.com",
        "550 5.5.0 Requested action not taken: mailbox unavailable",
    ),
    (
        "Failed",
        "quota@yahoo.com",
        "mta6.am0.yahoodns.net",
        "552 1 Requested mail action aborted, mailbox not found",
    ),
]


def seed_reports(story: Story) -> int:
    """Sends and reports across Google, Microsoft, Yahoo and the simulator; returns how many
    recipient outcomes they add."""
    ids = []
    for domain, n in PROVIDER_SENDS.items():
        ids.append(
            (
                _send(
                    story, [f"reader{i}@{domain}" for i in range(n)], {"campaign": "news"}, "News"
                ),
                n,
            )
        )
    failures = [f"{kind}@simulator.test" for kind in SIMULATED_FAILURES]
    ids.append((_send(story, failures, {"campaign": "news"}, "News"), len(failures)))
    for status, recipient, server, text in PUBLISHED_FAILURES:
        _publish(story, status, recipient, server, text)
    for message_id, n in ids:
        _wait(lambda m=message_id, n=n: _final(story, m, n))
    return sum(PROVIDER_SENDS.values()) + len(failures) + len(PUBLISHED_FAILURES)


def wait_for_report(story: Story, expected: int) -> None:
    """Until the deliverability report counts `expected` recipients: rollups are written every
    ROLLUP_FLUSH_SECONDS (5 s), not on each report."""
    counted = -1
    with story.client() as c:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counted = c.get("/api/reports/deliverability").json()["totals"]["recipients"]
            if counted == expected:
                return
            time.sleep(0.5)
    raise TimeoutError(f"the report counts {counted} recipients, not {expected}")


def _publish(story: Story, status: str, recipient: str, server: str, text: str) -> None:
    message_id = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat()
    event = {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Communication/"
        "communicationServices/acs",
        "subject": f"sender/DoNotReply@sandbox.test/message/{message_id}",
        "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
        "eventTime": now,
        "dataVersion": "1.0",
        "data": {
            "sender": "DoNotReply@sandbox.test",
            "recipient": recipient,
            "messageId": message_id,
            "status": status,
            "deliveryStatusDetails": {
                "statusMessage": text,
                "recipientMailServerHostName": server,
            },
            "deliveryAttemptTimestamp": now,
        },
    }
    reply = httpx.post(story.info.events_url, json=[event], headers={"aeg-sas-key": EVENTS_KEY})
    assert reply.status_code == 200, reply.text
