"""One 24 h series through REST, GraphQL and the Grafana route, in one run, over real HTTP.

    python -m benchmarks.read_surfaces [--requests 40] [--series 6]

Stores 26 hours of minute windows of ``revenue`` (``--series`` series, split
by country and device) for one tenant, as the flow does: every window in a
DuckDB warehouse, the last hour and a half in Redis too (the hot horizon is
1 h, so Redis answers the last hour and the warehouse the 23 before). Serves the
app with uvicorn on a loopback port, and asks the same question three ways:
the 24 h series at 1-minute resolution summed over all series (1,440 points)
— ``GET /v1/metrics/revenue/query?step=1m``, GraphQL ``series(step: "1m")``
and Grafana's ``POST /grafana/query`` (``maxDataPoints`` 1,440). Requests
alternate between the three surfaces, each first with a range no request
asked before (a query-cache miss: the engine runs) and then repeated (a
hit). Prints p50 and p95 per surface and case (request, response and JSON
decoding), and checks that the three answers hold the same numbers. Needs
Redis on 127.0.0.1:6379 (database 15).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

from riffle.api.times import format_instant, parse_instant
from riffle.config.settings import Settings
from riffle.logging import configure_logging
from riffle.operators.records import WindowResult
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from tests.integration.ingest_support import serve

MIN, HOUR = 60_000, 3_600_000
SPEC = """
version: 1
event_types: {purchase: {}}
dimensions:
  country: {path: context.country}
  device: {path: context.device}
metrics:
  - name: revenue
    events: [purchase]
    aggregation: sum
    value: props.amount
    dimensions: [country, device]
    window: 1m
"""
GRAPHQL = """
query Day($start: String!, $end: String!) {
  series(metric: "revenue", start: $start, end: $end, step: "1m") {
    nodes { points { start value } }
  }
}
"""


def _store(settings: Settings, db: Path, series: int, now: int) -> None:
    end = now - now % MIN
    start = end - 26 * HOUR
    dims = [(("country", f"c{i % 3}"), ("device", f"d{i // 3}")) for i in range(series)]
    windows = [
        WindowResult("bench", "revenue", d, at, at + MIN, 1, v, v, v, v, True, 1)
        for at in range(start, end, MIN)
        for i, d in enumerate(dims)
        for v in [float((at // MIN * 7 + i) % 97)]
    ]
    cold = DuckDBWarehouse(db)
    cold.init()
    cold.upsert_windows(windows)  # every window lands in the warehouse, as the flow writes
    client = redis.Redis.from_url(settings.redis_url)
    RedisWindowStore(client, settings.redis_prefix, 2 * 86_400).write(
        [w for w in windows if w.window_start >= now - 90 * MIN]
    )


def _rest(http: httpx.Client, start: int, end: int) -> httpx.Response:
    return http.get(
        "/v1/metrics/revenue/query", params={"start": str(start), "end": str(end), "step": "1m"}
    )


def _rest_points(body: Any) -> dict[int, float]:
    return {_ms(p["start"]): p["value"] for g in body["groups"] for p in g["points"]}


def _graphql(http: httpx.Client, start: int, end: int) -> httpx.Response:
    variables = {"start": str(start), "end": str(end)}
    return http.post("/graphql", json={"query": GRAPHQL, "variables": variables})


def _graphql_points(body: Any) -> dict[int, float]:
    nodes = body["data"]["series"]["nodes"]
    return {_ms(p["start"]): p["value"] for n in nodes for p in n["points"]}


def _grafana(http: httpx.Client, start: int, end: int) -> httpx.Response:
    return http.post(
        "/grafana/query",
        json={
            "range": {"from": format_instant(start), "to": format_instant(end)},
            "intervalMs": 60_000,
            "maxDataPoints": 1_440,
            "targets": [{"target": "revenue", "refId": "A"}],
        },
    )


def _grafana_points(body: Any) -> dict[int, float]:
    return {ts: v for series in body for v, ts in series["datapoints"]}


def _ms(text: str) -> int:
    return parse_instant(text, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="per surface and case")
    parser.add_argument("--series", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(SPEC)
        db = Path(tmp) / "bench.duckdb"
        settings = Settings(
            spec=spec,
            warehouse=f"duckdb:///{db}",
            redis_url="redis://127.0.0.1:6379/15",
            redis_prefix=f"riffle-bench-{uuid.uuid4().hex[:8]}",
            hot_horizon_seconds=3600,
            kafka_bootstrap="127.0.0.1:1",
            log_level="WARNING",
            rate_key_requests=100_000,
            rate_tenant_requests=100_000,
        )
        now = int(time.time() * 1000)
        client = redis.Redis.from_url(settings.redis_url)
        try:
            _store(settings, db, args.series, now)
            with serve(settings) as served:
                headers = {"X-API-Key": served.key("bench", ["read"])}
                configure_logging("WARNING", "console")
                with httpx.Client(base_url=served.url, headers=headers, timeout=60) as http:
                    _run(http, now, args.requests)
        finally:
            keys = list(client.scan_iter(match=f"{settings.redis_prefix}*"))
            if keys:
                client.delete(*keys)


Ask = Callable[[httpx.Client, int, int], httpx.Response]
Read = Callable[[Any], dict[int, float]]


def _run(http: httpx.Client, now: int, requests: int) -> None:
    surfaces: dict[str, tuple[Ask, Read]] = {
        "REST /v1/metrics/{name}/query": (_rest, _rest_points),
        "GraphQL series": (_graphql, _graphql_points),
        "Grafana /grafana/query": (_grafana, _grafana_points),
    }
    timings: dict[tuple[str, str], list[float]] = {}
    end0 = now - now % MIN
    for ask, _ in surfaces.values():  # warm-up: connections, imports, the DuckDB file
        ask(http, end0 - 24 * HOUR, end0).raise_for_status()
    for i in range(requests):
        for k, (surface, (ask, _)) in enumerate(surfaces.items()):
            # A range no request asked before (each surface its own): the first is a miss.
            end = end0 - (i * len(surfaces) + k + 1) * MIN
            for case in ("miss", "hit"):
                started = time.perf_counter()
                response = ask(http, end - 24 * HOUR, end)
                response.json()
                timings.setdefault((surface, case), []).append(
                    (time.perf_counter() - started) * 1000
                )
                response.raise_for_status()
    answers = [read(ask(http, end0 - 24 * HOUR, end0).json()) for ask, read in surfaces.values()]
    for name, found in zip(surfaces, answers, strict=True):
        assert found == answers[0], (name, len(found), len(answers[0]))
    print(f"\nthe three surfaces answer the same {len(answers[0]):,} points")
    print(f"\n24 h series at 1 m, {requests} requests per surface and case, "
          "over HTTP (uvicorn, one process), Redis + DuckDB")  # fmt: skip
    print(f"| {'surface':<30} | {'cache':<5} | {'p50 ms':>7} | {'p95 ms':>7} | {'mean ms':>7} |")
    print(f"| {'-' * 30} | {'-' * 5} | {'-' * 6}: | {'-' * 6}: | {'-' * 6}: |")
    for (surface, case), values in timings.items():
        values.sort()
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        print(f"| {surface:<30} | {case:<5} | {statistics.median(values):>7.1f} | {p95:>7.1f} | "
              f"{statistics.fmean(values):>7.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
