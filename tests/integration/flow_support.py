"""Running the real `riffle run` in tests and reading back what it stored."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from confluent_kafka import Producer

from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec, load_spec
from riffle.operators.records import Dims, WindowResult
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.warehouse.engines import open_warehouse
from tests.scenario import Sent, expected_sketches, expected_windows

SPEC = load_spec("config/demo.yaml")
WindowKey = tuple[str, Dims, int]
Expected = dict[WindowKey, tuple[int, float, float, float]]
ExpectedSketches = dict[WindowKey, tuple[float | None, dict[str, Any]]]


def lean_spec(directory: Path) -> Path:
    """The demo spec without enrichment, models, predictions and alert rules, as a file.

    Same metrics (windows of every kind, sketches, caps): for tests about
    where windows are computed, not about models, at a fraction of the start-up
    and per-event cost.
    """
    data = yaml.safe_load(Path("config/demo.yaml").read_text(encoding="utf-8"))
    for section in ("enrichment", "alerts", "predictions"):
        data.pop(section, None)
    for metric in data["metrics"]:
        metric.pop("anomaly", None)
        metric.pop("forecast", None)
    path = directory / "lean-spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process read ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"RIFFLE_{name.upper()}"] = str(value)
    return env


def produce(settings: Settings, sent: list[Sent]) -> None:
    """Write ``sent`` to the events topic, each to its partition; wait for every ack."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    enqueue(producer, settings.events_topic, sent)
    assert producer.flush(60) == 0


def enqueue(producer: Producer, topic: str, sent: list[Sent]) -> None:
    """Queue ``sent`` on ``producer``, each to its partition, waiting while its queue is full."""
    for item in sent:
        while True:
            try:
                producer.produce(topic, value=item.raw, partition=item.partition)
                break
            except BufferError:
                producer.poll(0.05)


def cluster_ports(processes: int, host: str = "127.0.0.1") -> tuple[int, str]:
    """Free ports for a ``riffle run -i I -a ADDRESSES`` cluster of ``processes`` processes.

    Returns a metrics base port whose next ``processes`` ports are free
    (process ``i`` serves ``metrics_port + i``) and the ``-a`` addresses, on
    other free ports. Every port is held while the others are chosen, so no
    two coincide (free when asked; racy by nature, like ``free_port``).
    """
    held: list[socket.socket] = []

    def hold(port: int) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.append(sock)
        sock.bind((host, port))
        bound: int = sock.getsockname()[1]
        return bound

    try:
        for _ in range(100):
            base = hold(0)
            try:
                for port in range(base + 1, base + processes):
                    hold(port)
            except OSError:
                continue
            addresses = ";".join(f"{host}:{hold(0)}" for _ in range(processes))
            return base, addresses
        raise RuntimeError(f"no {processes} consecutive free ports on {host}")
    finally:
        for sock in held:
            sock.close()


