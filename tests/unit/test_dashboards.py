"""Dashboards as code: built through grafana-foundation-sdk's types and loaded back by them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from riffle.config.settings import DEMO_SPEC
from riffle.config.spec import load_spec
from riffle.dashboards import (
    ALL,
    DATASOURCE_UID,
    HEALTH_PANELS,
    PLUGIN,
    JsonQuery,
    as_json,
    families,
    health_dashboard,
    load,
    spec_dashboard,
)

ROOT = Path(__file__).parents[2]
SPEC = load_spec(DEMO_SPEC)


def _without_annotation_queries(board: dict[str, object]) -> dict[str, object]:
    """The dashboard minus the annotations' datasource query, which the SDK's typed
    AnnotationQuery has no field for (it keeps name, datasource, colour)."""
    copy = json.loads(json.dumps(board))
    for note in copy["annotations"]["list"]:
        note.pop("query", None)
        note.pop("target", None)
    return copy  # type: ignore[no-any-return]


def test_spec_dashboard_round_trips_through_the_sdk_types() -> None:
    text = as_json(spec_dashboard(SPEC))
    loaded = load(text)
    again = json.loads(as_json(loaded))
    assert _without_annotation_queries(again) == _without_annotation_queries(json.loads(text))
    targets = [t for p in loaded.panels or [] for t in getattr(p, "targets", None) or []]
    assert targets and all(isinstance(t, JsonQuery) for t in targets)


def test_one_row_per_family_one_panel_per_metric_and_ratio() -> None:
    board = json.loads(as_json(spec_dashboard(SPEC)))
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == [*families(SPEC), "ratios"]
    panels = [p for p in board["panels"] if p["type"] == "timeseries"]
    by_family = [m.name for metrics in families(SPEC).values() for m in metrics]
    assert [p["title"] for p in panels] == by_family + [r.name for r in SPEC.ratios]
    assert sorted(by_family) == sorted(m.name for m in SPEC.metrics)
    revenue = next(p for p in panels if p["title"] == "revenue")
    [target] = revenue["targets"]
    metric = SPEC.metric("revenue")
    assert metric is not None
    assert target["target"] == "revenue"
    assert target["datasource"] == {"type": PLUGIN, "uid": DATASOURCE_UID}
    assert target["payload"] == {d: f"${d}" for d in metric.dimensions}


def test_variables_per_dimension_an_ad_hoc_filter_and_annotations() -> None:
    board = json.loads(as_json(spec_dashboard(SPEC)))
    variables = board["templating"]["list"]
    assert [v["name"] for v in variables] == [*SPEC.dimensions, "filters"]
    country = variables[0]
    assert country["query"] == {"query": "values(country)", "format": "string"}
    assert country["multi"] and country["includeAll"] and country["allValue"] == ALL
    assert variables[-1]["type"] == "adhoc"
    notes = {n["name"]: n for n in board["annotations"]["list"]}
    assert notes["Alerts"]["query"] == "alerts"
    assert notes["Anomalies"]["target"]["target"] == "@anomalies"


def test_health_dashboard_queries_name_metrics_riffle_registers() -> None:
    text = as_json(health_dashboard())
    assert json.loads(as_json(load(text))) == json.loads(text)
    rows = [p["title"] for p in json.loads(text)["panels"] if p["type"] == "row"]
    assert rows == ["Ingest", "Lag", "Windows", "Dead letters", "Snapshots", "Notifications"]
    source = "\n".join(
        p.read_text(encoding="utf-8")
        for folder in ("api", "dataflows", "sinks", "sources")
        for p in (ROOT / folder).rglob("*.py")
    )
    for _, panels in HEALTH_PANELS:
        for _, expr, _ in panels:
            for name in re.findall(r"riffle_[a-z_]+", expr):
                base = re.sub(r"_(total|bucket|count|sum)$", "", name)
                assert f'"{base}"' in source, f"{name} is not a metric Riffle registers"


def test_cli_writes_a_provisioning_bundle(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "riffle.cli", "grafana", "dashboards", "--out", str(tmp_path),
         "--api-url", "http://riffle:8000"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    assert written == [
        "dashboards/riffle.yaml",
        "dashboards/riffle/riffle-health.json",
        "dashboards/riffle/riffle-metrics.json",
        "datasources/riffle.yaml",
    ]
    sources = yaml.safe_load((tmp_path / "datasources/riffle.yaml").read_text())["datasources"]
    riffle = sources[0]
    assert riffle["type"] == PLUGIN and riffle["url"] == "http://riffle:8000/grafana"
    assert riffle["jsonData"] == {"httpHeaderName1": "X-API-Key"}
    assert riffle["secureJsonData"] == {"httpHeaderValue1": "$RIFFLE_GRAFANA_KEY"}
    providers = yaml.safe_load((tmp_path / "dashboards/riffle.yaml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/etc/grafana/provisioning/dashboards/riffle"
    board = load((tmp_path / "dashboards/riffle/riffle-metrics.json").read_text())
    assert board.uid == "riffle-metrics"
    missing = subprocess.run(
        [sys.executable, "-m", "riffle.cli", "grafana", "dashboards", "--out", str(tmp_path),
         "--spec", str(tmp_path / "nope.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert missing.returncode == 1 and "error" in missing.stderr
