"""A Tansu broker whose log lives in a local S3 server (``moto_server``), for restart tests.

``moto_server`` keeps its objects in memory: the topic data outlives restarts
of the broker (which is the point), not a restart of the S3 server.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3

from riffle.stack import StackError, free_port, start_tansu, tansu_s3_env, wait_for_port

BUCKET = "tansu"


def start_moto(port: int, log_path: Path, timeout: float = 20.0) -> subprocess.Popen[bytes]:
    """``moto_server`` on ``127.0.0.1:port``; returns once it accepts connections."""
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    if not wait_for_port("127.0.0.1", port, timeout, process):
        process.kill()
        process.wait()
        raise StackError(f"moto_server did not start on 127.0.0.1:{port}")
    return process


def create_bucket(endpoint: str, bucket: str = BUCKET) -> None:
    """Create ``bucket`` on the S3 API at ``endpoint`` (with the credentials Tansu will use)."""
    env = tansu_s3_env(endpoint)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    s3.create_bucket(Bucket=bucket)


class DurableBroker:
    """Tansu on a fixed loopback port, storing its log in S3; can be killed and restarted."""

    def __init__(self, port: int, endpoint: str, log_path: Path) -> None:
        self.port = port
        self.endpoint = endpoint
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def servers(self) -> str:
        """Bootstrap servers of the broker."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker (again) on the same port and bucket."""
        self.starts += 1
        log = self.log_path.with_suffix(f".{self.starts}.log")
        self.process = start_tansu(self.port, log, timeout=30.0, s3_endpoint=self.endpoint)

    def kill(self) -> None:
        """SIGKILL the broker: nothing is flushed or closed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


@contextmanager
def durable_broker(directory: Path) -> Iterator[DurableBroker]:
    """A running S3 server with a bucket, and a started :class:`DurableBroker` on it."""
    s3_port = free_port()
    moto = start_moto(s3_port, directory / "moto.log")
    broker = DurableBroker(free_port(), f"http://127.0.0.1:{s3_port}", directory / "tansu")
    try:
        create_bucket(broker.endpoint)
        broker.start()
        yield broker
    finally:
        broker.stop()
        moto.terminate()
        try:
            moto.wait(10)
        except subprocess.TimeoutExpired:
            moto.kill()
            moto.wait()
