"""The warehouse: complete history of every table, on DuckDB (embedded) or BigQuery.

The engine layer: :mod:`.base` (the ``Warehouse`` protocol both engines keep),
:mod:`.tables` (every table, defined once), :mod:`.query` (portable selects and
their two SQL dialects), :mod:`.duckdb` with :mod:`.duckdb_file` and
:mod:`.duckdb_sql`, :mod:`.bigquery` with :mod:`.bigquery_sql`,
:mod:`.bigquery_rows` and :mod:`.bigquery_errors`, :mod:`.batching` (the
bounded write buffer) and :mod:`.engines` (``open_warehouse``: the engine the
settings name).

The stores over it, one per thing kept: :mod:`.dead_letters`,
:mod:`.model_results` (anomalies and forecasts), :mod:`.model_health`,
:mod:`.model_history`, :mod:`.predictions`. A new table is a ``TableDef`` in
:mod:`.tables` and a store module here.
"""
