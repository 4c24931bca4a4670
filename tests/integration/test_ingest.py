"""POST /v1/events over real HTTP against the real broker, Redis and a DuckDB file."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from riffle.config.registry import check_registry
from riffle.config.settings import SCHEMAS_DIR, Settings
from riffle.operators.records import DeadLetter
from riffle.sources.demo import generate
from riffle.sources.topics import ensure_topics
from riffle.stack import free_port, start_tansu
from tests.integration.ingest_support import Served, read_messages, serve
from tests.warehouse_fixtures import WarehouseTarget

pytestmark = pytest.mark.integration


def now_ms() -> int:
    return int(time.time() * 1000)


def purchase(amount: Any = 12.5, **extra: Any) -> dict[str, Any]:
    return {
        "type": "purchase",
        "ts": now_ms(),
        "props": {"amount": amount, "currency": "EUR"},
        **extra,
    }


@pytest.fixture
def served(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[Served]:
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, schemas)
    with serve(settings_factory(schemas_dir=schemas)) as running:
        yield running


@pytest.fixture
def served_on(
    settings_factory: Callable[..., Settings], tmp_path: Path, warehouse_target: WarehouseTarget
) -> Iterator[Served]:
    """Like ``served``, once per warehouse engine (the dead letters live there)."""
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, schemas)
    settings = settings_factory(
        schemas_dir=schemas,
        warehouse=warehouse_target.url,
        bigquery_endpoint=warehouse_target.endpoint,
    )
    with serve(settings) as running:
        yield running


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_accepted_events_arrive_exactly_once_with_the_keys_tenant(served: Served) -> None:
    key = served.key("acme", ["ingest"])
    batch = [purchase(event_id=f"e-{i}", tenant="spoofed") for i in range(30)]
    ndjson = b"\n".join(orjson.dumps(purchase(event_id=f"n-{i}")) for i in range(20))
    with httpx.Client(base_url=served.url, headers=auth(key), timeout=30) as http:
        one = http.post("/v1/events", json=purchase())
        many = http.post("/v1/events", json=batch)
        lines = http.post(
            "/v1/events",
            content=gzip.compress(ndjson),
            headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
        )
    for response, count in ((one, 1), (many, 30), (lines, 20)):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["accepted"] == count
        assert body["rejected"] == body["failed"] == 0
        assert [r["index"] for r in body["results"]] == list(range(count))
        assert all(r["status"] == "accepted" for r in body["results"])
        assert all(r["schema"] == "purchase/1-0-0" for r in body["results"])
    assigned = one.json()["results"][0]["event_id"]
    assert assigned  # the event had no id: ingest gave it one

    messages = read_messages(served.settings.kafka_servers, served.settings.events_topic)
    ids = Counter(orjson.loads(value)["event_id"] for _, value, _ in messages)
    expected = {assigned} | {f"e-{i}" for i in range(30)} | {f"n-{i}" for i in range(20)}
    assert ids == Counter(expected), "every accepted event exactly once, nothing else"
    assert {headers["riffle-tenant"] for _, _, headers in messages} == {b"acme"}


def test_rejects_carry_reasons_and_land_as_dead_letters(served_on: Served) -> None:
    served = served_on
    key = served.key("acme", ["ingest", "read"])
    good = purchase(event_id="fine")
    body = [
        good,
        purchase(amount="lots", event_id="bad-amount"),
        {"type": "teleport", "ts": now_ms(), "props": {}, "event_id": "bad-type"},
        {"type": "purchase", "ts": "yesterday", "props": {}, "event_id": "bad-ts"},
        purchase(schema="purchase/9-9-9", event_id="bad-schema"),
        42,
    ]
    with httpx.Client(base_url=served.url, headers=auth(key), timeout=30) as http:
        response = http.post("/v1/events", json=body)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["status"] for r in results] == ["accepted"] + ["rejected"] * 5
        by_id = {r.get("event_id"): r for r in results}
        assert by_id["bad-amount"]["failure_type"] == "schema"
        assert by_id["bad-amount"]["errors"] == [
            {"path": "props.amount", "rule": "type", "message": '"lots" is not of type "number"'}
        ]
        assert by_id["bad-type"]["failure_type"] == "unknown_type"
        assert by_id["bad-type"]["errors"][0]["path"] == "type"
        assert by_id["bad-ts"]["errors"][0]["path"] == "ts"
        assert by_id["bad-schema"]["errors"][0]["rule"] == "unknown_schema"
        assert results[5]["errors"][0]["path"] == "$"
        assert all(r["dead_letter_id"] for r in results[1:])

        page = http.get("/v1/dead-letters").json()
        stored = {d["id"]: d for d in page["dead_letters"]}
        assert set(stored) == {r["dead_letter_id"] for r in results[1:]}
        amount = stored[by_id["bad-amount"]["dead_letter_id"]]
        assert amount["errors"][0]["path"] == "props.amount"
        assert amount["source"] == "http"
        assert amount["event_type"] == "purchase"
        assert orjson.loads(amount["raw_text"])["props"]["amount"] == "lots"
        only_schema = http.get("/v1/dead-letters", params={"failure_type": "schema"}).json()
        assert {d["event_id"] for d in only_schema["dead_letters"]} == {"bad-amount", "bad-schema"}
        typed = http.get("/v1/dead-letters", params={"event_type": "teleport"}).json()
        assert [d["event_id"] for d in typed["dead_letters"]] == ["bad-type"]
        future = http.get("/v1/dead-letters", params={"since": "now"}).json()
        assert future["dead_letters"] == []
        first = http.get("/v1/dead-letters", params={"limit": 2}).json()
        rest = http.get(
            "/v1/dead-letters", params={"limit": 10, "cursor": first["next_cursor"]}
        ).json()
        assert len(first["dead_letters"]) == 2
        assert {d["id"] for d in first["dead_letters"] + rest["dead_letters"]} == set(stored)

    topic = read_messages(served.settings.kafka_servers, served.settings.deadletter_topic)
    letters = [DeadLetter.from_json(value) for _, value, _ in topic]
    assert sorted(d.letter_id for d in letters) == sorted(stored)
    assert {h["riffle-tenant"] for _, _, h in topic} == {b"acme"}


def test_replay_after_a_schema_fix(served_on: Served) -> None:
    served = served_on
    key = served.key("acme", ["ingest", "read"])
    with httpx.Client(base_url=served.url, headers=auth(key), timeout=30) as http:
        sent = http.post("/v1/events", json=[purchase(amount="12.50"), purchase(amount=[1])])
        rejected = [r for r in sent.json()["results"] if r["status"] == "rejected"]
        assert len(rejected) == 2
        # Producers send amounts as decimal strings: accept them in a new ADDITION.
        fixed = json.loads((served.settings.schemas_dir / "purchase" / "1-0-0.json").read_text())
        fixed["properties"]["amount"] = {"type": ["number", "string"], "pattern": "^[0-9.]+$"}
        (served.settings.schemas_dir / "purchase" / "1-0-1.json").write_text(json.dumps(fixed))
        assert check_registry(served.settings.schemas_dir) == []

        replay = http.post("/v1/dead-letters/replay", json={"failure_type": "schema"})
        assert replay.status_code == 200, replay.text
        body = replay.json()
        assert body["replayed"] == 1
        assert body["still_invalid"] == 1
        outcome = {r["id"]: r for r in body["results"]}
        still = outcome[rejected[1]["dead_letter_id"]]
        assert still["errors"][0]["path"] == "props.amount"
        assert outcome[rejected[0]["dead_letter_id"]]["event_id"] == rejected[0]["event_id"]

        again = http.post(
            "/v1/dead-letters/replay", json={"ids": [r["id"] for r in body["results"]]}
        )
        statuses = Counter(r["status"] for r in again.json()["results"])
        assert statuses == Counter({"already_replayed": 1, "still_invalid": 1})
        replayed = http.get("/v1/dead-letters", params={"replayed": "true"}).json()
        assert [d["id"] for d in replayed["dead_letters"]] == [rejected[0]["dead_letter_id"]]

    messages = read_messages(served.settings.kafka_servers, served.settings.events_topic)
    events = [orjson.loads(value) for _, value, _ in messages]
    assert [e["event_id"] for e in events] == [rejected[0]["event_id"]], "re-injected once"
    assert events[0]["props"]["amount"] == "12.50"


def test_limits_and_malformed_bodies(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(ingest_max_body_bytes=4096, ingest_max_events=5)
    with serve(settings) as running:
        key = running.key("acme", ["ingest"])
        with httpx.Client(base_url=running.url, headers=auth(key), timeout=30) as http:
            big = http.post("/v1/events", content=b"[" + b" " * 5000 + b"]")
            assert big.status_code == 413
            assert big.json()["error"]["code"] == "body_too_large"
            bomb = gzip.compress(b"[" + b" " * 100_000 + b"]")
            assert len(bomb) < 4096
            inflated = http.post("/v1/events", content=bomb, headers={"Content-Encoding": "gzip"})
            assert inflated.status_code == 413
            many = http.post("/v1/events", json=[purchase() for _ in range(6)])
            assert many.status_code == 422
            assert many.json()["error"]["code"] == "too_many_events"
            broken = http.post("/v1/events", content=b'{"type": ')
            assert broken.status_code == 400
            assert broken.json()["error"]["code"] == "invalid_json"
            not_gzip = http.post("/v1/events", content=b"xx", headers={"Content-Encoding": "gzip"})
            assert not_gzip.status_code == 400
            brotli = http.post("/v1/events", content=b"xx", headers={"Content-Encoding": "br"})
            assert brotli.status_code == 415
            empty = http.post("/v1/events", json=[])
            assert empty.status_code == 400
            queued = http.post("/v1/events", params={"wait": "false"}, json=purchase())
            assert queued.status_code == 202
            assert queued.json()["results"][0]["status"] == "queued"


def test_demo_producer_events_pass_and_malformed_ones_fail(served: Served) -> None:
    key = served.key("demo", ["ingest"])
    values = generate(3000, seed=5)
    ndjson = b"\n".join(v.replace(b"\n", b" ") for v in values)
    with httpx.Client(base_url=served.url, headers=auth(key), timeout=60) as http:
        response = http.post(
            "/v1/events", content=ndjson, headers={"Content-Type": "application/x-ndjson"}
        )
    assert response.status_code == 200, response.text[:500]
    results = response.json()["results"]
    rejected = [r for r in results if r["status"] == "rejected"]
    assert rejected, "the demo's malformed events are refused"
    assert all(r["failure_type"] in ("parse", "envelope") for r in rejected)
    assert all(r["errors"] for r in rejected)
    assert len(rejected) < len(values) * 0.02


def test_broker_stopped_gives_503_not_a_lie(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    port = free_port()
    broker = start_tansu(port, tmp_path / "tansu.log")
    servers = f"127.0.0.1:{port}"
    try:
        ensure_topics(servers, ["events", "dead"], 1)
        settings = settings_factory(
            kafka_bootstrap=servers,
            events_topic="events",
            deadletter_topic="dead",
            ingest_delivery_timeout_seconds=3,
            ingest_retry_after_seconds=7,
        )
        with serve(settings) as running:
            key = running.key("acme", ["ingest"])
            with httpx.Client(base_url=running.url, headers=auth(key), timeout=30) as http:
                assert http.post("/v1/events", json=purchase()).status_code == 200
                broker.terminate()
                broker.wait(timeout=10)
                response = http.post("/v1/events", json=[purchase(), purchase(amount="x")])
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "7"
        body = response.json()
        assert body["error"]["code"] == "broker_unavailable"
        assert [r["status"] for r in body["results"]] == ["failed", "rejected"]
        assert body["accepted"] == 0
        assert body["failed"] == 1
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
