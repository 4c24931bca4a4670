"""Opening the warehouse the settings name: DuckDB by default, BigQuery by URL."""

from __future__ import annotations

from config.settings import Settings
from sinks.warehouse_base import Warehouse


def open_warehouse(settings: Settings) -> Warehouse:
    """The engine of ``RIFFLE_WAREHOUSE``; builds clients lazily, so this does no I/O.

    ``duckdb:///path`` opens :class:`~sinks.warehouse.DuckDBWarehouse`;
    ``bigquery://project/dataset`` opens :class:`~sinks.bigquery.BigQueryWarehouse`
    (at ``RIFFLE_BIGQUERY_ENDPOINT`` with anonymous credentials when set).
    """
    if settings.warehouse_engine == "bigquery":
        from sinks.bigquery import BigQueryWarehouse  # the client library loads only when used

        project, dataset = settings.warehouse.removeprefix("bigquery://").split("/", 1)
        return BigQueryWarehouse(project, dataset, endpoint=settings.bigquery_endpoint)
    from sinks.warehouse import DuckDBWarehouse

    return DuckDBWarehouse(settings.duckdb_path)
