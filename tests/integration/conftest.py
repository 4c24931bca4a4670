"""Fixtures of the Redis store tests: a client of the development Redis, and a window
store under a key prefix of its own, deleted afterwards (modules may define their own
``store``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from riffle.sinks.redis.windows import RedisWindowStore
from tests.integration.stores_support import HOT_TTL_S, REDIS_URL, delete_prefix, unique_prefix


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def store(client: redis.Redis) -> Iterator[RedisWindowStore]:
    prefix = unique_prefix()
    yield RedisWindowStore(client, prefix, hot_ttl_seconds=HOT_TTL_S)
    delete_prefix(client, prefix)
