"""`make run`: Azurite, local Event Grid topics, the ACS sandbox and the Functions host stand-in.

Every piece is a child process in its own session; Ctrl-C or SIGTERM stops them all (SIGTERM,
then SIGKILL after a grace period), and nothing is left behind. The running stack's ports and
key are written to `<LOCAL_DATA_DIR>/stack.json` for `make demo` and the end-to-end tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from .acs_sandbox import DEFAULT_ACCESS_KEY
from .azurite import ROOT, Azurite, start_azurite
from .host import DEFAULT_FUNCTION_KEY
from .ports import free_port, wait_for_port

EVENTS_KEY = "local-events-key"  # the local ACS-events topic's aeg-sas-key
ALERTS_KEY = "local-alerts-key"  # the local alerts topic's aeg-sas-key
OUTCOMES_KEY = "local-outcomes-key"  # the local outcome-events topic's aeg-sas-key
SANDBOX_SENDER = "DoNotReply@sandbox.test"
DELIVERY = "Microsoft.Communication.EmailDeliveryReportReceived"
ENGAGEMENT = "Microsoft.Communication.EmailEngagementTrackingReportReceived"


@dataclass
class StackInfo:
    base_url: str
    function_key: str
    events_url: str
    alerts_url: str
    sandbox_url: str | None
    storage_connection_string: str
    pids: list[int]
    outcomes_url: str | None = None  # outcome events topic (its sink: /sinks/outcomes)


def local_settings(root: Path = ROOT) -> dict[str, str]:
    """Values from local.settings.json (falling back to the sample), environment wins."""
    path = root / "local.settings.json"
    if not path.exists():
        path = root / "local.settings.sample.json"
    values: dict[str, str] = {}
    if path.exists():
        values = {k: str(v) for k, v in json.loads(path.read_text()).get("Values", {}).items()}
    values.update({k: v for k, v in os.environ.items() if k in values})
    return values


def uses_real_acs(values: Mapping[str, str]) -> bool:
    endpoint = values.get("ACS_ENDPOINT", "")
    return bool(values.get("ACS_CONNECTION_STRING")) or (
        bool(endpoint) and "127.0.0.1" not in endpoint and "localhost" not in endpoint
    )


class Stack:
    def __init__(self, data_dir: Path | None, port: int, *, quiet: bool = False) -> None:
        self.data_dir = data_dir
        self.port = port
        self.quiet = quiet
        self.children: list[subprocess.Popen[bytes]] = []
        self.azurite: Azurite | None = None
        self.info: StackInfo | None = None

    def _spawn(self, args: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        out = subprocess.DEVNULL if self.quiet else None
        proc = subprocess.Popen(  # noqa: S603 - our own modules, fixed argv
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        self.children.append(proc)
        return proc

    def start(self) -> StackInfo:
        values = local_settings()
        key = os.environ.get("LOCAL_FUNCTION_KEY") or DEFAULT_FUNCTION_KEY
        self.azurite = start_azurite(self.data_dir / "azurite" if self.data_dir else None)
        conn = self.azurite.connection_string
        topic_port, alerts_port, outcomes_port = free_port(), free_port(), free_port()
        events_url = f"http://127.0.0.1:{topic_port}/api/events"
        alerts_url = f"http://127.0.0.1:{alerts_port}/api/events"
        outcomes_url = f"http://127.0.0.1:{outcomes_port}/api/events"
        real_acs = uses_real_acs(values)
        sandbox_port = None if real_acs else free_port()
        env = {
            **values,
            "AzureWebJobsStorage": conn,
            "LOCAL_FUNCTION_KEY": key,
            "ALERTS_TOPIC_ENDPOINT": alerts_url,
            "ALERTS_TOPIC_KEY": ALERTS_KEY,
            "OUTCOME_EVENTS_TOPIC_ENDPOINT": outcomes_url,
            "OUTCOME_EVENTS_TOPIC_KEY": OUTCOMES_KEY,
        }
        env.pop("EMAIL_STORAGE_CONNECTION_STRING", None)
        if sandbox_port is not None:
            env |= {
                "ACS_ENDPOINT": f"http://127.0.0.1:{sandbox_port}",
                "ACS_KEY": DEFAULT_ACCESS_KEY,
                "ACS_CONNECTION_STRING": "",
                "DEFAULT_SENDER": values.get("DEFAULT_SENDER") or SANDBOX_SENDER,
                "SENDER_DOMAIN": values.get("SENDER_DOMAIN") or "sandbox.test",
            }
        self._spawn(["local.host", "--module", "function_app", "--port", str(self.port)], env)
        wait_for_port(self.port, timeout=60)
        hook = f"http://127.0.0.1:{self.port}/runtime/webhooks/eventgrid?code={key}&functionName="
        dead = str((self.data_dir or ROOT / ".local-data") / "deadletters")
        self._spawn(
            [
                "local.eventgrid_topic", "--port", str(topic_port), "--key", EVENTS_KEY,
                "--schema", "eventgrid", "--dead-letter-dir", dead,
                "--subscription", f"deliveries={hook}record_delivery_report,types={DELIVERY}",
                "--subscription", f"engagement={hook}record_engagement_report,types={ENGAGEMENT}",
            ],
            {},
        )  # fmt: skip
        self._spawn(
            [
                "local.eventgrid_topic", "--port", str(alerts_port), "--key", ALERTS_KEY,
                "--schema", "cloudevents", "--dead-letter-dir", dead,
                "--subscription", f"alerts=http://127.0.0.1:{alerts_port}/sinks/alerts",
            ],
            {},
        )  # fmt: skip
        self._spawn(
            [
                "local.eventgrid_topic", "--port", str(outcomes_port), "--key", OUTCOMES_KEY,
                "--schema", "cloudevents", "--dead-letter-dir", dead,
                "--subscription", f"outcomes=http://127.0.0.1:{outcomes_port}/sinks/outcomes",
            ],
            {},
        )  # fmt: skip
        wait_for_port(topic_port)
        wait_for_port(alerts_port)
        wait_for_port(outcomes_port)
        sandbox_url = None
        if sandbox_port is not None:
            delay = os.environ.get("SANDBOX_REPORT_DELAY", "1.0")
            self._spawn(
                [
                    "local.acs_sandbox", "--port", str(sandbox_port),
                    "--events-url", events_url, "--events-key", EVENTS_KEY,
                    "--report-delay", delay, "--engagement-delay", delay,
                    "--quota-per-minute", os.environ.get("SANDBOX_QUOTA_PER_MINUTE", "30"),
                    "--quota-per-hour", os.environ.get("SANDBOX_QUOTA_PER_HOUR", "100"),
                ],
                {},
            )  # fmt: skip
            wait_for_port(sandbox_port)
            sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        self.info = StackInfo(
            base_url=f"http://127.0.0.1:{self.port}",
            function_key=key,
            events_url=events_url,
            alerts_url=alerts_url,
            sandbox_url=sandbox_url,
            storage_connection_string=conn,
            pids=[p.pid for p in self.children] + [self.azurite.process.pid],
            outcomes_url=outcomes_url,
        )
        state_dir = self.data_dir or ROOT / ".local-data"
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "stack.json").write_text(json.dumps(asdict(self.info), indent=2))
        return self.info

    def failed_child(self) -> subprocess.Popen[bytes] | None:
        return next((p for p in self.children if p.poll() is not None), None)

    def stop(self) -> None:
        for proc in reversed(self.children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.azurite is not None:
            self.azurite.stop()


def banner(info: StackInfo) -> str:
    k, b = info.function_key, info.base_url
    sink = info.alerts_url.rsplit("/api", 1)[0] + "/sinks/alerts"
    acs = (
        f"ACS sandbox at {info.sandbox_url}"
        if info.sandbox_url
        else "real ACS (local.settings.json)"
    )
    return f"""
