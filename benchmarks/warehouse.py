"""Warehouse write throughput and query latency, DuckDB and the BigQuery emulator side by side.

    python -m benchmarks.warehouse [--rows 20000] [--table-rows 5000] [--requests 60] [--rate 20]

Writes: ``--rows`` final windows through :class:`sinks.warehouse.batching.BatchWriter`
(500 rows per write) into a DuckDB file (upsert) and into the emulator
(streaming inserts into ``metric_windows_raw``, read through the dedup view);
then ``--table-rows`` rows of every other table (dead letters, anomalies,
forecasts, alerts) the same way through the generic
:meth:`~sinks.warehouse.base.Warehouse.upsert`, and the ratio of the
speedier engine.

Queries, at a steady ``--rate`` per second, each with the cache off (cold)
and on (warm, after one priming request): a 24 h series at 1-minute
resolution (Redis), a 30-day daily series (warehouse) and a top-10 over 30
days (warehouse + Redis). Needs Redis on 127.0.0.1:6379 (database 15) and
``make bqemulator``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from riffle.api.app import create_app
from riffle.config.settings import Settings
from riffle.operators.records import WindowResult
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.warehouse.batching import BatchWriter
from riffle.sinks.warehouse.engines import open_warehouse
from riffle.sinks.warehouse.tables import TABLES, TableDef
from tests.api_support import keyed_client
from tests.bq_support import start_emulator

REDIS = "redis://127.0.0.1:6379/15"
MIN, DAY = 60_000, 86_400_000
COUNTRIES = [f"c{i:02d}" for i in range(12)]
SPEC = """
version: 1
event_types: {purchase: {}}
dimensions: {country: {path: context.country}}
metrics:
  - {name: revenue, events: [purchase], aggregation: sum, value: props.amount,
     dimensions: [country], window: 1m}
