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

Later issues add their tables (``alerts``, ``anomalies``, ``forecasts``,
``events``) to :data:`TABLES`; both engines then create them on ``init``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    """A logical table: its columns, its key, and how BigQuery lays it out.

    ``key`` identifies a row: DuckDB makes it the primary key (upserts);
    BigQuery cannot enforce it, so keyed tables are written to
    ``<name>_raw`` and read through a deduplicating view named ``<name>``.
    ``partition_by`` is a TIMESTAMP column BigQuery partitions by day;
    ``cluster_by`` are BigQuery's clustering columns.
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    partition_by: str | None = None
    cluster_by: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        """Column names in table order."""
        return [c.name for c in self.columns]


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
        Column("received_at", "INT64", True),
        Column("stored_at", "INT64", True),
        Column("replayed_at", "INT64"),
    ),
    key=("letter_id",),
    cluster_by=("tenant", "failure_type"),
)
"""Rejected events (``operators.records.DeadLetter``), one row per deterministic
``letter_id``; times are epoch milliseconds. Written and read through
:mod:`sinks.deadletter_store`, whose DuckDB statements follow this column order."""

TABLES: tuple[TableDef, ...] = (METRIC_WINDOWS, DEAD_LETTERS)
"""Every table ``riffle warehouse init`` creates."""

RAW_SUFFIX = "_raw"
"""BigQuery: keyed tables are written to ``<name>_raw``; ``<name>`` is the dedup view."""
