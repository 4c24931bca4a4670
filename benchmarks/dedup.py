"""De-duplication by event id: memory per million ids, and the metrics flow's rate on and off.

* ``state``: one partition's :class:`~operators.dedup.Deduplicator` holding N
  ids, (a) spread over a 24 h horizon as a steady stream leaves them (most
  generations sealed into sorted 16-byte records) and (b) all within one
  generation (the worst case: every id still in a set). Prints bytes an id
  (containers and id objects counted with ``sys.getsizeof``), the time of one
  ``snapshot()`` (Bytewax takes one every epoch) and of a ``restore``, and the
  verdict rate.
* ``flow``: the in-process metrics flow (demo spec without enrichment, models,
  predictions and alerts; results into in-memory sinks) over N demo events in
  four partitions, with 10 % of them delivered twice, ``dedup`` on and off,
  rounds alternating; prints events per CPU-second of each (CPU time holds up
  on a shared machine; wall time does not) and the ratio of the medians.
  With dedup off the copies are counted twice, so the two variants also
  differ in what they compute.

    python -m benchmarks.dedup --ids 1000000 --events 200000
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import zlib

from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import CollectorRegistry

from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec, load_spec
from riffle.dataflows.metrics import FlowOutputs, build_flow
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.dedup import Deduplicator
from riffle.operators.records import DeadLetter, WindowResult
from riffle.sources.demo import generate
from riffle.sources.kafka import PartitionPoll

DAY_MS = 86_400_000
T0 = 1_767_225_600_000
PARTITIONS = 4
POLL = 1000


def state_bytes(dedup: Deduplicator) -> int:
    """Bytes held by the de-duplicator's containers and ids."""
    total = sys.getsizeof(dedup.generations)
    for generation in dedup.generations.values():
        total += sys.getsizeof(generation.sealed) + sys.getsizeof(generation.fresh)
        total += sum(sys.getsizeof(key) for key in generation.fresh)
    return total


def state(ids: int, spread_ms: int) -> dict[str, float]:
    """One de-duplicator filled with ``ids`` ids over ``spread_ms`` of event time."""
    dedup = Deduplicator(DAY_MS)
    step = spread_ms / ids
    started = time.perf_counter()
    for i in range(ids):
        dedup.first("demo", f"{i:08x}-5f0c-4b7e-9d7a-{i:012x}", T0 + int(i * step))
    filled = time.perf_counter() - started
    started = time.perf_counter()
    snap = dedup.snapshot()
    snapshot_s = time.perf_counter() - started
    started = time.perf_counter()
    Deduplicator(DAY_MS).restore(snap)
    restore_s = time.perf_counter() - started
    held = len(dedup)
    return {
        "ids_held": held,
        "bytes_per_id": state_bytes(dedup) / held,
        "snapshot_s_per_million": snapshot_s * 1e6 / held,
        "restore_s_per_million": restore_s * 1e6 / held,
        "verdicts_per_s": ids / filled,
    }


def demo_polls(events: int, seed: int) -> list[tuple[str, PartitionPoll]]:
    """Demo events with 10 % of them twice (a copy up to 50 messages after its original),
    in four partitions by event id, as polls of up to 1,000 messages."""
    values = generate(events, seed=seed, start_ms=T0)
    rng = random.Random(seed)
    for index in sorted(rng.sample(range(len(values)), events // 10), reverse=True):
        values.insert(min(len(values), index + 1 + rng.randrange(50)), values[index])
    parts: list[list[tuple[bytes | None, str | None, int]]] = [[] for _ in range(PARTITIONS)]
    for value in values:
        msgs = parts[zlib.crc32(value) % PARTITIONS]  # a copy goes where its original went
        msgs.append((value, None, len(msgs)))
    polls = []
    for start in range(0, max(len(m) for m in parts), POLL):
        for part, msgs in enumerate(parts):
            if chunk := msgs[start : start + POLL]:
                key = f"events/{part}"
                polls.append((key, PartitionPoll(key, chunk, at_end=False)))
    return polls


def flow_rate(spec: PipelineSpec, polls: list[tuple[str, PartitionPoll]]) -> float:
    """Events per CPU-second of the in-process metrics flow over ``polls``."""
    windows: list[WindowResult] = []
    dead: list[DeadLetter] = []
    flow = build_flow(
        spec,
        Settings(lateness_seconds=10, buckets=8),
        source=TestingSource(polls),
        partitions=[f"events/{p}" for p in range(PARTITIONS)],
        outputs=FlowOutputs(TestingSink(windows), None, TestingSink(dead)),
        telemetry=FlowTelemetry(CollectorRegistry()),
    )
    events = sum(len(poll.messages) for _, poll in polls)
    started = time.process_time()
    run_main(flow)
    return events / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    for name, spread in (("24 h horizon, steady stream", DAY_MS), ("one generation", 1000)):
        figures = state(args.ids, spread)
        print(f"state, {name}: " + ", ".join(f"{k} {v:,.3f}" for k, v in figures.items()))

    base = load_spec("config/demo.yaml")
    lean = base.model_copy(update={"enrichment": None, "predictions": [], "alerts": []})
    plain = [m.model_copy(update={"anomaly": None, "forecast": None}) for m in lean.metrics]
    lean = lean.model_copy(update={"metrics": plain})
    on = lean
    off = lean.model_copy(update={"dedup": lean.dedup.model_copy(update={"enabled": False})})
    polls = demo_polls(args.events, seed=1)
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for label, spec in (("on", on), ("off", off)):
            rates[label].append(flow_rate(spec, polls))
    for label, values in rates.items():
        print(f"flow, dedup {label}: " + ", ".join(f"{v:,.0f}" for v in values) + " events/CPU-s")
    ratio = statistics.median(rates["on"]) / statistics.median(rates["off"])
    print(f"flow, on/off (medians): {ratio:.3f}")


if __name__ == "__main__":
    main()
