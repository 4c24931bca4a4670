"""Dashboard documents: the bundled web-shop dashboard fits the demo spec, the generated
one fits any spec, and misfits are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from riffle.config.dashboards import (
    MAX_PANELS,
    Dashboard,
    check_dashboard,
    load_dashboards,
    parse_dashboard,
    starter_dashboards,
)
from riffle.config.errors import SpecError
from riffle.config.settings import DASHBOARDS_DIR
from riffle.config.spec import load_spec

DEMO = load_spec(Path(__file__).parents[2] / "config" / "demo.yaml")


def test_bundled_web_shop_dashboard_fits_the_demo_spec() -> None:
    (shop,) = load_dashboards(DASHBOARDS_DIR, DEMO)
    assert shop.id == "web-shop" and len(shop.panels) >= 10
    assert {p.type for p in shop.panels} >= {"stat", "area", "topk", "bar", "quantiles", "heatmap"}


def test_generated_dashboards_fit_their_spec_and_keep_every_panel() -> None:
    generated = starter_dashboards(DEMO)
    rows = sum(3 if m.dimensions else 2 for m in DEMO.metrics)
    assert rows > MAX_PANELS  # the demo makes more panels than one dashboard holds
    assert sum(len(d.panels) for d in generated) == rows
    assert [d.id for d in generated] == ["overview", "overview-2"]
    for dashboard in generated:
        assert check_dashboard(dashboard, DEMO) == []
        assert len(dashboard.panels) <= MAX_PANELS
        assert Dashboard.model_validate_json(dashboard.model_dump_json()) == dashboard
    first = generated[0]
    assert first.panels[0].type == "stat"
    # A metric's row is never split between two dashboards.
    for dashboard in generated:
        metrics = {p.query.metric for p in dashboard.panels}
        for other in generated:
            if other is not dashboard:
                assert metrics.isdisjoint({p.query.metric for p in other.panels})


def test_misfits_are_named() -> None:
    board = parse_dashboard(
        {
            "id": "x",
            "title": "X",
            "variables": [{"name": "planet"}],
            "panels": [
                {"id": "a", "title": "A", "query": {"metric": "nope"}},
                {"id": "b", "title": "B", "query": {"metric": "revenue", "by": ["city"]}},
                {"id": "c", "title": "C", "type": "quantiles", "query": {"metric": "revenue"}},
            ],
        }
    )
    problems = check_dashboard(board, DEMO)
    assert problems == [
        "panels[a].query.metric: unknown metric 'nope'",
        "panels[b].query: 'revenue' has no dimension 'city'",
        "panels[c].type: quantile bands need a quantiles metric",
        "variables[planet]: unknown dimension",
    ]
    with pytest.raises(SpecError, match="panel ids must be unique"):
        parse_dashboard({"id": "x", "title": "X", "panels": [board.panels[0], board.panels[0]]})
    with pytest.raises(SpecError, match="x \\+ w must be at most 12"):
        parse_dashboard(
            {"id": "x", "title": "X", "panels": [{"id": "a", "title": "A",
             "query": {"metric": "revenue"}, "layout": {"x": 8, "w": 6}}]}
        )  # fmt: skip
