"""Rule evaluations per second with many alert instances: the pure evaluator beside the
Bytewax alert stage.

Builds ``--instances`` alert instances — ``--series`` series of one metric, each watched
by every rule of the set (a threshold with ``for`` and ``keep_firing_for``, and a change
against the same window one ``--period`` earlier) — and feeds ``--windows`` final
windows per series, in event-time order, values drifting around the threshold so
instances keep changing state. Then:

* ``evaluator``: :class:`operators.alerts.evaluator.RuleEvaluator` per rule, one shard, the clock
  advanced once per window end, as the stage does;
* ``stage``: the real alert stage (:func:`dataflows.alerts.alert_stage`: fan-out,
  shards, snapshots per epoch) in ``bytewax.testing.run_main``, the rules from the spec;
* ``stage+log`` (with ``--redis``): the same rules as tenant rules in a Redis rule log
  (:mod:`sinks.redis.rules`), so every window's routing asks the rule book.

Prints evaluations (windows x rules), seconds, evaluations/s and the ratio to the
evaluator, and checks every mode made the same transitions.

    python -m benchmarks.alert_rules --series 5000 --windows 20
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import timedelta

import bytewax.operators as op
import redis
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from riffle.config.spec import PipelineSpec, parse_spec
from riffle.dataflows.alerts import alert_stage, compile_rules
from riffle.operators.alerts.observations import Observation
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.records import WindowResult
from riffle.sinks.redis.rules import AlertRuleStore

SECOND = 1000
BASE = """
version: 1
event_types: {view: {}}
dimensions: {s: {path: props.s}}
metrics:
  - {name: views, events: [view], aggregation: count, dimensions: [s], window: 1s}
"""


def rules(period_s: int) -> list[dict[str, object]]:
    return [
        {
            "name": "high",
            "kind": "threshold",
            "metric": "views",
            "value": 100,
            "for": "2s",
            "keep_firing_for": "1s",
            "annotations": {"summary": "{{ labels.s }}: {{ value }}"},
        },
        {
            "name": "jump",
            "kind": "change",
            "metric": "views",
            "mode": "percent",
            "value": 30,
            "period": f"{period_s}s",
        },
    ]


def spec_with(rule_set: list[dict[str, object]]) -> PipelineSpec:
    lines = [BASE, "alerts:"]
    for r in rule_set:
        body = ", ".join(f"{k}: {_yaml(v)}" for k, v in r.items())
        lines.append(f"  - {{{body}}}")
    return parse_spec("\n".join(lines) + "\n") if rule_set else parse_spec(BASE)


def _yaml(v: object) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml(x)}" for k, x in v.items()) + "}"
    return f'"{v}"' if isinstance(v, str) else str(v)


def windows(
    series: int, n: int, seed: int, first: int = 0, noise: float = 15.0
) -> list[WindowResult]:
    """``n`` one-second windows per series from ``first`` (ms), values drifting near 100
    by ``noise`` per window (more noise, more transitions)."""
    rng = random.Random(seed)
    level = [rng.uniform(60, 140) for _ in range(series)]
    out = []
    for w in range(n):
        start = first + w * SECOND
        for s in range(series):
            level[s] = max(0.0, level[s] + rng.gauss(0, noise))
            v = round(level[s])
            out.append(
                WindowResult(
                    "t1",
                    "views",
                    (("s", f"s{s}"),),
                    start,
                    start + SECOND,
                    v,
                    float(v),
                    float(v),
                    float(v),
                    float(v),
                    True,
                    1,
                )
            )
    return out


def run_evaluator(spec: PipelineSpec, data: list[WindowResult]) -> list[AlertTransition]:
    evs = [c.evaluator({}) for c in compile_rules(spec).values()]
    out: list[AlertTransition] = []
    clock = -1
    for w in data:
        if w.window_end > clock:
            clock = w.window_end
            for ev in evs:
                out += ev.advance(clock)
        obs = Observation.of_window(w)
        for ev in evs:
            out += ev.observe(obs)
    return out


def run_stage(
    spec: PipelineSpec,
    data: list[WindowResult],
    shards: int,
    batch: int,
    log: AlertRuleStore | None = None,
) -> list[AlertTransition]:
    got: list[AlertTransition] = []
    flow = Dataflow("bench_alert_rules")
    results = op.input("in", flow, TestingSource(data, batch_size=batch))
    out = alert_stage(results, spec, shards=shards, sink=TestingSink([]), rule_log=log)
    assert out is not None
    op.output("collect", out, TestingSink(got))
    run_main(flow, epoch_interval=timedelta(seconds=10))
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=5000, help="series (× 2 rules = instances)")
    parser.add_argument("--windows", type=int, default=20, help="final windows per series")
    parser.add_argument("--period", type=int, default=5, help="change rule period, windows")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--batch", type=int, default=5000, help="stage input batch size")
    parser.add_argument("--redis", default="", help="Redis URL: also run with a rule log")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--noise", type=float, default=15.0, help="drift per window")
    args = parser.parse_args()

    rule_set = rules(args.period)
    spec = spec_with(rule_set)
    data = windows(args.series, args.windows, args.seed, noise=args.noise)
    evaluations = len(data) * len(rule_set)
    print(
        f"{args.series * len(rule_set):,} alert instances ({args.series:,} series × "
        f"{len(rule_set)} rules), {args.windows} windows each: {evaluations:,} evaluations"
    )
    results: list[tuple[str, float, list[AlertTransition]]] = []
    started = time.perf_counter()
    results.append(("evaluator", time.perf_counter() - started, run_evaluator(spec, data)))
    results[-1] = ("evaluator", time.perf_counter() - started, results[-1][2])
    started = time.perf_counter()
    got = run_stage(spec, data, args.shards, args.batch)
    results.append(("stage", time.perf_counter() - started, got))
    if args.redis:
        client = redis.Redis.from_url(args.redis)
        store = AlertRuleStore(client, f"bench-alert-rules-{uuid.uuid4().hex[:8]}")
        try:
            for r in rule_set:
                store.write("t1", str(r["name"]), r, "create")
            # Tenant rules apply to windows ending from their effective_from on; wait until
            # those windows are in the past, as finals always are in a live flow.
            first = (store.read()[0] // SECOND + 1) * SECOND
            later = windows(args.series, args.windows, args.seed, first, args.noise)
            time.sleep(max(0.0, (first + args.windows * SECOND) / 1000 - time.time() + 0.5))
            started = time.perf_counter()
            got = run_stage(spec_with([]), later, args.shards, args.batch, store)
            results.append(("stage+log", time.perf_counter() - started, got))
        finally:
            for key in client.scan_iter(match=f"{store.prefix}*"):
                client.delete(key)
    base = results[0][1]
    print(f"{'mode':<12}{'seconds':>10}{'evals/s':>14}{'vs evaluator':>14}{'transitions':>13}")
    for name, seconds, got in results:
        print(
            f"{name:<12}{seconds:>10.2f}{evaluations / seconds:>14,.0f}"
            f"{base / seconds:>13.2f}x{len(got):>13,}"
        )
    counts = {name: len(got) for name, _s, got in results}
    if len(set(counts.values())) != 1:
        raise SystemExit(f"modes disagree on the transitions: {counts}")


if __name__ == "__main__":
    main()
