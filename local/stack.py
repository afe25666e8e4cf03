"""`make run`: Azurite, local Event Grid topics, the ACS sandbox and the Functions host stand-in.

Every piece is a child process in its own session; Ctrl-C or SIGTERM stops them all (SIGTERM,
then SIGKILL after a grace period), and nothing is left behind. The running stack's ports, key
and host id are in `<LOCAL_DATA_DIR>/stack.json` for `make demo` while it runs; the file goes
when the stack stops. A port already taken, or a piece that dies, ends the run with exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import httpx

from .acs_sandbox import DEFAULT_ACCESS_KEY
from .azurite import ROOT, Azurite, start_azurite
from .host import DEFAULT_FUNCTION_KEY, HOST_ID_SETTING
from .ports import free_port, port_answers, port_is_free

EVENTS_KEY = "local-events-key"  # the local ACS-events topic's aeg-sas-key
ALERTS_KEY = "local-alerts-key"  # the local alerts topic's aeg-sas-key
OUTCOMES_KEY = "local-outcomes-key"  # the local outcome-events topic's aeg-sas-key
SANDBOX_SENDER = "DoNotReply@sandbox.test"
DELIVERY = "Microsoft.Communication.EmailDeliveryReportReceived"
ENGAGEMENT = "Microsoft.Communication.EmailEngagementTrackingReportReceived"
STATE_FILE = "stack.json"


class StackError(RuntimeError):
    """The stack cannot start: the message says why and what to change."""


def data_dir_from_env() -> Path:
    return Path(os.environ.get("LOCAL_DATA_DIR") or ROOT / ".local-data")


@dataclass
class StackInfo:
    base_url: str
    function_key: str
    events_url: str
    alerts_url: str
    sandbox_url: str | None
    storage_connection_string: str
    pids: list[int]
    host_id: str  # what the host's /admin/host/status answers: this stack, not another
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


def local_hash_key(data_dir: Path) -> str:
    """This machine's ADDRESS_HASH_KEY: generated once, kept in the data folder (git-ignored),
    so local hashes stay stable across runs and no two clones share a key."""
    path = data_dir / "address-hash-key"
    if not path.exists():
        import secrets

        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


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
        self.names: dict[int, str] = {}  # child pid -> its module, for messages
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
        self.names[proc.pid] = args[0]
        return proc

    @property
    def state_file(self) -> Path:
        return (self.data_dir or ROOT / ".local-data") / STATE_FILE

    def _wait_listening(
        self,
        proc: subprocess.Popen[bytes],
        port: int,
        timeout: float,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        """Like wait_for_port, but a child that exits first is a failure, not a long wait.

        Connecting, not binding, is the probe: a bind probe racing the child's own bind can
        make the child's listen() fail. `ready` can ask more of whatever answers.
        """
        deadline = time.monotonic() + timeout
        while not (port_answers(port) and (ready is None or ready())):
            if proc.poll() is not None:
                raise StackError(
                    f"{self.names[proc.pid]} exited with code {proc.returncode} "
                    f"before listening on port {port}"
                )
            if time.monotonic() > deadline:
                raise StackError(f"nothing listening on port {port} after {timeout:.0f}s")
            time.sleep(0.05)

    def start(self) -> StackInfo:
        # Checked before anything starts: with the port taken, the host would die in the middle
        # of the log while whatever holds the port answered in its place.
        if not port_is_free(self.port):
            raise StackError(
                f"port {self.port} is already in use (another `make run`?); "
                f"set PORT= to another, e.g. `make run PORT={self.port + 1}`"
            )
        values = local_settings()
        key = os.environ.get("LOCAL_FUNCTION_KEY") or DEFAULT_FUNCTION_KEY
        host_id = uuid.uuid4().hex
        self.azurite = start_azurite(self.data_dir / "azurite" if self.data_dir else None)
        conn = self.azurite.connection_string
        # Never the host's port: it is not bound yet, so free_port() could hand it out.
        taken = {self.port}

        def fresh_port() -> int:
            while (port := free_port()) in taken:
                pass
            taken.add(port)
            return port

        topic_port, alerts_port, outcomes_port = fresh_port(), fresh_port(), fresh_port()
        events_url = f"http://127.0.0.1:{topic_port}/api/events"
        alerts_url = f"http://127.0.0.1:{alerts_port}/api/events"
        outcomes_url = f"http://127.0.0.1:{outcomes_port}/api/events"
        real_acs = uses_real_acs(values)
        sandbox_port = None if real_acs else fresh_port()
        env = {
            **values,
            "AzureWebJobsStorage": conn,
            "LOCAL_FUNCTION_KEY": key,
            HOST_ID_SETTING: host_id,
            "ALERTS_TOPIC_ENDPOINT": alerts_url,
            "ALERTS_TOPIC_KEY": ALERTS_KEY,
            "OUTCOME_EVENTS_TOPIC_ENDPOINT": outcomes_url,
            "OUTCOME_EVENTS_TOPIC_KEY": OUTCOMES_KEY,
        }
        env.pop("EMAIL_STORAGE_CONNECTION_STRING", None)
        if not env.get("ADDRESS_HASH_KEY"):
            env["ADDRESS_HASH_KEY"] = local_hash_key(self.data_dir or ROOT / ".local-data")
        if sandbox_port is not None:
            env |= {
                "ACS_ENDPOINT": f"http://127.0.0.1:{sandbox_port}",
                "ACS_KEY": DEFAULT_ACCESS_KEY,
                "ACS_CONNECTION_STRING": "",
                "DEFAULT_SENDER": values.get("DEFAULT_SENDER") or SANDBOX_SENDER,
                "SENDER_DOMAIN": values.get("SENDER_DOMAIN") or "sandbox.test",
            }
        host = self._spawn(
            ["local.host", "--module", "function_app", "--port", str(self.port)], env
        )
        base_url = f"http://127.0.0.1:{self.port}"

        def our_host() -> bool:  # not whatever else may have grabbed the port meanwhile
            with contextlib.suppress(httpx.HTTPError, ValueError):
                status = httpx.get(
                    f"{base_url}/admin/host/status", headers={"x-functions-key": key}, timeout=5
                )
                return status.status_code == 200 and status.json().get("id") == host_id
            return False

        self._wait_listening(host, self.port, timeout=60, ready=our_host)
        hook = f"http://127.0.0.1:{self.port}/runtime/webhooks/eventgrid?code={key}&functionName="
        dead = str((self.data_dir or ROOT / ".local-data") / "deadletters")
        topic = self._spawn(
            [
                "local.eventgrid_topic", "--port", str(topic_port), "--key", EVENTS_KEY,
                "--schema", "eventgrid", "--dead-letter-dir", dead,
                "--subscription", f"deliveries={hook}record_delivery_report,types={DELIVERY}",
                "--subscription", f"engagement={hook}record_engagement_report,types={ENGAGEMENT}",
            ],
            {},
        )  # fmt: skip
        alerts = self._spawn(
            [
                "local.eventgrid_topic", "--port", str(alerts_port), "--key", ALERTS_KEY,
                "--schema", "cloudevents", "--dead-letter-dir", dead,
                "--subscription", f"alerts=http://127.0.0.1:{alerts_port}/sinks/alerts",
            ],
            {},
        )  # fmt: skip
        outcomes = self._spawn(
            [
                "local.eventgrid_topic", "--port", str(outcomes_port), "--key", OUTCOMES_KEY,
                "--schema", "cloudevents", "--dead-letter-dir", dead,
                "--subscription", f"outcomes=http://127.0.0.1:{outcomes_port}/sinks/outcomes",
            ],
            {},
        )  # fmt: skip
        self._wait_listening(topic, topic_port, timeout=30)
        self._wait_listening(alerts, alerts_port, timeout=30)
        self._wait_listening(outcomes, outcomes_port, timeout=30)
        sandbox_url = None
        if sandbox_port is not None:
            delay = os.environ.get("SANDBOX_REPORT_DELAY", "1.0")
            sandbox = self._spawn(
                [
                    "local.acs_sandbox", "--port", str(sandbox_port),
                    "--events-url", events_url, "--events-key", EVENTS_KEY,
                    "--report-delay", delay, "--engagement-delay", delay,
                    "--quota-per-minute", os.environ.get("SANDBOX_QUOTA_PER_MINUTE", "30"),
                    "--quota-per-hour", os.environ.get("SANDBOX_QUOTA_PER_HOUR", "100"),
                ],
                {},
            )  # fmt: skip
            self._wait_listening(sandbox, sandbox_port, timeout=30)
            sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        self.info = StackInfo(
            base_url=base_url,
            function_key=key,
            events_url=events_url,
            alerts_url=alerts_url,
            sandbox_url=sandbox_url,
            storage_connection_string=conn,
            pids=[p.pid for p in self.children] + [self.azurite.process.pid],
            host_id=host_id,
            outcomes_url=outcomes_url,
        )
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(asdict(self.info), indent=2))
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
        self._forget()

    def _forget(self) -> None:
        """Remove stack.json if it still describes this stack (another run may have taken the
        data folder over since)."""
        with contextlib.suppress(OSError, ValueError):
            written = json.loads(self.state_file.read_text())
            if self.info is not None and written.get("host_id") == self.info.host_id:
                self.state_file.unlink()


def wait_healthy(base_url: str, timeout: float = 60) -> None:
    """Wait until the app's `/api/health` answers 200 (its storage is reachable, not only its
    port): what tests and the bench wait for after `Stack.start()`."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/api/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base_url}/api/health did not answer 200 in {timeout:.0f} s")
        time.sleep(0.2)


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
    stack = Stack(data_dir_from_env(), args.port)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    failed = False
    try:
        info = stack.start()
        print(banner(info), flush=True)
        while not stopping:
            child = stack.failed_child()
            if child is not None:
                print(
                    f"make run: {stack.names[child.pid]} exited with code {child.returncode}; "
                    "stopping everything",
                    file=sys.stderr,
                    flush=True,
                )
                failed = True
                break
            time.sleep(0.3)
    except (StackError, TimeoutError, RuntimeError) as exc:  # start-up: say why, no traceback
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        failed = True
    finally:
        if stack.children or stack.azurite is not None:
            print("stopping…", flush=True)
        stack.stop()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
