"""Serving the app over real HTTP (uvicorn in a thread) and reading topics with headers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from fastapi import FastAPI
from pydantic import SecretStr

from riffle.api.app import create_app
from riffle.config.settings import Settings
from riffle.sources.kafka import list_partitions
from riffle.stack import free_port


@dataclass
class Served:
    """A running app: its base URL, the app (for its key store) and settings."""

    url: str
    app: FastAPI
    settings: Settings

    def key(self, tenant: str, scopes: list[str], **kwargs: Any) -> str:
        """A new API key."""
        key, _ = self.app.state.collect.keys.create(tenant, scopes, **kwargs)
        return str(key)


def roomy_settings(
    name: str,
    kafka_broker: str,
    topic_factory: Callable[..., str],
    redis_url: Any,
    tmp_path_factory: Any,
) -> Settings:
    """Settings of a module's shared API: its own Redis prefix, DuckDB file and topics,
    and request limits far above what its tests send."""
    return Settings(
        kafka_bootstrap=kafka_broker,
        redis_url=redis_url.url,
        redis_prefix=f"{redis_url.prefix}-{name}",
        warehouse=f"duckdb:///{tmp_path_factory.mktemp(name) / 'w.duckdb'}",
        events_topic=topic_factory(prefix="events"),
        deadletter_topic=topic_factory(prefix="dead"),
        log_format="console",
        rate_key_requests=10_000,
        rate_tenant_requests=10_000,
    )


@contextmanager
def serve(settings: Settings, send_buffer: int | None = None) -> Iterator[Served]:
    """The app of ``settings`` under uvicorn on a free loopback port, for the block.

    ``send_buffer`` fixes the kernel send buffer (bytes) of every connection the
    server accepts, so a client that stops reading holds the server up sooner.
    """
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    sockets = None
    if send_buffer is not None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)  # accepted inherit
        listener.bind(("127.0.0.1", port))
        sockets = [listener]
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", app, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def read_messages(
    servers: str, topic: str, timeout: float = 20.0
) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    """Every message of ``topic`` as ``(key, value, headers)``, partitions one after another."""
    partitions = list_partitions(servers, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": "riffle-tests-assign-only",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 20,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[tuple[bytes, bytes, dict[str, bytes]]] = []
    done: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(done) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: no EOF from partitions {set(partitions) - done}")
            for msg in consumer.consume(1000, 0.5):
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(error.str())
                    done.add(msg.partition() or 0)
                    continue
                headers = {k: v for k, v in (msg.headers() or []) if isinstance(v, bytes)}
                out.append((msg.key() or b"", msg.value() or b"", headers))
    finally:
        consumer.close()
    return out


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``RIFFLE_*`` variables a child process reads them from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, dict):
            value = json.dumps(value)
        env[f"RIFFLE_{name.upper()}"] = str(value)
    return env


@contextmanager
def serve_process(
    settings: Settings, log_path: Path, startup_timeout: float = 30.0
) -> Iterator[str]:
    """``riffle api`` in its own process (its own GIL) on a free port; yields its base URL."""
    port = free_port()
    env = settings_env(settings) | {"RIFFLE_LOG_LEVEL": "WARNING"}
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "riffle.cli", "api", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"riffle api did not start: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
