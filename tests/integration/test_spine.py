"""The spine end to end: Kafka → `riffle run` → Redis, DuckDB, dead letters and the API.

A known event set (boundary stamps, late and malformed events, four
partitions) is produced to a real Tansu broker; the real CLI runs the
dataflow in a subprocess; every store's answer is compared with an
expectation computed independently by SQL in DuckDB over the same events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from api.app import create_app
from config.settings import Settings
from config.spec import load_spec
from riffle.stack import free_port
from sinks.deadletter_store import DuckDBDeadLetters, LetterQuery
from sinks.deadletters import read_dead_letters
from sinks.redis_store import RedisWindowStore
from sinks.warehouse import DuckDBWarehouse
from tests.scenario import Sent, expected_windows, late_valid_count, scenario

pytestmark = pytest.mark.integration

SPEC = load_spec("config/demo.yaml")
PARTITIONS = 4
Expected = dict[tuple[str, tuple[tuple[str, str], ...], int], tuple[int, float, float, float]]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process read ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    for name, value in settings.model_dump().items():
        env[f"RIFFLE_{name.upper()}"] = str(value)
    return env


def produce(settings: Settings, sent: list[Sent]) -> None:
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    for item in sent:
        producer.produce(settings.events_topic, value=item.raw, partition=item.partition)
    assert producer.flush(30) == 0


@pytest.fixture
def spine(settings_factory: Callable[..., Settings]) -> tuple[Settings, list[Sent]]:
    """Settings for one run, and the events produced (scenario + one closer per partition)."""
    now = int(time.time() * 1000)
    base = now - now % 60_000 - 10 * 60_000
    settings = settings_factory(
        lateness_seconds=10, idle_seconds=1, partial_interval_seconds=0.2, metrics_port=free_port()
    )
    sent = scenario(seed=11, n=3000, partitions=PARTITIONS, base=base)
    # One in-time event per partition an hour ahead moves every watermark past the scenario.
    for part in range(PARTITIONS):
        closer = {
            "event_id": f"closer-{part}",
            "type": "signup",
            "ts": base + 3_600_000,
            "props": {"channel": "ads"},
            "context": {"country": "US"},
        }
        sent.append(Sent(part, orjson.dumps(closer), True))
    produce(settings, sent)
    return settings, sent


def start_flow(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    riffle = Path(sys.executable).with_name("riffle")
    return subprocess.Popen(
        [str(riffle), "run"],
        env=settings_env(settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def closed_expectation(sent: list[Sent]) -> Expected:
    expected = expected_windows(sent, SPEC, lateness_ms=10_000)
    horizon = max(start for (_m, _d, start) in expected) - 60_000
    return {k: v for k, v in expected.items() if k[2] < horizon}


def redis_finals(settings: Settings) -> dict[tuple[str, tuple[tuple[str, str], ...], int], object]:
    store = RedisWindowStore(
        redis.Redis.from_url(settings.redis_url),
        settings.redis_prefix,
        int(SPEC.retention.hot.total_seconds()),
    )
    out: dict[tuple[str, tuple[tuple[str, str], ...], int], object] = {}
    for metric in SPEC.metrics:
        for _dims, points in store.read_series("demo", metric.name, 0, 2**62, None):
            for p in points:
                if p.is_final:
                    out[(p.metric, p.dims, p.window_start)] = p
    return out


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; flow log:\n{log.read_text()[-3000:]}")


def assert_matches(
    got: dict[tuple[str, tuple[tuple[str, str], ...], int], object], expected: Expected
) -> None:
    missing = expected.keys() - got.keys()
    assert not missing, f"{len(missing)} windows missing, e.g. {sorted(missing)[:3]}"
    for key, (count, total, low, high) in expected.items():
        point = got[key]
        assert (point.count, point.sum, point.min, point.max) == (  # type: ignore[attr-defined]
            count,
            pytest.approx(total),
            pytest.approx(low),
            pytest.approx(high),
        ), key


def test_events_become_windows_everywhere(
    spine: tuple[Settings, list[Sent]], tmp_path: Path
) -> None:
    settings, sent = spine
    expected = closed_expectation(sent)
    log = tmp_path / "flow.log"
    flow = start_flow(settings, log)
    try:
        wait_for(
            lambda: expected.keys() <= redis_finals(settings).keys(),
            60,
            "final windows in Redis",
            log,
        )
        assert_matches(redis_finals(settings), expected)

        # Every final also lands in the warehouse (upserted, one row per window).
        warehouse = DuckDBWarehouse(settings.duckdb_path)

        def warehouse_rows() -> dict[tuple[str, tuple[tuple[str, str], ...], int], object]:
            rows = {}
            for metric in SPEC.metrics:
                for _dims, points in warehouse.read_series("demo", metric.name, 0, 2**62, None):
                    rows.update({(p.metric, p.dims, p.window_start): p for p in points})
            return rows

        wait_for(lambda: expected.keys() <= warehouse_rows().keys(), 30, "warehouse rows", log)
        assert_matches(warehouse_rows(), expected)

        # Every rejected or late event is on the dead-letter topic with its bytes.
        letters = read_dead_letters(
            settings.kafka_servers, settings.deadletter_topic, range(PARTITIONS)
        )
        # An invalid event can also be late; then it is reported as late.
        invalid = Counter(s.raw for s in sent if not s.valid)
        late = [d for d in letters if d.failure_type == "late"]
        assert Counter(d.raw for d in letters) == invalid + Counter(
            d.raw for d in late if d.raw not in invalid
        )
        assert sum(1 for d in late if d.raw not in invalid) == late_valid_count(sent, 10_000)
        assert late and all(d.lateness_ms and d.lateness_ms > 0 for d in late)

        # ... and the same letters are rows of the warehouse's dead_letters table.
        table = DuckDBDeadLetters(settings.duckdb_path)

        def stored() -> set[str]:
            rows, _ = table.query(LetterQuery("demo", limit=100_000))
            return {row.letter_id for row in rows}

        wait_for(lambda: stored() == {d.letter_id for d in letters}, 30, "dead_letters rows", log)

        # in = ok + dead + late, scraped from the running process.
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=5)
            .read()
            .decode()
        )
        samples = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in text.splitlines()
            if line.startswith("riffle_dataflow_events")
        }
        assert samples["riffle_dataflow_events_in_total"] == len(sent)
        assert samples["riffle_dataflow_events_in_total"] == sum(
            samples[f'riffle_dataflow_events_total{{outcome="{o}"}}']
            for o in ("ok", "dead", "late")
        )
        assert samples['riffle_dataflow_events_total{outcome="late"}'] == len(late)

        # The API answers from the same data; with a tiny hot horizon it merges the warehouse.
        for horizon in (6 * 3600.0, 1.0):
            app = create_app(settings.model_copy(update={"hot_horizon_seconds": horizon}))
            key, _ = app.state.collect.keys.create("demo", ["read"])
            api = TestClient(app, headers={"Authorization": f"Bearer {key}"})
            check_api(api, expected)
    finally:
        stop(flow)

    # A restart without recovery reads the topic again and rewrites, never adds.
    flow = start_flow(settings, log)
    try:
        time.sleep(3)
        wait_for(
            lambda: expected.keys() <= redis_finals(settings).keys(),
            60,
            "finals after restart",
            log,
        )
        assert_matches(redis_finals(settings), expected)
    finally:
        stop(flow)


def check_api(api: TestClient, expected: Expected) -> None:
    starts = sorted({start for (_m, _d, start) in expected})
    params = {"start": str(starts[0]), "end": str(starts[-1] + 60_000)}
    body = api.get("/v1/metrics/page_views/series", params=params).json()
    got = {
        (tuple(sorted(s["dims"].items())), p["window_start"]): p
        for s in body["series"]
        for p in s["points"]
    }
    for (metric, dims, start), (count, *_rest) in expected.items():
        if metric != "page_views":
            continue
        point = got[(dims, _iso(start))]
        assert point["value"] == count and point["is_final"], (dims, start)

    # avg over merged series is sum/count of the parts, exactly.
    merged = api.get("/v1/metrics/avg_order_value/series", params={**params, "group_by": ""}).json()
    totals: dict[int, list[float]] = {}
    for (metric, _dims, start), (count, total, *_r) in expected.items():
        if metric == "avg_order_value":
            acc = totals.setdefault(start, [0.0, 0.0])
            acc[0] += count
            acc[1] += total
    points = {p["window_start"]: p for s in merged["series"] for p in s["points"]}
    for start, (count, total) in totals.items():
        assert points[_iso(start)]["value"] == pytest.approx(total / count)
        assert points[_iso(start)]["count"] == count


def _iso(millis: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(millis / 1000, UTC).isoformat().replace("+00:00", "Z")
