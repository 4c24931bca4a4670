"""`riffle run` as a user runs it, over a backlog, beside a raw consumer loop.

Produces a backlog of demo events (``riffle demo-produce``'s traffic: user
agents, IPs, sessions, late and malformed events, keyed by user) spanning
``--events / --rate`` seconds of event time up to now, then in the same run:

* ``raw loop``: one process, confluent-kafka ``assign`` + ``consume`` +
  ``orjson.loads`` of every message of the topic, nothing else — the floor
  of what reading the backlog costs in Python;
* ``riffle run``: the real command with the default spec (``config/demo.yaml``:
  enrichment, 18 metrics, sketches, models, predictions, alert rules), Redis,
  DuckDB and the dead-letter topic, until it has read every event and gone
  quiet.

Both are CPU seconds of the process (all threads, from ``/proc``), start-up
excluded: the raw loop times itself from its first poll; ``riffle run``'s
start-up is what the same command spends before it goes quiet on an empty
topic, measured first and subtracted. The run fails unless every event is
accounted for (``in = ok + dead + late``) and the totals in Redis of every
tumbling metric — per series where the series' dimensions are fields of the
raw events — equal a reference computed from the topic, less the offsets the
flow dead-lettered::

    python -m benchmarks.e2e [--events 676000] [--rate 200] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from benchmarks.procs import scrape, wait_quiet
from benchmarks.results import record
from riffle.config.settings import Settings
from riffle.config.spec import Condition, MetricSpec, PipelineSpec, load_spec
from riffle.operators.records import DeadLetter
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.topics.deadletters import read_dead_letters
from riffle.sources.demo import DemoGenerator
from riffle.sources.topics import ensure_topics
from riffle.stack import free_port, start_tansu

Totals = dict[str, dict[tuple[tuple[str, str], ...] | None, list[float]]]
"""metric -> series dims (``None``: the metric's total) -> [count, sum]."""


def backlog(n: int, seed: int, rate: float) -> list[tuple[bytes, bytes]]:
    """``n`` keyed demo events at a mean of ``rate``/s of event time, ending now."""
    generator = DemoGenerator(seed)
    span_ms = n / rate * 1000
    clock = time.time() * 1000 - span_ms
    out = []
    for _ in range(n):
        now = int(clock)
        out.append(generator.next_event(now))
        clock += 1000.0 / (rate * generator.rate_factor(now))
    return out


def produce(servers: str, topic: str, events: list[tuple[bytes, bytes]]) -> None:
    """Write the keyed events; wait for every acknowledgement."""
    producer = Producer(
        {
            "bootstrap.servers": servers,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    for key, value in events:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise SystemExit("the backlog was not acknowledged")


def partitions_to_end(
    servers: str, topic: str, partitions: int
) -> Iterator[tuple[int, int, bytes | None]]:
    """``(partition, offset, value)`` of every message up to each partition's end."""
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": "bench-e2e",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    left = partitions
    try:
        while left:
            for msg in consumer.consume(5000, 1.0):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        left -= 1
                    continue
                yield msg.partition() or 0, msg.offset() or 0, msg.value()
    finally:
        consumer.close()


def raw_loop(servers: str, topic: str, partitions: int) -> None:
    """The raw loop (run as its own process); prints ``{"events", "cpu_s", "wall_s"}``."""
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": "bench-raw",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    loads, left, events = orjson.loads, partitions, 0
    cpu, wall = time.process_time(), time.perf_counter()
    while left:
        for msg in consumer.consume(5000, 1.0):
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    left -= 1
                continue
            with suppress(orjson.JSONDecodeError):
                loads(msg.value())
            events += 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    consumer.close()
    print(json.dumps({"events": events, "cpu_s": cpu, "wall_s": wall}))


def _read(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        if type(value) is not dict:
            return None
        value = value.get(part)
    return value


def _holds(event: dict[str, Any], cond: Condition) -> bool:
    actual = _read(event, cond.path)
    if cond.op == "exists":
        return (actual is not None) is (cond.value is not False)
    if actual is None:
        return False
    tests: dict[str, Callable[[Any, Any], bool]] = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "in": lambda a, b: a in b,
        "not_in": lambda a, b: a not in b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    try:
        return tests[cond.op](actual, cond.value)
    except TypeError:
        return False


def _dim_text(raw: Any, default: str) -> str:
    if raw is None:
        return default
    if type(raw) is bool:
        return "true" if raw else "false"
    if type(raw) is str:
        return raw[:128] or default
    return str(raw)


def checked_metrics(spec: PipelineSpec, sample: list[dict[str, Any]]) -> list[MetricSpec]:
    """Tumbling metrics the reference can compute: filters read fields of the raw events."""

    def raw(path: str) -> bool:
        return any(_read(event, path) is not None for event in sample)

    return [
        m
        for m in spec.metrics
        if m.window.kind == "tumbling" and all(raw(c.path) for c in m.filter)
    ]


def reference(
    servers: str, topic: str, partitions: int, spec: PipelineSpec, dead: set[tuple[int, int]]
) -> Totals:
    """Counts and sums per metric (and per series with raw dimensions), dead letters left out."""
    sample: list[dict[str, Any]] = []
    totals: Totals = {}
    plans: dict[str, list[tuple[MetricSpec, bool]]] = {}
    for part, offset, value in partitions_to_end(servers, topic, partitions):
        if (part, offset) in dead or value is None:
            continue
        event = orjson.loads(value)
        if len(sample) < 5000:
            sample.append(event)
            if len(sample) == 5000:
                plans = _plans(spec, sample)
            continue
        _count(event, plans, spec, totals)
    if len(sample) < 5000:
        plans = _plans(spec, sample)
    for event in sample:
        _count(event, plans, spec, totals)
    return totals


def _plans(
    spec: PipelineSpec, sample: list[dict[str, Any]]
) -> dict[str, list[tuple[MetricSpec, bool]]]:
    plans: dict[str, list[tuple[MetricSpec, bool]]] = {}
    for metric in checked_metrics(spec, sample):
        per_series = not metric.max_values and all(
            any(_read(e, spec.dimensions[d].path) is not None for e in sample)
            and not spec.dimensions[d].path.startswith("context.geo")
            and spec.dimensions[d].path not in ENRICHED
            for d in metric.dimensions
        )
        for event_type in metric.events:
            plans.setdefault(event_type, []).append((metric, per_series))
    return plans


ENRICHED = frozenset({"context.browser", "context.device_type", "context.geo_country"})
"""Dimension paths the enrichment writes (compared as metric totals only)."""


def _count(
    event: dict[str, Any],
    plans: dict[str, list[tuple[MetricSpec, bool]]],
    spec: PipelineSpec,
    totals: Totals,
) -> None:
    for metric, per_series in plans.get(event.get("type"), ()):  # type: ignore[call-overload]
        if not all(_holds(event, c) for c in metric.filter):
            continue
        if metric.aggregation in ("distinct", "top_k") and _read(event, metric.value or "") is None:
            continue
        value = 1.0 if metric.value is None else _read(event, metric.value)
        number = float(value) if type(value) in (int, float) else 0.0
        keys: list[tuple[tuple[str, str], ...] | None] = [None]
        if per_series:
            keys.append(
                tuple(
                    sorted(
                        (
                            d,
                            _dim_text(
                                _read(event, spec.dimensions[d].path), spec.dimensions[d].default
                            ),
                        )
                        for d in metric.dimensions
                    )
                )
            )
        for key in keys:
            slot = totals.setdefault(metric.name, {}).setdefault(key, [0.0, 0.0])
            slot[0] += 1
            slot[1] += number


def redis_totals(store: RedisWindowStore, tenant: str, want: Totals) -> Totals:
    """The same totals from the latest emission of every window in Redis."""
    got: Totals = {}
    for metric, series in want.items():
        per_series = len(series) > 1
        for dims, points in store.read_series(tenant, metric, 0, 2**62):
            count = sum(p.count for p in points)
            total = sum(p.sum for p in points)
            keys: list[tuple[tuple[str, str], ...] | None] = [None, dims] if per_series else [None]
            for key in keys:
                slot = got.setdefault(metric, {}).setdefault(key, [0.0, 0.0])
                slot[0] += count
                slot[1] += total
    return got


def differences(want: Totals, got: Totals) -> list[str]:
    """What differs between two totals (sums to a relative 1e-9)."""
    out = []
    for metric, series in want.items():
        for key, (count, total) in series.items():
            have = got.get(metric, {}).get(key, [0.0, 0.0])
            if have[0] != count or not math.isclose(have[1], total, rel_tol=1e-9, abs_tol=1e-6):
                out.append(
                    f"{metric} {key or 'total'}: riffle {have} vs reference {[count, total]}"
                )
        out += [
            f"{metric} {key}: riffle has a series the reference lacks"
            for key in got.get(metric, {})
            if key not in series
        ]
    return out


def dead_letters(servers: str, topic: str, partitions: int, want: int) -> list[DeadLetter]:
    """The flow's dead letters once all ``want`` are on the topic (its sink writes every
    few seconds)."""
    deadline = time.monotonic() + 60
    while True:
        letters = read_dead_letters(servers, topic, list(range(partitions)))
        if len(letters) >= want:
            return letters
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(letters)} dead letters on {topic}, the flow counted {want}")
        time.sleep(1)


def riffle_env(
    servers: str, topic: str, redis_url: str, prefix: str, workdir: Path
) -> dict[str, str]:
    """The environment of a `riffle run` of this benchmark: the default spec, own topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    env.update(
        RIFFLE_KAFKA_BOOTSTRAP=servers,
        RIFFLE_EVENTS_TOPIC=topic,
        RIFFLE_DEADLETTER_TOPIC=f"{topic}.dead",
        RIFFLE_ALERTS_TOPIC=f"{topic}.alerts",
        RIFFLE_REDIS_URL=redis_url,
        RIFFLE_REDIS_PREFIX=prefix,
        RIFFLE_WAREHOUSE=f"duckdb:///{workdir / f'{prefix}.duckdb'}",
        RIFFLE_METRICS_PORT=str(free_port()),
        RIFFLE_LOG_LEVEL="WARNING",
    )
    return env


@contextmanager
def riffle_run(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``riffle run`` as a child until the block ends (SIGTERM, then wait)."""
    riffle_bin = Path(sys.executable).with_name("riffle")
    with log.open("ab") as out:
        child = subprocess.Popen([str(riffle_bin), "run"], env=env, stdout=out, stderr=out)
        try:
            yield child
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _metrics_url(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['RIFFLE_METRICS_PORT']}/metrics"


def wait_started(child: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Until the flow serves its metrics and has counted its first poll (or died)."""
    deadline = time.monotonic() + 120
    while "riffle_dataflow_events_in_total" not in scrape(url):
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"riffle run did not start; see {log}")
        time.sleep(0.1)


def startup_cpu(servers: str, redis_url: str, prefix: str, workdir: Path, partitions: int) -> float:
    """CPU seconds `riffle run` spends before it goes quiet on an empty topic."""
    topic = f"bench-e2e-empty.{uuid.uuid4().hex[:8]}"
    ensure_topics(servers, [topic, f"{topic}.dead", f"{topic}.alerts"], partitions)
    env = riffle_env(servers, topic, redis_url, prefix, workdir)
    log = workdir / "startup.log"
    with riffle_run(env, log) as child:
        wait_started(child, _metrics_url(env), log)
        return wait_quiet(child.pid, below=0.1, window_s=2.0, timeout_s=120)


def measure_riffle(
    servers: str, topic: str, redis_url: str, prefix: str, workdir: Path, n: int, partitions: int
) -> tuple[float, float, dict[str, float], list[DeadLetter]]:
    """`riffle run` over the backlog until quiet: (CPU s incl. start-up, wall s, flow
    counters, its dead letters — read while it runs, as it writes them every few seconds)."""
    env = riffle_env(servers, topic, redis_url, prefix, workdir)
    url, log = _metrics_url(env), workdir / "riffle.log"
    with riffle_run(env, log) as child:
        began = time.perf_counter()
        wait_started(child, url, log)
        deadline = time.monotonic() + 1800
        while True:
            samples = scrape(url)
            if samples.get("riffle_dataflow_events_in_total", 0) >= n:
                break
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"riffle run stopped before reading the backlog; see {log}")
            time.sleep(0.2)
        wall = time.perf_counter() - began
        cpu = wait_quiet(child.pid, below=0.1, window_s=1.0)
        samples = scrape(url)
        rejected = sum(
            samples.get(f'riffle_dataflow_events_total{{outcome="{o}"}}', 0)
            for o in ("dead", "late")
        )
        letters = dead_letters(servers, f"{topic}.dead", partitions, int(rejected))
        return cpu, wall, samples, letters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=676_000)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s of event time")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bootstrap", help="Kafka bootstrap; a Tansu broker is started if absent")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/2")
    parser.add_argument(
        "--raw-loop", nargs=3, metavar=("SERVERS", "TOPIC", "PARTITIONS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.raw_loop:
        raw_loop(args.raw_loop[0], args.raw_loop[1], int(args.raw_loop[2]))
        return
    n = args.events
    spec = load_spec(Settings().spec)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = None
        prefix = f"e2e{uuid.uuid4().hex[:6]}"
        client = redis.Redis.from_url(args.redis_url)
        servers = args.bootstrap
        if not servers:
            port = free_port()
            broker = start_tansu(port, workdir / "tansu.log")
            servers = f"127.0.0.1:{port}"
        try:
            topic = f"bench-e2e.{uuid.uuid4().hex[:8]}"
            ensure_topics(servers, [topic, f"{topic}.dead", f"{topic}.alerts"], args.partitions)
            made = time.perf_counter()
            events = backlog(n, seed=1, rate=args.rate)
            size = sum(len(v) for _, v in events) / n
            produce(servers, topic, events)
            print(
                f"backlog: {n:,} demo events of {size:.0f} bytes, {n / args.rate / 60:.0f} min of "
                f"event time, {args.partitions} partitions ({time.perf_counter() - made:.0f} s)"
            )
            del events
            raw = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.e2e",
                    "--raw-loop",
                    servers,
                    topic,
                    str(args.partitions),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            loop = json.loads(raw.stdout.strip().splitlines()[-1])
            if loop["events"] != n:
                raise SystemExit(f"the raw loop read {loop['events']} of {n} events")
            start_cpu = startup_cpu(servers, args.redis_url, f"{prefix}s", workdir, args.partitions)
            cpu, wall, samples, letters = measure_riffle(
                servers, topic, args.redis_url, prefix, workdir, n, args.partitions
            )
            work = cpu - start_cpu
            seen = samples.get("riffle_dataflow_events_in_total", 0)
            outcomes = sum(
                samples.get(f'riffle_dataflow_events_total{{outcome="{o}"}}', 0)
                for o in ("ok", "dead", "late")
            )
            if seen != n or outcomes != n:
                raise SystemExit(f"events in {seen}, ok+dead+late {outcomes}, produced {n}")
            dead = set()
            for letter in letters:
                where = letter.source.rsplit("/", 1)[1]
                part, offset = where.split("@")
                dead.add((int(part), int(offset)))
            want = reference(servers, topic, args.partitions, spec, dead)
            store = RedisWindowStore(client, prefix, int(spec.retention.hot.total_seconds()))
            got = redis_totals(store, Settings().default_tenant, want)
            wrong = differences(want, got)
            if wrong:
                raise SystemExit("riffle differs from the reference:\n  " + "\n  ".join(wrong[:20]))
        finally:
            for pattern in (f"{prefix}:*", f"{prefix}s:*"):
                for key in client.scan_iter(pattern, count=1000):
                    client.delete(key)
            if broker is not None:
                broker.terminate()
                broker.wait(10)
    raw_rate = n / loop["cpu_s"]
    rate = n / work
    print(f"{'':<34} {'CPU s':>8} {'events/CPU-s':>13} {'wall s':>8}")
    print(
        f"{'raw loop (consume + orjson)':<34} {loop['cpu_s']:>8.2f} {raw_rate:>13,.0f} "
        f"{loop['wall_s']:>8.1f}"
    )
    print(f"{'riffle run, config/demo.yaml':<34} {work:>8.2f} {rate:>13,.0f} {wall:>8.1f}")
    print(
        f"riffle / raw loop: {rate / raw_rate:.3f}   (start-up {start_cpu:.2f} CPU s excluded; "
        f"dead letters {len(dead):,}; {sum(len(s) for s in want.values())} totals checked)"
    )
    record("e2e", events_per_cpu_s=rate, ratio=rate / raw_rate, raw_events_per_cpu_s=raw_rate)


if __name__ == "__main__":
    main()
