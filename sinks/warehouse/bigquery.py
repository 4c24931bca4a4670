"""The BigQuery engine: streaming inserts with deterministic row ids, read through dedup views.

Write path (see ``docs/warehouse.md`` for the choice): every table of
:mod:`sinks.warehouse.tables` is written with ``tabledata.insertAll`` into
``<name>_raw`` (partitioned by day, clustered, partitions expiring after the
retention). Every row carries its write time (the table's ``stamp``) and is
sent with a row id derived from its other columns, so BigQuery's best-effort
``insertId`` dedup absorbs retried requests. Correctness does not rest on
that: ``<name>`` is a view keeping, per key, the row the table's ``keep``
order prefers — a replay, a retry after a lost answer, a second run of the
same batch all leave one row per key in what readers (and users' own SQL)
see. :meth:`BigQueryWarehouse.compact` deletes the superseded raw rows once
they are out of the streaming buffer.

Retries: the client's own retry is switched off for inserts; failures are
classified (429, 5xx, connection problems and timeouts are
:class:`~sinks.errors.TransientSinkError`) so the caller's retry policy
(:mod:`sinks.warehouse.batching`) decides, with backoff and backpressure.

The engine's helpers sit beside it: :mod:`.bigquery_sql` (raw tables, dedup
views, window filters), :mod:`.bigquery_rows` (rows as insertAll takes them,
their ids) and :mod:`.bigquery_errors` (which failures are transient).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import orjson
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from riffle.operators.calendar import Calendar
from riffle.operators.records import Dims, WindowResult
from riffle.sinks.errors import SinkError
from riffle.sinks.warehouse.base import Filters, RollupRow, clamp_ms, dim_path, window_rows
from riffle.sinks.warehouse.bigquery_errors import error_scope
from riffle.sinks.warehouse.bigquery_rows import json_row, row_id
from riffle.sinks.warehouse.bigquery_sql import dedup_view_sql, raw_name, window_filter
from riffle.sinks.warehouse.duckdb_sql import rollup_rows
from riffle.sinks.warehouse.query import BigQueryDialect, Select, prefer_sql, render
from riffle.sinks.warehouse.tables import METRIC_WINDOWS, TABLES, TableDef

INSERT_CHUNK_ROWS = 1_000
"""Rows per insertAll request (BigQuery recommends at most 500-1,000 and 10 MB)."""


class BigQueryWarehouse:
    """Dataset ``project.dataset``; ``endpoint`` points the client at an emulator.

    With an endpoint the client uses anonymous credentials; otherwise
    Google's usual resolution (``GOOGLE_APPLICATION_CREDENTIALS``, the
    metadata server, gcloud's application default credentials).
    """

    def __init__(
        self,
        project: str,
        dataset: str,
        *,
        endpoint: str | None = None,
        location: str | None = None,
        timeout_s: float = 30.0,
        retention_ms: int | None = None,
    ) -> None:
        self.project = project
        self.dataset = dataset
        self.endpoint = endpoint
        self._location = location
        self._timeout = timeout_s
        self._retention_ms = retention_ms
        self._client: bigquery.Client | None = None
        self._raw_columns: dict[str, list[str]] = {}

    @property
    def url(self) -> str:
        """``bigquery://project/dataset`` (and the endpoint override, if any)."""
        base = f"bigquery://{self.project}/{self.dataset}"
        return f"{base} via {self.endpoint}" if self.endpoint else base

    @property
    def client(self) -> bigquery.Client:
        """The BigQuery client, made on first use (building one does no I/O)."""
        if self._client is None:
            if self.endpoint:
                self._client = bigquery.Client(
                    project=self.project,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options=ClientOptions(api_endpoint=self.endpoint),
                    location=self._location,
                )
            else:
                self._client = bigquery.Client(project=self.project, location=self._location)
        return self._client

    def table_id(self, name: str) -> str:
        """Fully qualified id of a table or view of this dataset."""
        return f"{self.project}.{self.dataset}.{name}"

    # -- schema ---------------------------------------------------------------

    def init(self, tables: Sequence[TableDef] = TABLES) -> None:
        """Create the dataset, the tables and the dedup views; add missing columns; set
        (or update) every partitioned table's partition expiration to the retention."""
        with self._errors("init"):
            self.client.create_dataset(
                bigquery.Dataset(f"{self.project}.{self.dataset}"),
                exists_ok=True,
                timeout=self._timeout,
            )
            for table in tables:
                self._ensure_table(table)

    def _ensure_table(self, table: TableDef) -> None:
        physical = raw_name(table)
        wanted = [
            bigquery.SchemaField(c.name, c.type, mode="REQUIRED" if c.required else "NULLABLE")
            for c in table.columns
        ]
        spec = bigquery.Table(self.table_id(physical), schema=wanted)
        partitioning = None
        if table.partition_by:
            partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY,
                field=table.partition_by,
                expiration_ms=self._retention_ms,
            )
            spec.time_partitioning = partitioning
        if table.cluster_by:
            spec.clustering_fields = list(table.cluster_by)
        self.client.create_table(spec, exists_ok=True, timeout=self._timeout)
        current = self.client.get_table(self.table_id(physical), timeout=self._timeout)
        if partitioning is not None and (
            current.time_partitioning is None
            or current.time_partitioning.expiration_ms != self._retention_ms
        ):  # the spec's retention changed: partitions expire by the new one
            current.time_partitioning = partitioning
            current = self.client.update_table(
                current, ["time_partitioning"], timeout=self._timeout
            )
        present = {f.name for f in current.schema}
        missing = [f for f in wanted if f.name not in present]
        if missing:  # schema evolution: add nullable columns, never drop or retype
            # BigQuery needs only the schema update; the emulator also needs the DDL
            # (its insertAll and its queries read different copies of the schema).
            for field in missing:
                self._query(
                    f"ALTER TABLE `{self.table_id(physical)}` "
                    f"ADD COLUMN IF NOT EXISTS {field.name} {field.field_type}",
                    [],
                )
            current = self.client.get_table(self.table_id(physical), timeout=self._timeout)
            names = {f.name for f in current.schema}
            added = [
                bigquery.SchemaField(f.name, f.field_type, mode="NULLABLE")
                for f in missing
                if f.name not in names
            ]
            if added:
                current.schema = [*current.schema, *added]
                self.client.update_table(current, ["schema"], timeout=self._timeout)
        self._raw_columns.pop(table.name, None)
        if table.key:
            self._query(
                f"CREATE OR REPLACE VIEW `{self.table_id(table.name)}` AS "
                + dedup_view_sql(self.table_id(physical), table),
                [],
            )

    # -- writes ---------------------------------------------------------------

    def upsert_windows(self, finals: Sequence[WindowResult]) -> None:
        """Stream final windows into ``metric_windows_raw``; the view shows one per key.

        Within the batch the last result for a key wins. Partials raise
        ``ValueError`` before anything is sent. Per-row insert errors are a
        :class:`SinkError`; throttling, 5xx and I/O failures a
        :class:`TransientSinkError`.
        """
        now = int(datetime.now(tz=UTC).timestamp() * 1000)
        self.upsert(METRIC_WINDOWS, window_rows(finals, now))

    def upsert(self, table: TableDef, rows: Sequence[Mapping[str, Any]]) -> None:
        """See :meth:`sinks.warehouse.base.Warehouse.upsert`: insertAll into ``<name>_raw``.

        Sent in requests of at most :data:`INSERT_CHUNK_ROWS`; a failed
        request may have landed (its answer lost), so the caller's retry
        writes it again and the view shows one row per key either way.
        """
        batch = table.best_per_key(rows)
        if not batch:
            return
        target = self.table_id(raw_name(table))
        columns = self._raw_columns.get(table.name)
        if columns is None:
            with self._errors("schema read"):
                try:
                    schema = self.client.get_table(target, timeout=self._timeout).schema
                except gexc.NotFound:
                    self.init([table])
                    schema = self.client.get_table(target, timeout=self._timeout).schema
            columns = self._raw_columns[table.name] = [field.name for field in schema]
        # Columns added later are sent as null: the emulator's insertAll wants every column.
        blank = dict.fromkeys(columns)
        types = table.types
        sent = [blank | json_row(row, types) for row in batch]
        for start in range(0, len(sent), INSERT_CHUNK_ROWS):
            chunk = sent[start : start + INSERT_CHUNK_ROWS]
            with self._errors(f"insert of {len(chunk)} rows into {table.name}"):
                problems = self.client.insert_rows_json(
                    target,
                    chunk,
                    row_ids=[row_id(table, row) for row in chunk],
                    retry=None,  # type: ignore[arg-type]
                    timeout=self._timeout,
                )
            if problems:
                raise SinkError(f"bigquery refused rows of {target}: {problems[:3]}")

    def select(self, query: Select) -> list[dict[str, Any]]:
        """See :meth:`sinks.warehouse.base.Warehouse.select`; a missing table reads as empty."""
        dialect = BigQueryDialect(prefix=f"{self.project}.{self.dataset}.")
        sql = render(query, dialect)
        try:
            rows = self._query(sql, dialect.params)
        except SinkError as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                return []
            raise
        return [dict(row.items()) for row in rows]

    def compact(self, min_age_ms: int) -> dict[str, int]:
        """Delete raw rows a better row of the same key supersedes, written ``min_age_ms`` ago.

        One ``DELETE … WHERE EXISTS (a better row)`` per table. Only
        superseded rows go, so what the views show is unchanged, while writers
        run too (they only add rows). Rows younger than ``min_age_ms`` stay:
        BigQuery refuses DML on rows still in the streaming buffer (up to
        ~30 minutes, sometimes longer; use at least 90 minutes).
        """
        cutoff = int(datetime.now(tz=UTC).timestamp() * 1000) - min_age_ms
        removed = {}
        for table in TABLES:
            if not table.key or table.stamp is None:
                continue
            raw = self.table_id(raw_name(table))
            same = " AND ".join(f"n.{c} = o.{c}" for c in table.key)
            better = prefer_sql(table, "n", "o", strict=True)
            sql = (
                f"DELETE FROM `{raw}` AS o WHERE o.{table.stamp} < TIMESTAMP_MILLIS(@cutoff) "
                f"AND EXISTS (SELECT 1 FROM `{raw}` AS n WHERE {same} AND {better})"
            )
            params = [bigquery.ScalarQueryParameter("cutoff", "INT64", cutoff)]
            with self._errors(f"compaction of {table.name}"):
                try:
                    job = self.client.query(
                        sql, job_config=bigquery.QueryJobConfig(query_parameters=params)
                    )
                    job.result(timeout=self._timeout)
                except gexc.NotFound:
                    continue  # never written
            removed[table.name] = int(job.num_dml_affected_rows or 0)
        return removed

    def expire(self, now_ms: int) -> dict[str, int]:
        """Nothing to do: partitions expire by themselves (the option :meth:`init` sets)."""
        return {}

    # -- reads ----------------------------------------------------------------

    def read_series(
        self,
        tenant: str,
        metric: str,
        start_ms: int,
        end_ms: int,
        filters: Mapping[str, Collection[str]] | None = None,
    ) -> list[tuple[Dims, list[WindowResult]]]:
        """Same contract as :meth:`sinks.warehouse.duckdb.DuckDBWarehouse.read_series`."""
        where, params = window_filter(tenant, metric, start_ms, end_ms, filters)
        if where is None:
            return []
        sql = (
            "SELECT dims, UNIX_MILLIS(window_start), UNIX_MILLIS(window_end), count, sum, "
            "min, max, value, is_final, revision, UNIX_MILLIS(updated_at), sketch, detail "
            f"FROM `{self.table_id(METRIC_WINDOWS.name)}` WHERE {where} "
            "ORDER BY series_id, window_start"
        )
        series: dict[str, list[WindowResult]] = {}
        for row in self._query(sql, params):
            dims_json = row[0]
            series.setdefault(dims_json, []).append(
                WindowResult(
                    tenant=tenant,
                    metric=metric,
                    dims=tuple(sorted(orjson.loads(dims_json).items())),
                    window_start=int(row[1]),
                    window_end=int(row[2]),
                    count=int(row[3]),
                    sum=float(row[4]),
                    min=None if row[5] is None else float(row[5]),
                    max=None if row[6] is None else float(row[6]),
                    value=None if row[7] is None else float(row[7]),
                    is_final=bool(row[8]),
                    revision=int(row[9]),
                    emitted_at=int(row[10]),
                    sketch=None if row[11] is None else bytes(row[11]),
                    detail=None if row[12] is None else orjson.loads(row[12]),
                )
            )
        return sorted(
            ((points[0].dims, points) for points in series.values()), key=lambda item: item[0]
        )

    def rollup(
        self,
        tenant: str,
        metric: str,
        start_ms: int,
        end_ms: int,
        *,
        step_ms: int | None,
        by: Sequence[str],
        filters: Filters | None = None,
        zone: str = "UTC",
    ) -> list[RollupRow]:
        """See :meth:`sinks.warehouse.base.Warehouse.rollup`; one ``GROUP BY`` in BigQuery."""
        calendar = None if zone == "UTC" else Calendar.of(zone, start_ms, end_ms)
        where, params = window_filter(tenant, metric, start_ms, end_ms, filters)
        if where is None:
            return []
        select = [f"COALESCE(JSON_VALUE(dims, '{dim_path(name)}'), '')" for name in by]
        if step_ms is None:
            select.append("@bucket_start")
            params.append(bigquery.ScalarQueryParameter("bucket_start", "INT64", start_ms))
        else:
            local = "UNIX_MILLIS(window_start)"
            if calendar is not None:
                local = calendar.local_sql(local)
            select.append(f"DIV({local}, @step) * @step")
            params.append(bigquery.ScalarQueryParameter("step", "INT64", step_ms))
        groups = ", ".join(str(i + 1) for i in range(len(select)))
        sql = (
            f"SELECT {', '.join(select)}, SUM(count), SUM(sum), MIN(min), MAX(max), COUNT(*) "
            f"FROM `{self.table_id(METRIC_WINDOWS.name)}` WHERE {where} GROUP BY {groups}"
        )
        rows = [tuple(row.values()) for row in self._query(sql, params)]
        return rollup_rows(rows, by, calendar, step_ms)

    def purge_before(self, tenant: str | None, before_ms: int) -> int:
        """Delete stored rows (all duplicates included) of windows starting before ``before_ms``.

        BigQuery refuses DML on rows still in the streaming buffer (the last
        ~30 minutes of inserts); retention purges are far older than that.
        """
        sql = (
            f"DELETE FROM `{self.table_id(raw_name(METRIC_WINDOWS))}` "
            "WHERE window_start < TIMESTAMP_MILLIS(@before)"
        )
        params: list[Any] = [bigquery.ScalarQueryParameter("before", "INT64", clamp_ms(before_ms))]
        if tenant is not None:
            sql += " AND tenant = @tenant"
            params.append(bigquery.ScalarQueryParameter("tenant", "STRING", tenant))
        with self._errors("purge"):
            job = self.client.query(
                sql, job_config=bigquery.QueryJobConfig(query_parameters=params)
            )
            job.result(timeout=self._timeout)
        return int(job.num_dml_affected_rows or 0)

    def ping(self) -> None:
        """Return if the dataset can be read; :class:`SinkError` otherwise."""
        with self._errors("ping"):
            self.client.get_dataset(f"{self.project}.{self.dataset}", timeout=self._timeout)

    # -- helpers --------------------------------------------------------------

    def _query(self, sql: str, params: list[Any]) -> list[Any]:
        with self._errors("query"):
            job = self.client.query(
                sql, job_config=bigquery.QueryJobConfig(query_parameters=params)
            )
            return list(job.result(timeout=self._timeout))

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return error_scope(f"bigquery {self.project}.{self.dataset}: {what}")