def start_flow(settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`riffle run ARGS` as a child process, output appended to ``log``."""
    riffle = Path(sys.executable).with_name("riffle")
    return subprocess.Popen(
        [str(riffle), "run", *args],
        env=settings_env(settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    """``kill -9``: no shutdown code runs."""
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def closed_expectation(sent: list[Sent], lateness_ms: int, spec: PipelineSpec = SPEC) -> Expected:
    """The SQL expectation without the last minute (the closers' windows stay open)."""
    expected = expected_windows(sent, spec, lateness_ms=lateness_ms)
    horizon = max(start for (_m, _d, start) in expected) - 60_000
    return {k: v for k, v in expected.items() if k[2] < horizon}


def closed_sketches(
    sent: list[Sent], lateness_ms: int, spec: PipelineSpec = SPEC
) -> ExpectedSketches:
    """Value and detail of every closed window of a sketched metric (single-pass reference),
    without the last minute's and without windows the closers leave open."""
    expected = expected_sketches(sent, spec, lateness_ms=lateness_ms)
    horizon = max(start for (_m, _d, start) in expected_windows(sent, spec, lateness_ms)) - 60_000
    size = {m.name: m.window_ms for m in spec.metrics}
    return {k: v for k, v in expected.items() if k[2] + size[k[0]] <= horizon}


def redis_finals(settings: Settings, spec: PipelineSpec = SPEC) -> dict[WindowKey, WindowResult]:
    """Every final window of the default tenant in Redis."""
    store = RedisWindowStore(
        redis.Redis.from_url(settings.redis_url),
        settings.redis_prefix,
        int(spec.retention.hot.total_seconds()),
    )
    out: dict[WindowKey, WindowResult] = {}
    for metric in spec.metrics:
        for _dims, points in store.read_series(settings.default_tenant, metric.name, 0, 2**62):
            out.update({(p.metric, p.dims, p.window_start): p for p in points if p.is_final})
    return out


def warehouse_rows(settings: Settings, spec: PipelineSpec = SPEC) -> dict[WindowKey, WindowResult]:
    """Every window of the default tenant in the warehouse."""
    warehouse = open_warehouse(settings)
    rows: dict[WindowKey, WindowResult] = {}
    for metric in spec.metrics:
        for _dims, points in warehouse.read_series(settings.default_tenant, metric.name, 0, 2**62):
            rows.update({(p.metric, p.dims, p.window_start): p for p in points})
    return rows


def scrape(settings: Settings, sample: str) -> float:
    """One sample (name with labels, as exposed) from the flow's Prometheus endpoint."""
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    raise AssertionError(f"{sample} not exposed at {url}")


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    log: Path,
    detail: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``predicate`` until true; fail with ``detail()`` and the end of the flow's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; {detail()}\nflow log:\n{log.read_text()[-3000:]}")


def final_differences(
    got: dict[WindowKey, WindowResult], want: dict[WindowKey, WindowResult]
) -> list[str]:
    """How two sets of final windows differ (empty: they are the same).

    Counts, minima, maxima, ends, details and sketched values must be equal;
    sums (and the values computed from them) to float rounding, since partial
    sums merge in an order that follows batches, partitions and processes.
    """
    out = [f"missing {k}" for k in sorted(want.keys() - got.keys())]
    out += [f"extra {k}" for k in sorted(got.keys() - want.keys())]
    for key in sorted(want.keys() & got.keys()):
        a, b = got[key], want[key]
        exact = (a.window_end, a.count, a.min, a.max, a.detail, a.sketch is None)
        same = exact == (b.window_end, b.count, b.min, b.max, b.detail, b.sketch is None)
        same = same and math.isclose(a.sum, b.sum, rel_tol=1e-9, abs_tol=1e-9)
        if a.sketch is not None or a.value is None or b.value is None:
            same = same and a.value == b.value
        else:
            same = same and math.isclose(a.value, b.value, rel_tol=1e-9, abs_tol=1e-9)
        if not same:
            out.append(f"{key}: {a} != {b}")
    return out


def assert_sketches_match(got: dict[WindowKey, WindowResult], expected: ExpectedSketches) -> None:
    """``got`` holds every expected sketched window with exactly its value and detail."""
    missing = expected.keys() - got.keys()
    assert not missing, f"{len(missing)} sketched windows missing, e.g. {sorted(missing)[:3]}"
    wrong = [
        (key, (got[key].value, got[key].detail), want)
        for key, want in expected.items()
        if (got[key].value, got[key].detail) != want
    ]
    assert not wrong, f"{len(wrong)} of {len(expected)} sketched windows differ, e.g. {wrong[:2]}"


def assert_matches(got: dict[WindowKey, WindowResult], expected: Expected) -> None:
    """``got`` holds every expected window with exactly the expected aggregate."""
    missing = expected.keys() - got.keys()
    assert not missing, f"{len(missing)} windows missing, e.g. {sorted(missing)[:3]}"
    wrong = []
    for key, (count, total, low, high) in expected.items():
        point = got[key]
        if (point.count, point.sum, point.min, point.max) != (
            count,
            pytest.approx(total),
            pytest.approx(low),
            pytest.approx(high),
        ):
            wrong.append((key, (point.count, point.sum), (count, total)))
    assert not wrong, f"{len(wrong)} windows differ, e.g. {wrong[:3]}"
