"""Alert latency: from the event that breaches a rule to the webhook receiving the notification.

Everything is real: a Tansu broker, `riffle run` (the metrics dataflow with its alert
stage), `riffle notify` (routing, grouping, signed webhook) and an HTTP receiver in this
process. Background events arrive at a steady ``--rate`` (event time = now) over
``--series`` endpoints with normal latencies; every ``--every`` seconds one event of a
fresh endpoint carries a latency above the rule's threshold. Each breach is a new alert
instance and a new group (``group_wait: 0s``), so its notification is due at once.

Printed, side by side, per breach:

* ``event → webhook``: wall clock from producing the breaching event to the receiver
  getting the signed notification (what a user waits);
* ``window end → webhook``: from the end of the window the event fell in — the part
  after the window closed (watermark, alert stage, riffle.alerts, notifier, HTTP);
* their ratio: how much of the wait is the window itself.

    python -m benchmarks.alerts --rate 500 --breaches 40 --every 0.5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import redis
from confluent_kafka import Producer

from riffle.sinks.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from riffle.sources.topics import ensure_topics
from riffle.stack import free_port, start_tansu

SECRET = "bench-secret"
SPEC = """
version: 1
event_types: {req: {}}
dimensions: {endpoint: {path: props.endpoint}}
metrics:
  - name: latency_max
    events: [req]
    aggregation: max
    value: props.latency_ms
    dimensions: [endpoint]
    window: WINDOW
alerts:
  - name: latency_high
    kind: threshold
    metric: latency_max
    value: 1000
    severity: critical
    annotations: {summary: "{{ labels.endpoint }}: {{ value }} ms"}
notifications:
  receivers:
    - name: ops
      webhook: {url: "HOOK_URL", secret_env: BENCH_HOOK_SECRET}
  route:
    receiver: ops
    group_by: [alertname, endpoint]
    group_wait: 0s
    group_interval: 5s
    repeat_interval: 1h
