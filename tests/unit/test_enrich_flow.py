"""Enrichment inside the whole flow (Bytewax testing runtime): enriched dimensions, dead letters."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import CollectorRegistry

from riffle.config.settings import Settings
from riffle.config.spec import parse_spec
from riffle.dataflows.metrics import FlowOutputs, build_flow
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.records import DeadLetter, WindowResult
from tests.scenario import BASE, Sent
from tests.unit.test_enrich import CHROME, GOOGLEBOT, IPHONE
from tests.unit.test_metrics_flow import polls

SPEC = parse_spec(
    """
version: 1
event_types:
  page_view: {}
dimensions:
  browser: {path: context.browser}
  device_type: {path: context.device_type}
  country: {path: context.geo_country}
  ip: {path: context.ip}
metrics:
  - name: views
    events: [page_view]
    aggregation: count
    dimensions: [browser, device_type, country]
    window: 1m
  - name: sessions
    events: [page_view]
    aggregation: count
    window: 1m
    filter: [{path: context.session_index, op: eq, value: 1}]
  - name: views_by_ip
    events: [page_view]
    aggregation: count
    dimensions: [ip]
    window: 1m
enrichment:
  user_agent: {}
  geo: {asn: false}
  session: {gap: 10s}
  privacy: {ip: truncate}
""",
    source="enrich.yaml",
)
AGENTS = {CHROME: "Chrome", IPHONE: "Mobile Safari", GOOGLEBOT: "Googlebot"}


def _events() -> list[Sent]:
    out = []
    agents = list(AGENTS)
    for i in range(900):
        user = i % 7
        ip = "not-an-ip" if i % 45 == 0 else f"91.2.3.{user + 1}"
        event = {
            "event_id": f"e{i}",
            "type": "page_view",
            "ts": BASE + i * 200,
            "props": {},
            "context": {"user_agent": agents[user % 3], "ip": ip, "user_id": f"u{user}"},
        }
        # One partition per user, as a producer keying by user would do.
        out.append(Sent(user % 2, orjson.dumps(event), ip != "not-an-ip"))
    return out


def test_enriched_dimensions_and_enrichment_dead_letters(tmp_path: Path) -> None:
    sent = _events()
    windows: list[WindowResult] = []
    dead: list[DeadLetter] = []
    registry = CollectorRegistry()
    flow = build_flow(
        SPEC,
        # No schemas for this spec's types: the demo's page_view schema is not this one.
        Settings(
            lateness_seconds=10,
            buckets=2,
            partial_interval_seconds=0.05,
            schemas_dir=tmp_path,
        ),
        source=TestingSource(polls(sent, 50)),
        partitions=["events/0", "events/1"],
        outputs=FlowOutputs(TestingSink(windows), None, TestingSink(dead)),
        telemetry=FlowTelemetry(registry),
    )
    run_main(flow)
    finals = [w for w in windows if w.is_final]

    views = Counter[tuple[str, str]]()
    for w in finals:
        if w.metric == "views":
            dims = dict(w.dims)
            assert dims["country"] == "DE"
            views[(dims["browser"], dims["device_type"])] += w.count
    expected = Counter[tuple[str, str]]()
    for item in sent:
        if item.valid:
            agent = orjson.loads(item.raw)["context"]["user_agent"]
            kind = {CHROME: "desktop", IPHONE: "mobile", GOOGLEBOT: "bot"}[agent]
            expected[(AGENTS[agent], kind)] += 1
    assert views == expected

    # 7 users, 180 s of events, each user seen every 1.4 s: one session each.
    assert sum(w.count for w in finals if w.metric == "sessions") == 7
    # Only truncated addresses reach the metrics.
    assert {dict(w.dims)["ip"] for w in finals if w.metric == "views_by_ip"} == {"91.2.3.0"}

    assert len(dead) == sum(1 for s in sent if not s.valid) == 20
    assert {(d.failure_type, d.path, d.event_type) for d in dead} == {
        ("enrichment", "context.ip", "page_view")
    }
    sample = registry.get_sample_value
    assert sample("riffle_dataflow_dead_letters_total", {"failure_type": "enrichment"}) == 20
    assert sample("riffle_dataflow_events_in_total") == len(sent)
