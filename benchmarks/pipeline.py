"""The metrics flow alone (no enrichment, models, predictions or alerts) beside a plain loop.

This is the metrics-only variant; the headline figure, ``riffle run`` with the
default spec as a user runs it, is :mod:`benchmarks.e2e`.

Produces N compact (~150-byte) demo events to a fresh topic, then reads the
whole topic twice, alternating, with

* ``reference``: confluent-kafka ``assign`` + ``orjson`` + dict aggregation of
  the demo's tumbling count/sum/avg/min/max metrics into the same windows,
  nothing else (no checks, no sketches, no output) — the ceiling for Python
  on this machine;
* ``riffle``: the real metrics dataflow over the whole demo spec — schema
  checks, lateness, shards, every metric including the HLL, quantile and top-k
  sketches and the hopping and session windows, partial and final windows
  written to Redis, finals to DuckDB, dead letters to Kafka — bounded to the
  topic's end. The events carry no user agent or IP, so the demo's enrichment
  is off here (``benchmarks.enrich`` measures it).

and, with ``--processes 1,2``, the same metrics dataflow as ``riffle run``
child processes — one process, then a two-process cluster (``-i``/``-a``)
over the same topic — timed from the moment every process serves its
metrics until every event's contribution is in Redis (partial or final
windows), CPU-seconds summed over the children from ``/proc``. The demo's
models and alert rules are left out of every variant: this measures the
metrics dataflow.

It prints events/s and events per CPU-second for each, and their ratios to
the reference loop of the same round. Every variant must agree with the
reference on the totals of the metrics it computes, or the run fails.

    python -m benchmarks.pipeline --events 500000 --processes 1,2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import redis
import yaml
from bytewax.testing import run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from benchmarks.procs import cpu_seconds, machine_busy_seconds
from benchmarks.results import record
from riffle.config.settings import Settings
from riffle.config.spec import SKETCHED, MetricSpec, PipelineSpec, parse_spec
from riffle.dataflows.metrics import FlowOutputs, build_flow
from riffle.dataflows.outputs import DeadLetterSink, RedisWindowsSink, WarehouseSink
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.extract import getter, predicate
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sources.kafka import KafkaPollSource, partition_key
from riffle.sources.topics import ensure_topics
from riffle.stack import free_port, start_tansu

COUNTRIES = ["US", "US", "US", "DE", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "NL"]
DEVICES = ["desktop"] * 6 + ["mobile"] * 3 + ["tablet"]
PAGES = ["home", "search", "product", "product", "product", "cart", "checkout", "account"]


def compact_events(n: int, seed: int, start_ms: int) -> list[bytes]:
    """Demo-shaped events of about 150 bytes, ~2k/s of event time, in time order."""
    rng = random.Random(seed)
    kinds = (
        ["page_view"] * 60
        + ["add_to_cart"] * 10
        + ["purchase"] * 5
        + ["signup"] * 3
        + ["api_request"] * 22
    )
    out = []
    for i in range(n):
        kind = rng.choice(kinds)
        props: dict[str, object]
        if kind == "page_view":
            props = {"page": rng.choice(PAGES)}
        elif kind == "purchase":
            props = {
                "amount": round(rng.uniform(5, 400), 2),
                "currency": rng.choice(["USD", "EUR"]),
            }
        elif kind == "signup":
            props = {"channel": rng.choice(["ads", "organic", "referral"])}
        elif kind == "api_request":
            status = rng.choice([200] * 18 + [404, 500])
            props = {
                "endpoint": rng.choice(["/api/cart", "/api/search", "/api/items"]),
                "status": status,
                "status_class": f"{status // 100}xx",
                "latency_ms": rng.randint(2, 800),
            }
        else:
            props = {"sku": f"s{rng.randint(1, 999)}"}
        out.append(
            orjson.dumps(
                {
                    "event_id": f"{seed:x}-{i:x}",
                    "type": kind,
                    "ts": start_ms + i // 2,
                    "props": props,
                    "context": {"country": rng.choice(COUNTRIES), "device": rng.choice(DEVICES)},
                }
            )
        )
    return out


def produce(servers: str, topic: str, values: list[bytes]) -> None:
    """Write ``values`` keyed round-robin over partitions; wait for every delivery."""
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
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=value, key=str(i % 997).encode())
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("produce did not complete")


Aggregates = dict[tuple[str, tuple[str, ...], int], list[float]]


def comparable(spec: PipelineSpec) -> list[MetricSpec]:
    """The metrics the plain loop computes: tumbling windows of the numeric aggregations."""
    return [
        m for m in spec.metrics if m.window.kind == "tumbling" and m.aggregation not in SKETCHED
    ]


def reference(servers: str, topic: str, partitions: int, spec: PipelineSpec) -> Aggregates:
    """The plain loop: assign, orjson, dict aggregation into the spec's windows."""
    by_type: dict[
        str,
        list[
            tuple[
                str,
                int,
                Callable[..., object] | None,
                list[Callable[..., object]],
                Callable[..., bool] | None,
            ]
        ],
    ] = {}
    for m in comparable(spec):
        entry = (
            m.name,
            m.window_ms,
            getter(m.value) if m.value else None,
            [getter(spec.dimensions[d].path) for d in sorted(m.dimensions)],
            predicate(m.filter),
        )
        for t in m.events:
            by_type.setdefault(t, []).append(entry)
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": "bench",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    aggs: Aggregates = {}
    open_parts = partitions
    loads = orjson.loads
    while open_parts:
        for msg in consumer.consume(5000, 0.5):
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    open_parts -= 1
                continue
            event = loads(msg.value())
            ts = event["ts"]
            for name, window, value_of, dims, accepts in by_type.get(event["type"], ()):
                if accepts is not None and not accepts(event):
                    continue
                value = float(value_of(event)) if value_of else 1.0  # type: ignore[arg-type]
                key = (name, tuple(str(d(event) or "unknown") for d in dims), ts - ts % window)
                agg = aggs.get(key)
                if agg is None:
                    aggs[key] = [1.0, value, value, value]
                else:
                    agg[0] += 1
                    agg[1] += value
                    agg[2] = min(agg[2], value)
                    agg[3] = max(agg[3], value)
    consumer.close()
    return aggs