"""


class Receiver:
    """Records when each breach's firing notification arrived (signature checked)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        self.bad = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                now = time.time()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not verify(
                    SECRET.encode(),
                    self.headers[TIMESTAMP_HEADER],
                    body,
                    self.headers[SIGNATURE_HEADER],
                ):
                    receiver.bad += 1
                for alert in orjson.loads(body)["alerts"]:
                    if alert["status"] == "firing":
                        receiver.arrived.setdefault(alert["labels"]["endpoint"], now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _event(endpoint: str, latency: float) -> tuple[bytes, int]:
    now = int(time.time() * 1000)
    event = {
        "event_id": uuid.uuid4().hex,
        "type": "req",
        "ts": now,
        "props": {"endpoint": endpoint, "latency_ms": latency},
    }
    return orjson.dumps(event), now


def _background(
    producer: Producer, topic: str, rate: float, series: int, stop: threading.Event
) -> None:
    rng = random.Random(1)
    tick = 0.01
    carry = 0.0
    while not stop.is_set():
        carry += rate * tick
        for _ in range(int(carry)):
            raw, _ = _event(f"/s{rng.randrange(series)}", rng.uniform(20, 400))
            producer.produce(topic, raw)
        carry -= int(carry)
        producer.poll(0)
        time.sleep(tick)


@contextlib.contextmanager
def _children(argvs: list[list[str]], env: dict[str, str], logs: Path) -> Iterator[None]:
    procs = [
        subprocess.Popen(
            argv, env=env, stdout=(logs / f"{argv[-1]}.log").open("wb"), stderr=subprocess.STDOUT
        )
        for argv in argvs
    ]
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="riffle-bench-alerts-"))
    port = free_port()
    tansu = start_tansu(port, work / "tansu.log")
    receiver = Receiver()
    servers = f"127.0.0.1:{port}"
    prefix = f"bench-alerts-{uuid.uuid4().hex[:8]}"
    redis_url = args.redis_url
    topic = "bench.events"
    spec = work / "spec.yaml"
    hook = f"http://127.0.0.1:{receiver.port}/hook"
    spec.write_text(SPEC.replace("WINDOW", args.window).replace("HOOK_URL", hook))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    env.update(
        {
            "RIFFLE_KAFKA_BOOTSTRAP": servers,
            "RIFFLE_EVENTS_TOPIC": topic,
            "RIFFLE_TOPIC_PARTITIONS": str(args.partitions),
            "RIFFLE_REDIS_URL": redis_url,
            "RIFFLE_REDIS_PREFIX": prefix,
            "RIFFLE_WAREHOUSE": f"duckdb:///{work / 'w.duckdb'}",
            "RIFFLE_SPEC": str(spec),
            "RIFFLE_LATENESS_SECONDS": "0",
            "RIFFLE_IDLE_SECONDS": "1",
            "RIFFLE_PARTIAL_INTERVAL_SECONDS": "0.2",
            "RIFFLE_BUCKETS": "2",
            "RIFFLE_METRICS_PORT": "0",
            "RIFFLE_NOTIFY_METRICS_PORT": "0",
            "RIFFLE_LOG_LEVEL": "WARNING",
            "BENCH_HOOK_SECRET": SECRET,
        }
    )
    ensure_topics(servers, [topic], args.partitions)
    riffle = str(Path(sys.executable).with_name("riffle"))
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 1})
    stop = threading.Event()
    sent: dict[str, tuple[float, int]] = {}
    window_ms = int(args.window.rstrip("s")) * 1000
    try:
        with _children([[riffle, "run"], [riffle, "notify"]], env, work):
            feeder = threading.Thread(
                target=_background, args=(producer, topic, args.rate, args.series, stop)
            )
            feeder.start()
            # Warm-up: wait until a breach comes through end to end.
            deadline = time.monotonic() + 120
            while "/warmup" not in receiver.arrived:
                if time.monotonic() > deadline:
                    print(f"no notification within 120 s; logs in {work}", file=sys.stderr)
                    return 1
                raw, _ = _event("/warmup", 5000)
                producer.produce(topic, raw)
                producer.flush(5)
                time.sleep(1)
            for i in range(args.breaches):
                raw, ts = _event(f"/b{i}", 5000)
                sent[f"/b{i}"] = (time.time(), ts)
                producer.produce(topic, raw)
                producer.poll(0)
                time.sleep(args.every)
            deadline = time.monotonic() + 60
            while not sent.keys() <= receiver.arrived.keys() and time.monotonic() < deadline:
                time.sleep(0.1)
            stop.set()
            feeder.join()
    finally:
        stop.set()
        producer.flush(5)
        receiver.close()
        tansu.terminate()
        tansu.wait(10)
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    got = [k for k in sent if k in receiver.arrived]
    total = [receiver.arrived[k] - sent[k][0] for k in got]
    after = [receiver.arrived[k] - ((sent[k][1] // window_ms + 1) * window_ms) / 1000 for k in got]
    print(
        f"alert latency, {args.rate:g} background events/s over {args.series} series, "
        f"{args.window} windows, {len(got)}/{len(sent)} breaches notified, "
        f"{receiver.bad} bad signatures"
    )
    print(f"{'':24}{'p50 s':>9}{'p99 s':>9}{'max s':>9}{'mean s':>9}")
    for name, values in (("event → webhook", total), ("window end → webhook", after)):
        print(
            f"{name:24}{_pct(values, 0.5):9.3f}{_pct(values, 0.99):9.3f}"
            f"{max(values):9.3f}{statistics.fmean(values):9.3f}"
        )
    ratio = _pct(after, 0.5) / _pct(total, 0.5) if total and _pct(total, 0.5) else float("nan")
    print(f"share of the p50 wait after the window closed: {ratio:.2f}")
    return 0 if len(got) == len(sent) and receiver.bad == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="Background events per second.")
    parser.add_argument("--series", type=int, default=20, help="Background endpoints.")
    parser.add_argument("--breaches", type=int, default=40, help="Breaching events to time.")
    parser.add_argument("--every", type=float, default=0.5, help="Seconds between breaches.")
    parser.add_argument("--window", default="1s", help="The metric's window (whole seconds).")
    parser.add_argument("--partitions", type=int, default=2, help="Partitions of the events topic.")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/15", help="Redis (keys are removed after)."
    )
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
