"""Issue 12's table, side by side: every figure `make bench` measured against its target.

Reads the figures the benchmarks recorded (``benchmarks/results.py``) and prints,
per target, what was measured, the target, whether it is met and, if not, by
what factor it is missed, with the load average when the figure was taken::

    RIFFLE_BENCH_RESULTS=bench.jsonl python -m benchmarks.e2e   # ... and the others
    python -m benchmarks.summary bench.jsonl
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from benchmarks.results import read


@dataclass(frozen=True)
class Target:
    """One row: ``benchmark``'s ``figure`` must be at least (or at most) ``bound``."""

    what: str
    benchmark: str
    figure: str
    bound: float
    at_least: bool
    unit: str = ""

    def verdict(self, value: float) -> str:
        met = value >= self.bound if self.at_least else value <= self.bound
        if met:
            return "met"
        if value <= 0:
            return "missed"
        factor = self.bound / value if self.at_least else value / self.bound
        digits = 2 if factor < 1.1 else 1
        return f"missed: {factor:.{digits}f}x {'short' if self.at_least else 'over'}"

    def show(self, value: float) -> str:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
        return f"{value:,.{digits}f}{self.unit}"


TARGETS = (
    Target("riffle run, demo spec: events/CPU-s", "e2e", "events_per_cpu_s", 75_000, True),
    Target("riffle run / raw consumer loop", "e2e", "ratio", 0.25, True),
    Target("metrics flow: events/CPU-s", "pipeline", "events_per_cpu_s", 150_000, True),
    Target("metrics flow / reference loop (CPU)", "pipeline", "ratio_cpu", 0.5, True),
    Target("2 riffle run processes vs 1", "pipeline", "scaling", 1.7, True, "x"),
    Target("make run at 200 ev/s: stack CPU", "idle", "stack_pct", 15, False, " %"),
    Target("POST /v1/events: events/API CPU-s", "ingest", "events_per_cpu_s", 50_000, True),
    Target("POST /v1/events: p99 at half load", "ingest", "p99_half_ms", 50, False, " ms"),
    Target(
        "/query 24 h @ 1 min, cold, 1 series: p99", "query:1", "redis_cold_p99_ms", 20, False, " ms"
    ),
    Target(
        "/query 24 h @ 1 min, cold, 20 series: p99",
        "query:20",
        "redis_cold_p99_ms",
        20,
        False,
        " ms",
    ),
    Target(
        "/query 30 d @ 1 d, cold, 1 series: p99",
        "query:1",
        "warehouse_cold_p99_ms",
        100,
        False,
        " ms",
    ),
    Target(
        "/query 30 d @ 1 d, cold, 20 series: p99",
        "query:20",
        "warehouse_cold_p99_ms",
        100,
        False,
        " ms",
    ),
)


def table(results: dict[str, dict[str, float]]) -> list[str]:
    """The printed rows: what, measured, target, verdict, load average."""
    head = f"{'what':<44} {'measured':>12} {'target':>12}  {'verdict':<20} {'load':>5}"
    lines = [head, "-" * len(head)]
    for target in TARGETS:
        line = results.get(target.benchmark, {})
        bound = f"{'>=' if target.at_least else '<='} {target.show(target.bound)}"
        if target.figure not in line:
            lines.append(f"{target.what:<44} {'not run':>12} {bound:>12}  {'not measured':<20}")
            continue
        value = float(line[target.figure])
        lines.append(
            f"{target.what:<44} {target.show(value):>12} {bound:>12}  "
            f"{target.verdict(value):<20} {line['load']:>5.1f}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the file RIFFLE_BENCH_RESULTS named")
    args = parser.parse_args()
    print("\n".join(table(read(args.results))))


if __name__ == "__main__":
    main()
