"""Engine-neutral reads and writes of the warehouse's tables, rendered per engine.

A store (dead letters, model results, alerts) describes what it reads as a
:class:`Select` over a :class:`~sinks.warehouse.tables.TableDef` and what it writes as
rows (``dict`` column -> value); each engine turns that into its own SQL
(:class:`DuckDBDialect`, :class:`BigQueryDialect`). Values cross the boundary
in one convention on both engines: TIMESTAMP columns as epoch milliseconds
(``int``), BYTES as ``bytes``, the rest as Python scalars.

Identifiers come from the table definition only (a name that is not a column
of the table is a ``ValueError``); values are always query parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from riffle.sinks.warehouse.tables import DUCKDB_TYPES, ColumnType, TableDef

Op = Literal["=", "!=", "<", "<=", ">", ">="]
AggFn = Literal["count", "count_distinct", "avg", "min", "max", "sum", "any_value", "share"]


@dataclass(frozen=True, slots=True)
class Cmp:
    """``column op value``."""

    column: str
    op: Op
    value: Any


@dataclass(frozen=True, slots=True)
class In:
    """``column`` is one of ``values`` (none: nothing matches)."""

    column: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Null:
    """``column IS NULL`` (or, with ``null=False``, ``IS NOT NULL``)."""

    column: str
    null: bool = True


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one of ``preds`` holds."""

    preds: tuple[Pred, ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every one of ``preds`` holds."""

    preds: tuple[Pred, ...]


Pred = Cmp | In | Null | AnyOf | AllOf


@dataclass(frozen=True, slots=True)
class Agg:
    """An aggregate output column; ``share`` is the fraction of rows where ``column = value``."""

    fn: AggFn
    column: str | None
    alias: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Select:
    """``SELECT columns FROM table WHERE … GROUP BY … QUALIFY … ORDER BY … LIMIT …``.

    ``columns`` empty means every column of the table. ``latest_per`` keeps,
    per value of those columns, the first row in ``latest_by`` order (a
    ``QUALIFY ROW_NUMBER() … = 1``). ``source`` reads from that query instead
    of the table (its rows keep the table's columns and types), so aggregates
    can run over the latest rows. ``order_by`` and ``latest_by`` are
    ``"col ASC|DESC"`` terms; NULLs sort last in both engines.
    """

    table: TableDef
    columns: tuple[str | Agg, ...] = ()
    where: tuple[Pred, ...] = ()
    group_by: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()
    limit: int | None = None
    latest_per: tuple[str, ...] = ()
    latest_by: tuple[str, ...] = ()
    source: Select | None = None


class Dialect(Protocol):
    """What differs between the engines' SQL; collects the parameters of one statement."""

    params: list[Any]

    def table(self, name: str) -> str:
        """How a logical table (or its dedup view) is named in a query."""
        ...

    def param(self, value: Any, type_: ColumnType) -> str:
        """A placeholder for ``value`` of a column of ``type_``."""
        ...

    def array(self, values: Sequence[Any], type_: ColumnType) -> str:
        """``IN`` list of ``values``, e.g. ``(?, ?)`` or ``UNNEST(@p)``."""
        ...

    def millis(self, expr: str) -> str:
        """A TIMESTAMP expression as epoch milliseconds."""
        ...


@dataclass
class DuckDBDialect:
    """DuckDB: positional ``?`` parameters, tables by name."""

    params: list[Any] = field(default_factory=list)

    def table(self, name: str) -> str:
        return name

    def param(self, value: Any, type_: ColumnType) -> str:
        self.params.append(value)
        return "epoch_ms(?::BIGINT)" if type_ == "TIMESTAMP" else f"?::{DUCKDB_TYPES[type_]}"

    def array(self, values: Sequence[Any], type_: ColumnType) -> str:
        return "(" + ", ".join(self.param(v, type_) for v in values) + ")"

    def millis(self, expr: str) -> str:
        return f"epoch_ms({expr})"


@dataclass
class BigQueryDialect:
    """BigQuery: named, typed parameters (``@p0``…), tables qualified by dataset."""

    prefix: str = ""
    """``project.dataset.`` of the tables."""
    params: list[Any] = field(default_factory=list)

    def table(self, name: str) -> str:
        return f"`{self.prefix}{name}`"

    def _name(self) -> str:
        return f"p{len(self.params)}"

    def param(self, value: Any, type_: ColumnType) -> str:
        from google.cloud import bigquery  # the client library loads only with BigQuery

        name = self._name()
        wire = "INT64" if type_ == "TIMESTAMP" else type_
        self.params.append(bigquery.ScalarQueryParameter(name, wire, value))
        return f"TIMESTAMP_MILLIS(@{name})" if type_ == "TIMESTAMP" else f"@{name}"

    def array(self, values: Sequence[Any], type_: ColumnType) -> str:
        from google.cloud import bigquery

        if type_ == "TIMESTAMP":
            raise ValueError("IN over a TIMESTAMP column is not supported")
        name = self._name()
        self.params.append(bigquery.ArrayQueryParameter(name, type_, list(values)))
        return f"UNNEST(@{name})"

    def millis(self, expr: str) -> str:
        return f"UNIX_MILLIS({expr})"


def _check(table: TableDef, column: str) -> ColumnType:
    try:
        return table.types[column]
    except KeyError:
        raise ValueError(f"{table.name} has no column {column!r}") from None


def _terms(table: TableDef, terms: Sequence[str], known: set[str] | None = None) -> str:
    out = []
    for term in terms:
        column, _, direction = term.partition(" ")
        if direction not in ("ASC", "DESC"):
            raise ValueError(f"order term {term!r} is not 'col ASC|DESC'")
        if known is None or column not in known:
            _check(table, column)
        out.append(f"{column} {direction} NULLS LAST")
    return ", ".join(out)


def _pred(table: TableDef, pred: Pred, d: Dialect) -> str:
    if isinstance(pred, Cmp):
        return f"{pred.column} {pred.op} {d.param(pred.value, _check(table, pred.column))}"
    if isinstance(pred, In):
        if not pred.values:
            return "FALSE"
        return f"{pred.column} IN {d.array(pred.values, _check(table, pred.column))}"
    if isinstance(pred, Null):
        _check(table, pred.column)
        return f"{pred.column} IS {'' if pred.null else 'NOT '}NULL"
    joiner = " OR " if isinstance(pred, AnyOf) else " AND "
    if not pred.preds:
        return "FALSE" if isinstance(pred, AnyOf) else "TRUE"
    return "(" + joiner.join(_pred(table, p, d) for p in pred.preds) + ")"


def _agg(table: TableDef, agg: Agg, d: Dialect, outer: bool) -> str:
    if agg.fn == "count" and agg.column is None:
        return f"COUNT(*) AS {agg.alias}"
    if agg.column is None:
        raise ValueError(f"aggregate {agg.fn} needs a column")
    type_ = _check(table, agg.column)
    if agg.fn == "count_distinct":
        expr = f"COUNT(DISTINCT {agg.column})"
    elif agg.fn == "share":
        expr = f"AVG(CASE WHEN {agg.column} = {d.param(agg.value, type_)} THEN 1 ELSE 0 END)"
    else:
        expr = f"{agg.fn.upper()}({agg.column})"
        if outer and type_ == "TIMESTAMP" and agg.fn in ("min", "max", "any_value"):
            expr = d.millis(expr)
    return f"{expr} AS {agg.alias}"


def render(query: Select, d: Dialect, *, outer: bool = True) -> str:
    """The SQL of ``query`` in dialect ``d`` (parameters collected in ``d.params``).

    Only the outermost query turns TIMESTAMPs into epoch milliseconds; a
    ``source`` subquery passes the table's columns through unchanged.
    """
    table = query.table
    if query.source is not None:
        if query.source.table is not table:
            raise ValueError("a source query must read the same table")
        source = f"({render(query.source, d, outer=False)}) AS src"
    else:
        source = d.table(table.name)
    selected: list[str] = []
    aliases: set[str] = set()
    for item in query.columns or tuple(table.column_names):
        if isinstance(item, Agg):
            selected.append(_agg(table, item, d, outer))
            aliases.add(item.alias)
        elif outer and _check(table, item) == "TIMESTAMP":
            selected.append(f"{d.millis(item)} AS {item}")
        else:
            _check(table, item)
            selected.append(item)
    sql = f"SELECT {', '.join(selected)} FROM {source}"
    if query.where:
        sql += " WHERE " + " AND ".join(_pred(table, p, d) for p in query.where)
    if query.group_by:
        for column in query.group_by:
            _check(table, column)
        sql += " GROUP BY " + ", ".join(query.group_by)
    if query.latest_per:
        for column in query.latest_per:
            _check(table, column)
        order = _terms(table, query.latest_by)
        if not query.where and not query.group_by:
            sql += " WHERE TRUE"  # BigQuery wants a WHERE, GROUP BY or HAVING beside QUALIFY
        sql += (
            f" QUALIFY ROW_NUMBER() OVER (PARTITION BY {', '.join(query.latest_per)}"
            f" ORDER BY {order}) = 1"
        )
    if query.order_by:
        sql += " ORDER BY " + _terms(table, query.order_by, aliases)
    if query.limit is not None:
        sql += f" LIMIT {int(query.limit)}"
    return sql


def prefer_sql(table: TableDef, new: str, old: str, *, strict: bool) -> str:
    """SQL that is true when row ``new`` ranks before row ``old`` in ``table.keep``.

    ``new``/``old`` are the row qualifiers (``excluded`` and the table name in
    a DuckDB upsert; two aliases in a compaction). A full tie is true unless
    ``strict``; NULLs rank last.
    """
    expr = "FALSE" if strict else "TRUE"
    for column, descending in reversed(table.keep_terms):
        a, b = f"{new}.{column}", f"{old}.{column}"
        cmp = ">" if descending else "<"
        better = f"({a} IS NOT NULL AND ({b} IS NULL OR {a} {cmp} {b}))"
        equal = f"(({a} IS NULL AND {b} IS NULL) OR {a} = {b})"
        expr = f"({better} OR ({equal} AND {expr}))"
    return expr


def expiry_cutoff_ms(now_ms: int, retention_ms: int) -> int:
    """Rows whose partition column is before this have expired at ``now_ms``.

    BigQuery's rule for day partitions: a partition expires once its day's
    start plus the expiration has passed. A day ``D`` has expired when
    ``D + retention <= now``, i.e. every row before the start of the day
    after ``day(now - retention)``. DuckDB purges by the same rule.
    """
    day = 86_400_000
    edge = now_ms - retention_ms
    return edge - edge % day + day
