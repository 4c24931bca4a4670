"""API keys kept per process: a change to a key's record (revocation) counts at once.

An API process keeps the keys it has verified and confirms each is unchanged in
the round trip that takes its rate limits; these tests change a record from
another process and expect the very next request to see it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from riffle.api.ratelimit import RateLimiter
from riffle.config.settings import Settings
from riffle.keys import store
from tests.integration.ingest_support import serve_process

pytestmark = pytest.mark.integration

EVENT = {"type": "signup", "ts": 1_900_000_000_000, "props": {"channel": "ads"}}


def test_a_revoked_key_is_refused_on_the_very_next_request(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory()
    keys = store(settings)
    key, record = keys.create("acme", ["read", "ingest"])
    other, _ = keys.create("acme", ["read", "ingest"])
    headers = {"X-API-Key": key}
    with (
        serve_process(settings, tmp_path / "api.log") as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        for _ in range(3):  # the process has verified the key and keeps it
            assert http.get("/v1/schemas", headers=headers).status_code == 200
            assert http.post("/v1/events", json=EVENT, headers=headers).status_code == 200
        keys.revoke(record.prefix)
        read = http.get("/v1/schemas", headers=headers)
        assert read.status_code == 401
        assert read.json()["error"]["code"] == "revoked_api_key"
        posted = http.post("/v1/events", json=EVENT, headers=headers)
        assert posted.status_code == 401
        assert posted.json()["error"]["code"] == "revoked_api_key"
        # Another key of the tenant is untouched.
        assert http.get("/v1/schemas", headers={"X-API-Key": other}).status_code == 200
        assert http.post("/v1/events", json=EVENT, headers={"X-API-Key": other}).status_code == 200


def test_a_stale_guard_takes_nothing(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory()
    keys = store(settings)
    key, record = keys.create("acme", ["read"])
    verified = keys.verify(key)
    assert verified is not None and keys.cached(key) == verified
    assert keys.cached(key.rsplit("_", 1)[0] + "_forged") is None
    client = redis.Redis.from_url(settings.redis_url)
    limiter = RateLimiter(client, settings.redis_prefix)
    requests = [limiter.bucket("req", "key", record.prefix, 10, 1)]
    events = [limiter.bucket("ev", "key", record.prefix, 100, 60)]
    first = limiter.take_guarded(verified.record_key, verified.fingerprint, [requests, events])
    assert first is not None and [d.allowed for d in first] == [True, True]
    assert [d.remaining for d in first] == [9, 40]
    # The event group is refused: the request is still taken, the events are not.
    second = limiter.take_guarded(verified.record_key, verified.fingerprint, [requests, events])
    assert second is not None and [d.allowed for d in second] == [True, False]
    assert second[1].remaining == 40
    keys.revoke(record.prefix)
    assert limiter.take_guarded(verified.record_key, verified.fingerprint, [requests]) is None
    assert float(client.hget(requests[0].key, "t") or 0) < 8.5  # 8 and a refill, not taken
    fresh = keys.verify(key)
    assert fresh is not None and fresh.record.revoked_at is not None
    assert fresh.fingerprint != verified.fingerprint
    client.close()
