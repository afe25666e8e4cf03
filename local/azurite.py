"""Start the project's pinned Azurite (npm, 3.35.0) on free loopback ports."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"
# Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass
class Azurite:
    process: subprocess.Popen[bytes]
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT};"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_azurite(location: Path | None = None, attempts: int = 3) -> Azurite:
    """In-memory when no location is given (tests); on disk under `location` otherwise."""
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"{AZURITE_BIN} missing: run `npm ci` (make does it for you)")
    last: Exception | None = None
    for _ in range(attempts):
        ports = free_port(), free_port(), free_port()
        cmd = [
            str(AZURITE_BIN),
            "--silent",
            "--disableTelemetry",
            # Newest storage SDKs send an API version Azurite 3.35 does not know yet.
            "--skipApiVersionCheck",
            "--blobHost", "127.0.0.1", "--blobPort", str(ports[0]),
            "--queueHost", "127.0.0.1", "--queuePort", str(ports[1]),
            "--tableHost", "127.0.0.1", "--tablePort", str(ports[2]),
        ]  # fmt: skip
        if location is None:
            cmd.append("--inMemoryPersistence")
        else:
            location.mkdir(parents=True, exist_ok=True)
            cmd += ["--location", str(location)]
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own binary
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            for port in ports:
                wait_for_port(port, timeout=30)
            return Azurite(proc, *ports)
        except TimeoutError as exc:  # a port grabbed in between, most likely: try others
            last = exc
            proc.kill()
            proc.wait()
    raise RuntimeError(f"Azurite did not start: {last}")


if __name__ == "__main__":  # manual check: python -m local.azurite
    az = start_azurite()
    print(az.connection_string)
    try:
        signal.pause()
    finally:
        az.stop()
