"""`make run` (local.stack) and `make demo` (local.demo) as a developer runs them: subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest

from local.host import create_host_app
from local.ports import free_port
from tests.servers import serve

ROOT = Path(__file__).resolve().parents[2]
NOT_RUNNING = "start `make run` first"


def run(
    module: str, data_dir: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**os.environ, "LOCAL_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_stack_json(data_dir: Path, **fields: Any) -> None:
    info = {
        "base_url": f"http://127.0.0.1:{free_port()}",
        "function_key": "local-dev-key",
        "events_url": "http://127.0.0.1:1/api/events",
        "alerts_url": "http://127.0.0.1:1/api/events",
        "sandbox_url": None,
        "storage_connection_string": "",
        "pids": [],
        "host_id": "0" * 32,
    }
    (data_dir / "stack.json").write_text(json.dumps(info | fields))


def assert_refused(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.endswith(NOT_RUNNING)


# --- make demo without a stack of its own ------------------------------------------------


def test_demo_without_stack_json_says_start_make_run(tmp_path: Path) -> None:
    assert_refused(run("local.demo", tmp_path))


def test_demo_with_a_stale_stack_json_says_start_make_run(tmp_path: Path) -> None:
    write_stack_json(tmp_path)  # a port nobody listens on: the run that wrote it was killed
    assert_refused(run("local.demo", tmp_path))


@pytest.mark.parametrize("content", ["", "{", "[]", '{"base_url": 7}'])
def test_demo_with_a_garbled_stack_json_says_start_make_run(tmp_path: Path, content: str) -> None:
    (tmp_path / "stack.json").write_text(content)
    assert_refused(run("local.demo", tmp_path))


@pytest.mark.parametrize("key", ["local-dev-key", "another-key"])
def test_demo_never_talks_to_a_foreign_stack(tmp_path: Path, key: str) -> None:
    """Another host on the port stack.json names (same or other key): not ours, no request."""
    app = func.FunctionApp()
    sent: list[str] = []

    @app.route(route="emails", methods=["POST"])
    def send_email(req: func.HttpRequest) -> func.HttpResponse:
        sent.append(req.get_body().decode())
        return func.HttpResponse("{}", status_code=202)

    foreign = create_host_app(
        app, function_key=key, settings={"AzureFunctionsWebHost__hostid": "f" * 32}
    )
    with serve(foreign) as url:
        write_stack_json(tmp_path, base_url=url, function_key="local-dev-key")
        assert_refused(run("local.demo", tmp_path))
    assert sent == []


# --- make run ------------------------------------------------------------------------------


def test_port_already_taken_fails_fast_naming_port(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        result = run("local.stack", tmp_path, timeout=60, PORT=str(port))
    assert result.returncode == 1
    assert time.monotonic() - started < 30  # before Azurite or any other piece starts
    [error] = [line for line in result.stderr.splitlines() if line.strip()]
    assert f"port {port} is already in use" in error
    assert "PORT=" in error
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "stack.json").exists()


@contextmanager
def make_run(data_dir: Path, **env: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """`python -m local.stack` on a free port; yields it and its stack.json once healthy.

    Its output (and its children's, which inherit it) goes to files: a pipe nobody reads
    would fill up and stall the host mid-test. `stderr()` reads it back.
    """
    with (data_dir / "out.log").open("w") as out, (data_dir / "err.log").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "local.stack"],
            cwd=ROOT,
            env={**os.environ, "LOCAL_DATA_DIR": str(data_dir), "PORT": str(free_port()), **env},
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while not (data_dir / "stack.json").exists():
            assert proc.poll() is None, stderr(data_dir)
            assert time.monotonic() < deadline, "make run did not come up"
            time.sleep(0.1)
        info = json.loads((data_dir / "stack.json").read_text())
        while httpx.get(f"{info['base_url']}/api/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "make run did not get healthy"
            time.sleep(0.1)
        yield proc, info
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stderr(data_dir: Path) -> str:
    return (data_dir / "err.log").read_text()


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return True
    return state == "Z"


def test_make_run_serves_make_demo_then_sigterm_removes_stack_json(tmp_path: Path) -> None:
    with make_run(tmp_path, SANDBOX_REPORT_DELAY="0.1") as (proc, info):
        demo = run("local.demo", tmp_path, timeout=120)
        assert demo.returncode == 0, demo.stderr
        assert "bounce@simulator.test" in demo.stdout
        assert f"lookup: {info['base_url']}/api/emails/" in demo.stdout
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, stderr(tmp_path)
    assert not (tmp_path / "stack.json").exists()
    assert all(gone(pid) for pid in info["pids"])
    assert_refused(run("local.demo", tmp_path))


def test_a_dying_piece_stops_make_run_with_exit_1(tmp_path: Path) -> None:
    with make_run(tmp_path) as (proc, info):
        host_pid = info["pids"][0]  # local.host is started first
        os.kill(host_pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == 1
    err = stderr(tmp_path)
    assert "make run: local.host exited with code -9; stopping everything" in err
    assert "Traceback" not in err
    assert not (tmp_path / "stack.json").exists()
    assert all(gone(pid) for pid in info["pids"])
