"""Query latency: ``/v1/metrics/{m}/query`` at a fixed request rate, cache cold and warm.

Writes ``--series`` series of one count metric (``page_views``): the last
24 h of one-minute windows to Redis, and 30 days of them to the DuckDB
warehouse, then runs the API (one uvicorn worker, its own process) and asks

* ``24 h @ 1 min``: ``start=-24h&step=1m``, answered from Redis (the hot
  horizon covers the day);
* ``30 d @ 1 d``: ``start=-30d&step=1d``, answered from the warehouse (its
  windows are older than the hot horizon and not in Redis);

each at ``--rate`` requests/s for ``--seconds``, once with the query cache
off (``cold``: every request reads the stores) and once with it on
(``warm``: the same query again). Prints p50/p99 latency per case and the
API process's CPU per request; every answer must hold every event written
(the sum of its buckets' counts), or the run fails::

    python -m benchmarks.query [--rate 20] [--seconds 10] [--series 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
import redis

from benchmarks.procs import cpu_seconds
from benchmarks.results import record
from riffle.config.settings import Settings
from riffle.keys import store as key_store
from riffle.operators.records import WindowResult
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from riffle.stack import free_port

MIN = 60_000
DAY = 86_400_000
METRIC = "page_views"
TENANT = "demo"


def windows(series: int, start: int, end: int) -> list[WindowResult]:
    """Final one-minute windows of ``series`` series over ``[start, end)``; count 1..5."""
    out = []
    for n in range(series):
        dims = (("country", f"c{n:02d}"), ("device", "mobile"), ("page", "home"))
        for at in range(start, end, MIN):
            count = 1 + (at // MIN + n) % 5
            out.append(
                WindowResult(
                    TENANT,
                    METRIC,
                    dims,
                    at,
                    at + MIN,
                    count,
                    float(count),
                    1.0,
                    1.0,
                    float(count),
                    True,
                    1,
                )
            )
    return out


def load(
    url: str, path: str, key: str, rate: float, seconds: float
) -> tuple[list[float], float, int]:
    """Latencies (s) of GET ``path`` sent at ``rate``/s for ``seconds``; the last answer's
    total count and when it was asked (epoch ms)."""
    latencies: list[float] = []
    total, asked = 0.0, 0
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as http:
        began = time.perf_counter()
        for i in range(int(rate * seconds)):
            due = began + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            sent = time.perf_counter()
            asked = int(time.time() * 1000)
            response = http.get(path)
            latencies.append(time.perf_counter() - sent)
            if response.status_code != 200:
                raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
            body = orjson.loads(response.content)
            total = sum(p["count"] for g in body["groups"] for p in g["points"])
    return latencies, total, asked


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """The API under uvicorn, one worker, until terminated."""
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("riffle")), "api", "--port", str(port)], env=env
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("the API did not start")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/2")
    args = parser.parse_args()
    prefix = f"qbench{uuid.uuid4().hex[:6]}"
    now = int(time.time() * 1000)
    today = now - now % MIN
    hot_from = today - DAY
    cold_from = today - today % DAY - 40 * DAY
    with tempfile.TemporaryDirectory() as tmp:
        duck = Path(tmp) / "w.duckdb"
        values = {
            "RIFFLE_REDIS_URL": args.redis_url,
            "RIFFLE_REDIS_PREFIX": prefix,
            "RIFFLE_WAREHOUSE": f"duckdb:///{duck}",
            "RIFFLE_HOT_HORIZON_SECONDS": str(2 * 86_400),
            "RIFFLE_LOG_LEVEL": "WARNING",
            "RIFFLE_RATE_KEY_REQUESTS": "100000",
            "RIFFLE_RATE_TENANT_REQUESTS": "100000",
        }
        settings = Settings(**{k.removeprefix("RIFFLE_").lower(): v for k, v in values.items()})
        client = redis.Redis.from_url(args.redis_url)
        hot = RedisWindowStore(client, prefix, 2 * 86_400)
        recent = windows(args.series, hot_from, today)
        for i in range(0, len(recent), 5000):
            hot.write(recent[i : i + 5000])
        old = windows(args.series, cold_from, hot_from - DAY)  # none in the hot horizon
        DuckDBWarehouse(duck).upsert_windows(old)
        key, _ = key_store(settings).create(TENANT, ["read"])

        def since(start: int) -> float:
            return float(sum(w.count for w in (*old, *recent) if w.window_start >= start))

        cases = {  # the path, and what its answer must count when asked at an instant
            "24 h @ 1 min (Redis)": (
                f"/v1/metrics/{METRIC}/query?start=-24h&step=1m",
                lambda at: since((at - DAY) - (at - DAY) % MIN),
            ),
            "30 d @ 1 d (warehouse)": (
                f"/v1/metrics/{METRIC}/query?start=-30d&step=1d",
                lambda at: since((at - 30 * DAY) - (at - 30 * DAY) % DAY),
            ),
        }
        rows = []
        try:
            for cache, ttl in (("cold", "0"), ("warm", "60")):
                env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
                env.update(values, RIFFLE_QUERY_CACHE_TTL_SECONDS=ttl)
                port = free_port()
                api = serve(env, port)
                try:
                    for name, (path, _) in cases.items():
                        load(f"http://127.0.0.1:{port}", path, key, args.rate, 2.0)  # warm-up
                        cpu = cpu_seconds(api.pid)
                        lat, total, asked = load(
                            f"http://127.0.0.1:{port}", path, key, args.rate, args.seconds
                        )
                        used = cpu_seconds(api.pid) - cpu
                        rows.append((name, cache, lat, used / len(lat), total, asked))
                finally:
                    api.terminate()
                    api.wait(30)
        finally:
            for k in client.scan_iter(f"{prefix}:*", count=1000):
                client.delete(k)
    print(
        f"GET /v1/metrics/{METRIC}/query, {args.series} series, {args.rate:g} requests/s for "
        f"{args.seconds:g} s, 1 uvicorn worker"
    )
    print(f"{'case':<24} {'cache':<6} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}")
    cold: dict[str, float] = {}
    for name, cache, lat, cpu, total, asked in rows:
        want = cases[name][1](asked)
        if total != want:
            raise SystemExit(f"{name} ({cache}): the answer counts {total}, the stores hold {want}")
        cuts = statistics.quantiles(lat, n=100)
        print(f"{name:<24} {cache:<6} {cuts[49] * 1000:>8.1f} {cuts[98] * 1000:>8.1f} "
              f"{cpu * 1000:>11.1f}")  # fmt: skip
        if cache == "cold":
            store = "redis" if "Redis" in name else "warehouse"
            cold[f"{store}_cold_p99_ms"] = cuts[98] * 1000
            cold[f"{store}_cold_cpu_ms"] = cpu * 1000
    record(f"query:{args.series}", **cold)


if __name__ == "__main__":
    main()
