"""POST /v1/events throughput and latency: broker-confirmed delivery vs. answering only.

Runs the API on one uvicorn worker (its own process) twice in the same run,
against a Tansu broker and Redis started or found here:

- ``confirmed``: the real app; 200 only after the broker acknowledged every
  event (idempotent producer, ``acks=all``);
- ``discard``: the same app with a publisher that drops messages, so the
  answer costs auth, rate limits, parsing and validation only (upper bound).

Clients post 100-event batches of valid demo events over keep-alive
connections for ``--seconds`` each. Prints events/s, events per CPU-second
of the API process (the per-core figure) and p50/p99 latency of both, and
their ratio::

    python -m benchmarks.ingest [--seconds 10] [--rounds 3] [--clients 8] [--batch 100]

Without ``--rate``, a last round sends confirmed batches at a fixed half of the
confirmed throughput just measured: the load of the p99 target.

``--rate N`` sends at a fixed N events per second instead of as fast as the
clients can (open loop: request ``k`` is due at ``start + k * batch / N``, and its
latency counts from when it was due, so a server that falls behind is not
excused by the clients waiting for it); the latency target is for half the
throughput measured without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from benchmarks.procs import cpu_seconds
from benchmarks.results import record
from riffle.api.app import create_app
from riffle.api.publisher import OutMessage
from riffle.config.registry import load_schemas
from riffle.config.settings import Settings
from riffle.keys import store
from riffle.logging import configure_logging
from riffle.operators.envelope import EnvelopeError, check, decode
from riffle.operators.schemas import EventValidator
from riffle.sources.demo import generate
from riffle.sources.topics import ensure_topics
from riffle.stack import free_port, start_tansu


class _Discard:
    """A publisher that accepts everything and sends nothing."""

    async def publish(self, messages: Sequence[OutMessage], *, wait: bool) -> list[str | None]:
        return [None] * len(messages)

    def close(self) -> None:
        return None


def confirmed_app() -> FastAPI:
    """The real app of the environment's settings, logging as ``riffle api`` does."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def discard_app() -> FastAPI:
    """The same app answering without producing (uvicorn factory)."""
    app = confirmed_app()
    app.state.collect.publisher = _Discard()
    app.state.collect.dead_publisher = None
    return app


def valid_batches(count: int, size: int) -> list[bytes]:
    """``count`` JSON bodies of ``size`` valid demo events each (fresh timestamps)."""
    validator = EventValidator(load_schemas(Settings().schemas_dir))
    events: list[dict[str, Any]] = []
    now = int(time.time() * 1000)
    for raw in generate(count * size * 2, seed=1, start_ms=now):
        try:
            event = decode(raw)
            check(event)
            validator.check(event)
        except EnvelopeError:
            continue
        events.append(event)
        if len(events) == count * size:
            break
    return [orjson.dumps(events[i : i + size]) for i in range(0, len(events), size)]


async def load(
    url: str,
    key: str,
    bodies: list[bytes],
    clients: int,
    seconds: float,
    interval: float | None = None,
) -> list[float]:
    """Latencies (s) of every successful request posted during ``seconds``; with
    ``interval``, one request is due every ``interval`` seconds (open loop).

    The clients are made and connected before the clock starts: making an
    ``httpx.AsyncClient`` and its first request take tens of milliseconds, which
    counted against the first requests' latency (p99 ~300 ms at any rate)."""
    latencies: list[float] = []
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    due = iter(range(10**9))
    async with contextlib.AsyncExitStack() as stack:
        https = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=headers, timeout=30)
            )
            for _ in range(clients)
        ]
        # A client's first request is slow too (its connection, lazy imports): not timed.
        await asyncio.gather(*(http.get("/healthz") for http in https))
        began_at = time.perf_counter()
        stop = time.monotonic() + seconds

        async def client(n: int) -> None:
            http = https[n]
            i = n
            while time.monotonic() < stop:
                began = time.perf_counter()
                if interval is not None:
                    began = began_at + next(due) * interval
                    wait = began - time.perf_counter()
                    if wait > 0:
                        await asyncio.sleep(wait)
                response = await http.post("/v1/events", content=bodies[i % len(bodies)])
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
                latencies.append(time.perf_counter() - began)
                i += clients

        await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies


