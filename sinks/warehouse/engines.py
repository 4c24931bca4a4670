"""Opening the warehouse the settings name: DuckDB by default, BigQuery by URL."""

from __future__ import annotations

from datetime import timedelta

from riffle.config.settings import Settings
from riffle.sinks.warehouse.base import Warehouse


def open_warehouse(settings: Settings, retention: timedelta | None = None) -> Warehouse:
    """The engine of ``RIFFLE_WAREHOUSE``; builds clients lazily, so this does no I/O.

    ``duckdb:///path`` opens :class:`~sinks.warehouse.duckdb.DuckDBWarehouse`;
    ``bigquery://project/dataset`` opens :class:`~sinks.warehouse.bigquery.BigQueryWarehouse`
    (at ``RIFFLE_BIGQUERY_ENDPOINT`` with anonymous credentials when set).
    ``retention`` (the spec's ``retention.warehouse``) is how long rows are
    kept: BigQuery's partition expiration, DuckDB's :meth:`expire` rule.
    """
    retention_ms = None if retention is None else int(retention.total_seconds() * 1000)
    if settings.warehouse_engine == "bigquery":
        from riffle.sinks.warehouse.bigquery import (
            BigQueryWarehouse,  # the client library loads only when used
        )

        project, dataset = settings.warehouse.removeprefix("bigquery://").split("/", 1)
        return BigQueryWarehouse(
            project, dataset, endpoint=settings.bigquery_endpoint, retention_ms=retention_ms
        )
    from riffle.sinks.warehouse.duckdb import DuckDBWarehouse

    return DuckDBWarehouse(settings.duckdb_path, retention_ms=retention_ms)
