"""Memory of the dataflow's window state per series: what sizes a dataflow pod.

Opens one window for each of N series in the windows stage
(:class:`operators.windows.BucketWindows`, as the flow's shards hold them) and
prints the resident-memory growth of this process and the pickled size of the
stage's snapshot (what Bytewax writes to the recovery store), per series and
per million series. ``--kind`` chooses the metric: ``count`` (the four
numbers every metric keeps), ``distinct`` (plus an HLL at lgK 12) or
``quantiles`` (plus a quantile histogram of ``--values`` values).

    python -m benchmarks.series_memory --series 1000000 --kind count
    python -m benchmarks.series_memory --series 100000 --kind distinct
"""

from __future__ import annotations

import argparse
import gc
import pickle
import resource
import time

from riffle.operators.aggregators import add_item, frozen, new_agg
from riffle.operators.sketches import SketchSpec
from riffle.operators.windows import BucketWindows, WindowRule

T0 = 1_767_225_600_000
SKETCHES = {
    "count": None,
    "distinct": SketchSpec("hll", 12),
    "quantiles": SketchSpec("quantiles", 100, quantiles=(0.5, 0.9, 0.99)),
}


def rss_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1_000_000)
    parser.add_argument("--kind", choices=sorted(SKETCHES), default="count")
    parser.add_argument("--values", type=int, default=20, help="Values per series' window.")
    args = parser.parse_args()
    sketch = SKETCHES[args.kind]
    aggregation = "count" if sketch is None else args.kind
    rule = WindowRule(aggregation, lateness_ms=10_000, sketch=sketch)  # type: ignore[arg-type]
    bucket = BucketWindows({"m": rule}, ["p0"])
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    for start in range(0, args.series, 10_000):
        partials = []
        for i in range(start, min(start + 10_000, args.series)):
            agg = new_agg(sketch)
            if sketch is None:
                agg[:] = [1.0, 1.0, 1.0, 1.0]
            else:
                for v in range(args.values):
                    add_item(agg, float(v) if sketch.kind == "quantiles" else f"u{i}-{v}")
            partials.append(("demo", "m", (("user", f"u{i}"),), T0, T0 + 60_000, frozen(agg)))
        bucket.apply("p0", T0, partials, now=T0)
    fill_s = time.perf_counter() - started
    gc.collect()
    grown = rss_bytes() - before
    snapshot = len(pickle.dumps(bucket.snapshot(), protocol=pickle.HIGHEST_PROTOCOL))
    n = args.series
    print(f"{n:,} series of a {args.kind} metric, one open window each ({fill_s:.1f} s to fill)")
    print(f"{'':<24}{'total':>16}{'per series':>14}{'per 1M series':>16}")
    for name, size in (("memory (RSS growth)", grown), ("snapshot (pickled)", snapshot)):
        print(f"{name:<24}{size:>16,}{size / n:>14,.0f}{size / n * 1e6 / 2**20:>13,.0f} MiB")


if __name__ == "__main__":
    main()
