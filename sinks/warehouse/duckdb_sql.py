"""SQL the DuckDB engine generates from :mod:`.tables`: DDL, evolution, upserts, rollups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from riffle.operators.calendar import Calendar
from riffle.sinks.errors import SinkError
from riffle.sinks.warehouse.base import Filters, RollupRow, clamp_ms, dim_path
from riffle.sinks.warehouse.query import prefer_sql
from riffle.sinks.warehouse.tables import DUCKDB_TYPES, TABLES, TableDef


def create_table_sql(table: TableDef) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``table``, its key as the primary key."""
    columns = [
        f"{c.name} {DUCKDB_TYPES[c.type]}{' NOT NULL' if c.required else ''}" for c in table.columns
    ]
    if table.key:
        columns.append(f"PRIMARY KEY ({', '.join(table.key)})")
    return f"CREATE TABLE IF NOT EXISTS {table.name} (\n    " + ",\n    ".join(columns) + "\n)"


def evolve(con: duckdb.DuckDBPyConnection, tables: Sequence[TableDef] = TABLES) -> list[str]:
    """Create missing tables and add missing (nullable) columns; returns what was added.

    Columns are only ever added: a column that disappeared from the
    definition stays in the table. A column whose type differs from the
    definition is a :class:`SinkError` naming it (a file written by an older
    layout); it is never retyped in place.
    """
    added: list[str] = []
    for table in tables:
        con.execute(create_table_sql(table))
        present = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_catalog = current_database() AND table_name = ?",
                [table.name],
            ).fetchall()
        )
        for column in table.columns:
            found = present.get(column.name)
            if found is not None and found != DUCKDB_TYPES[column.type]:
                raise SinkError(
                    f"{table.name}.{column.name} is {found} in this file, {column.type} in "
                    f"sinks/warehouse/tables.py: export the table, drop it and let "
                    f"`riffle warehouse init` recreate it"
                )
            if found is None:
                con.execute(
                    f"ALTER TABLE {table.name} ADD COLUMN {column.name} {DUCKDB_TYPES[column.type]}"
                )
                added.append(f"{table.name}.{column.name}")
    return added


def upsert_sql(table: TableDef) -> str:
    """One statement writing a batch to ``table``: one list parameter per column, in order.

    TIMESTAMP columns travel as epoch milliseconds. A row replaces the stored
    row of its key only when it ranks at or before it in ``table.keep``
    (:meth:`~sinks.warehouse.tables.TableDef.prefers`), as BigQuery's dedup view would
    choose. The batch must hold one row per key.
    """
    wire = {
        c.name: "BIGINT" if c.type == "TIMESTAMP" else DUCKDB_TYPES[c.type] for c in table.columns
    }
    names = table.column_names
    inner = ", ".join(f"unnest(?::{wire[n]}[]) AS {n}" for n in names)
    outer = ", ".join(
        f"epoch_ms({c.name})" if c.type == "TIMESTAMP" else c.name for c in table.columns
    )
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {outer} FROM (SELECT {inner})"
    rest = [n for n in names if n not in table.key]
    if not table.key:
        return sql
    if not rest:
        return sql + " ON CONFLICT DO NOTHING"
    sets = ", ".join(f"{n} = excluded.{n}" for n in rest)
    where = prefer_sql(table, "excluded", table.name, strict=False)
    return f"{sql} ON CONFLICT DO UPDATE SET {sets} WHERE {where}"


def rollup_sql(
    tenant: str,
    metric: str,
    start_ms: int,
    end_ms: int,
    step_ms: int | None,
    by: Sequence[str],
    filters: Filters | None,
    calendar: Calendar | None = None,
) -> tuple[str, list[Any]] | None:
    """The rollup query and its parameters; ``None`` when a filter admits nothing.

    With a ``calendar`` the bucket column is the local label (see :func:`rollup_rows`).
    """
    params: list[Any] = []
    select = [f"coalesce(json_extract_string(dims, '{dim_path(name)}'), '')" for name in by]
    if step_ms is None:
        select.append("?::BIGINT")
        params.append(start_ms)
    elif calendar is not None:
        select.append(f"({calendar.local_sql('epoch_ms(window_start)')} // ?::BIGINT) * ?::BIGINT")
        params += [step_ms, step_ms]
    else:
        select.append("(epoch_ms(window_start) // ?::BIGINT) * ?::BIGINT")
        params += [step_ms, step_ms]
    where = [
        "tenant = ?",
        "metric = ?",
        "window_start >= epoch_ms(?::BIGINT)",
        "window_start < epoch_ms(?::BIGINT)",
    ]
    params += [tenant, metric, clamp_ms(start_ms), clamp_ms(end_ms)]
    for name, allowed in (filters or {}).items():
        if not allowed:
            return None
        marks = ", ".join("?" * len(allowed))
        where.append(f"json_extract_string(dims, '{dim_path(name)}') IN ({marks})")
        params += list(allowed)
    groups = ", ".join(str(i + 1) for i in range(len(select)))
    sql = (
        f"SELECT {', '.join(select)}, sum(count), sum(sum), min(min), max(max), count(*) "
        f"FROM metric_windows WHERE {' AND '.join(where)} GROUP BY {groups}"
    )
    return sql, params


def rollup_rows(
    raw: Sequence[tuple[Any, ...]],
    by: Sequence[str],
    calendar: Calendar | None = None,
    step_ms: int | None = None,
) -> list[RollupRow]:
    """Rows of :func:`rollup_sql` (or the BigQuery twin) as :class:`RollupRow` s, sorted.

    With a ``calendar`` the engine grouped by local labels; they become UTC bucket starts.
    """
    width = len(by)
    rows = [
        RollupRow(
            dims=tuple(sorted(zip(by, (str(v) for v in row[:width]), strict=True))),
            bucket=(
                int(row[width])
                if calendar is None or step_ms is None
                else calendar.start_of(int(row[width]), step_ms)
            ),
            count=int(row[width + 1]),
            sum=float(row[width + 2]),
            min=None if row[width + 3] is None else float(row[width + 3]),
            max=None if row[width + 4] is None else float(row[width + 4]),
            windows=int(row[width + 5]),
        )
        for row in raw
    ]
    rows.sort(key=lambda r: (r.dims, r.bucket))
    return rows