def run_mode(
    factory: str, env: dict[str, str], key: str, bodies: list[bytes], args: argparse.Namespace
) -> tuple[list[float], float, float]:
    """One round of one mode: start uvicorn, warm up, measure, stop; (latencies, seconds,
    CPU seconds of the API process)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{factory} did not start") from None
                time.sleep(0.2)
        asyncio.run(load(url, key, bodies, args.clients, 2.0))  # warm-up
        began, cpu = time.monotonic(), cpu_seconds(process.pid)
        interval = args.batch / args.rate if args.rate else None
        latencies = asyncio.run(load(url, key, bodies, args.clients, args.seconds, interval))
        elapsed, cpu = time.monotonic() - began, cpu_seconds(process.pid) - cpu
    finally:
        process.terminate()
        process.wait(timeout=30)
    return latencies, elapsed, cpu


def summary(rounds: list[tuple[list[float], float, float]], batch: int) -> dict[str, float]:
    """Events/s over all rounds, per CPU-second of the API process, latency percentiles."""
    latencies = [x for lat, _, _ in rounds for x in lat]
    elapsed = sum(seconds for _, seconds, _ in rounds)
    cpu = sum(used for _, _, used in rounds)
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "events_per_s": len(latencies) * batch / elapsed,
        "events_per_cpu_s": len(latencies) * batch / cpu,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds per mode.")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="Events per second, fixed (0: as fast as possible)."
    )
    parser.add_argument(
        "--modes", default="confirmed,discard", help="Comma-separated: confirmed, discard."
    )
    args = parser.parse_args()

    bodies = valid_batches(200, args.batch)
    with TemporaryDirectory() as tmp:
        port = free_port()
        broker = start_tansu(port, Path(tmp) / "tansu.log")
        try:
            servers = f"127.0.0.1:{port}"
            ensure_topics(servers, ["bench.events", "bench.dead"], 4)
            values = {
                "RIFFLE_KAFKA_BOOTSTRAP": servers,
                "RIFFLE_EVENTS_TOPIC": "bench.events",
                "RIFFLE_DEADLETTER_TOPIC": "bench.dead",
                "RIFFLE_REDIS_URL": args.redis_url,
                "RIFFLE_REDIS_PREFIX": f"riffle-bench-{uuid.uuid4().hex[:8]}",
                "RIFFLE_WAREHOUSE": f"duckdb:///{tmp}/bench.duckdb",
                "RIFFLE_LOG_LEVEL": "WARNING",
                "RIFFLE_RATE_KEY_REQUESTS": "1000000",
                "RIFFLE_RATE_TENANT_REQUESTS": "1000000",
                "RIFFLE_RATE_KEY_EVENTS": "100000000",
                "RIFFLE_RATE_TENANT_EVENTS": "100000000",
            }
            env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")} | values
            settings = Settings(**{k.removeprefix("RIFFLE_").lower(): v for k, v in values.items()})
            key, _ = store(settings).create("bench", ["ingest"])
            # Modes alternate round by round so drifting load on the machine hits both alike.
            factories = {
                mode: f"benchmarks.ingest:{mode}_app" for mode in args.modes.split(",") if mode
            }
            rounds: dict[str, list[tuple[list[float], float, float]]] = {m: [] for m in factories}
            for _ in range(args.rounds):
                for mode, factory in factories.items():
                    rounds[mode].append(run_mode(factory, env, key, bodies, args))
            results = {mode: summary(done, args.batch) for mode, done in rounds.items()}
            if "confirmed" in results and not args.rate:
                # The latency target's load: half the confirmed throughput just measured.
                half = argparse.Namespace(
                    **{**vars(args), "rate": results["confirmed"]["events_per_s"] / 2}
                )
                done = [run_mode(factories["confirmed"], env, key, bodies, half)]
                results["half load"] = summary(done, args.batch) | {"rate": half.rate}
        finally:
            broker.terminate()
            broker.wait(timeout=10)
    rate = f"at a fixed {args.rate:g} events/s" if args.rate else "as fast as possible"
    print(
        f"POST /v1/events, {args.batch}-event batches, 1 uvicorn worker, "
        f"{args.clients} clients {rate}, {args.rounds} x {args.seconds:g} s per mode; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'mode':<36} {'requests':>9} {'events/s':>10} {'ev/API CPU-s':>13} {'p50 ms':>8} "
        f"{'p99 ms':>8}"
    )
    labels = {
        "confirmed": "confirmed (acks=all, idempotent)",
        "discard": "answer only (no produce)",
        "half load": "confirmed, fixed rate at half of it",
    }
    for mode, row in results.items():
        print(
            f"{labels[mode]:<36} {row['requests']:>9.0f} {row['events_per_s']:>10.0f} "
            f"{row['events_per_cpu_s']:>13.0f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f}"
        )
    if {"confirmed", "discard"} <= results.keys() and not args.rate:
        ratio = results["confirmed"]["events_per_s"] / results["discard"]["events_per_s"]
        print(f"confirmed / answer-only throughput: {ratio:.2f}")
    if "confirmed" in results and not args.rate:  # the throughput run, not a fixed rate
        record(
            "ingest",
            events_per_cpu_s=results["confirmed"]["events_per_cpu_s"],
            p99_ms=results["confirmed"]["p99_ms"],
            p99_half_ms=results["half load"]["p99_ms"],
            half_rate=results["half load"]["rate"],
        )


if __name__ == "__main__":
    main()
