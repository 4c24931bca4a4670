"""What `riffle up` costs at its default 200 events/s: CPU per process over 30 s.

Starts the stack as ``make run`` does (``riffle up --rate 200``) in a
scratch directory, with its own topics, Redis prefix and ports; the Tansu
broker is started here with the same function ``riffle up`` uses
(:func:`riffle.stack.start_tansu`) and handed to it through
``RIFFLE_KAFKA_BOOTSTRAP``, so the benchmark never takes the default port.
After a warm-up it samples the CPU of every process for ``--seconds`` and
prints each one's share of a core and the total. Sampling starts once the
flow has caught up with what was sent while it started (its source lag is
under two seconds of traffic). The run fails unless the flow read what the
producer sent over the window (within 25 %; the producer's rate is
``--rate`` times the demo's daily curve at that moment, 0.3 to 1.7) and the
live series of ``page_views_10s`` is in Redis::

    python -m benchmarks.idle [--rate 200] [--seconds 30] [--warmup 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from benchmarks.procs import command_of, cpu_seconds, descendants, scrape
from benchmarks.results import record
from riffle.sources.demo import daily_factor
from riffle.sources.topics import ensure_topics
from riffle.stack import free_port, start_tansu


def _name(pid: int, broker: int) -> str:
    if pid == broker:
        return "tansu (broker)"
    command = command_of(pid)
    for word in ("demo-produce", "run", "api", "notify", "up"):
        if (
            f"riffle.cli {word}" in command
            or command.endswith(f"riffle {word}")
            or (f" {word} " in f" {command} " and "riffle" in command)
        ):
            return f"riffle {word}"
    return command[:40]


def _caught_up(url: str, rate: float, timeout_s: float = 180.0) -> None:
    """Wait until the flow has read its start-up backlog: what its source partitions have
    not read yet is under two seconds of the mean rate.

    (Its reading rate is no test: the demo's rate follows the daily curve, up to
    1.7 times the mean in the evening.)
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        samples = scrape(url)
        lag = [v for k, v in samples.items() if k.startswith("riffle_dataflow_source_lag_messages")]
        if lag and samples.get("riffle_dataflow_events_in_total", 0.0) > 0 and sum(lag) < 2 * rate:
            return
        time.sleep(1)
    raise SystemExit(f"the flow did not catch up with {rate:g} events/s in {timeout_s:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/2")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    prefix = f"idle{tag}"
    with tempfile.TemporaryDirectory() as tmp:
        kafka_port = free_port()
        broker = start_tansu(kafka_port, Path(tmp) / "tansu.log")
        servers = f"127.0.0.1:{kafka_port}"
        metrics_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
        env.update(
            RIFFLE_KAFKA_BOOTSTRAP=servers,
            RIFFLE_EVENTS_TOPIC=f"idle.{tag}.events",
            RIFFLE_DEADLETTER_TOPIC=f"idle.{tag}.dead",
            RIFFLE_ALERTS_TOPIC=f"idle.{tag}.alerts",
            RIFFLE_REDIS_URL=args.redis_url,
            RIFFLE_REDIS_PREFIX=prefix,
            RIFFLE_API_PORT=str(free_port()),
            RIFFLE_METRICS_PORT=str(metrics_port),
            RIFFLE_NOTIFY_METRICS_PORT=str(free_port()),
            RIFFLE_LOG_LEVEL="WARNING",
        )
        ensure_topics(servers, [env["RIFFLE_EVENTS_TOPIC"], env["RIFFLE_DEADLETTER_TOPIC"]], 4)
        riffle_bin = Path(sys.executable).with_name("riffle")
        out = (Path(tmp) / "up.log").open("wb")
        stack = subprocess.Popen(
            [str(riffle_bin), "up", "--rate", f"{args.rate:g}"],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        try:
            deadline = time.monotonic() + 180
            while "Riffle is up" not in (Path(tmp) / "up.log").read_text(errors="replace"):
                if stack.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        "riffle up did not start:\n" + (Path(tmp) / "up.log").read_text()
                    )
                time.sleep(0.5)
            time.sleep(args.warmup)
            _caught_up(url, args.rate)
            pids = [broker.pid, *descendants(stack.pid)]
            before = {pid: cpu_seconds(pid) for pid in pids}
            names = {pid: _name(pid, broker.pid) for pid in pids}
            read_before = scrape(url).get("riffle_dataflow_events_in_total", 0.0)
            began, began_at = time.monotonic(), time.time()
            time.sleep(args.seconds)
            elapsed = time.monotonic() - began
            used = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
            read = scrape(url).get("riffle_dataflow_events_in_total", 0.0) - read_before
            client = redis.Redis.from_url(args.redis_url)
            live = client.hlen(f"{prefix}:demo:series:page_views_10s")
        finally:
            os.killpg(stack.pid, signal.SIGTERM)
            stack.wait(60)
            out.close()
            broker.terminate()
            broker.wait(10)
            client = redis.Redis.from_url(args.redis_url)
            for key in client.scan_iter(f"{prefix}:*", count=1000):
                client.delete(key)
    # The demo's rate follows its daily curve: the mean times the factor of the moment.
    expected = args.rate * daily_factor(int((began_at + elapsed / 2) * 1000)) * elapsed
    if not 0.75 * expected <= read <= 1.25 * expected or not live:
        raise SystemExit(
            f"the flow read {read:.0f} events in {elapsed:.0f} s (sent ~{expected:.0f}),"
            f" page_views_10s series in Redis: {live}"
        )
    print(f"riffle up --rate {args.rate:g}: CPU over {elapsed:.0f} s (flow read {read:.0f} events)")
    print(f"{'process':<22} {'% of a core':>12}")
    for pid in sorted(pids, key=lambda p: -used[p]):
        print(f"{names[pid]:<22} {100 * used[pid] / elapsed:>11.1f}%")
    print(f"{'whole stack':<22} {100 * sum(used.values()) / elapsed:>11.1f}%")
    record("idle", stack_pct=100 * sum(used.values()) / elapsed)


if __name__ == "__main__":
    main()
