"""``riffle up`` as a user runs it: ready, serving live windows, and stopping cleanly."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from riffle.stack import free_port
from tests.conftest import RedisTarget

pytestmark = pytest.mark.e2e


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's output, line by line, read on a thread so waits can time out."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], text: str, timeout: float, seen: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no {text!r} within {timeout}s; output:\n" + "\n".join(seen))


def test_up_serves_live_windows_and_stops_on_ctrl_c(
    kafka_broker: str, redis_url: RedisTarget, tmp_path: Path
) -> None:
    api_port, metrics_port = free_port(), free_port()
    run = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    env.update(
        RIFFLE_KAFKA_BOOTSTRAP=kafka_broker,
        RIFFLE_EVENTS_TOPIC=f"up-events-{run}",
        RIFFLE_DEADLETTER_TOPIC=f"up-dead-{run}",
        RIFFLE_REDIS_URL=redis_url.url,
        RIFFLE_REDIS_PREFIX=f"{redis_url.prefix}-up",
        RIFFLE_API_PORT=str(api_port),
        RIFFLE_METRICS_PORT=str(metrics_port),
        RIFFLE_LOG_FORMAT="console",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "riffle.cli", "up", "--rate", "300"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        lines = _lines(process)
        _wait_for(lines, "Riffle is up.", 120, seen)
        _wait_for(lines, "Press Ctrl-C to stop.", 5, seen)
        _wait_for(lines, "API key of tenant", 5, seen)
        key = seen[-1].rsplit(" ", 1)[-1]
        auth = {"Authorization": f"Bearer {key}"}
        assert f"Kafka: using {kafka_broker}" in "\n".join(seen)
        series = f"http://127.0.0.1:{api_port}/v1/metrics/page_views_10s/series"
        assert any(series in line for line in seen)

        counted = 0
        deadline = time.monotonic() + 60
        while counted == 0 and time.monotonic() < deadline:
            body = httpx.get(series, params={"start": "-5m"}, headers=auth, timeout=5).json()
            counted = sum(p["count"] for s in body["series"] for p in s["points"])
            time.sleep(1)
        assert counted > 0, body
        sent = httpx.post(
            f"http://127.0.0.1:{api_port}/v1/events",
            json={"type": "signup", "ts": int(time.time() * 1000), "props": {"channel": "ads"}},
            headers=auth,
            timeout=15,
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["accepted"] == 1
        flow_metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert "riffle_dataflow" in flow_metrics
        # The prediction stage sees the demo's sessions live.
        assert 'riffle_predictions_observations_total{prediction="purchase_propensity"}' in (
            flow_metrics
        )
        base = f"http://127.0.0.1:{api_port}"
        models = httpx.get(f"{base}/v1/models", headers=auth, timeout=15)
        assert models.status_code == 200, models.text
        assert models.json()["predictions"][0]["prediction"] == "purchase_propensity"
        insights = httpx.get(f"{base}/v1/insights", headers=auth, timeout=30)
        assert insights.status_code == 200, insights.text
        # A live session's purchase propensity, served from Redis.
        hot = redis.Redis.from_url(redis_url.url)
        pattern = f"{redis_url.prefix}-up:*:prediction:session:*"
        entity = None
        deadline = time.monotonic() + 60
        while entity is None and time.monotonic() < deadline:
            entity = next(hot.scan_iter(match=pattern, count=1000), None)
            time.sleep(0.5)
        assert entity is not None, "no prediction reached Redis"
        session = entity.decode().rsplit(":", 1)[-1]
        got = httpx.get(f"{base}/v1/predictions/session/{session}", headers=auth, timeout=15)
        assert got.status_code == 200, got.text
        [prediction] = got.json()["predictions"]
        assert 0 < prediction["probability"] < 1
        for name in ("dataflow", "api", "producer"):
            assert (tmp_path / ".riffle" / "logs" / f"{name}.log").stat().st_size > 0

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        _wait_for(lines, "stopped", 5, seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with pytest.raises(httpx.TransportError):
        httpx.get(series, timeout=2)
    producer_log = (tmp_path / ".riffle" / "logs" / "producer.log").read_text()
    assert "demo_produce_done" in producer_log  # flushed and summarised on SIGTERM
