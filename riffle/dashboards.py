"""Grafana dashboards as code: a spec's metrics, Riffle's own health, and provisioning files.

Dashboards are built with ``grafana-foundation-sdk`` (Grafana's typed
builders), so a panel, variable or annotation that Grafana's schema does
not have does not build. The spec dashboard reads Riffle through the JSON
datasource (``simpod-json-datasource``, uid :data:`DATASOURCE_UID`) at
``/grafana``: one row per metric family (the event type feeding a metric;
ratios get a row of their own), one multi-value variable per dimension, an
ad-hoc filter, and alert and anomaly annotations. The health dashboard reads
Riffle's Prometheus metrics through a Prometheus datasource (uid
:data:`PROMETHEUS_UID`). :func:`provisioning` writes both with the datasource
and dashboard-provider YAML Grafana loads at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import yaml
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from riffle.config.spec import MetricSpec, PipelineSpec

PLUGIN = "simpod-json-datasource"
DATASOURCE_UID = "riffle"
PROMETHEUS_UID = "riffle-prometheus"
SPEC_UID = "riffle-metrics"
HEALTH_UID = "riffle-health"
ALL = "*"
"""The value a variable's "All" sends: the API reads it as no filter."""


class JsonQuery(cogvariants.Dataquery):
    """A query of the JSON datasource: ``target`` (a metric) and its ``payload``."""

    def __init__(
        self, target: str = "", payload: dict[str, Any] | None = None, ref_id: str = "A"
    ) -> None:
        self.target = target
        self.payload = payload or {}
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        """The target as the plugin stores it (builder mode, payload as an object)."""
        return {
            "refId": self.ref_id,
            "datasource": {"type": PLUGIN, "uid": DATASOURCE_UID},
            "editorMode": "builder",
            "target": self.target,
            "payload": self.payload,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """The target back from dashboard JSON."""
        payload = data.get("payload")
        return cls(
            str(data.get("target", "")),
            payload if isinstance(payload, dict) else {},
            str(data.get("refId", "A")),
        )


runtime.register_dataquery_variant(runtime.DataqueryConfig(PLUGIN, JsonQuery.from_json))


class JsonTarget(cogbuilder.Builder[JsonQuery]):
    """Builds a :class:`JsonQuery`."""

    def __init__(self, target: str, payload: dict[str, Any], ref_id: str = "A") -> None:
        self._internal = JsonQuery(target, payload, ref_id)

    def build(self) -> JsonQuery:
        """The query."""
        return self._internal


class DatasourceAnnotation(model.AnnotationQuery):
    """An annotation read from the JSON datasource: ``query`` for ``/annotations``, and the
    same as a ``target`` for plugin versions that send annotations through ``/query``."""

    query: str = ""

    def to_json(self) -> dict[str, object]:
        """The annotation with its query in both forms."""
        out = super().to_json()
        out["query"] = self.query
        out["target"] = {"refId": "Anno", "target": f"@{self.query}", "payload": {}}
        return out


class Annotation(cogbuilder.Builder[model.AnnotationQuery]):
    """Builds a :class:`DatasourceAnnotation`."""

    def __init__(self, name: str, query: str, color: str) -> None:
        self._internal = DatasourceAnnotation(
            name=name,
            datasource=model.DataSourceRef(type_val=PLUGIN, uid=DATASOURCE_UID),
            enable=True,
            icon_color=color,
        )
        self._internal.query = query

    def build(self) -> model.AnnotationQuery:
        """The annotation."""
        return self._internal


def _json_ref() -> model.DataSourceRef:
    return model.DataSourceRef(type_val=PLUGIN, uid=DATASOURCE_UID)


def _prometheus_ref() -> model.DataSourceRef:
    return model.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)


def families(spec: PipelineSpec) -> dict[str, list[MetricSpec]]:
    """Metrics by family (their first event type), in spec order."""
    out: dict[str, list[MetricSpec]] = {}
    for metric in spec.metrics:
        out.setdefault(metric.events[0], []).append(metric)
    return out


