"""`make demo`: send to the mailbox simulator through the running stack and show what happened."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from .stack import STATE_FILE, data_dir_from_env

ADDRESSES = [
    "delivered@simulator.test",
    "bounce@simulator.test",
    "mailboxfull@simulator.test",
    "spam@simulator.test",
    "blocked@simulator.test",
    "quarantine@simulator.test",
    "suppressed@simulator.test",
    "expired@simulator.test",
    "unknown-status@simulator.test",
    "opened@simulator.test",
    "clicked@simulator.test",
]
PENDING = {"accepted", "sent", None}


def running_stack(data_dir: Path | None = None) -> dict[str, Any]:
    """stack.json's stack, when that very stack answers; otherwise exit with one line.

    The host's /admin/host/status must answer, with the key, the host id the file names: a
    file left by a killed run, or another stack on the same port, never gets a request.
    """
    path = (data_dir or data_dir_from_env()) / STATE_FILE
    try:
        info: dict[str, Any] = json.loads(path.read_text())
        reply = httpx.get(
            f"{info['base_url']}/admin/host/status",
            headers={"x-functions-key": info["function_key"]},
            timeout=5,
        )
        answered = reply.status_code == 200 and reply.json().get("id") == info["host_id"]
    except FileNotFoundError:
        sys.exit("make demo: no stack is running (no stack.json): start `make run` first")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, httpx.HTTPError):
        answered = False
    if not answered:
        sys.exit(f"make demo: {path} names no running stack: start `make run` first")
    return info


def _client(info: dict[str, Any]) -> httpx.Client:
    return httpx.Client(
        base_url=info["base_url"], headers={"x-functions-key": info["function_key"]}, timeout=30
    )


def send(client: httpx.Client) -> str:
    body = {
        "to": [{"address": a} for a in ADDRESSES],
        "subject": "Your receipt",
        "plainText": "Thanks for your order.",
        "html": '<p>Thanks for your order. <a href="https://shop.example/orders/42">View</a></p>',
        "tags": {"kind": "receipt"},
        "metadata": {"orderId": "42"},
    }
    reply = client.post(
        "/api/emails", json=body, headers={"Idempotency-Key": f"demo-{time.time()}"}
    )
    if reply.status_code != 202:
        sys.exit(f"send failed: {reply.status_code} {reply.text}")
    return str(reply.json()["messageId"])


def wait_for_reports(client: httpx.Client, message_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = client.get(f"/api/emails/{message_id}").json()
        recipients = view.get("recipients", [])
        engaged = {r["address"]: r["engagement"] for r in recipients}
        done = all(r["status"] not in PENDING for r in recipients)
        opened = engaged.get("opened@simulator.test", {}).get("opens", 0) > 0
        clicked = engaged.get("clicked@simulator.test", {}).get("clicks", 0) > 0
        if (done and opened and clicked) or time.monotonic() > deadline:
            return view
        time.sleep(0.5)


def table(view: dict[str, Any]) -> str:
    rows = [("recipient", "status", "bounce", "reason", "code", "opens/clicks", "explanation")]
    for r in view["recipients"]:
        eng = r["engagement"]
        rows.append(
            (
                r["address"],
                str(r["status"]),
                str(r.get("bounceType") or "-"),
                str(r.get("reason") or "-"),
                str(r.get("enhancedCode") or r.get("smtpCode") or "-"),
                f"{eng['opens']}/{eng['clicks']}",
                textwrap.shorten(r.get("explanation") or "", 80),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[6]
        )
        if n == 0:
            lines.append("-" * (sum(widths) + 2 * 6 + 40))
    return "\n".join(lines)


def main() -> None:
    info = running_stack()
    try:
        _demo(info)
    except httpx.TransportError as exc:  # the stack went away mid-demo
        sys.exit(f"make demo: lost the stack at {info['base_url']} ({exc}): is `make run` up?")


def _demo(info: dict[str, Any]) -> None:
    with _client(info) as client:
        message_id = send(client)
        print(
            f"sent message {message_id} to {len(ADDRESSES)} simulator recipients; "
            "waiting for reports…"
        )
        view = wait_for_reports(client, message_id)
        print()
        print(table(view))
        print(f"\nlookup: {info['base_url']}/api/emails/{message_id}")
        _show_suppressions_and_alerts(client, info)
        _show_sender_health(client, view.get("sender"))
        _show_outcome_events(info, message_id)
        _show_report(client)


def _show_sender_health(client: httpx.Client, sender: str | None) -> None:
    domain = (sender or "").rpartition("@")[2]
    reply = client.get(f"/api/senders/{domain}") if domain else None
    if reply is None or reply.status_code != 200:
        return
    h = reply.json()
    w = h["window"]
    rate = h["bounce"]["ratePercent"]
    spam = h["spam"]["ratePercent"]
    judged = "judged" if w["judged"] else f"not judged below {w['minVolume']} sent"
    print(
        f"\nsender {domain}: last {w['minutes']} min {w['sent']} sent, "
        f"hard-bounce rate {rate if rate is not None else '-'}% ({h['bounce']['level']}), "
        f"spam rate {spam if spam is not None else '-'}% ({h['spam']['level']}); {judged}; "
        f"paused: {h['paused']}"
    )


def _show_suppressions_and_alerts(client: httpx.Client, info: dict[str, Any]) -> None:
    reply = client.get("/api/suppressions/bounce@simulator.test")
    if reply.status_code == 200:
        s = reply.json()
        print(f"\nsuppression list: bounce@simulator.test → {s.get('status')} ({s.get('reason')})")
    sink = info["alerts_url"].rsplit("/api", 1)[0] + "/sinks/alerts"
    try:
        events = httpx.get(sink, timeout=5).json()
    except httpx.HTTPError:
        return
    if isinstance(events, dict):
        events = events.get("events", [])
    if events:
        print(f"\nalerts received by the local subscriber ({len(events)}):")
        for e in events[-10:]:
            data = e.get("data") or {}
            print(f"  {e.get('type')}: message {data.get('messageId')} {data.get('reason') or ''}")


def _show_outcome_events(info: dict[str, Any], message_id: str) -> None:
    url = info.get("outcomes_url")
    if not url:
        return
    sink = url.rsplit("/api", 1)[0] + "/sinks/outcomes"
    deadline = time.monotonic() + 10
    mine: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # published right after each report was recorded
        try:
            events = httpx.get(sink, timeout=5).json()
        except httpx.HTTPError:
            return
        mine = [e for e in events if (e.get("data") or {}).get("messageId") == message_id]
        if len(mine) >= len(ADDRESSES) - 1:  # every recipient's outcome (unknown has none)
            break
        time.sleep(0.5)
    print(f"\noutcome events received by the app's subscriber ({len(mine)}):")
    for e in mine:
        data = e.get("data") or {}
        who = f"{data.get('recipientDomain')} #{str(data.get('recipientHash'))[:8]}"
        reason = data.get("reason") or "-"
        print(f"  {e.get('type'):<20} {who}  reason={reason}  tags={data.get('tags')}")


def _show_report(client: httpx.Client) -> None:
    reply = client.get("/api/reports/deliverability", params={"groupBy": "reason"})
    if reply.status_code != 200:
        return
    report = reply.json()
    t = report["totals"]
    rate = t["deliveryRate"]
    print(
        f"\ndeliverability, last 24 h: {t['recipients']} recipients, "
        f"delivery rate {'-' if rate is None else f'{rate:.0%}'}, "
        f"p50 delivery {t['latencyMs']['p50'] or '-'} ms; by reason:"
    )
    for g in report["groups"][:8]:
        print(f"  {g['key']:<16} {g['recipients']:>4}  delivered {g['delivered']}")


if __name__ == "__main__":
    main()
