"""The BigQuery emulator (``bqemulator``) for tests and benchmarks: find it, start it, stop it.

It lives in its own virtualenv (``make bqemulator`` builds ``.venv-bq``: it
pins DuckDB 1.5.5 and the spatial extension, which Riffle's own DuckDB must
not be tied to). ``RIFFLE_BQEMULATOR`` may name another ``bqemulator``
executable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from riffle.stack import free_port

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "riffle-test"


def emulator_bin() -> Path:
    """The ``bqemulator`` executable; fails with the command that builds it."""
    path = Path(os.environ.get("RIFFLE_BQEMULATOR", ROOT / ".venv-bq" / "bin" / "bqemulator"))
    if not path.exists():
        raise RuntimeError(f"bqemulator not found at {path}: run `make bqemulator` first")
    return path


@dataclass
class Emulator:
    """A running emulator; ``endpoint`` is what ``RIFFLE_BIGQUERY_ENDPOINT`` takes."""

    process: subprocess.Popen[bytes]
    rest_port: int
    project: str
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (an outage without data loss)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_emulator(log_path: Path, project: str = PROJECT, timeout: float = 60.0) -> Emulator:
    """Start the emulator on free loopback ports; returns once its REST API answers."""
    rest, grpc = free_port(), free_port()
    log = log_path.open("wb")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    process = subprocess.Popen(
        [
            str(emulator_bin()),
            "start",
            "--rest-port",
            str(rest),
            "--grpc-port",
            str(grpc),
            "--project",
            project,
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    log.close()
    emulator = Emulator(process, rest, project, log_path)
    url = f"{emulator.endpoint}/bigquery/v2/projects/{project}/datasets"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2):
                return emulator
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    emulator.stop()
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"bqemulator did not answer at {url} within {timeout} s:\n{tail}")
