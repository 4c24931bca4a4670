"""Model results in the warehouse: tables ``anomalies`` and ``forecasts`` beside ``metric_windows``.

Both are keyed like ``metric_windows`` — ``(tenant, metric, series_id,
window_start)``, the window a detector scored or after which a forecast was
issued — and written by last-write-wins upserts, so a replayed window
rewrites its row. ``dims`` is JSON text; ``points`` of a forecast is a JSON
list of ``[ts_ms, mean, low, high]``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import duckdb
import orjson

from operators.models.series import AnomalyRecord, ForecastRecord, ModelRecord
from operators.records import series_id
from sinks.warehouse import DuckDBWarehouse

_DDL = """
CREATE TABLE IF NOT EXISTS anomalies (
    tenant VARCHAR NOT NULL, metric VARCHAR NOT NULL, series_id VARCHAR NOT NULL,
    dims VARCHAR NOT NULL, window_start TIMESTAMP NOT NULL, detector VARCHAR NOT NULL,
    value DOUBLE, score DOUBLE NOT NULL, label VARCHAR NOT NULL, expected DOUBLE,
    expected_low DOUBLE, expected_high DOUBLE, deviation DOUBLE NOT NULL,
    explanation VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant, metric, series_id, window_start)
);
CREATE TABLE IF NOT EXISTS forecasts (
    tenant VARCHAR NOT NULL, metric VARCHAR NOT NULL, series_id VARCHAR NOT NULL,
    dims VARCHAR NOT NULL, window_start TIMESTAMP NOT NULL, level DOUBLE NOT NULL,
    points VARCHAR NOT NULL, n BIGINT NOT NULL, mae DOUBLE NOT NULL, smape DOUBLE NOT NULL,
    naive_mae DOUBLE NOT NULL, naive_smape DOUBLE NOT NULL, coverage DOUBLE NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant, metric, series_id, window_start)
);
"""

_UPSERT_ANOMALIES = """
INSERT OR REPLACE INTO anomalies
SELECT t, m, s, d, epoch_ms(w), det, v, sc, l, e, lo, hi, dev, ex, epoch_ms(u) FROM (
    SELECT unnest(?::VARCHAR[]) AS t, unnest(?::VARCHAR[]) AS m, unnest(?::VARCHAR[]) AS s,
           unnest(?::VARCHAR[]) AS d, unnest(?::BIGINT[]) AS w, unnest(?::VARCHAR[]) AS det,
           unnest(?::DOUBLE[]) AS v, unnest(?::DOUBLE[]) AS sc, unnest(?::VARCHAR[]) AS l,
           unnest(?::DOUBLE[]) AS e, unnest(?::DOUBLE[]) AS lo, unnest(?::DOUBLE[]) AS hi,
           unnest(?::DOUBLE[]) AS dev, unnest(?::VARCHAR[]) AS ex, unnest(?::BIGINT[]) AS u
)
"""

_UPSERT_FORECASTS = """
INSERT OR REPLACE INTO forecasts
SELECT t, m, s, d, epoch_ms(w), lv, p, n, mae, smape, nmae, nsmape, cov, epoch_ms(u) FROM (
    SELECT unnest(?::VARCHAR[]) AS t, unnest(?::VARCHAR[]) AS m, unnest(?::VARCHAR[]) AS s,
           unnest(?::VARCHAR[]) AS d, unnest(?::BIGINT[]) AS w, unnest(?::DOUBLE[]) AS lv,
           unnest(?::VARCHAR[]) AS p, unnest(?::BIGINT[]) AS n, unnest(?::DOUBLE[]) AS mae,
           unnest(?::DOUBLE[]) AS smape, unnest(?::DOUBLE[]) AS nmae,
           unnest(?::DOUBLE[]) AS nsmape, unnest(?::DOUBLE[]) AS cov, unnest(?::BIGINT[]) AS u
)
"""


def _finite(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else x


class ModelStore:
    """Reads and writes of the model tables through a :class:`DuckDBWarehouse`'s file."""

    def __init__(self, warehouse: DuckDBWarehouse) -> None:
        self.warehouse = warehouse

    def write(self, records: Sequence[ModelRecord]) -> None:
        """Upsert a batch of records (the last one per key wins)."""
        anomalies: dict[tuple[str, str, str, int], AnomalyRecord] = {}
        forecasts: dict[tuple[str, str, str, int], ForecastRecord] = {}
        for r in records:
            key = (r.tenant, r.metric, series_id(r.metric, r.dims), r.window_start)
            if isinstance(r, AnomalyRecord):
                anomalies[key] = r
            else:
                forecasts[key] = r
        now = int(time.time() * 1000)
        a_rows = list(anomalies.items())
        f_rows = list(forecasts.items())
        a_cols: list[list[Any]] = [
            [k[0] for k, _ in a_rows],
            [k[1] for k, _ in a_rows],
            [k[2] for k, _ in a_rows],
            [orjson.dumps(dict(r.dims)).decode() for _, r in a_rows],
            [k[3] for k, _ in a_rows],
            [r.detector for _, r in a_rows],
            [_finite(r.result.value) for _, r in a_rows],
            [r.result.score for _, r in a_rows],
            [r.result.label for _, r in a_rows],
            [_finite(r.result.expected) for _, r in a_rows],
            [_finite(r.result.expected_low) for _, r in a_rows],
            [_finite(r.result.expected_high) for _, r in a_rows],
            [r.result.deviation for _, r in a_rows],
            [r.result.explanation for _, r in a_rows],
            [now] * len(a_rows),
        ]
        f_cols: list[list[Any]] = [
            [k[0] for k, _ in f_rows],
            [k[1] for k, _ in f_rows],
            [k[2] for k, _ in f_rows],
            [orjson.dumps(dict(r.dims)).decode() for _, r in f_rows],
            [k[3] for k, _ in f_rows],
            [r.forecast.level for _, r in f_rows],
            [orjson.dumps([list(p) for p in r.forecast.points]).decode() for _, r in f_rows],
            [r.skill.n for _, r in f_rows],
            [r.skill.mae for _, r in f_rows],
            [r.skill.smape for _, r in f_rows],
            [r.skill.naive_mae for _, r in f_rows],
            [r.skill.naive_smape for _, r in f_rows],
            [r.skill.coverage for _, r in f_rows],
            [now] * len(f_rows),
        ]

        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("BEGIN TRANSACTION")
            con.execute(_DDL)
            if a_rows:
                con.execute(_UPSERT_ANOMALIES, a_cols)
            if f_rows:
                con.execute(_UPSERT_FORECASTS, f_cols)
            con.execute("COMMIT")

        if a_rows or f_rows:
            self.warehouse._run(write, read_only=False)

    def _read(self, table: str, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        if not self.warehouse.path.exists():
            return []

        def read(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()
            if not found or not found[0]:
                return []
            cursor = con.execute(sql, params)
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return self.warehouse._run(read, read_only=True)

    def anomalies(
        self, tenant: str, start_ms: int, end_ms: int, *, min_score: float = 0.0, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Scored windows of ``tenant`` in ``[start_ms, end_ms)`` with at least ``min_score``."""
        return self._read(
            "anomalies",
            "SELECT metric, series_id, dims, epoch_ms(window_start) AS window_start, detector,"
            " value, score, label, expected, expected_low, expected_high, deviation, explanation"
            " FROM anomalies WHERE tenant = ? AND score >= ?"
            " AND window_start >= epoch_ms(?::BIGINT) AND window_start < epoch_ms(?::BIGINT)"
            " ORDER BY window_start DESC, score DESC LIMIT ?",
            [tenant, min_score, start_ms, end_ms, limit],
        )

    def latest_forecasts(self, tenant: str, metric: str) -> list[dict[str, Any]]:
        """The newest forecast of every series of ``metric``."""
        return self._read(
            "forecasts",
            "SELECT series_id, dims, epoch_ms(window_start) AS issued_after, level, points, n,"
            " mae, smape, naive_mae, naive_smape, coverage FROM forecasts"
            " WHERE tenant = ? AND metric = ?"
            " QUALIFY row_number() OVER (PARTITION BY series_id ORDER BY window_start DESC) = 1",
            [tenant, metric],
        )

    def health(self, tenant: str) -> list[dict[str, Any]]:
        """Per metric: series scored, alert rate, and mean forecast skill figures."""
        anomalies = self._read(
            "anomalies",
            "SELECT metric, any_value(detector) AS detector, count(DISTINCT series_id) AS series,"
            " count(*) AS scored, avg(CASE WHEN label = 'anomaly' THEN 1 ELSE 0 END)"
            " AS alert_rate, epoch_ms(max(window_start)) AS last_window"
            " FROM anomalies WHERE tenant = ? GROUP BY metric ORDER BY metric",
            [tenant],
        )
        forecasts = self._read(
            "forecasts",
            "SELECT metric, count(*) AS series, avg(smape) AS smape,"
            " avg(naive_smape) AS naive_smape, avg(mae) AS mae, avg(naive_mae) AS naive_mae,"
            " avg(coverage) AS coverage FROM (SELECT * FROM forecasts WHERE tenant = ?"
            " QUALIFY row_number() OVER (PARTITION BY series_id ORDER BY window_start DESC) = 1)"
            " GROUP BY metric ORDER BY metric",
            [tenant],
        )
        return [{"kind": "anomaly", **row} for row in anomalies] + [
            {"kind": "forecast", **row} for row in forecasts
        ]


class RedisModelStore:
    """Model results in Redis (hot), with the same series identity as the warehouse rows.

    Key layout (``P`` prefix, ``T`` tenant, ``M`` metric, ``S`` series id of
    :func:`operators.records.series_id`, as in :mod:`sinks.redis_store`):

    ``P:T:anomaly:M:S``
        ZSET of the series' scored windows; score ``window_start``, member the
        JSON of the row :meth:`ModelStore.anomalies` returns (one per score).
    ``P:T:anomaly-series:M``
        HASH series id → dims JSON, so readers enumerate series without ``SCAN``.
    ``P:T:forecast:M``
        HASH series id → JSON of the series' newest forecast, shaped like a
        :meth:`ModelStore.latest_forecasts` row.

    Writes are full-value upserts (idempotent); every write refreshes the TTL
    of the keys it touches and trims windows older than the hot retention.
    """

    def __init__(self, client: Any, prefix: str, hot_ttl_seconds: int) -> None:
        if hot_ttl_seconds <= 0:
            raise ValueError(f"hot_ttl_seconds must be positive (got {hot_ttl_seconds})")
        self.client = client
        self.prefix = prefix
        self.ttl_ms = hot_ttl_seconds * 1000

    def anomaly_key(self, tenant: str, metric: str, series: str) -> str:
        return f"{self.prefix}:{tenant}:anomaly:{metric}:{series}"

    def anomaly_index_key(self, tenant: str, metric: str) -> str:
        return f"{self.prefix}:{tenant}:anomaly-series:{metric}"

    def forecast_key(self, tenant: str, metric: str) -> str:
        return f"{self.prefix}:{tenant}:forecast:{metric}"

    def write(self, records: Sequence[ModelRecord]) -> None:
        """Upsert a batch in one pipelined round trip; the last record per key wins."""
        anomalies: dict[tuple[str, str, str], dict[int, AnomalyRecord]] = {}
        forecasts: dict[tuple[str, str], dict[str, ForecastRecord]] = {}
        for r in records:
            sid = series_id(r.metric, r.dims)
            if isinstance(r, AnomalyRecord):
                anomalies.setdefault((r.tenant, r.metric, sid), {})[r.window_start] = r
            else:
                forecasts.setdefault((r.tenant, r.metric), {})[sid] = r
        if not anomalies and not forecasts:
            return
        pipe = self.client.pipeline(transaction=False)
        for (tenant, metric, sid), by_start in anomalies.items():
            key = self.anomaly_key(tenant, metric, sid)
            for start, r in by_start.items():
                pipe.zremrangebyscore(key, start, start)
                pipe.zadd(key, {orjson.dumps(anomaly_row(r, sid)): start})
            pipe.zremrangebyscore(key, "-inf", f"({max(by_start) - self.ttl_ms}")
            pipe.pexpire(key, self.ttl_ms)
            index = self.anomaly_index_key(tenant, metric)
            dims = next(iter(by_start.values())).dims
            pipe.hset(index, sid, orjson.dumps(dict(dims)))
            pipe.pexpire(index, self.ttl_ms)
        for (tenant, metric), by_series in forecasts.items():
            key = self.forecast_key(tenant, metric)
            pipe.hset(
                key,
                mapping={sid: orjson.dumps(forecast_row(r, sid)) for sid, r in by_series.items()},
            )
            pipe.pexpire(key, self.ttl_ms)
        pipe.execute()

    def anomalies(
        self,
        tenant: str,
        metrics: Sequence[str],
        start_ms: int,
        end_ms: int,
        *,
        min_score: float = 0.0,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Like :meth:`ModelStore.anomalies`, from the hot copy of ``metrics``."""
        pipe = self.client.pipeline(transaction=False)
        for metric in metrics:
            pipe.hkeys(self.anomaly_index_key(tenant, metric))
        chosen = [
            (metric, sid.decode() if isinstance(sid, bytes) else sid)
            for metric, sids in zip(metrics, pipe.execute(), strict=True)
            for sid in sids
        ]
        pipe = self.client.pipeline(transaction=False)
        for metric, sid in chosen:
            pipe.zrangebyscore(self.anomaly_key(tenant, metric, sid), start_ms, f"({end_ms}")
        rows = [orjson.loads(m) for members in pipe.execute() for m in members]
        rows = [r for r in rows if r["score"] >= min_score]
        rows.sort(key=lambda r: (-r["window_start"], -r["score"]))
        return rows[:limit]

    def latest_forecasts(self, tenant: str, metric: str) -> list[dict[str, Any]]:
        """Like :meth:`ModelStore.latest_forecasts`, from the hot copy."""
        raw = self.client.hgetall(self.forecast_key(tenant, metric))
        return sorted((orjson.loads(v) for v in raw.values()), key=lambda r: r["series_id"])


def anomaly_row(r: AnomalyRecord, sid: str) -> dict[str, Any]:
    """An anomaly record as the API row (``dims`` and ``points`` still JSON text)."""
    return {
        "metric": r.metric,
        "series_id": sid,
        "dims": orjson.dumps(dict(r.dims)).decode(),
        "window_start": r.window_start,
        "detector": r.detector,
        "value": _finite(r.result.value),
        "score": r.result.score,
        "label": r.result.label,
        "expected": _finite(r.result.expected),
        "expected_low": _finite(r.result.expected_low),
        "expected_high": _finite(r.result.expected_high),
        "deviation": r.result.deviation,
        "explanation": r.result.explanation,
    }


def forecast_row(r: ForecastRecord, sid: str) -> dict[str, Any]:
    """A forecast record as the API row."""
    s = r.skill
    return {
        "series_id": sid,
        "dims": orjson.dumps(dict(r.dims)).decode(),
        "issued_after": r.window_start,
        "level": r.forecast.level,
        "points": orjson.dumps([list(p) for p in r.forecast.points]).decode(),
        "n": s.n,
        "mae": _finite(s.mae),
        "smape": _finite(s.smape),
        "naive_mae": _finite(s.naive_mae),
        "naive_smape": _finite(s.naive_smape),
        "coverage": _finite(s.coverage),
    }