def _metric_panel(metric: MetricSpec, title: str, description: str, unit: str) -> timeseries.Panel:
    payload: dict[str, Any] = {d: f"${d}" for d in metric.dimensions}
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(_json_ref())
        .with_target(JsonTarget(metric.name, payload))
        .unit(unit)
        .span(8)
        .height(8)
    )


def spec_dashboard(spec: PipelineSpec, title: str = "Riffle metrics") -> model.Dashboard:
    """The dashboard of every metric and ratio of ``spec`` (see the module doc)."""
    board = (
        dash.Dashboard(title)
        .uid(SPEC_UID)
        .tags(["riffle"])
        .time("now-6h", "now")
        .refresh("10s")
        .timezone("browser")
        .editable()
    )
    for name, dimension in spec.dimensions.items():
        board = board.with_variable(
            dash.QueryVariable(name)
            .label(name)
            .description(dimension.description or f"Values of {name}")
            .datasource(_json_ref())
            .query({"query": f"values({name})", "format": "string"})
            .multi(True)
            .include_all(True)
            .all_value(ALL)
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
    board = board.with_variable(
        dash.AdHocVariable("filters").label("Filters").datasource(_json_ref())
    )
    board = board.annotation(Annotation("Alerts", "alerts", "red")).annotation(
        Annotation("Anomalies", "anomalies", "orange")
    )
    for family, metrics in families(spec).items():
        board = board.with_row(dash.Row(family))
        for metric in metrics:
            board = board.with_panel(
                _metric_panel(
                    metric,
                    metric.name,
                    metric.description or f"{metric.aggregation} of {', '.join(metric.events)}",
                    metric.unit or "short",
                )
            )
    if spec.ratios:
        board = board.with_row(dash.Row("ratios"))
        for ratio in spec.ratios:
            numerator = spec.metric(ratio.numerator)
            assert numerator is not None  # checked when the spec loaded
            as_metric = numerator.model_copy(
                update={"name": ratio.name, "dimensions": list(ratio.dimensions)}
            )
            board = board.with_panel(
                _metric_panel(
                    as_metric,
                    ratio.name,
                    ratio.description or f"{ratio.numerator} / {ratio.denominator}",
                    "percentunit" if not ratio.unit else ratio.unit,
                )
            )
    return board.build()


HEALTH_PANELS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("Ingest", (
        ("Events read", "sum(rate(riffle_dataflow_events_in_total[1m]))", "ops"),
        ("Events by outcome", "sum by (outcome) (rate(riffle_dataflow_events_total[1m]))", "ops"),
        ("API requests by route", "sum by (route, status) (rate(riffle_api_requests_total[1m]))",
         "reqps"),
    )),
    ("Lag", (
        ("Watermark lag", "max by (partition) (riffle_dataflow_watermark_lag_seconds)", "s"),
        ("Window emit lag (p95)", "histogram_quantile(0.95, sum by (le) "
         "(rate(riffle_dataflow_window_emit_lag_seconds_bucket[5m])))", "s"),
        ("Kafka consumer lag", "sum(bytewax_kafka_consumer_lag)", "short"),
    )),
    ("Windows", (
        ("Windows emitted", "sum by (kind) (rate(riffle_dataflow_windows_emitted_total[1m]))",
         "ops"),
        ("Late corrections and drops", "sum(rate(riffle_dataflow_window_corrections_total[5m]))"
         " or sum(rate(riffle_dataflow_dropped_after_close_total[5m]))", "ops"),
        ("State windows", "sum by (state) (riffle_dataflow_state_windows)", "short"),
    )),
    ("Dead letters", (
        ("Dead letters by failure", "sum by (failure_type) "
         "(rate(riffle_dataflow_dead_letters_total[1m]))", "ops"),
    )),
    ("Snapshots", (
        ("Snapshot age", "max by (stage) (riffle_dataflow_snapshot_age_seconds)", "s"),
        ("Snapshot duration (p95)", "histogram_quantile(0.95, sum by (le, stage) "
         "(rate(riffle_dataflow_snapshot_duration_seconds_bucket[5m])))", "s"),
        ("State size", "sum by (stage) (riffle_dataflow_state_bytes)", "bytes"),
    )),
    ("Notifications", (
        ("Deliveries by outcome", "sum by (channel, outcome) "
         "(rate(riffle_notify_deliveries_total[5m]))", "ops"),
        ("Delivery delay (p95)", "histogram_quantile(0.95, sum by (le, channel) "
         "(rate(riffle_notify_delivery_delay_seconds_bucket[5m])))", "s"),
        ("Alert transitions", "sum by (outcome) (rate(riffle_notify_transitions_total[5m]))",
         "ops"),
    )),
)  # fmt: skip
"""Rows of the health dashboard: (row, ((title, PromQL, unit), …))."""


