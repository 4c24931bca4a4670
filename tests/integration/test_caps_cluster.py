"""A capped metric and a calendar metric run by a two-process cluster (`riffle run -i/-a`).

The known event set (late and malformed events, four partitions) goes to
Tansu; two `riffle run` processes share the work. Every final window of the
capped metric in Redis and in the warehouse must equal the cap rule applied
to the SQL recomputation of its uncapped twin — and nothing else may be
left in Redis (no partial of a series that was folded later). The calendar
metric's windows must be the local hours of the tenant's zone (Asia/Kolkata,
+05:30) holding the same events.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis

from riffle.config.settings import Settings
from riffle.config.spec import load_spec
from riffle.sinks.redis.windows import RedisWindowStore
from tests.integration.flow_support import (
    Expected,
    cluster_ports,
    kill,
    produce,
    scrape,
    start_flow,
    wait_for,
    warehouse_rows,
)
from tests.scenario import closers, expected_windows, scenario

pytestmark = pytest.mark.integration

PARTITIONS = 4
CAP = 6
SPEC = f"""
version: 1
time_zone: Asia/Kolkata
event_types: {{page_view: {{}}, add_to_cart: {{}}, purchase: {{}}, signup: {{}}, api_request: {{}}}}
dimensions:
  country: {{path: context.country}}
  device: {{path: context.device}}
  page: {{path: props.page}}
metrics:
  - {{name: views, events: [page_view], aggregation: count, dimensions: [country, device, page]}}
  - name: views_capped
    events: [page_view]
    aggregation: count
    dimensions: [country, device, page]
    max_values: {CAP}
  - {{name: views_hourly, events: [page_view], aggregation: count,
      window: {{kind: calendar, unit: hour}}}}
"""


def local_hours(expected: Expected) -> dict[tuple[int, int], int]:
    """``(start, end) -> count`` of the uncapped twin's events per Kolkata hour (zoneinfo)."""
    zone = ZoneInfo("Asia/Kolkata")
    out: Counter[tuple[int, int]] = Counter()
    for (metric, _dims, start), agg in expected.items():
        if metric == "views":
            local = datetime.fromtimestamp(start / 1000, UTC).astimezone(zone)
            begin = int(local.replace(minute=0).timestamp() * 1000)
            out[(begin, begin + 3_600_000)] += agg[0]
    return dict(out)


def capped(expected: Expected) -> tuple[Expected, int]:
    """The cap rule over the uncapped twin's windows, and how many series it folds."""
    per_window: dict[int, dict[tuple[tuple[str, str], ...], tuple[int, float, float, float]]]
    per_window = defaultdict(dict)
    for (metric, dims, start), agg in expected.items():
        if metric == "views":
            per_window[start][dims] = agg
    out: Expected = {}
    folds = 0
    other = (("country", "other"), ("device", "other"), ("page", "other"))
    for start, series in per_window.items():
        ranked = sorted(series, key=lambda d: (-series[d][0], d))
        for dims in ranked[:CAP]:
            out[("views_capped", dims, start)] = series[dims]
        rest = ranked[CAP:]
        folds += len(rest)
        if rest:
            parts = [series[d] for d in rest]
            out[("views_capped", other, start)] = (
                sum(p[0] for p in parts),
                sum(p[1] for p in parts),
                min(p[2] for p in parts),
                max(p[3] for p in parts),
            )
    return out, folds


def test_two_processes_cap_exactly_as_the_reference(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    metrics, hosts = cluster_ports(2)
    settings = settings_factory(
        spec=spec_path,
        lateness_seconds=10,
        idle_seconds=1,
        partial_interval_seconds=0.2,
        metrics_port=metrics,
    )
    now = int(time.time() * 1000)
    base = now - now % 60_000 - 10 * 60_000
    sent = scenario(seed=13, n=4000, partitions=PARTITIONS, base=base)
    sent += closers(base + 3 * 3_600_000, PARTITIONS)  # past the last local hour's end
    produce(settings, sent)
    spec = load_spec(spec_path)
    reference = expected_windows(sent, spec, lateness_ms=10_000)
    want, folds = capped(reference)
    hours = local_hours(reference)
    assert folds, "the scenario must exceed the cap"
    client = redis.Redis.from_url(settings.redis_url)
    store = RedisWindowStore(client, settings.redis_prefix, 86_400)

    def stored() -> dict[tuple[str, tuple[tuple[str, str], ...], int], tuple[object, ...]]:
        return {
            (p.metric, p.dims, p.window_start): (p.count, p.sum, p.min, p.max, p.is_final)
            for _dims, points in store.read_series(
                settings.default_tenant, "views_capped", 0, 2**62
            )
            for p in points
        }

    log = tmp_path / "flow.log"
    flows = [start_flow(settings, log, "-i", str(i), "-a", hosts) for i in range(2)]
    try:
        expect = {k: (*v, True) for k, v in want.items()}
        wait_for(lambda: stored() == expect, 90, "the capped finals in Redis", log)
        wait_for(
            lambda: (
                {
                    k: (r.count, r.sum, r.min, r.max)
                    for k, r in warehouse_rows(settings, spec).items()
                    if k[0] == "views_capped"
                }
                == want
            ),
            60,
            "the capped finals in the warehouse",
            log,
        )
        wait_for(
            lambda: (
                {
                    (p.window_start, p.window_end): p.count
                    for _d, points in store.read_series(
                        settings.default_tenant, "views_hourly", 0, 2**62
                    )
                    for p in points
                    if p.is_final
                }
                == hours
            ),
            60,
            "the local hours of the calendar metric",
            log,
        )
        counted = 0.0
        for i in range(2):
            one = settings.model_copy(update={"metrics_port": settings.metrics_port + i})
            # A process that holds no shard of the capped metric exposes no sample.
            with contextlib.suppress(AssertionError):
                counted += scrape(one, 'riffle_dataflow_capped_series_total{metric="views_capped"}')
        assert counted == folds
    finally:
        for flow in flows:
            kill(flow)
