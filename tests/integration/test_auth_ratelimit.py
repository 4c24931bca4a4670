"""API keys, scopes, tenants and rate limits over real HTTP against real Redis."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from riffle.config.settings import Settings
from tests.integration.ingest_support import Served, roomy_settings, serve

pytestmark = pytest.mark.integration

EVENT = {"type": "signup", "ts": 1_900_000_000_000, "props": {"channel": "ads"}}

# (method, path, json body, scope the route needs)
ROUTES: list[tuple[str, str, Any, str]] = [
    ("POST", "/v1/events", EVENT, "ingest"),
    ("GET", "/v1/dead-letters", None, "read"),
    ("GET", "/v1/dead-letters/{letter}", None, "read"),
    ("POST", "/v1/dead-letters/replay", {"limit": 1}, "ingest"),
    ("GET", "/v1/schemas", None, "read"),
    ("GET", "/v1/schemas/purchase/1-0-0", None, "read"),
    ("GET", "/v1/metrics", None, "read"),
    ("GET", "/v1/metrics/revenue", None, "read"),
    ("GET", "/v1/metrics/revenue/series", None, "read"),
    ("GET", "/v1/keys", None, "admin"),
    ("POST", "/v1/keys", {"scopes": ["read"]}, "admin"),
    ("DELETE", "/v1/keys/{prefix}", None, "admin"),
]


@pytest.fixture(scope="module")
def served(
    kafka_broker: str, topic_factory: Callable[..., str], redis_url: Any, tmp_path_factory: Any
) -> Iterator[Served]:
    settings = roomy_settings("auth", kafka_broker, topic_factory, redis_url, tmp_path_factory)
    with serve(settings) as running:
        yield running


def call(
    http: httpx.Client, route: tuple[str, str, Any, str], key: str | None, **fill: str
) -> httpx.Response:
    method, path, body, _ = route
    headers = {} if key is None else {"X-API-Key": key}
    return http.request(method, path.format(**fill), json=body, headers=headers)


def test_auth_matrix(served: Served) -> None:
    all_scopes = ["ingest", "read", "admin"]
    other = served.key("globex", all_scopes)
    revoked = served.key("acme", all_scopes)
    served.app.state.collect.keys.revoke(revoked.split("_")[1])
    expired = served.key("acme", all_scopes, expires_at=int(time.time() * 1000) - 1)
    with httpx.Client(base_url=served.url, timeout=30) as http:
        owner = served.key("acme", all_scopes)
        # A resource of each kind owned by acme: a dead letter and a key.
        rejected = http.post("/v1/events", json=[{"type": "nope"}], headers={"X-API-Key": owner})
        letter = rejected.json()["results"][0]["dead_letter_id"]
        victim = served.key("acme", ["read"]).split("_")[1]
        fill = {"letter": letter, "prefix": victim}
        for route in ROUTES:
            method, path, _, scope = route
            label = f"{method} {path}"
            missing = call(http, route, None, **fill)
            assert missing.status_code == 401, label
            assert missing.json()["error"]["code"] == "missing_api_key"
            assert missing.headers["WWW-Authenticate"] == "Bearer"
            assert call(http, route, "rfl_000000000000_forged", **fill).status_code == 401, label
            for bad, code in ((revoked, "revoked_api_key"), (expired, "expired_api_key")):
                response = call(http, route, bad, **fill)
                assert response.status_code == 401, label
                assert response.json()["error"]["code"] == code, label
            others = [s for s in all_scopes if s != scope]
            wrong = call(http, route, served.key("acme", others), **fill)
            assert wrong.status_code == 403, label
            assert wrong.json()["error"]["code"] == "insufficient_scope"
            allowed = call(http, route, served.key("acme", [scope]), **fill)
            assert allowed.status_code in (200, 201), (label, allowed.text)
            assert "X-RateLimit-Limit" in allowed.headers
        # Another tenant's resources are not found, and its keys cannot touch them.
        assert (
            http.get(f"/v1/dead-letters/{letter}", headers={"X-API-Key": other}).status_code == 404
        )
        replay = http.post(
            "/v1/dead-letters/replay", json={"ids": [letter]}, headers={"X-API-Key": other}
        )
        assert replay.status_code == 404
        assert http.get("/v1/dead-letters", headers={"X-API-Key": other}).json() == {
            "dead_letters": [],
            "next_cursor": None,
        }
        target = served.key("acme", ["read"]).split("_")[1]
        assert http.delete(f"/v1/keys/{target}", headers={"X-API-Key": other}).status_code == 404
        listed = http.get("/v1/keys", headers={"X-API-Key": other}).json()["keys"]
        assert {k["tenant"] for k in listed} == {"globex"}
        assert all("hash" not in k and "key" not in k for k in listed)
        # Health and Prometheus metrics are open by default.
        for path in ("/healthz", "/metrics"):
            assert http.get(path).status_code == 200


def test_health_and_metrics_can_require_a_key(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(auth_open_health=False, auth_open_metrics=False)
    with serve(settings) as running, httpx.Client(base_url=running.url, timeout=30) as http:
        key = running.key("acme", ["read"])
        for path in ("/healthz", "/metrics"):
            assert http.get(path).status_code == 401
            assert http.get(path, headers={"X-API-Key": key}).status_code == 200


def test_rate_limits_per_key_and_tenant_under_concurrent_clients(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(
        rate_key_requests=4,
        rate_tenant_requests=6,
        rate_key_events=50,
        rate_tenant_overrides={"quiet": {"requests": 100}},
    )
    with serve(settings) as running:
        noisy = [running.key("noisy", ["read", "ingest"]) for _ in range(3)]
        quiet = [running.key("quiet", ["read"]) for _ in range(2)]
        statuses: Counter[tuple[str, int]] = Counter()
        lock = threading.Lock()

        def client(key: str, who: str, count: int) -> None:
            with httpx.Client(base_url=running.url, timeout=30) as http:
                for _ in range(count):
                    response = http.get("/v1/schemas", headers={"X-API-Key": key})
                    with lock:
                        statuses[who, response.status_code] += 1
                    if response.status_code == 429:
                        assert int(response.headers["Retry-After"]) >= 1
                        assert response.json()["error"]["code"] == "rate_limited"
                    assert response.headers["X-RateLimit-Remaining"].isdigit()

        began = time.monotonic()
        threads = [threading.Thread(target=client, args=(k, "noisy", 15)) for k in noisy]
        threads += [threading.Thread(target=client, args=(k, "quiet", 4)) for k in quiet]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        # The tenant's bucket holds 6 and refills 6/s: no more can pass, however many keys.
        assert statuses["noisy", 200] <= 6 + 6 * elapsed + 1
        assert statuses["noisy", 429] > 0
        assert statuses["noisy", 200] + statuses["noisy", 429] == 45
        # The noisy tenant does not slow the quiet one: 8 requests, more than the noisy
        # tenant's whole bucket, all pass (its tenant limit is 100/s, each key's 4/s).
        assert statuses["quiet", 200] == 8

        # Events per second: 50 pass, the next 50 at once do not.
        with httpx.Client(base_url=running.url, timeout=30) as http:
            time.sleep(1.2)  # let the request buckets refill
            batch = [EVENT] * 50
            warm = http.post("/v1/events", json=EVENT, headers={"X-API-Key": noisy[1]})
            assert warm.status_code == 200  # the producer is connected: no slow first delivery
            first = http.post("/v1/events", json=batch, headers={"X-API-Key": noisy[0]})
            second = http.post("/v1/events", json=batch, headers={"X-API-Key": noisy[0]})
        assert first.status_code == 200, first.text
        assert second.status_code == 429
        assert second.headers["X-RateLimit-Limit"] == "50"