def health_dashboard(title: str = "Riffle health") -> model.Dashboard:
    """Riffle's own Prometheus metrics: ingest, lag, windows, dead letters, snapshots,
    notifications (one row each)."""
    board = (
        dash.Dashboard(title)
        .uid(HEALTH_UID)
        .tags(["riffle", "operations"])
        .time("now-1h", "now")
        .refresh("10s")
        .editable()
    )
    for row, panels in HEALTH_PANELS:
        board = board.with_row(dash.Row(row))
        for name, expr, unit in panels:
            board = board.with_panel(
                timeseries.Panel()
                .title(name)
                .datasource(_prometheus_ref())
                .with_target(prometheus.Dataquery().expr(expr).legend_format("__auto"))
                .unit(unit)
                .span(8)
                .height(8)
            )
    return board.build()


def as_json(board: model.Dashboard) -> str:
    """Dashboard JSON as Grafana imports it."""
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def datasources_yaml(api_url: str, prometheus_url: str) -> str:
    """Grafana datasource provisioning: the JSON datasource with the API key as a custom
    header (read from ``$RIFFLE_GRAFANA_KEY`` where Grafana runs), and Prometheus."""
    document = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Riffle",
                "type": PLUGIN,
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": f"{api_url.rstrip('/')}/grafana",
                "isDefault": True,
                "jsonData": {"httpHeaderName1": "X-API-Key"},
                "secureJsonData": {"httpHeaderValue1": "$RIFFLE_GRAFANA_KEY"},
            },
            {
                "name": "Riffle Prometheus",
                "type": "prometheus",
                "uid": PROMETHEUS_UID,
                "access": "proxy",
                "url": prometheus_url,
            },
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def providers_yaml(path: str = "/etc/grafana/provisioning/dashboards/riffle") -> str:
    """Grafana dashboard-provider provisioning: load the JSON files under ``path``."""
    document = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "riffle",
                "folder": "Riffle",
                "type": "file",
                "disableDeletion": False,
                "updateIntervalSeconds": 30,
                "allowUiUpdates": True,
                "options": {"path": path, "foldersFromFilesStructure": False},
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def provisioning(spec: PipelineSpec, out: Path, *, api_url: str, prometheus_url: str) -> list[Path]:
    """Write the bundle under ``out`` (mount it as ``/etc/grafana/provisioning``):
    ``datasources/riffle.yaml``, ``dashboards/riffle.yaml`` and the two dashboards under
    ``dashboards/riffle/``. Returns the files written."""
    files: Iterable[tuple[str, str]] = (
        ("datasources/riffle.yaml", datasources_yaml(api_url, prometheus_url)),
        ("dashboards/riffle.yaml", providers_yaml()),
        (f"dashboards/riffle/{SPEC_UID}.json", as_json(spec_dashboard(spec))),
        (f"dashboards/riffle/{HEALTH_UID}.json", as_json(health_dashboard())),
    )
    written = []
    for name, text in files:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def load(text: str) -> model.Dashboard:
    """A dashboard back from its JSON, through the SDK's types."""
    return model.Dashboard.from_json(json.loads(text))
