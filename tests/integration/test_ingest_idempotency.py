"""``Idempotency-Key`` on POST /v1/events over real HTTP, a real Tansu broker and Redis.

A client that resends after a 503 (broker stopped) with the same key ends
with each event on the topic once, under the ids of the first answer; a
concurrent retry is refused while the first request works; a key is for one
body only.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from riffle.config.settings import Settings
from riffle.sources.topics import ensure_topics
from riffle.stack import free_port, start_tansu
from tests.integration.ingest_support import read_messages, serve

pytestmark = pytest.mark.integration


def purchase(amount: Any = 12.5) -> dict[str, Any]:
    """An event without an id: the server assigns one, so only the key can stop a double."""
    return {
        "type": "purchase",
        "ts": int(time.time() * 1000),
        "props": {"amount": amount, "currency": "EUR"},
    }


def topic_ids(servers: str) -> Counter[str]:
    messages = read_messages(servers, "events")
    return Counter(orjson.loads(value)["event_id"] for _, value, _ in messages)


def test_a_client_resending_after_a_503_publishes_each_event_once(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    port = free_port()
    servers = f"127.0.0.1:{port}"
    broker = start_tansu(port, tmp_path / "tansu.log")
    ensure_topics(servers, ["events", "dead"], 1)
    settings = settings_factory(
        kafka_bootstrap=servers,
        events_topic="events",
        deadletter_topic="dead",
        ingest_delivery_timeout_seconds=3,  # a loaded machine is slow to confirm
        ingest_retry_after_seconds=1,
    )
    try:
        with serve(settings) as running:
            headers = {"Authorization": f"Bearer {running.key('acme', ['ingest'])}"}
            with httpx.Client(base_url=running.url, headers=headers, timeout=30) as http:

                def send(body: list[dict[str, Any]], key: str) -> httpx.Response:
                    return http.post("/v1/events", json=body, headers={"Idempotency-Key": key})

                # Delivered, then retried: the same answer, nothing published again.
                small = [purchase(), purchase()]
                first = send(small, "k1")
                assert first.status_code == 200, first.text
                again = send(small, "k1")
                assert again.status_code == 200
                assert again.headers["Idempotent-Replayed"] == "true"
                assert again.json() == first.json()
                assert "Idempotent-Replayed" not in first.headers
                delivered = [r["event_id"] for r in first.json()["results"]]
                assert topic_ids(servers) == Counter(delivered)
                # The same key with another body is refused, clearly.
                other = send([purchase(99.0)], "k1")
                assert other.status_code == 422
                assert other.json()["error"]["code"] == "idempotency_key_reused"
                # ... but it is the tenant's key: another tenant may use the same string.
                stranger = {"Authorization": f"Bearer {running.key('other', ['ingest'])}"}
                elsewhere = http.post(
                    "/v1/events", json=[purchase()], headers={**stranger, "Idempotency-Key": "k1"}
                )
                assert elsewhere.status_code == 200

                # The broker dies: a 503, and a concurrent retry is told to wait.
                broker.kill()
                broker.wait(timeout=10)
                body = [purchase() for _ in range(5)] + [purchase(amount="lots")]
                answers: list[httpx.Response] = []
                worker = threading.Thread(target=lambda: answers.append(send(body, "k2")))
                worker.start()
                time.sleep(0.5)
                busy = send(body, "k2")
                worker.join()
                assert busy.status_code == 409, busy.text
                assert busy.json()["error"]["code"] == "request_in_progress"
                assert busy.headers["Retry-After"] == "1"
                failed = answers[0]
                assert failed.status_code == 503, failed.text
                statuses = [r["status"] for r in failed.json()["results"]]
                assert statuses == ["failed"] * 5 + ["rejected"]
                ids = [r["event_id"] for r in failed.json()["results"]]

                # The broker is back (empty: it kept its log in memory); the client resends
                # as told until it is answered 200.
                broker = start_tansu(port, tmp_path / "tansu.log")
                ensure_topics(servers, ["events", "dead"], 1)
                deadline = time.monotonic() + 60
                retry = send(body, "k2")
                while retry.status_code == 503 and time.monotonic() < deadline:
                    time.sleep(float(retry.headers["Retry-After"]))
                    retry = send(body, "k2")
                assert retry.status_code == 200, retry.text
                assert [r["event_id"] for r in retry.json()["results"]] == ids
                assert [r["status"] for r in retry.json()["results"]] == ["accepted"] * 5 + [
                    "rejected"
                ]
                final = send(body, "k2")
                assert final.json() == retry.json()
        assert topic_ids(servers) == Counter(ids[:5]), "each event once, under its first id"
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