def riffle(
    servers: str,
    topic: str,
    partitions: int,
    spec: PipelineSpec,
    redis_url: str,
    prefix: str,
    workdir: Path,
) -> dict[str, float]:
    """The dataflow, bounded to the topic's end; returns final counts per metric from Redis."""
    settings = Settings(kafka_bootstrap=servers, redis_url=redis_url, redis_prefix=prefix)
    hot_ttl = int(spec.retention.hot.total_seconds())
    flow = build_flow(
        spec,
        settings,
        source=KafkaPollSource(servers, topic, batch_size=settings.source_batch_size, tail=False),
        partitions=[partition_key(topic, p) for p in range(partitions)],
        outputs=FlowOutputs(
            windows=RedisWindowsSink(redis_url, prefix, hot_ttl),
            finals=WarehouseSink(workdir / "bench.duckdb"),
            dead_letters=DeadLetterSink(servers, f"{topic}.dead"),
        ),
        telemetry=FlowTelemetry(CollectorRegistry()),
    )
    run_main(flow)
    return redis_totals(redis_url, prefix, spec, finals_only=True)


def metrics_spec(path: Path) -> str:
    """The demo spec as YAML without enrichment, models and alert rules."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.pop("enrichment", None)
    data.pop("alerts", None)
    for metric in data["metrics"]:
        metric.pop("anomaly", None)
        metric.pop("forecast", None)
    return yaml.safe_dump(data, sort_keys=False)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).read()
    except OSError:
        return False
    return True


def redis_totals(
    redis_url: str, prefix: str, spec: PipelineSpec, *, finals_only: bool
) -> dict[str, float]:
    """Events counted per comparable metric in Redis (latest emission of every window)."""
    hot_ttl = int(spec.retention.hot.total_seconds())
    store = RedisWindowStore(redis.Redis.from_url(redis_url), prefix, hot_ttl)
    tenant = Settings().default_tenant
    totals: dict[str, float] = {}
    for metric in comparable(spec):
        for _dims, points in store.read_series(tenant, metric.name, 0, 2**62):
            counted = sum(p.count for p in points if p.is_final or not finals_only)
            if counted:
                totals[metric.name] = totals.get(metric.name, 0) + counted
    return totals


def riffle_processes(
    servers: str,
    topic: str,
    spec: PipelineSpec,
    spec_file: Path,
    redis_url: str,
    prefix: str,
    workdir: Path,
    processes: int,
    want: dict[str, float],
    broker: int | None,
) -> tuple[float, float, float, float]:
    """``riffle run`` as ``processes`` processes until Redis holds every event; (wall s,
    their CPU s, the whole machine's busy cores and the broker's cores over that time).

    The machine's figure says whether more processes could have had more CPU: at
    ``os.cpu_count()`` busy cores the run was bound by the machine, not by Riffle."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    env.update(
        RIFFLE_KAFKA_BOOTSTRAP=servers,
        RIFFLE_EVENTS_TOPIC=topic,
        RIFFLE_DEADLETTER_TOPIC=f"{topic}.dead",
        RIFFLE_REDIS_URL=redis_url,
        RIFFLE_REDIS_PREFIX=prefix,
        RIFFLE_WAREHOUSE=f"duckdb:///{workdir / f'{prefix}.duckdb'}",
        RIFFLE_SPEC=str(spec_file),
        RIFFLE_METRICS_PORT=str(port),
        RIFFLE_PARTIAL_INTERVAL_SECONDS="0.25",
        RIFFLE_LOG_LEVEL="WARNING",
    )
    riffle_bin = Path(sys.executable).with_name("riffle")
    args = [[str(riffle_bin), "run"] for _ in range(processes)]
    if processes > 1:
        hosts = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
        args = [[*a, "-i", str(i), "-a", hosts] for i, a in enumerate(args)]
    log = (workdir / f"{prefix}.log").open("ab")
    children = [subprocess.Popen(a, env=env, stdout=log, stderr=subprocess.STDOUT) for a in args]
    try:
        urls = [f"http://127.0.0.1:{port + i}/metrics" for i in range(processes)]
        deadline = time.monotonic() + 60
        while not all(_answers(u) for u in urls):
            if time.monotonic() > deadline or any(c.poll() is not None for c in children):
                raise SystemExit(f"riffle run did not start; see {workdir / f'{prefix}.log'}")
            time.sleep(0.05)
        wall, cpu = time.perf_counter(), sum(cpu_seconds(c.pid) for c in children)
        busy, served = machine_busy_seconds(), cpu_seconds(broker) if broker else 0.0
        deadline = time.monotonic() + 600
        while redis_totals(redis_url, prefix, spec, finals_only=False) != want:
            if time.monotonic() > deadline:
                raise SystemExit(f"{processes} process(es) never reached the reference totals")
            time.sleep(0.1)
        elapsed = time.perf_counter() - wall
        used = sum(cpu_seconds(c.pid) for c in children) - cpu
        busy = (machine_busy_seconds() - busy) / elapsed
        served = ((cpu_seconds(broker) if broker else 0.0) - served) / elapsed
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(30)
        log.close()
    return elapsed, used, busy, served


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    """Run ``fn``; return its result, wall seconds and process CPU seconds (all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


@contextlib.contextmanager
def _broker(bootstrap: str | None) -> Iterator[tuple[str, int | None]]:
    """The bootstrap servers, and the pid of the broker started here (``None`` if given)."""
    if bootstrap:
        yield bootstrap, None
        return
    port = free_port()
    process = start_tansu(port)
    try:
        yield f"127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bootstrap", help="Kafka bootstrap; a Tansu broker is started if absent")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--processes",
        default="",
        help="also run `riffle run` with these process counts, e.g. 1,2 (empty: in-process only)",
    )
    args = parser.parse_args()
    counts = [int(p) for p in args.processes.split(",") if p.strip()]

    spec = PIPELINE_SPEC
    with _broker(args.bootstrap) as (servers, broker), tempfile.TemporaryDirectory() as tmp:
        spec_file = Path(tmp) / "spec.yaml"
        spec_file.write_text(metrics_spec(DEMO), encoding="utf-8")
        topic = f"bench.{uuid.uuid4().hex[:8]}"
        ensure_topics(servers, [topic, f"{topic}.dead"], args.partitions)
        values = compact_events(args.events, seed=1, start_ms=int(time.time() * 1000) - 3_600_000)
        size = sum(map(len, values)) / len(values)
        _, produce_s, _ = timed(lambda: produce(servers, topic, values))
        print(
            f"produced {args.events:,} events of {size:.0f} bytes to {args.partitions} "
            f"partitions in {produce_s:.1f}s"
        )
        rows = []
        cluster_rows: list[tuple[int, int, float, float, float, float, float, float]] = []
        client = redis.Redis.from_url(args.redis_url)
        for round_no in range(args.rounds):
            ref, ref_wall, ref_cpu = timed(lambda: reference(servers, topic, args.partitions, spec))
            prefix = f"bench{uuid.uuid4().hex[:6]}"
            got, rif_wall, rif_cpu = timed(
                lambda prefix=prefix: riffle(
                    servers, topic, args.partitions, spec, args.redis_url, prefix, Path(tmp)
                )
            )
            for key in client.scan_iter(f"{prefix}:*", count=1000):
                client.delete(key)
            assert isinstance(ref, dict) and isinstance(got, dict)
            want: dict[str, float] = {}
            for (name, _dims, _start), agg in ref.items():
                want[name] = want.get(name, 0) + agg[0]
            if got != want:
                raise SystemExit(f"totals differ: riffle {got} vs reference {want}")
            rows.append((round_no, ref_wall, ref_cpu, rif_wall, rif_cpu))
            for count in counts:
                prefix = f"bench{uuid.uuid4().hex[:6]}"
                wall, cpu, busy, served = riffle_processes(
                    servers,
                    topic,
                    spec,
                    spec_file,
                    args.redis_url,
                    prefix,
                    Path(tmp),
                    count,
                    want,
                    broker,
                )
                for key in client.scan_iter(f"{prefix}:*", count=1000):
                    client.delete(key)
                cluster_rows.append((round_no, count, ref_wall, ref_cpu, wall, cpu, busy, served))
        n = args.events
        print(
            f"\n{'round':>5} {'reference ev/s':>15} {'ev/cpu-s':>10} "
            f"{'riffle ev/s':>12} {'ev/cpu-s':>10} {'ratio ev/s':>11} {'ratio cpu':>10}"
        )
        for round_no, ref_wall, ref_cpu, rif_wall, rif_cpu in rows:
            print(
                f"{round_no:>5} {n / ref_wall:>15,.0f} {n / ref_cpu:>10,.0f} "
                f"{n / rif_wall:>12,.0f} {n / rif_cpu:>10,.0f} "
                f"{ref_wall / rif_wall:>11.2f} {ref_cpu / rif_cpu:>10.2f}"
            )
        best_ref = min(r[1] for r in rows)
        best_rif = min(r[3] for r in rows)
        print(
            f"\nbest: reference {n / best_ref:,.0f} ev/s, riffle {n / best_rif:,.0f} ev/s, "
            f"riffle/reference = {best_ref / best_rif:.2f}"
        )
        if cluster_rows:
            print(
                f"\n{'round':>5} {'riffle run':>10} {'ev/s':>10} {'ev/cpu-s':>10} "
                f"{'vs reference ev/s':>18} {'vs reference cpu':>17} {'riffle cores':>13} "
                f"{'broker cores':>13} {'machine busy':>13}"
            )
            for round_no, count, ref_wall, ref_cpu, wall, cpu, busy, served in cluster_rows:
                print(
                    f"{round_no:>5} {f'{count} proc':>10} {n / wall:>10,.0f} {n / cpu:>10,.0f} "
                    f"{ref_wall / wall:>18.2f} {ref_cpu / cpu:>17.2f} {cpu / wall:>13.2f} "
                    f"{served:>13.2f} {f'{busy:.2f} of {os.cpu_count()}':>13}"
                )
            for count in counts:
                best = min(r[4] for r in cluster_rows if r[1] == count)
                print(f"best {count} process(es): {n / best:,.0f} ev/s")
        walls = {c: min(r[4] for r in cluster_rows if r[1] == c) for c in counts}
        scaling = {"scaling": walls[1] / walls[2]} if {1, 2} <= walls.keys() else {}
        record(
            "pipeline",
            events_per_cpu_s=n / min(r[4] for r in rows),
            ratio_cpu=min(r[2] for r in rows) / min(r[4] for r in rows),
            **scaling,
        )


DEMO = Path(__file__).parents[1] / "config" / "demo.yaml"
PIPELINE_SPEC = parse_spec(metrics_spec(DEMO), source=str(DEMO))
"""The demo spec the benchmark runs: no enrichment (the events carry no user agent or
IP), no models, no alert rules."""

if __name__ == "__main__":
    main()
