"""SQL the BigQuery engine generates from :mod:`.tables`: raw tables, dedup views, window
filters."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from google.cloud import bigquery

from riffle.sinks.warehouse.base import clamp_ms, dim_path
from riffle.sinks.warehouse.tables import RAW_SUFFIX, TableDef


def raw_name(table: TableDef) -> str:
    """The physical table behind a logical one: ``<name>_raw`` for keyed tables."""
    return table.name + RAW_SUFFIX if table.key else table.name


def dedup_view_sql(raw: str, table: TableDef) -> str:
    """The view over ``raw`` (the id of ``<name>_raw``) keeping, per key, the row
    ``table.keep`` prefers.

    Filters on key columns (tenant, metric, window_start) pass through the
    window function, so partition pruning and clustering still apply.
    """
    columns = ", ".join(table.column_names)
    order = (
        ", ".join(f"{c} {'DESC' if desc else 'ASC'} NULLS LAST" for c, desc in table.keep_terms)
        or "1"
    )
    return (
        f"SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER ("
        f"PARTITION BY {', '.join(table.key)} ORDER BY {order}) AS _rn FROM `{raw}`) "
        "WHERE _rn = 1"
    )


def window_filter(
    tenant: str,
    metric: str,
    start_ms: int,
    end_ms: int,
    filters: Mapping[str, Collection[str]] | None,
) -> tuple[str | None, list[Any]]:
    """The ``WHERE`` clause and parameters selecting one metric's windows of one tenant
    starting in ``[start_ms, end_ms)`` whose dimensions are in ``filters``; None when a
    filter allows nothing."""
    clauses = [
        "tenant = @tenant",
        "metric = @metric",
        "window_start >= TIMESTAMP_MILLIS(@start_ms)",
        "window_start < TIMESTAMP_MILLIS(@end_ms)",
    ]
    params: list[Any] = [
        bigquery.ScalarQueryParameter("tenant", "STRING", tenant),
        bigquery.ScalarQueryParameter("metric", "STRING", metric),
        bigquery.ScalarQueryParameter("start_ms", "INT64", clamp_ms(start_ms)),
        bigquery.ScalarQueryParameter("end_ms", "INT64", clamp_ms(end_ms)),
    ]
    for i, (name, allowed) in enumerate((filters or {}).items()):
        if not allowed:
            return None, []
        clauses.append(f"JSON_VALUE(dims, '{dim_path(name)}') IN UNNEST(@f{i})")
        params.append(bigquery.ArrayQueryParameter(f"f{i}", "STRING", sorted(allowed)))
    return " AND ".join(clauses), params
