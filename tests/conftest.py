"""Shared fixtures: one real broker per session, unique topics, a Redis key space, settings.

Tests never share data: every topic comes from ``topic_factory`` with a
unique name, and every Redis key a test writes starts with the session's
prefix from ``redis_url``, which is deleted when the session ends.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import redis

from riffle.config.settings import Settings
from riffle.sources.topics import ensure_topics
from riffle.stack import free_port, start_tansu

pytest_plugins = ["tests.warehouse_fixtures"]
"""Warehouse fixtures: the session's BigQuery emulator, both engines per test."""

REDIS_URL = os.environ.get("RIFFLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
"""Redis for tests: database 15 of the local server unless the variable says otherwise."""


class RedisTarget(NamedTuple):
    """Where a test session may write in Redis: a URL and a key prefix of its own."""

    url: str
    prefix: str


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker on a free loopback port for the whole session; yields ``host:port``."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    process = start_tansu(port, log_path)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def topic_factory(kafka_broker: str) -> Callable[..., str]:
    """``make(partitions=4, prefix="t") -> name``: a new, uniquely named, created topic."""

    def make(partitions: int = 4, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        ensure_topics(kafka_broker, [name], partitions)
        return name

    return make


@pytest.fixture(scope="session")
def redis_url() -> Iterator[RedisTarget]:
    """The test Redis and a key prefix unique to this session; its keys are deleted after."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis does not answer at {REDIS_URL} ({exc}); start redis-server")
    prefix = f"riffle-test-{uuid.uuid4().hex[:10]}"
    try:
        yield RedisTarget(REDIS_URL, prefix)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        client.close()


@pytest.fixture
def settings_factory(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    redis_url: RedisTarget,
    tmp_path: Path,
) -> Callable[..., Settings]:
    """``make(**overrides) -> Settings`` pointing at the test broker, Redis and a tmp DuckDB.

    Each call gets its own Redis key space and fresh events and dead-letter topics
    (4 partitions) unless
    ``events_topic`` / ``deadletter_topic`` are given; any other field can
    be overridden by keyword.
    """

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_bootstrap": kafka_broker,
            "redis_url": redis_url.url,
            # Within the session's prefix (cleaned up at the end), one key space per call:
            # tests that write the same metrics and minutes never see each other's windows.
            "redis_prefix": f"{redis_url.prefix}-{uuid.uuid4().hex[:8]}",
            "warehouse": f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
            "metrics_port": 0,
            "log_format": "console",
        }
        values.update(overrides)
        if "events_topic" not in values:
            values["events_topic"] = topic_factory(prefix="events")
        if "deadletter_topic" not in values:
            values["deadletter_topic"] = topic_factory(prefix="dead")
        return Settings(**values)

    return make
