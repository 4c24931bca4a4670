"""State for N distinct users: the HyperLogLog Riffle keeps versus an exact set.

Feeds the same N user ids (``u<number>``, as the demo's ``context.user_id``)
into the sketch a ``distinct`` metric keeps (:class:`operators.sketches.Sketch`,
HLL at the metric's lgK) and into a Python ``set``, and prints side by side:

* memory: for the set the RSS growth of this process while filling it (and
  what ``tracemalloc`` counts); for the HLL, whose few KB of C++ state are
  below RSS resolution, its largest updatable (HLL_8) image;
* the bytes that land in a snapshot and in the stores (the sketch's compact
  serialisation; the set pickled);
* the estimate and its error.

    python -m benchmarks.sketch_memory --users 1000000 --lgk 12
"""

from __future__ import annotations

import argparse
import gc
import pickle
import resource
import time
import tracemalloc

import datasketches as ds

from riffle.operators.sketches import Sketch, SketchSpec


def rss_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--lgk", type=int, default=12)
    args = parser.parse_args()
    users = [f"u{i}" for i in range(args.users)]
    gc.collect()

    started = time.perf_counter()
    sketch = Sketch(SketchSpec("hll", args.lgk))
    for user in users:
        sketch.update(user)
    hll_s = time.perf_counter() - started
    hll_memory = ds.hll_sketch.get_max_updatable_serialization_bytes(
        args.lgk, ds.tgt_hll_type.HLL_8
    )
    hll_bytes = len(sketch.to_bytes())
    estimate = sketch.value() or 0.0

    gc.collect()
    tracemalloc.start()
    before = rss_bytes()
    started = time.perf_counter()
    exact = set()
    for user in users:
        exact.add(user)
    set_s = time.perf_counter() - started
    set_rss = rss_bytes() - before
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    set_bytes = len(pickle.dumps(exact, protocol=pickle.HIGHEST_PROTOCOL))

    n = args.users
    error = (estimate - n) / n
    print(f"{n:,} distinct users; HLL lgK {args.lgk} vs a Python set of str\n")
    print(f"{'':<28}{'HLL':>16}{'exact set':>16}{'set / HLL':>12}")
    rows = [
        ("memory", hll_memory, set_rss),
        ("state / stored bytes", hll_bytes, set_bytes),
    ]
    for name, hll, exact_bytes in rows:
        ratio = exact_bytes / hll if hll > 0 else float("inf")
        print(f"{name:<28}{hll:>16,}{exact_bytes:>16,}{ratio:>12,.0f}")
    print(f"{'set, tracemalloc':<28}{'':>16}{traced:>16,}")
    print(f"{'updates/s':<28}{n / hll_s:>16,.0f}{n / set_s:>16,.0f}")
    print(f"{'distinct count':<28}{estimate:>16,.0f}{len(exact):>16,}")
    print(f"{'relative error':<28}{error:>16.4%}{0:>16.4%}")
    print("\n(the ids themselves, which both need while they stream by, are not counted)")


if __name__ == "__main__":
    main()