ACS Email insights is running ({acs}).
  Base URL      {b}
  Function key  {k}   (header x-functions-key, or ?code=)
  ACS events    {info.events_url}   (local Event Grid topic → record_*_report)
  Alerts        {info.alerts_url}   (CloudEvents topic; subscriber sink: {sink})
  Outcomes      {info.outcomes_url}   (outcome events for apps; sink: /sinks/outcomes)

Try it:
  curl -s -X POST {b}/api/emails -H 'x-functions-key: {k}' -H 'content-type: application/json' \\
    -d '{{"to":[{{"address":"bounce@simulator.test"}}],"subject":"Hello","plainText":"Hi"}}'
  curl -s {b}/api/emails/<messageId> -H 'x-functions-key: {k}'
  curl -s '{b}/api/recipients/bounce@simulator.test/emails' -H 'x-functions-key: {k}'
  curl -s '{b}/api/explain?status=Failed&message=552%205.2.2%20Mailbox%20full' \\
    -H 'x-functions-key: {k}'
  curl -s '{b}/api/reports/deliverability?groupBy=reason' -H 'x-functions-key: {k}'
  make demo        (in another terminal)

Ctrl-C stops everything.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.stack", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "7071")))
    args = parser.parse_args(argv)
    data_dir = Path(os.environ.get("LOCAL_DATA_DIR") or ROOT / ".local-data")
    stack = Stack(data_dir, args.port)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        info = stack.start()
        print(banner(info), flush=True)
        while not stopping:
            failed = stack.failed_child()
            if failed is not None:
                print(f"a child process exited ({failed.args!r}); stopping", file=sys.stderr)
                break
            time.sleep(0.3)
    finally:
        print("stopping…", flush=True)
        stack.stop()


def read_stack_info(data_dir: Path | None = None) -> dict[str, Any]:
    path = (
        data_dir or Path(os.environ.get("LOCAL_DATA_DIR") or ROOT / ".local-data")
    ) / "stack.json"
    if not path.exists():
        raise SystemExit("no running stack found: start it with `make run` first")
    return dict(json.loads(path.read_text()))


if __name__ == "__main__":
    main()
