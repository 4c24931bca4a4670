"""The warehouse's logical tables, defined once for every engine.

Each :class:`TableDef` names its columns in portable types; the DuckDB and
BigQuery engines turn them into their own DDL, so a column added here reaches
both (schema evolution: ``init`` adds missing columns to existing tables, it
never drops or retypes one).

Dimensions are one JSON-object text column (``dims``), not a column per
dimension: one table holds every metric, each with its own dimensions, and a
spec that adds a dimension needs no DDL at all (old rows simply lack the key,
which reads as ``NULL``). Queries reach a dimension with
``json_extract_string(dims, '$.country')`` (DuckDB) or
``JSON_VALUE(dims, '$.country')`` (BigQuery).

Every table is keyed, and which of several rows of a key readers see is part
of the definition (``keep``): DuckDB upserts in place under that rule, BigQuery
appends to ``<name>_raw`` and reads through a view that applies it. Writing
and reading go through :meth:`sinks.warehouse.base.Warehouse.upsert` and
:meth:`~sinks.warehouse.base.Warehouse.select`, so a store (dead letters,
model results, alerts) is written once for both engines. A later table (raw
``events``) is one more :class:`TableDef` in :data:`TABLES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ColumnType = Literal["STRING", "INT64", "FLOAT64", "BOOL", "TIMESTAMP", "BYTES"]

DUCKDB_TYPES: dict[ColumnType, str] = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "BOOL": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMP",
    "BYTES": "BLOB",
}


@dataclass(frozen=True, slots=True)
class Column:
    """A column; ``required`` columns are ``NOT NULL`` (added columns never are)."""

    name: str
    type: ColumnType
    required: bool = False


@dataclass(frozen=True, slots=True)
class TableDef:
    """A logical table: its columns, its key, which row of a key wins, its layout.

    ``key`` identifies a row: DuckDB makes it the primary key (upserts);
    BigQuery cannot enforce it, so keyed tables are written to
    ``<name>_raw`` and read through a deduplicating view named ``<name>``.
    ``keep`` orders the rows of one key, best first (``"col DESC"`` or
    ``"col ASC"`` terms, NULLs always last): the best row is the one readers
    see, in both engines; a write that ranks below the stored row changes
    nothing (on a full tie the later write wins in DuckDB, either one in
    BigQuery). ``stamp`` is the column writers fill with the time of the
    write; row ids (BigQuery's ``insertId``) hash every other column.
    ``partition_by`` is a TIMESTAMP column BigQuery partitions by day (and
    retention expires by); ``cluster_by`` are BigQuery's clustering columns.
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    partition_by: str | None = None
    cluster_by: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    stamp: str | None = None

    def __post_init__(self) -> None:
        names = set(self.column_names)
        used = [*self.key, *self.cluster_by, *(c for c, _ in self.keep_terms)]
        used += [c for c in (self.partition_by, self.stamp) if c is not None]
        unknown = [c for c in used if c not in names]
        if unknown:
            raise ValueError(f"table {self.name} names unknown columns {unknown}")

    @property
    def column_names(self) -> list[str]:
        """Column names in table order."""
        return [c.name for c in self.columns]

    @property
    def types(self) -> dict[str, ColumnType]:
        """Column name -> portable type."""
        return {c.name: c.type for c in self.columns}

    @property
    def keep_terms(self) -> list[tuple[str, bool]]:
        """``keep`` as ``(column, descending)`` pairs."""
        terms = []
        for term in self.keep:
            column, _, direction = term.partition(" ")
            if direction not in ("ASC", "DESC"):
                raise ValueError(f"keep term {term!r} of {self.name} is not 'col ASC|DESC'")
            terms.append((column, direction == "DESC"))
        return terms

    def prefers(self, new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
        """Whether row ``new`` wins over ``old`` of the same key (ties go to ``new``)."""
        for column, descending in self.keep_terms:
            a, b = new.get(column), old.get(column)
            if a == b:
                continue
            if a is None or b is None:
                return b is None  # NULLs rank last
            return bool(a > b) if descending else bool(a < b)
        return True

    def row_key(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """The values of ``key`` in ``row``."""
        return tuple(row[c] for c in self.key)

    def best_per_key(self, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """One row per key, the one :meth:`prefers` keeps (later rows win ties)."""
        best: dict[tuple[Any, ...], Mapping[str, Any]] = {}
        for row in rows:
            key = self.row_key(row)
            old = best.get(key)
            if old is None or self.prefers(row, old):
                best[key] = row
        return list(best.values())


METRIC_WINDOWS = TableDef(
    name="metric_windows",
    columns=(
        Column("tenant", "STRING", True),
        Column("metric", "STRING", True),
        Column("series_id", "STRING", True),
        Column("dims", "STRING", True),
        Column("window_start", "TIMESTAMP", True),
        Column("window_end", "TIMESTAMP", True),
        Column("value", "FLOAT64"),
        Column("count", "INT64", True),
        Column("sum", "FLOAT64", True),
        Column("min", "FLOAT64"),
        Column("max", "FLOAT64"),
        Column("revision", "INT64", True),
        Column("is_final", "BOOL", True),
        Column("updated_at", "TIMESTAMP", True),
        Column("sketch", "BYTES"),
        Column("detail", "STRING"),
    ),
    key=("tenant", "metric", "series_id", "window_start"),
    partition_by="window_start",
    cluster_by=("tenant", "metric"),
    keep=("updated_at DESC", "revision DESC"),
    stamp="updated_at",
)
"""One row per final window of a series; see ``docs/warehouse.md``."""

DEAD_LETTERS = TableDef(
    name="dead_letters",
    columns=(
        Column("letter_id", "STRING", True),
        Column("tenant", "STRING", True),
        Column("failure_type", "STRING", True),
        Column("reason", "STRING", True),
        Column("path", "STRING", True),
        Column("errors", "STRING", True),
        Column("raw", "BYTES", True),
        Column("source", "STRING", True),
        Column("event_type", "STRING"),
        Column("event_id", "STRING"),
        Column("event_ts", "INT64"),
        Column("lateness_ms", "INT64"),
        Column("received_at", "TIMESTAMP", True),
        Column("stored_at", "TIMESTAMP", True),
        Column("replayed_at", "TIMESTAMP"),
        Column("written_at", "TIMESTAMP", True),
    ),
    key=("letter_id",),
    partition_by="received_at",
    cluster_by=("tenant", "failure_type"),
    # The first replay mark wins; without one, the first write (a redelivered
    # letter never un-replays it nor moves its stored_at).
    keep=("replayed_at ASC", "stored_at ASC"),
    stamp="written_at",
)
"""Rejected events (``operators.records.DeadLetter``), one row per deterministic
``letter_id``; ``event_ts`` is the event's own time in epoch ms (as sent).
Written and read through :mod:`sinks.warehouse.dead_letters`."""

_SERIES = (
    Column("tenant", "STRING", True),
    Column("metric", "STRING", True),
    Column("series_id", "STRING", True),
    Column("dims", "STRING", True),
    Column("window_start", "TIMESTAMP", True),
)

ANOMALIES = TableDef(
    name="anomalies",
    columns=(
        *_SERIES,
        Column("detector", "STRING", True),
        Column("value", "FLOAT64"),
        Column("score", "FLOAT64", True),
        Column("label", "STRING", True),
        Column("expected", "FLOAT64"),
        Column("expected_low", "FLOAT64"),
        Column("expected_high", "FLOAT64"),
        Column("deviation", "FLOAT64", True),
        Column("explanation", "STRING", True),
        Column("updated_at", "TIMESTAMP", True),
    ),
    key=("tenant", "metric", "series_id", "window_start"),
    partition_by="window_start",
    cluster_by=("tenant", "metric"),
    keep=("updated_at DESC",),
    stamp="updated_at",
)
"""One anomaly score per scored window of a series (:mod:`sinks.warehouse.model_results`)."""

FORECASTS = TableDef(
    name="forecasts",
    columns=(
        *_SERIES,
        Column("level", "FLOAT64"),
        Column("points", "STRING", True),
        Column("n", "INT64", True),
        Column("mae", "FLOAT64"),
        Column("smape", "FLOAT64"),
        Column("naive_mae", "FLOAT64"),
        Column("naive_smape", "FLOAT64"),
        Column("coverage", "FLOAT64"),
        Column("updated_at", "TIMESTAMP", True),
    ),
    key=("tenant", "metric", "series_id", "window_start"),
    partition_by="window_start",
    cluster_by=("tenant", "metric"),
    keep=("updated_at DESC",),
    stamp="updated_at",
)
"""The forecast issued after each window of a series; ``points`` is JSON
``[[ts_ms, mean, low, high], ...]``; NaN and infinities are stored as NULL."""

ALERTS = TableDef(
    name="alerts",
    columns=(
        Column("transition_id", "STRING", True),
        Column("tenant", "STRING", True),
        Column("rule", "STRING", True),
        Column("metric", "STRING", True),
        Column("instance", "STRING", True),
        Column("labels", "STRING", True),
        Column("severity", "STRING", True),
        Column("from_state", "STRING", True),
        Column("to_state", "STRING", True),
        Column("ts", "TIMESTAMP", True),
        Column("value", "FLOAT64"),
        Column("active_at", "TIMESTAMP"),
        Column("annotations", "STRING", True),
        Column("written_at", "TIMESTAMP", True),
    ),
    key=("transition_id",),
    partition_by="ts",
    cluster_by=("tenant", "rule"),
    keep=("written_at DESC",),
    stamp="written_at",
)
"""One row per alert transition (:class:`operators.alerts.transitions.AlertTransition`);
``ts`` is its event time (``at`` is a reserved word in DuckDB)."""

MODEL_HEALTH = TableDef(
    name="model_health",
    columns=(
        Column("tenant", "STRING", True),
        Column("metric", "STRING", True),
        Column("series_id", "STRING", True),
        Column("model", "STRING", True),
        Column("dims", "STRING", True),
        Column("window_start", "TIMESTAMP", True),
        Column("drifts", "INT64", True),
        Column("error_level", "FLOAT64", True),
        Column("input_drifts", "INT64", True),
        Column("input_level", "FLOAT64", True),
        Column("updated_at", "TIMESTAMP", True),
    ),
    key=("tenant", "metric", "series_id", "model"),
    partition_by="window_start",
    cluster_by=("tenant", "metric"),
    keep=("window_start DESC", "updated_at DESC"),
    stamp="updated_at",
)
"""The newest cumulative health figures of each series' model (``detector`` or
``forecaster``): ADWIN drifts and level of its errors and of the series' input
(:mod:`sinks.warehouse.model_health`)."""

PREDICTIONS = TableDef(
    name="predictions",
    columns=(
        Column("tenant", "STRING", True),
        Column("entity_type", "STRING", True),
        Column("entity_id", "STRING", True),
        Column("prediction", "STRING", True),
        Column("ts", "TIMESTAMP", True),
        Column("probability", "FLOAT64", True),
        Column("status", "STRING", True),
        Column("events", "INT64", True),
        Column("learned", "INT64", True),
        Column("updated_at", "TIMESTAMP", True),
    ),
    key=("tenant", "entity_type", "entity_id", "prediction"),
    partition_by="ts",
    cluster_by=("tenant", "entity_type"),
    keep=("updated_at DESC",),
    stamp="updated_at",
)
"""The newest probability of each entity per prediction, with its status
(``open``, ``positive``, ``negative``) and the event time it refers to
(:mod:`sinks.warehouse.predictions`)."""

PREDICTION_MODELS = TableDef(
    name="prediction_models",
    columns=(
        Column("tenant", "STRING", True),
        Column("prediction", "STRING", True),
        Column("entity_type", "STRING", True),
        Column("watermark", "TIMESTAMP", True),
        Column("learned", "INT64", True),
        Column("positives", "INT64", True),
        Column("logloss", "FLOAT64", True),
        Column("base_logloss", "FLOAT64", True),
        Column("roc_auc", "FLOAT64", True),
        Column("accuracy", "FLOAT64", True),
        Column("base_accuracy", "FLOAT64", True),
        Column("open_entities", "INT64", True),
        Column("dropped", "INT64", True),
        Column("updated_at", "TIMESTAMP", True),
    ),
    key=("tenant", "prediction"),
    partition_by="watermark",
    cluster_by=("tenant",),
    keep=("updated_at DESC",),
    stamp="updated_at",
)
"""Each prediction model's rolling accuracy beside the base-rate baseline, as of
the watermark of its latest release (:mod:`sinks.warehouse.predictions`)."""

DASHBOARDS = TableDef(
    name="dashboards",
    columns=(
        Column("tenant", "STRING", True),
        Column("dashboard_id", "STRING", True),
        Column("version", "INT64", True),
        Column("title", "STRING", True),
        Column("document", "STRING", True),
        Column("deleted", "BOOL", True),
        Column("author", "STRING", True),
        Column("updated_at", "TIMESTAMP", True),
    ),
    key=("tenant", "dashboard_id", "version"),
    cluster_by=("tenant", "dashboard_id"),
    keep=("updated_at DESC",),
    stamp="updated_at",
)
"""Every version of every dashboard (:mod:`sinks.warehouse.dashboards`): rows are never
rewritten, a change adds the next version; a deletion is a version with ``deleted``."""

TABLES: tuple[TableDef, ...] = (
    METRIC_WINDOWS,
    DEAD_LETTERS,
    ANOMALIES,
    FORECASTS,
    ALERTS,
    MODEL_HEALTH,
    PREDICTIONS,
    PREDICTION_MODELS,
    DASHBOARDS,
)
"""Every table ``riffle warehouse init`` creates."""

RAW_SUFFIX = "_raw"
"""BigQuery: keyed tables are written to ``<name>_raw``; ``<name>`` is the dedup view."""
