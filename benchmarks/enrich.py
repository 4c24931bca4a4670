"""Events per second of the ingest stage with enrichment off and on, side by side.

Runs :class:`operators.ingest.PartitionIngest` (decode, envelope checks,
enrichment, metric plans, pre-aggregation) over demo events in polls of
``--batch`` messages, in-process and single-threaded, for several variants of
the demo spec's ``enrichment:`` section, alternating rounds so drift hits
every variant alike. Prints one row per variant: best and median events/s,
and the cost per event relative to enrichment off.

    python -m benchmarks.enrich [--events 200000] [--rounds 3] [--batch 5000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from riffle.config.settings import DEMO_SPEC
from riffle.config.spec import PipelineSpec, load_spec
from riffle.operators.enrich import Enricher, EnrichmentPlan, compile_enrichment, pipeline_version
from riffle.operators.extract import compile_plans
from riffle.operators.ingest import PartitionIngest
from riffle.operators.watermark import PartitionClock
from riffle.sources.demo import generate

START = 1_767_225_600_000


def _variant(spec: PipelineSpec, **changes: object) -> EnrichmentPlan | None:
    section = spec.enrichment
    assert section is not None
    updated = section.model_copy(update=changes)
    return compile_enrichment(spec.model_copy(update={"enrichment": updated}), ip_hash_key="k")


def variants(spec: PipelineSpec) -> dict[str, Callable[[], EnrichmentPlan | None]]:
    """The runs: off, the demo's section, and the demo's with one thing changed."""
    section = spec.enrichment
    assert section is not None and section.user_agent is not None and section.geo is not None
    no_cache_ua = section.user_agent.model_copy(update={"cache_size": 0})
    no_cache_geo = section.geo.model_copy(update={"cache_size": 0})
    country_geo = section.geo.model_copy(update={"asn": False})
    return {
        "off": lambda: None,
        "demo enrichment": lambda: compile_enrichment(spec),
        "demo, no LRU caches": lambda: _variant(spec, user_agent=no_cache_ua, geo=no_cache_geo),
        "demo without the derived field": lambda: _variant(spec, derive=[]),
        "demo, country only (asn: false)": lambda: _variant(spec, geo=country_geo),
        "demo, user agent only": lambda: _variant(
            spec, geo=None, session=None, privacy=None, metadata=False, derive=[]
        ),
    }


def run_once(
    spec: PipelineSpec, plan: EnrichmentPlan | None, raws: list[bytes], batch: int
) -> float:
    """Events per second for one pass over ``raws``."""
    ingest = PartitionIngest(
        compile_plans(spec, default_lateness_ms=10_000),
        source="bench:0",
        default_tenant="demo",
        buckets=16,
        clock=PartitionClock(idle_ms=3_000, last_arrival=START),
        enricher=Enricher(plan) if plan is not None else None,
    )
    polls = [
        [(raw, None, offset) for offset, raw in enumerate(raws[i : i + batch], start=i)]
        for i in range(0, len(raws), batch)
    ]
    started = time.perf_counter()
    for poll in polls:
        ingest.process(poll, START)
    return len(raws) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()

    spec = load_spec(DEMO_SPEC)
    print(f"generating {args.events:,} demo events ...", flush=True)
    raws = generate(args.events, seed=1, start_ms=START, rate=500)
    runs = variants(spec)
    plans: dict[str, EnrichmentPlan | None] = {}
    for name, build in runs.items():
        started = time.perf_counter()
        plans[name] = build()
        print(f"  set-up of {name!r}: {time.perf_counter() - started:.2f} s", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, plan in plans.items():
            rates[name].append(run_once(spec, plan, raws, args.batch))
    off = statistics.median(rates["off"])
    print(f"\nspec {pipeline_version(spec)}, {args.events:,} events, polls of {args.batch}")
    best_off = max(rates["off"])
    print(
        "| variant | best ev/s | median ev/s | µs/event (best) | vs off (best) | vs off (median) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, values in rates.items():
        median, best = statistics.median(values), max(values)
        print(
            f"| {name} | {best:,.0f} | {median:,.0f} | {1e6 / best:.1f} "
            f"| {best / best_off:.2f} | {median / off:.2f} |"
        )


if __name__ == "__main__":
    main()