"""


def win(tenant: str, start: int, country: str, value: float) -> WindowResult:
    return WindowResult(tenant, "revenue", (("country", country),), start, start + MIN, 3,
                        value, 1.0, value, value, True, 1)  # fmt: skip


def write_rate(settings: Settings, rows: int) -> float:
    warehouse = open_warehouse(settings)
    warehouse.init()
    batch = [win("bench", i * MIN, COUNTRIES[i % 12], float(i)) for i in range(rows)]
    writer: BatchWriter[WindowResult] = BatchWriter(warehouse.upsert_windows, max_rows=500)
    began = time.perf_counter()
    for start in range(0, rows, 5000):
        writer.write(batch[start : start + 5000])
    elapsed = time.perf_counter() - began
    writer.close()
    return rows / elapsed


def synthetic_rows(table: TableDef, n: int) -> list[dict[str, Any]]:
    """``n`` rows of ``table`` with distinct keys, every column filled by its type."""
    now = int(time.time() * 1000)
    values: dict[str, Any] = {"STRING": "x" * 12, "INT64": 7, "FLOAT64": 1.5, "BOOL": True,
                              "BYTES": b"raw event bytes " * 8}  # fmt: skip
    rows = []
    for i in range(n):
        row = {c.name: now - i * MIN if c.type == "TIMESTAMP" else values[c.type]
               for c in table.columns}  # fmt: skip
        for column in table.key:
            if table.types[column] == "STRING":
                row[column] = f"{column}-{i}"
        rows.append(row)
    return rows


def table_rate(settings: Settings, table: TableDef, rows: int) -> float:
    """Rows/s of ``table`` through a BatchWriter over the generic upsert."""
    warehouse = open_warehouse(settings)
    warehouse.init([table])
    batch = synthetic_rows(table, rows)
    writer: BatchWriter[dict[str, Any]] = BatchWriter(
        lambda items: warehouse.upsert(table, items), max_rows=500
    )
    began = time.perf_counter()
    for start in range(0, rows, 5000):
        writer.write(batch[start : start + 5000])
    elapsed = time.perf_counter() - began
    writer.close()
    return rows / elapsed


def seed(settings: Settings, now: int) -> None:
    """30 days of windows (every 15 min per country) in the warehouse, the last 24 h in Redis."""
    minute = now - now % MIN
    cold = [win("demo", minute - k * 15 * MIN, c, float(k % 97)) for k in range(30 * 96)
            for c in COUNTRIES]  # fmt: skip
    warehouse = open_warehouse(settings)
    warehouse.init()
    for start in range(0, len(cold), 5000):
        warehouse.upsert_windows(cold[start : start + 5000])
    hot = RedisWindowStore(redis.Redis.from_url(REDIS), settings.redis_prefix, 2 * 86_400)
    recent = [win("demo", minute - k * MIN, c, float(k % 89)) for k in range(1, 1440)
              for c in COUNTRIES]  # fmt: skip
    for start in range(0, len(recent), 2000):
        hot.write(recent[start : start + 2000])


def latencies(http: TestClient, path: str, params: dict[str, str], n: int, rate: float,
              warm: bool) -> list[float]:  # fmt: skip
    if warm:
        http.get(path, params=params)
    out = []
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for _ in range(n):
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        next_at += interval
        began = time.perf_counter()
        response = http.get(path, params=params)
        out.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.text
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


SHAPES: list[tuple[str, str, dict[str, str]]] = [
    ("24h @1m (Redis)", "/v1/metrics/revenue/query", {"start": "-24h", "step": "1m"}),
    ("30d @1d (warehouse)", "/v1/metrics/revenue/query", {"start": "-30d", "step": "1d"}),
    ("top-10 30d", "/v1/metrics/revenue/top", {"start": "-30d", "by": "country", "limit": "10"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--table-rows", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="riffle-bench-"))
    spec = workdir / "spec.yaml"
    spec.write_text(SPEC)
    emulator = start_emulator(workdir / "bqemulator.log")
    results: dict[str, dict[str, Any]] = {}
    try:
        for engine in ("duckdb", "bigquery"):
            prefix = f"riffle-bench-{uuid.uuid4().hex[:8]}"
            url = (f"duckdb:///{workdir / f'{prefix}.duckdb'}" if engine == "duckdb"
                   else f"bigquery://{emulator.project}/b_{prefix[-8:]}")  # fmt: skip
            base: dict[str, Any] = {
                "warehouse": url, "bigquery_endpoint": emulator.endpoint, "spec": spec,
                "redis_url": REDIS, "redis_prefix": prefix, "default_tenant": "demo",
                "hot_horizon_seconds": 25 * 3600, "kafka_bootstrap": "127.0.0.1:1",
            }  # fmt: skip
            row: dict[str, Any] = {
                "write rows/s metric_windows": write_rate(Settings(**base), args.rows)
            }
            for table in TABLES[1:]:
                rate = table_rate(Settings(**base), table, args.table_rows)
                row[f"write rows/s {table.name}"] = rate
            now = int(time.time() * 1000)
            seed(Settings(**base), now)
            for warm in (False, True):
                ttl = 60.0 if warm else 0.0
                app = create_app(Settings(**base, query_cache_ttl_seconds=ttl), CollectorRegistry())
                http = keyed_client(app, "demo")  # the API wants a key (scope read)
                for label, path, params in SHAPES:
                    ms = latencies(http, path, params, args.requests, args.rate, warm)
                    state = "warm" if warm else "cold"
                    row[f"{label} {state} p50"] = statistics.median(ms)
                    row[f"{label} {state} p99"] = pct(ms, 0.99)
            results[engine] = row
            client = redis.Redis.from_url(REDIS)
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(key)
    finally:
        emulator.stop()
    print(f"\nwarehouse benchmark: {args.rows} windows and {args.table_rows} rows per other "
          f"table written, {args.requests} requests per cell "
          f"at {args.rate:g}/s, latencies in ms (in-process ASGI client)\n")  # fmt: skip
    print(f"| {'measure':<36} | {'DuckDB':>10} | {'BigQuery emulator':>17} | {'ratio':>6} |")
    print(f"| {'-' * 36} | {'-' * 10}: | {'-' * 17}: | {'-' * 6}: |")
    for key in results["duckdb"]:
        d, b = results["duckdb"][key], results["bigquery"][key]
        print(f"| {key:<36} | {d:>10,.1f} | {b:>17,.1f} | {d / b if b else 0:>6.2f} |")


if __name__ == "__main__":
    main()
